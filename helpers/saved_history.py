"""Saving a conversation to a JSON file, and loading one you may not have written.

A saved history is attacker-reachable: a user can edit the file, or upload one.
`load_history(path)` treats it as untrusted input:

- the bytes must be UTF-8 JSON, either a list of messages or
  ``{"schema_version": 1, "messages": [...]}`` (what `save_history` writes);
- each message is exactly ``{"role": "user" | "assistant", "content": str}``:
  no ``system`` or ``tool`` role, no extra keys (``tool_calls``, ``function_call``,
  ``name``), no chat-template control tokens or tool-call tags in the text, and
  no text over `MAX_CONTENT_CHARS`.

A file that cannot be read as that shape raises `HistoryFileError`: also a path
that is not a regular file (a pipe, ``/dev/zero``), a file over `MAX_FILE_BYTES`
(at most that many bytes are ever read, whatever its size claims), JSON nested
too deeply, and text that is not valid Unicode (a lone surrogate). A well-formed
file carrying something a user may not supply raises `UntrustedHistoryError`
naming the message's index and the reason. Loading only reads: the file is never
changed. It returns the turns; the caller prepends its own, trusted, system message.

`save_history(path, history)` redacts secrets and personal data first (by
default with `helpers.sanitize.sanitize_for_storage`, see its module for what is
detected), then writes atomically (a temporary file in the same folder, then
`os.replace`), so a crash mid-write leaves the old file whole. If redaction
fails, `HistoryRedactionError` is raised and nothing is written. A symbolic link
is saved through (its target is replaced, the link stays) and an existing file
keeps its permission bits; a new file is created private (``0600``).
`history_document(history)` does every check and the redaction without writing,
so a caller can validate before spending a model call.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import HelpersError
from .sanitize import LoneSurrogateError, require_unicode, sanitize_for_storage, strip_invisible

Redactor = Callable[[str], Any]  # returns the redacted text, or an object with a `.text` attribute

SCHEMA_VERSION = 1
ALLOWED_ROLES = ("user", "assistant")
MAX_CONTENT_CHARS = 20_000
MAX_MESSAGES = 2_000
MAX_FILE_BYTES = 8 * 1024 * 1024

# Text that would act as structure in a chat template or a tool-calling format.
_CONTROL_MARKUP = re.compile(
    r"<\|[a-z_]+\|>"  # <|im_start|>, <|im_end|>, <|eot_id|>, <|start_header_id|>
    r"|<\s*/?\s*(?:tool_call|tool_calls|tool_response|tool_result|function_call|function_calls|functions?)\b"
    r"|\[/?(?:INST|TOOL_CALLS|TOOL_RESULTS|AVAILABLE_TOOLS)\]"
    r'|"(?:tool_calls|function_call)"\s*:',
    re.IGNORECASE,
)


class SavedHistoryError(HelpersError):
    """Base class: a saved history could not be used."""


class HistoryFileError(SavedHistoryError):
    """The file is not a readable history (missing, not a regular file, too large, not UTF-8, not JSON, wrong
    shape), or the path cannot be saved to. It was not changed."""

    def __init__(self, path: Path | str, reason: str):
        super().__init__(f"{path}: {reason}. The file was left unchanged.")
        self.path = Path(path)
        self.reason = reason


class UntrustedHistoryError(SavedHistoryError, ValueError):
    """A message in a user-supplied history is one a user may not supply (e.g. a system role)."""

    def __init__(self, index: int, reason: str):
        super().__init__(f"message {index}: {reason}. A user-supplied history may hold only user and assistant text.")
        self.index = index
        self.reason = reason


class HistoryRedactionError(SavedHistoryError):
    """Redacting the history before saving it failed, so nothing was written."""


def check_turns(messages: Any) -> list[dict[str, str]]:
    """Validate user-supplied turns; return copies (``{"role", "content"}`` only).

    Raises `TypeError` for a wrong shape (not a list of objects with string
    values), which `load_history` reports as `HistoryFileError`,
    `helpers.sanitize.LoneSurrogateError` for text that is not valid Unicode, and
    `UntrustedHistoryError` for anything a user may not supply.
    """
    if not isinstance(messages, list):
        raise TypeError(f"messages must be a list, not {type(messages).__name__}")
    if len(messages) > MAX_MESSAGES:
        raise UntrustedHistoryError(len(messages) - 1, f"more than {MAX_MESSAGES} messages")
    turns = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise TypeError(f"message {index} must be an object, not {type(message).__name__}")
        if not isinstance(message.get("role"), str) or not isinstance(message.get("content"), str):
            raise TypeError(f"message {index} needs a string 'role' and a string 'content'")
        role, content = message["role"], message["content"]
        if role not in ALLOWED_ROLES:
            raise UntrustedHistoryError(index, f"role {role!r} is not allowed (only {' or '.join(ALLOWED_ROLES)})")
        extra = sorted(set(message) - {"role", "content"})
        if extra:
            raise UntrustedHistoryError(index, f"unexpected keys {extra} (a tool call or a name cannot be supplied)")
        if len(content) > MAX_CONTENT_CHARS:
            raise UntrustedHistoryError(
                index, f"content of {len(content)} characters, over the cap of {MAX_CONTENT_CHARS}"
            )
        require_unicode(content, f"message {index}'s content")
        markup = _CONTROL_MARKUP.search(strip_invisible(content))
        if markup:
            raise UntrustedHistoryError(
                index, f"content holds control markup {markup.group()!r} (a fake tool call or role marker)"
            )
        turns.append({"role": role, "content": content})
    return turns


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:  # {"role": "user", "role": "system"}: parsers disagree on which one wins
        raise ValueError(f"duplicate keys {duplicates}")
    return dict(pairs)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_FILE_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")


def _read_capped(path: Path, cap: int) -> bytes:
    """At most `cap` bytes of the regular file at `path`; `HistoryFileError` for anything else or anything larger.

    Opened without blocking (a pipe with no writer would wait forever) and checked
    with `fstat` on the open file, so what is checked is what is read. The size in
    `stat` is not trusted either: reading stops one byte past the cap.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as error:
        raise HistoryFileError(
            path, f"cannot be read ({error.__class__.__name__}: {error.strerror or error})"
        ) from error
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise HistoryFileError(
                path, f"is not a regular file (it is {_kind(mode)}); only a saved history file loads"
            )
        chunks, total = [], 0
        while total <= cap:
            chunk = os.read(fd, min(1 << 20, cap + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as error:
        raise HistoryFileError(
            path, f"cannot be read ({error.__class__.__name__}: {error.strerror or error})"
        ) from error
    finally:
        os.close(fd)
    if total > cap:
        raise HistoryFileError(path, f"more than {cap} bytes, over the cap of {cap}")
    return b"".join(chunks)


def load_history(path: Path | str) -> list[dict[str, str]]:
    """The user and assistant turns saved in `path`, checked as untrusted input.

    Raises `HistoryFileError` when the file is missing, not a regular file (a
    pipe, a device), larger than `MAX_FILE_BYTES`, not UTF-8, not JSON (or
    truncated, or nested too deeply), not a list of ``{"role", "content"}``
    objects, or holds text that is not valid Unicode; and `UntrustedHistoryError`
    (with `.index` and `.reason`) for a system or tool role, extra keys such as
    ``tool_calls``, control markup in the text, or text over the size cap. Only
    reads the file, and at most `MAX_FILE_BYTES` of it.
    """
    path = Path(path)
    raw = _read_capped(path, MAX_FILE_BYTES)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise HistoryFileError(path, f"is not UTF-8 text (byte {error.start})") from error
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant)
    except ValueError as error:  # json.JSONDecodeError is a ValueError
        raise HistoryFileError(path, f"is not valid JSON ({error})") from error
    except RecursionError as error:  # [[[[... deeper than the parser's recursion limit
        raise HistoryFileError(path, "is JSON nested too deeply to be a history (a list of flat objects)") from error

    if isinstance(data, dict):
        if set(data) != {"schema_version", "messages"}:
            raise HistoryFileError(path, f"expected the keys schema_version and messages, found {sorted(data)}")
        if data["schema_version"] != SCHEMA_VERSION:
            raise HistoryFileError(path, f"schema_version {data['schema_version']!r} is not {SCHEMA_VERSION}")
        messages = data["messages"]
    else:
        messages = data
    try:
        return check_turns(messages)
    except TypeError as error:
        raise HistoryFileError(path, f"wrong shape: {error}") from error
    except LoneSurrogateError as error:
        raise HistoryFileError(path, str(error)) from error


def _redact_turns(turns: list[dict[str, str]], redact: Redactor) -> list[dict[str, str]]:
    redacted = []
    for index, turn in enumerate(turns):
        try:
            result = redact(turn["content"])
        except Exception as error:
            raise HistoryRedactionError(
                f"message {index}: redaction failed ({type(error).__name__}: {error}); nothing was written"
            ) from error
        text = getattr(result, "text", result)
        if not isinstance(text, str):
            raise HistoryRedactionError(
                f"message {index}: redaction returned {type(result).__name__}, not text; nothing was written"
            )
        redacted.append({"role": turn["role"], "content": text})
    return redacted


def history_document(history: Sequence[dict[str, Any]], *, redact: Redactor | None = sanitize_for_storage) -> str:
    """The JSON text `save_history` would write for `history`: checked, redacted, nothing written.

    System messages are left out. Raises what `save_history` raises before it
    writes (`UntrustedHistoryError`, `LoneSurrogateError`, `HistoryRedactionError`),
    so a caller can validate a turn before paying for a model call.
    """
    turns = check_turns([m for m in history if m.get("role") not in ("system", "developer")])
    if redact is not None:
        turns = check_turns(_redact_turns(turns, redact))
    return json.dumps({"schema_version": SCHEMA_VERSION, "messages": turns}, ensure_ascii=False, indent=1)


def _save_target(path: Path) -> tuple[Path, int | None]:
    """Where a save of `path` writes (through symbolic links), and the permission bits to keep (None: a new file)."""
    target = Path(os.path.realpath(path))
    if target.is_symlink():  # realpath gives up on a loop
        raise HistoryFileError(path, "is a loop of symbolic links; refusing to replace it")
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        return target, None
    except OSError as error:
        raise HistoryFileError(
            path, f"cannot be saved to ({error.__class__.__name__}: {error.strerror or error})"
        ) from error
    if not stat.S_ISREG(mode):
        raise HistoryFileError(path, f"is not a regular file (it is {_kind(mode)}); refusing to replace it")
    return target, stat.S_IMODE(mode)


def save_history(
    path: Path | str,
    history: Sequence[dict[str, Any]],
    *,
    redact: Redactor | None = sanitize_for_storage,
) -> Path:
    """Write the user and assistant turns of `history` to `path`, redacted, atomically.

    System messages are not saved: they are the application's, and
    `load_history` refuses them. The turns are checked first with the rules
    `load_history` applies, so a file this writes always loads; a turn that fails
    raises `UntrustedHistoryError` (or `LoneSurrogateError` for text that is not
    valid Unicode) and nothing is written. Each turn's text then goes through
    `redact` (default `helpers.sanitize.sanitize_for_storage`; None to save it as
    it is); if that fails, `HistoryRedactionError` is raised and nothing is
    written. The JSON goes to a temporary file in the same folder, flushed to
    disk, then `os.replace`s the old file in one step: a failure at any point
    leaves the old file as it was.

    A symbolic link is followed: its target is replaced and the link stays a link.
    An existing file keeps its permission bits (a 0640 file stays 0640); a new one
    is created 0600, private, since it holds a conversation. A path that is a
    folder, a pipe or a device raises `HistoryFileError`. Returns `path`;
    `history` itself is not changed.
    """
    path = Path(path)
    document = history_document(history, redact=redact)
    target, mode = _save_target(path)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as error:
        raise HistoryFileError(
            path, f"cannot be saved to ({error.__class__.__name__}: {error.strerror or error})"
        ) from error
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(document)
            file.flush()
            os.fsync(file.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path

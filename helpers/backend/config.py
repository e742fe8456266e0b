"""Which backend the notebooks talk to, read from environment variables (and `.env`).

Nothing set: the embedded SmolLM2-135M-Instruct model, offline.
`LLM_PROVIDER=openai|deepseek|openrouter|ollama|vllm|lmstudio|custom`: an OpenAI-compatible
provider whose address, default model and key variable come from `data/providers.csv` (one
dated, sourced row per preset). `LLM_MODEL` overrides the model and `OPENAI_BASE_URL` the
address; setting only `OPENAI_BASE_URL` selects `custom`. A query string in `OPENAI_BASE_URL`
(`...?api-version=2024-06-01`) becomes `Settings.default_query`, sent with every request.

Keys go only where they belong. A hosted preset at its own address reads its own variable
(`OPENAI_API_KEY`, `DEEPSEEK_API_KEY`, `OPENROUTER_API_KEY`) and nothing else. Any other
address (a local server, `custom`, or a preset moved with `OPENAI_BASE_URL`) gets a key only
from `LLM_API_KEY`, so a shell's `OPENAI_API_KEY` is never sent to another host. A hosted
preset's own address must be https://, so its key never travels in clear text, and no address
may carry a user name or password (`http://user:pass@host`): the SDK would send it as Basic auth
and it would be printed wherever the address is.

`check_env_file` is the check for `helpers.backend.client.load_env_file` to run on `.env` before
loading it: what python-dotenv would skip with only a warning, or fail on with a bare
`ValueError`, is a `ConfigurationError` naming the file and line.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from urllib.parse import parse_qsl, urlparse, urlsplit, urlunsplit

from dotenv.parser import parse_stream

from ..errors import ConfigurationError, MissingAPIKeyError

EMBEDDED = "embedded"
EMBEDDED_MODEL = "SmolLM2-135M-Instruct"

# The one dated source of provider facts; helpers is installed editable (`pip install -e .`).
PROVIDERS_CSV = Path(__file__).resolve().parents[2] / "data" / "providers.csv"
# The key variable for any address that is not a hosted preset's own.
CUSTOM_KEY_VARIABLE = "LLM_API_KEY"
# Local servers accept any key; the SDK insists on a non-empty one.
PLACEHOLDER_KEY = "not-needed"


@dataclass(frozen=True)
class ProviderPreset:
    """One row of `data/providers.csv`: a provider's address, default model and key variable."""

    name: str
    base_url: str
    default_model: str | None
    key_variable: str
    as_of: str
    source: str

    @property
    def is_hosted(self) -> bool:
        """A hosted provider has a key variable of its own and refuses requests without a key."""
        return self.key_variable != CUSTOM_KEY_VARIABLE


def load_presets(path: Path = PROVIDERS_CSV) -> dict[str, ProviderPreset]:
    """Read the presets from `path` (default `data/providers.csv`), keyed by provider name.

    Raises `ConfigurationError` naming the file when it is missing or a row lacks a
    provider name, a key variable, a date or a source.
    """
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise ConfigurationError(
            f"Cannot read the provider presets at {path} ({error.strerror}): helpers reads data/providers.csv "
            "from the repository, so install it with `pip install -e .` from a clone (see README)."
        ) from error
    presets = {}
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        missing = [
            column for column in ("provider", "key_variable", "as_of", "source") if not (row.get(column) or "").strip()
        ]
        if missing:
            raise ConfigurationError(f"{path}, line {number}: no {', '.join(missing)}.")
        name = row["provider"].strip()
        presets[name] = ProviderPreset(
            name=name,
            base_url=row["base_url"].strip(),
            default_model=row["default_model"].strip() or None,
            key_variable=row["key_variable"].strip(),
            as_of=row["as_of"].strip(),
            source=row["source"].strip(),
        )
    return presets


@lru_cache(maxsize=1)
def provider_presets() -> dict[str, ProviderPreset]:
    """The presets of `data/providers.csv`, read once per process."""
    return load_presets()


class _Presets(Mapping[str, ProviderPreset]):
    """`data/providers.csv` as a read-only mapping, read on first use, so `import helpers` never needs it."""

    def __getitem__(self, name: str) -> ProviderPreset:
        return provider_presets()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(provider_presets())

    def __len__(self) -> int:
        return len(provider_presets())


# The presets by name, e.g. PROVIDERS["openai"].default_model.
PROVIDERS: Mapping[str, ProviderPreset] = _Presets()


@dataclass(frozen=True)
class Settings:
    """The resolved backend: `provider` is "embedded" or a preset name of `data/providers.csv`.

    `as_of` is the date of the preset's facts (default model, address), None for the embedded
    model and for a model chosen with `LLM_MODEL`.
    """

    provider: str
    model: str
    base_url: str | None = None
    api_key: str | None = None
    as_of: str | None = None
    # The query string of OPENAI_BASE_URL (without it in `base_url`), for openai.OpenAI(default_query=...).
    default_query: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    @property
    def is_embedded(self) -> bool:
        return self.provider == EMBEDDED

    def describe(self) -> str:
        """One line for a notebook's setup cell (never prints the key)."""
        if self.is_embedded:
            return f"Backend: embedded {self.model} (llama.cpp server in this process, offline, seeded sampling)"
        dated = f" (preset default as of {self.as_of}, data/providers.csv)" if self.as_of else ""
        return f"Backend: {self.provider} at {self.base_url}, model {self.model}{dated}"


def is_local_url(url: str) -> bool:
    """Whether `url` points at this machine (or a `.local` name), where no key is needed."""
    host = urlparse(url).hostname or ""
    return host in {"localhost", "127.0.0.1", "::1", "0.0.0.0"} or host.endswith(".local")


_USERINFO = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.-]*:)?//)?([^/?#@]*)@")


def redact_userinfo(url: str) -> str:
    """`url` with the password of its ``user:password@`` part (or a lone ``token@``) shown as ``***``."""
    match = _USERINFO.match(url)
    if not match:
        return url
    user, has_password, _ = match.group(2).partition(":")
    shown = f"{user}:***" if has_password else "***"
    return f"{match.group(1) or ''}{shown}@{url[match.end() :]}"


def validate_base_url(url: str, variable: str = "OPENAI_BASE_URL") -> str:
    """Return `url` if it is an http(s) URL with a host and a valid port; else name what is wrong.

    Raises `ConfigurationError`: a missing scheme (`localhost:8080/v1` would otherwise be read
    as scheme "localhost" and probe port 80), a missing host, a port outside 1-65535, or a user
    name or password in the address (the SDK would send it as Basic auth; a key belongs in
    LLM_API_KEY). No message shows a password: it is written ``***``.
    """
    shown = redact_userinfo(url)
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https"):
        raise ConfigurationError(
            f"{variable}={shown!r} does not start with http:// or https://. "
            f"Write the whole address, e.g. {variable}=http://{shown.split('://')[-1]}"
        )
    if "@" in parsed.netloc:
        raise ConfigurationError(
            f"{variable}={shown!r} holds a user name or password before '@'. It would be sent as Basic auth "
            f"and shown wherever the address is printed: remove it from the address and put the key in "
            f"{CUSTOM_KEY_VARIABLE} (or the preset's own key variable)."
        )
    if not parsed.hostname:
        raise ConfigurationError(f"{variable}={shown!r} names no host, e.g. http://localhost:8080/v1.")
    try:
        port = parsed.port
    except ValueError:
        raise ConfigurationError(
            f"{variable}={shown!r} has an invalid port: a port is a number from 1 to 65535."
        ) from None
    if port == 0:
        raise ConfigurationError(f"{variable}={shown!r} has port 0: a port is a number from 1 to 65535.")
    return url


def split_query(url: str, variable: str = "OPENAI_BASE_URL") -> tuple[str, Mapping[str, str]]:
    """`url` without its query string, and that query as a read-only mapping.

    The SDK joins a path onto the base URL as text, so `.../v1?api-version=1` would become
    `.../v1/?api-version=1chat/completions`; the query is sent instead with `default_query`.
    Raises `ConfigurationError` for a query that names a parameter twice.
    """
    parts = urlsplit(url)
    if not parts.query:
        return url, MappingProxyType({})
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    names = [name for name, _ in pairs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigurationError(
            f"{variable} names the query parameter {', '.join(repeated)} more than once: give each one once."
        )
    return urlunsplit(parts._replace(query="")), MappingProxyType(dict(pairs))


def _same_host(url: str, other: str) -> bool:
    return (urlparse(url).hostname or "").lower() == (urlparse(other).hostname or "").lower()


def resolve_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the backend choice from `environ` (default: `os.environ`).

    Raises `ConfigurationError` for an unknown provider, a malformed `OPENAI_BASE_URL` or a
    missing model, and `MissingAPIKeyError` when a hosted provider has no key of its own.
    """
    env = os.environ if environ is None else environ
    provider = env.get("LLM_PROVIDER", "").strip().lower()
    base_url_override = env.get("OPENAI_BASE_URL", "").strip()
    if not provider:
        provider = "custom" if base_url_override else EMBEDDED

    if provider == EMBEDDED:
        return Settings(provider=EMBEDDED, model=EMBEDDED_MODEL)

    if provider not in PROVIDERS:
        choices = ", ".join([EMBEDDED, *PROVIDERS])
        raise ConfigurationError(f"LLM_PROVIDER={provider!r} is not one of: {choices}.")

    preset = PROVIDERS[provider]
    if base_url_override:
        base_url = validate_base_url(base_url_override)
    elif preset.base_url:
        base_url = preset.base_url
    else:
        raise ConfigurationError("LLM_PROVIDER=custom needs OPENAI_BASE_URL, e.g. http://localhost:8080/v1.")
    base_url, default_query = split_query(base_url)

    chosen_model = env.get("LLM_MODEL", "").strip()
    model = chosen_model or preset.default_model
    if not model:
        raise ConfigurationError(
            f"LLM_PROVIDER={provider} has no default model: set LLM_MODEL to a model the server has "
            "(for Ollama, one listed by `ollama list`)."
        )

    at_own_address = preset.is_hosted and _same_host(base_url, preset.base_url)
    if at_own_address and urlparse(base_url).scheme != "https":
        raise ConfigurationError(
            f"LLM_PROVIDER={provider} at {base_url}: {provider}'s own address must start with https://, or "
            f"{preset.key_variable} and every message would cross the network unencrypted. Write "
            f"OPENAI_BASE_URL=https://{base_url.split('://', 1)[-1]}, or unset it to use {preset.base_url}."
        )
    key_variable = preset.key_variable if at_own_address else CUSTOM_KEY_VARIABLE
    api_key = env.get(key_variable, "").strip() or None
    if api_key is None:
        if at_own_address:
            raise MissingAPIKeyError(
                f"LLM_PROVIDER={provider} needs an API key: set {key_variable} in your environment or in .env "
                "(see .env.example). Unset LLM_PROVIDER to use the embedded offline model."
            )
        if preset.is_hosted and not is_local_url(base_url):
            raise MissingAPIKeyError(
                f"LLM_PROVIDER={provider} points at {base_url} (OPENAI_BASE_URL), not at {preset.base_url}: "
                f"{preset.key_variable} is only ever sent to {preset.base_url}. Set {CUSTOM_KEY_VARIABLE} to the "
                "key for this address."
            )
        api_key = PLACEHOLDER_KEY
    return Settings(
        provider=provider,
        model=model,
        base_url=base_url,
        api_key=api_key,
        as_of=None if chosen_model else preset.as_of,
        default_query=default_query,
    )


def check_env_text(text: str, path: Path | str = ".env") -> None:
    """Raise `ConfigurationError` naming `path` and the line for what python-dotenv would not load right.

    A NUL byte (python-dotenv stops with a bare ``ValueError: embedded null byte``), and any statement
    its parser cannot read, such as a value with an opening quote and no closing one: python-dotenv
    skips that line with only a warning, so the variable is silently unset and the notebooks fall
    back to the embedded model. The messages never show a line's value (it may be a key).
    Quotes, ``export``, CRLF line ends, a BOM and ``${VAR}`` are loaded as intended and pass.
    """
    nul = text.find("\0")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        raise ConfigurationError(
            f"{path}, line {line}: holds a NUL byte (\\0), which no environment variable can carry. "
            "Delete it (the file may have been saved as UTF-16: save it as UTF-8)."
        )
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            line = binding.original.line
            raise ConfigurationError(
                f"{path}, line {line}: python-dotenv cannot read this statement and would skip it, leaving its "
                "variable unset (an opening quote ' or \" without its closing quote, or text after the closing "
                "quote?). Close the quote, or remove the line; unset variables fall back to the embedded model."
            )


def check_env_file(path: Path | str) -> None:
    """Check the `.env` file at `path` before python-dotenv loads it (for `load_env_file` to call).

    Raises `ConfigurationError` naming the file: it is not UTF-8 text, or (`check_env_text`) a line
    holds a NUL byte or a statement python-dotenv would skip. Returns None when the file is fine.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigurationError(
            f"{path} is not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start}): "
            "save it as UTF-8, or delete it to use the embedded offline model."
        ) from None
    check_env_text(text.removeprefix("\ufeff"), path)

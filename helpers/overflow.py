"""One chat turn that survives a context overflow once, and then stops.

When the prompt plus `max_tokens` does not fit the model's context window, the
API refuses it: OpenAI with `openai.BadRequestError` code ``context_length_exceeded``
(the embedded model raises the very same error), other servers in their own words.
`is_context_overflow` (and `overflow_details`, which also reads the sizes the server
states) is the one place that recognises them all. `send_with_retry` then trims the
history **once** with `helpers.history.trim_to_budget` to the budget the error
implies: the context limit minus `max_tokens`. Every system message and the
newest turn are kept, and so is every message named in ``pinned=``: the messages
*your code* made, such as a summary sent with `helpers.sanitize.data_message` or
memories from `helpers.memory.memory_message`, named by identity
(``pinned=[summary]``). Nothing is pinned because of what its text looks like, so
a user who types a fake ``<memory-…>`` block gets an ordinary message, dropped
like any other old turn.
If the trimmed prompt still does not fit, or cannot be trimmed enough, it
raises `ContextOverflowError`. It never loops.

`chat_turn` is one turn of the loop around it: the history is only extended,
and saved, after a successful call; a failed turn changes neither the list nor
the file. What will be saved is checked *before* the call (a user message that
the file would refuse stops the turn before anything is paid for); if the reply
itself cannot be saved, `TurnNotSavedError` carries the finished turn, so the
reply is not lost.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

from .backend.client import count_tokens
from .errors import HelpersError
from .history import HistoryTooLongError, TokenCounter, trim_to_budget
from .payload import assistant_message
from .saved_history import SavedHistoryError, history_document, save_history
from .types import Message

Trimmer = Callable[..., list[Message]]
Pinned = Callable[[Message], bool] | Collection[Message]

CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
EXCEED_CONTEXT_SIZE = "exceed_context_size_error"

# How each server says "the prompt does not fit" (N = context size, P = prompt tokens), as read in
# public sources; the dates are the sources' own. `overflow_details` is the one place in helpers that
# recognises these: add a wording here, with its source, and a test in tests/test_overflow.py.
#
# server           | status | wording                                                  | source, date
# -----------------+--------+----------------------------------------------------------+------------------------------
# OpenAI           | 400    | code "context_length_exceeded": "This model's maximum    | crewAIInc/crewAI-examples#121,
#                  |        | context length is N tokens. However, your messages       | 2024-06-13; AsyncFuncAI/
#                  |        | resulted in P tokens. Please reduce the length of the    | deepwiki-open#144, 2025-05-27
#                  |        | messages."                                               |
# DeepSeek         | 400    | code, type "invalid_request_error": "This model's        | FoundationAgents/OpenManus#79,
#                  |        | maximum context length is 65536 tokens. However, you     | 2025-03-07; evalstate/
#                  |        | requested T tokens (P in the messages, M in the          | fast-agent#621, 2026-01-19
#                  |        | completion). Please reduce the length of the messages    |
#                  |        | or completion."                                          |
# llama.cpp server | 400    | {"error": {"code": 400, "type":                          | measured here 2026-12-04 on
#                  |        | "exceed_context_size_error", "n_prompt_tokens": P,       | xllamacpp 2026.10.11549
#                  |        | "n_ctx": N, "message": "request (P tokens) exceeds the   |
#                  |        | available context size (N tokens), try increasing it"}}  |
#                  | 400 or | the type's first wording: "the request exceeds the       | ggml-org/llama.cpp#15780,
#                  | 500    | available context size. try increasing the context size  | 2025-09-03; oobabooga/
#                  |        | or enable context shift"                                 | textgen#7257, 2025-10-07
# vLLM, older      | 400    | "This model's maximum context length is N tokens.        | vllm-project/vllm#16420,
#                  |        | However, you requested T tokens (P in the messages, M in | 2025-04-10; #20409, 2025-07-03
#                  |        | the completion). Please reduce the length of the         |
#                  |        | messages or completion."                                 |
# vLLM, newer      | 400    | "You passed P input tokens and requested M output        | reworded in vllm-project/
#                  |        | tokens. However, the model's context length is only N    | vllm#36197, 2026-03-06 (input
#                  |        | tokens, resulting in a maximum input length of X tokens. | and output apart since #22803,
#                  |        | Please reduce the length of the input prompt.", or "...  | 2025-08-13)
#                  |        | your prompt contains at least P input tokens ..."        | texts as quoted in public
#                  |        |                                                          | client tests (2026)
#                  | (log)  | "Input prompt (P tokens) is too long and exceeds limit   | vllm-project/vllm#525,
#                  |        | of N"                                                    | 2023-07-20; #13209, 2025-02-13
# OpenAI-compatible| 400    | "Please reduce the length of the input messages"         | quoted in public client code
# routers          |        |                                                          | (mini-swe-agent); unconfirmed
# Ollama           | 400 or | usually truncates silently (ollama/ollama#7661,          | nano-step/nano-brain#208,
#                  | 500    | 2025-02-24); a refusal says "the input length exceeds    | 2026-05-30 (400);
#                  |        | the context length"                                      | ITSpecialist111/ai_automation_
#                  |        |                                                          | suggester#37, 2024-11-19 (500,
#                  |        |                                                          | "input exceeds context length")
_CONTEXT_SIZE = (
    re.compile(r"maximum context length is (\d+) tokens", re.IGNORECASE),
    re.compile(r"available context size \((\d+) tokens\)", re.IGNORECASE),
    re.compile(r"context length is only (\d+) tokens", re.IGNORECASE),
    re.compile(r"is too long and exceeds limit of (\d+)", re.IGNORECASE),
)
_PROMPT_TOKENS = (
    re.compile(r"your messages resulted in (\d+) tokens", re.IGNORECASE),
    re.compile(r"\((\d+) in the messages", re.IGNORECASE),
    re.compile(r"request \((\d+) tokens\) exceeds", re.IGNORECASE),
    re.compile(r"you passed (\d+) input tokens", re.IGNORECASE),
    re.compile(r"prompt contains at least (\d+) input tokens", re.IGNORECASE),
    re.compile(r"your request has (\d+) input tokens", re.IGNORECASE),
    re.compile(r"input prompt \((\d+) tokens\) is too long", re.IGNORECASE),
)
# Phrases that name an overflow without a number; the first group also counts on a 500 (Ollama, older llama.cpp).
_SERVER_ERROR_PHRASES = ("exceeds the available context size", "exceeds the context length")
_PHRASES = (
    *_SERVER_ERROR_PHRASES,
    "maximum context length is",
    "context length is only",
    "is too long and exceeds limit of",
    "please reduce the length of the input messages",
)


class ContextOverflowError(HelpersError):
    """The prompt did not fit the context window even after one trim; nothing was changed."""

    def __init__(self, message: str, *, limit: int | None, max_tokens: int, attempts: int, api_error: Exception):
        super().__init__(message)
        self.limit = limit
        self.max_tokens = max_tokens
        self.attempts = attempts  # calls made: 1 (no retry possible) or 2 (the retry overflowed too)
        self.api_error = api_error  # the last overflow error from the API (see `is_context_overflow`)


@dataclass(frozen=True)
class OverflowDetails:
    """What an overflow error says: the prompt's size and the context window's, when the server states them.

    `signal` names what was recognised: ``code context_length_exceeded``, ``type exceed_context_size_error``
    or ``message`` (a wording of the table in `helpers.overflow`).
    """

    signal: str
    prompt_tokens: int | None = None
    context_size: int | None = None


def _first_number(patterns: Sequence[re.Pattern[str]], text: str) -> int | None:
    for pattern in patterns:
        match = pattern.search(text)
        if match:
            return int(match.group(1))
    return None


def _as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def overflow_details(error: BaseException) -> OverflowDetails | None:
    """The overflow an API error reports, or None when `error` is not a context overflow.

    Recognises the wordings of OpenAI, DeepSeek, llama.cpp's server, vLLM and Ollama (the table
    above, with sources) on an HTTP 400 or 413 from the `openai` SDK (`openai.APIStatusError`);
    on a 500 only Ollama's and llama.cpp's explicit wordings count. Anything else, a 401 or a
    non-API exception included, is not an overflow. The numbers come from llama.cpp's
    ``n_prompt_tokens``/``n_ctx`` fields or from the message; either may be None.
    """
    if not isinstance(error, openai.APIStatusError) or error.status_code not in (400, 413, 500):
        return None
    body = error.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]  # an SDK that did not unwrap {"error": {...}}
    fields = body if isinstance(body, dict) else {}
    parts = (getattr(error, "message", ""), fields.get("message"), body if isinstance(body, str) else "")
    text = " ".join(str(part) for part in parts if part)
    lowered = text.lower()
    code = fields.get("code", getattr(error, "code", None))
    kind = fields.get("type", getattr(error, "type", None))
    if kind == EXCEED_CONTEXT_SIZE:
        signal = f"type {EXCEED_CONTEXT_SIZE}"
    elif error.status_code == 500:
        if not any(phrase in lowered for phrase in _SERVER_ERROR_PHRASES):
            return None
        signal = "message"
    elif CONTEXT_LENGTH_EXCEEDED in (code, getattr(error, "code", None)):
        signal = f"code {CONTEXT_LENGTH_EXCEEDED}"
    elif any(phrase in lowered for phrase in _PHRASES):
        signal = "message"
    else:
        return None
    return OverflowDetails(
        signal=signal,
        prompt_tokens=_as_int(fields.get("n_prompt_tokens")) or _first_number(_PROMPT_TOKENS, text),
        context_size=_as_int(fields.get("n_ctx")) or _first_number(_CONTEXT_SIZE, text),
    )


def is_context_overflow(error: BaseException) -> bool:
    """True when `error` is an API's "the prompt does not fit the context window" (see `overflow_details`)."""
    return overflow_details(error) is not None


def context_limit(error: BaseException) -> int | None:
    """The context window size an overflow error states, if it is an overflow and states one."""
    details = overflow_details(error)
    return details.context_size if details else None


@dataclass(frozen=True)
class SendResult:
    """A successful call: the response, the messages actually sent, and whether they were trimmed."""

    response: Any
    sent: list[Message]
    trimmed: bool
    original_length: int
    budget: int | None = None

    @property
    def dropped_messages(self) -> int:
        """How many messages the trim left out (0 when the first call fit)."""
        return self.original_length - len(self.sent)


def send_with_retry(
    client: Any,
    messages: Sequence[Message],
    *,
    model: str,
    max_tokens: int,
    n_ctx: int | None = None,
    safety_margin: int = 0,
    count: TokenCounter = count_tokens,
    pinned: Pinned | None = None,
    trim: Trimmer = trim_to_budget,
    **create_options: Any,
) -> SendResult:
    """Send `messages`; on a context overflow (`is_context_overflow`), trim once to fit and send again.

    The budget for the retry is the context limit (the size the error states, as
    `overflow_details` reads it, else `n_ctx`) minus `max_tokens` minus `safety_margin` (use a margin when
    `count` only estimates, as it does for a provider). `trim(messages, budget,
    count=count, pinned=pinned)` chooses what to keep; the default,
    `helpers.history.trim_to_budget`, keeps every system message, the messages
    `pinned` names (a predicate, or the message objects, matched by identity) and
    the newest turns that fit.

    Raises `ContextOverflowError` when the limit is unknown, when even the system
    messages and the newest turn exceed the budget, or when the trimmed request
    overflows too; the SDK's other errors pass through untouched. `messages` is
    never changed.
    """
    messages = list(messages)
    try:
        response = client.chat.completions.create(
            model=model, messages=messages, max_tokens=max_tokens, **create_options
        )
        return SendResult(response=response, sent=messages, trimmed=False, original_length=len(messages))
    except openai.APIStatusError as error:
        first_details = overflow_details(error)
        if first_details is None:
            raise
        first_error = error

    limit = first_details.context_size or n_ctx
    if limit is None:
        raise ContextOverflowError(
            "The prompt is over the context window, and neither the error nor n_ctx says how large the window is: "
            "pass n_ctx= to trim to it.",
            limit=None,
            max_tokens=max_tokens,
            attempts=1,
            api_error=first_error,
        ) from first_error
    budget = limit - max_tokens - safety_margin
    try:
        if budget < 1:
            raise HistoryTooLongError(f"max_tokens={max_tokens} leaves no room for a prompt", needed=1, budget=budget)
        trimmed = trim(messages, budget, count=count, pinned=pinned)
    except HistoryTooLongError as error:
        raise ContextOverflowError(
            f"Stopped: the prompt does not fit the {limit}-token context window with max_tokens={max_tokens}, and "
            f"trimming cannot fix it ({error}). Nothing was sent again and nothing was changed: shorten the newest "
            "message, the system prompt or the summary, or lower max_tokens.",
            limit=limit,
            max_tokens=max_tokens,
            attempts=1,
            api_error=first_error,
        ) from error
    try:
        response = client.chat.completions.create(
            model=model, messages=trimmed, max_tokens=max_tokens, **create_options
        )
    except openai.APIStatusError as error:
        if not is_context_overflow(error):
            raise
        raise ContextOverflowError(
            f"Stopped after one trim-and-retry: the history trimmed to {len(trimmed)} messages (budget {budget} prompt "
            f"tokens) still overflowed the {limit}-token context window. Nothing was changed; no further retry.",
            limit=limit,
            max_tokens=max_tokens,
            attempts=2,
            api_error=error,
        ) from error
    return SendResult(response=response, sent=trimmed, trimmed=True, original_length=len(messages), budget=budget)


@dataclass(frozen=True)
class TurnResult:
    """One completed turn: the new history (the full one, plus the user message and the reply) and the call."""

    history: list[Message]
    reply: str
    call: SendResult


class TurnNotSavedError(HelpersError):
    """The call succeeded but the new history could not be saved; `.turn` holds the finished turn (reply included).

    The file is as it was. The cause (`__cause__`) says why, e.g. the model's reply
    holds markup that a saved history may not carry.
    """

    def __init__(self, turn: TurnResult, path: Path | str, error: BaseException):
        super().__init__(
            f"The reply arrived but the history was not saved to {path} ({type(error).__name__}: {error}). "
            "The file is unchanged; the finished turn, reply included, is in this error's .turn."
        )
        self.turn = turn


def chat_turn(
    client: Any,
    history: Sequence[Message],
    user_text: str,
    *,
    model: str,
    max_tokens: int,
    save_to: Path | str | None = None,
    **options: Any,
) -> TurnResult:
    """Append `user_text`, send with `send_with_retry`, append the reply; save (redacted) if `save_to` is given.

    Returns a new history list: `history` is never changed. It holds the caller's own
    message objects, then the new user message and the reply, so identities given
    to `pinned=` still name the same messages on the next turn. Nothing is saved unless the
    call succeeded, so after any error (`ContextOverflowError` included) both the
    list and the file are exactly as they were. The returned history is the full
    one (trimming only shapes what is sent), so a summary or older turns are not
    lost; trim or summarize it before the next turn to avoid another overflow.

    With `save_to`, the history and `user_text` are checked and redacted as
    `save_history` would, before the call: markup a saved history refuses raises
    `UntrustedHistoryError` and no call is made. If the reply cannot be saved,
    `TurnNotSavedError` is raised with the finished turn in `.turn`.
    """
    user = {"role": "user", "content": user_text}
    if save_to is not None:
        history_document(list(history) + [user])  # raises now, before the paid call, if the file would refuse it
    # The caller's own message objects are sent and kept, so `pinned=` names them by identity, turn after turn.
    outgoing = list(history) + [user]
    call = send_with_retry(client, outgoing, model=model, max_tokens=max_tokens, **options)
    reply = assistant_message(call.response)
    turn = TurnResult(history=outgoing + [reply], reply=reply["content"], call=call)
    if save_to is not None:
        try:
            save_history(save_to, turn.history)
        except (SavedHistoryError, ValueError, OSError) as error:
            raise TurnNotSavedError(turn, save_to, error) from error
    return turn

"""One chat turn that survives a context overflow once, and then stops.

When the prompt plus `max_tokens` does not fit the model's context window, the
API answers `openai.BadRequestError` with code ``context_length_exceeded`` (the
embedded model raises the very same error). `send_with_retry` then trims the
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
_LIMIT_IN_MESSAGE = re.compile(r"maximum context length is (\d+) tokens", re.IGNORECASE)


class ContextOverflowError(HelpersError):
    """The prompt did not fit the context window even after one trim; nothing was changed."""

    def __init__(self, message: str, *, limit: int | None, max_tokens: int, attempts: int, api_error: Exception):
        super().__init__(message)
        self.limit = limit
        self.max_tokens = max_tokens
        self.attempts = attempts  # calls made: 1 (no retry possible) or 2 (the retry overflowed too)
        self.api_error = api_error  # the last context_length_exceeded error from the API


def is_context_overflow(error: BaseException) -> bool:
    """True for the API's ``context_length_exceeded`` error (OpenAI's code, also sent by the embedded model)."""
    if not isinstance(error, openai.BadRequestError):
        return False
    if getattr(error, "code", None) == CONTEXT_LENGTH_EXCEEDED:
        return True
    body = error.body if isinstance(error.body, dict) else {}
    body = body.get("error", body) if isinstance(body.get("error"), dict) else body
    return body.get("code") == CONTEXT_LENGTH_EXCEEDED


def context_limit(error: BaseException) -> int | None:
    """The context window size stated in an overflow error's message, if it states one."""
    match = _LIMIT_IN_MESSAGE.search(str(getattr(error, "message", "") or error))
    return int(match.group(1)) if match else None


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
    """Send `messages`; on ``context_length_exceeded``, trim once to fit and send again.

    The budget for the retry is the context limit (read from the error message,
    else `n_ctx`) minus `max_tokens` minus `safety_margin` (use a margin when
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
    except openai.BadRequestError as error:
        if not is_context_overflow(error):
            raise
        first_error = error

    limit = context_limit(first_error) or n_ctx
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
    except openai.BadRequestError as error:
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

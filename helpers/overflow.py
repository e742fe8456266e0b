"""One chat turn that survives a context overflow once, and then stops.

When the prompt plus `max_tokens` does not fit the model's context window, the
API answers `openai.BadRequestError` with code ``context_length_exceeded`` (the
embedded model raises the very same error). `send_with_retry` then trims the
history **once** with `trim_keeping_context` (every system message is kept, and
so is every message that carries a data block, such as a summary or memories sent
with `helpers.sanitize.data_message` or `helpers.memory.memory_message`; the
newest turn is kept) to the budget the error implies: the context limit minus
`max_tokens`.
If the trimmed prompt still does not fit, or cannot be trimmed enough, it
raises `ContextOverflowError`. It never loops.

`chat_turn` is one turn of the loop around it: the history is only extended,
and saved, after a successful call; a failed turn changes neither the list nor
the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import openai

from .backend.client import count_tokens
from .errors import HelpersError
from .history import HistoryTooLongError, TokenCounter
from .payload import assistant_message
from .saved_history import save_history

Message = dict[str, Any]
Trimmer = Callable[..., list[Message]]

CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
# A message whose text ends with a data block from helpers.sanitize.data_block: <label-123...>...</label-123...>
_DATA_BLOCK_AT_END = re.compile(r"<([a-z][a-z0-9_]{0,39})-([0-9a-f]{8,64})>\n.*\n</\1-\2>\Z", re.DOTALL)
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


def is_context_message(message: Message) -> bool:
    """True for a message trimming must keep: a system message, or one ending with a data block
    (a summary from `helpers.sanitize.data_message`, memories from `helpers.memory.memory_message`)."""
    if message.get("role") in ("system", "developer"):
        return True
    return isinstance(message.get("content"), str) and bool(_DATA_BLOCK_AT_END.search(message["content"]))


def trim_keeping_context(messages: Sequence[Message], max_prompt_tokens: int, *, count: TokenCounter = count_tokens) -> list[Message]:
    """The newest turns that fit in `max_prompt_tokens`, with every context message, as a new list.

    Like `helpers.history.trim_to_budget`, but a summary or memories sent as data
    in a *user* message are kept too (`is_context_message`), in their place: only
    ordinary turns are dropped, oldest first, and the newest turn always stays.
    Raises `HistoryTooLongError` when the context messages and the newest turn
    alone are over the budget.
    """
    if max_prompt_tokens < 1:
        raise ValueError(f"max_prompt_tokens must be positive, not {max_prompt_tokens}")
    pinned = [i for i, m in enumerate(messages) if is_context_message(m)]
    turns: list[list[int]] = []
    for i, message in enumerate(messages):
        if i in pinned:
            continue
        if message.get("role") == "user" or not turns:
            turns.append([i])
        else:
            turns[-1].append(i)
    if not turns:
        raise ValueError("the history has no turn to send")

    def keep(n: int) -> list[Message]:
        chosen = set(pinned).union(*turns[-n:])
        return [dict(m) for i, m in enumerate(messages) if i in chosen]

    needed = int(count(keep(1)))
    if needed > max_prompt_tokens:
        raise HistoryTooLongError(
            f"The system and data messages and the newest turn alone take {needed} prompt tokens, over the budget of "
            f"{max_prompt_tokens}. Shorten the newest message, the system prompt or the summary, or raise the budget.",
            needed=needed,
            budget=max_prompt_tokens,
        )
    low, high = 1, len(turns)  # the most turns that fit; prompt size grows with every turn kept
    while low < high:
        middle = (low + high + 1) // 2
        if int(count(keep(middle))) <= max_prompt_tokens:
            low = middle
        else:
            high = middle - 1
    return keep(low)


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
    trim: Trimmer = trim_keeping_context,
    **create_options: Any,
) -> SendResult:
    """Send `messages`; on ``context_length_exceeded``, trim once to fit and send again.

    The budget for the retry is the context limit (read from the error message,
    else `n_ctx`) minus `max_tokens` minus `safety_margin` (use a margin when
    `count` only estimates, as it does for a provider). `trim(messages, budget,
    count=count)` chooses what to keep; the default, `trim_keeping_context`, keeps
    every system message and data-block message (a summary, memories) and the
    newest turns that fit.

    Raises `ContextOverflowError` when the limit is unknown, when even the system
    messages and the newest turn exceed the budget, or when the trimmed request
    overflows too; the SDK's other errors pass through untouched. `messages` is
    never changed.
    """
    messages = list(messages)
    try:
        response = client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens, **create_options)
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
            limit=None, max_tokens=max_tokens, attempts=1, api_error=first_error,
        ) from first_error
    budget = limit - max_tokens - safety_margin
    try:
        if budget < 1:
            raise HistoryTooLongError(f"max_tokens={max_tokens} leaves no room for a prompt", needed=1, budget=budget)
        trimmed = trim(messages, budget, count=count)
    except HistoryTooLongError as error:
        raise ContextOverflowError(
            f"Stopped: the prompt does not fit the {limit}-token context window with max_tokens={max_tokens}, and "
            f"trimming cannot fix it ({error}). Nothing was sent again and nothing was changed: shorten the newest "
            "message, the system prompt or the summary, or lower max_tokens.",
            limit=limit, max_tokens=max_tokens, attempts=1, api_error=first_error,
        ) from error
    try:
        response = client.chat.completions.create(model=model, messages=trimmed, max_tokens=max_tokens, **create_options)
    except openai.BadRequestError as error:
        if not is_context_overflow(error):
            raise
        raise ContextOverflowError(
            f"Stopped after one trim-and-retry: the history trimmed to {len(trimmed)} messages (budget {budget} prompt "
            f"tokens) still overflowed the {limit}-token context window. Nothing was changed; no further retry.",
            limit=limit, max_tokens=max_tokens, attempts=2, api_error=error,
        ) from error
    return SendResult(response=response, sent=trimmed, trimmed=True, original_length=len(messages), budget=budget)


@dataclass(frozen=True)
class TurnResult:
    """One completed turn: the new history (the full one, plus the user message and the reply) and the call."""

    history: list[Message]
    reply: str
    call: SendResult


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

    Returns a new history: `history` is never changed. Nothing is saved unless the
    call succeeded, so after any error (`ContextOverflowError` included) both the
    list and the file are exactly as they were. The returned history is the full
    one (trimming only shapes what is sent), so a summary or older turns are not
    lost; trim or summarize it before the next turn to avoid another overflow.
    """
    outgoing = [dict(m) for m in history] + [{"role": "user", "content": user_text}]
    call = send_with_retry(client, outgoing, model=model, max_tokens=max_tokens, **options)
    reply = assistant_message(call.response)
    new_history = outgoing + [reply]
    if save_to is not None:
        save_history(save_to, new_history)
    return TurnResult(history=new_history, reply=reply["content"], call=call)

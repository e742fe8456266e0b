"""Summarize-and-continue as a chat you can watch: a session object and a widget around it.

Two layers, so the logic is tested without a browser:

- `ChatSession` (pure Python, no ipywidgets): the whole conversation, the memory
  settings (`MemorySettings`: raw / window / summary buffer, fold threshold, turns
  kept verbatim, token budget), `plan(text)` (the exact payload the next turn would
  send, each message's tokens and what fills the context, against the budget) and
  `send(text, client)` (append the user turn, fold if needed, send, append the
  reply). Each turn is recorded (`TurnRecord`): the prompt tokens billed, what the
  whole raw history would have cost that turn (the "ghost"), the summary and
  whether it changed. A failed call changes nothing.
- `ChatWidget` (ipywidgets): a text box and Send button, the conversation, and live
  panels drawn from the session: the payload table, a stacked bar of the context
  against the budget, a per-turn prompt-tokens chart with the raw ghost line, and
  the running summary, highlighted when it changes. Controls re-plan the preview;
  "Replay" plays a scripted conversation.

The memory strategies are those of `helpers.history` (`sliding_window`,
`trim_to_budget`, `SummaryBuffer`), not copies of them.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

from ..backend.client import count_tokens, current_settings
from ..backend.usage import read_usage
from ..errors import HelpersError
from ..history import (
    BufferSettings,
    Summarizer,
    SummaryBuffer,
    SummaryCall,
    UserStatements,
    count_turns,
    sliding_window,
    trim_to_budget,
)
from ..payload import assistant_message
from ..types import Message, TokenCounter

Strategy = Literal["raw", "window", "summary"]
STRATEGIES: tuple[str, ...] = ("raw", "window", "summary")
PARTS: tuple[str, ...] = ("system", "summary", "verbatim", "new", "template")
PART_COLOURS = {
    "system": "#7f7f7f",
    "summary": "#ff7f0e",
    "verbatim": "#1f77b4",
    "new": "#2ca02c",
    "template": "#c7c7c7",
}


class ChatSessionError(HelpersError, ValueError):
    """A chat session was asked for something it cannot do (an empty message, bad settings)."""


@dataclass(frozen=True)
class MemorySettings:
    """How a `ChatSession` keeps its memory. Change them with `ChatSession.configure`.

    - `strategy`: ``"raw"`` sends the whole history; ``"window"`` the last
      `keep_turns` turns (`sliding_window`); ``"summary"`` a running summary plus the
      last `keep_turns` turns verbatim (`SummaryBuffer`), folding once the verbatim
      part holds more than `threshold` messages.
    - `budget`: the most prompt tokens a turn may send. Window and summary are cut to
      it with `trim_to_budget` (oldest turns first, system messages and the summary
      kept); raw sends everything, so its plan shows how far over it goes.
    - `max_tokens` caps each reply; `summarizer` folds old turns (`helpers.history.UserStatements` by default).
    """

    strategy: Strategy = "summary"
    threshold: int = 8
    keep_turns: int = 2
    budget: int = 400
    max_tokens: int = 40
    summarizer: Summarizer = field(default_factory=UserStatements)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ChatSessionError(f"strategy must be one of {', '.join(STRATEGIES)}, not {self.strategy!r}")
        try:
            BufferSettings(self.threshold, self.keep_turns)  # the one validator of fold settings
        except ValueError as error:
            raise ChatSessionError(str(error)) from None
        for name in ("budget", "max_tokens"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ChatSessionError(f"{name} must be a positive whole number, not {getattr(self, name)!r}")

    @property
    def buffer(self) -> BufferSettings:
        return BufferSettings(self.threshold, self.keep_turns)


@dataclass(frozen=True)
class Plan:
    """The payload the next turn would send, message by message, against the budget.

    `parts[i]` says what `messages[i]` is (system, summary, verbatim, new) and
    `message_tokens[i]` how many tokens its text holds; `prompt_tokens` is
    `count_tokens(messages)`, and `breakdown` splits it into those parts plus the
    chat template's own tokens (role markers, reply priming). When a fold is
    pending, the summary is rewritten by a model call before sending, so the
    summary shown is the one before the fold and `exact` is False.
    """

    messages: list[Message]
    parts: list[str]
    message_tokens: list[int]
    prompt_tokens: int
    budget: int
    raw_tokens: int
    strategy: str
    fold_pending: bool = False
    fold_messages: int = 0
    trimmed_turns: int = 0
    error: str = ""

    @property
    def exact(self) -> bool:
        return not self.fold_pending and not self.error

    @property
    def over_budget(self) -> bool:
        return self.prompt_tokens > self.budget

    @property
    def breakdown(self) -> dict[str, int]:
        """Prompt tokens by part, in `PARTS` order; the values add up to `prompt_tokens`."""
        totals = dict.fromkeys(PARTS, 0)
        for part, tokens in zip(self.parts, self.message_tokens):
            totals[part] += tokens
        totals["template"] = self.prompt_tokens - sum(self.message_tokens)
        return totals

    def rows(self) -> list[dict[str, Any]]:
        """One dict per message: position, part, role, tokens and text."""
        return [
            {"#": index, "part": part, "role": message["role"], "tokens": tokens, "content": message["content"]}
            for index, (message, part, tokens) in enumerate(zip(self.messages, self.parts, self.message_tokens))
        ]


@dataclass(frozen=True)
class TurnRecord:
    """What one sent turn cost and changed."""

    number: int
    user: str
    reply: str
    strategy: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    planned_tokens: int
    raw_tokens: int
    budget: int
    messages_sent: int
    turns_sent: int
    trimmed_turns: int
    summary: str
    summary_changed: bool
    folded_messages: int
    summarizer_tokens: int
    seconds: float
    sent: list[Message] = field(repr=False, compare=False, default_factory=list)

    def as_row(self) -> dict[str, Any]:
        """The figures as a flat dict (no payload), for a pandas table."""
        row = dataclasses.asdict(self)
        row.pop("sent")
        return row


def _default_count_text(text: str) -> int:
    from ..backend.embedded import load_embedded_model

    return load_embedded_model().count_text_tokens(text)


class ChatSession:
    """A conversation plus the memory strategy that decides what each turn sends.

    `history` holds every user and assistant message ever exchanged (the raw
    transcript); `summary` and `folded` (how many of those messages the summary
    covers) are the summary buffer's state. The loop of notebook 01, managed::

        session = ChatSession(SYSTEM, MemorySettings(strategy="summary", threshold=8, keep_turns=2))  # the defaults
        session.plan("Which city first?")          # what would be sent, and its tokens
        record = session.send("Which city first?", client)
        record.prompt_tokens, record.raw_tokens    # billed vs what raw history would cost

    `count` is the prompt counter (`helpers.count_tokens`, exact on the embedded
    model) and `count_text` counts one message's text (the embedded tokenizer).
    """

    def __init__(
        self,
        system: str,
        settings: MemorySettings | None = None,
        *,
        model: str | None = None,
        count: TokenCounter = count_tokens,
        count_text: Callable[[str], int] = _default_count_text,
    ):
        if not system.strip():
            raise ChatSessionError("the system prompt is empty")
        self.system = system
        self.settings = settings or MemorySettings()
        self.model = model
        self.count = count
        self.count_text = count_text
        self.history: list[Message] = []
        self.summary = ""
        self.folded = 0
        self.turns: list[TurnRecord] = []
        self.summarizer_calls: list[SummaryCall] = []

    # --- state ---------------------------------------------------------------------

    @property
    def system_message(self) -> Message:
        return {"role": "system", "content": self.system}

    def configure(self, **changes: Any) -> MemorySettings:
        """Replace some settings (validated); the conversation and summary are kept."""
        self.settings = dataclasses.replace(self.settings, **changes)
        return self.settings

    def _buffer(self, messages: Sequence[Message], summary: str, folded: int) -> SummaryBuffer:
        s = self.settings
        return SummaryBuffer(
            system=self.system_message,
            settings=s.buffer,
            summarizer=s.summarizer,
            model=self.model,
            summary=summary,
            messages=[dict(m) for m in messages[folded:]],
        )

    def _strategy_payload(self, messages: Sequence[Message], summary: str, folded: int) -> tuple[list[Message], int]:
        """What the current strategy sends for `messages` (no fold here), and how many turns the budget cut."""
        s = self.settings
        full = [self.system_message] + [dict(m) for m in messages]
        if s.strategy == "raw":
            return full, 0
        if s.strategy == "window":
            chosen = sliding_window(full, s.keep_turns)
        else:
            chosen = self._buffer(messages, summary, folded).payload()
        if count_turns(chosen) == 0:
            return chosen, 0
        # The summary is a message our code made: pinned by identity, whatever its placement.
        summary_sent = [chosen[1]] if s.strategy == "summary" and summary else []
        trimmed = trim_to_budget(chosen, s.budget, count=self.count, pinned=summary_sent)  # HistoryTooLongError
        return trimmed, count_turns(chosen) - count_turns(trimmed)

    def _label(self, messages: Sequence[Message], has_summary: bool, has_new: bool) -> list[str]:
        parts = ["system" if m["role"] == "system" else "verbatim" for m in messages]
        if has_summary:
            parts[1] = "summary"
        if has_new:
            parts[-1] = "new"
        return parts

    def _raw_tokens(self, messages: Sequence[Message]) -> int:
        return int(self.count([self.system_message] + list(messages)))

    # --- planning and sending ------------------------------------------------------

    def plan(self, text: str = "") -> Plan:
        """The payload the next turn would send if the user typed `text` (omitted when empty).

        Never calls the model and never raises for a payload over budget: the
        plan's `error` says why it could not be sent. When a fold is pending, the
        verbatim tail is the one kept after the fold and the summary the current one.
        """
        s = self.settings
        text = text.strip()
        candidate = self.history + ([{"role": "user", "content": text}] if text else [])
        raw_tokens = self._raw_tokens(candidate)
        summary, folded, fold_pending, fold_messages, error = self.summary, self.folded, False, 0, ""
        if s.strategy == "summary":
            buffer = self._buffer(candidate, summary, folded)
            if buffer.needs_fold():
                tail = sliding_window(buffer.messages, s.keep_turns)
                fold_pending, fold_messages = True, len(buffer.messages) - len(tail)
                folded = len(candidate) - len(tail)
                summary = summary or f"[a summary of {folded} messages, written by the model before sending]"
        try:
            messages, trimmed = self._strategy_payload(candidate, summary, folded)
        except HelpersError as exc:  # HistoryTooLongError: nothing fits the budget
            messages, trimmed, error = [self.system_message] + candidate, 0, str(exc)
        has_summary = s.strategy == "summary" and bool(summary) and not error
        parts = self._label(messages, has_summary, bool(text))
        return Plan(
            messages=messages,
            parts=parts,
            message_tokens=[int(self.count_text(m["content"])) for m in messages],
            prompt_tokens=int(self.count(messages)),
            budget=s.budget,
            raw_tokens=raw_tokens,
            strategy=s.strategy,
            fold_pending=fold_pending,
            fold_messages=fold_messages,
            trimmed_turns=trimmed,
            error=error,
        )

    def send(self, text: str, client: Any, *, on_phase: Callable[[str, int], None] | None = None) -> TurnRecord:
        """One turn: append the user message, fold if needed, send, append the reply.

        The session changes only once the reply is in: if the summarizer call, the
        budget (`HistoryTooLongError`) or the model call fails, `history`, `summary`
        and `turns` are exactly as they were and the error is raised.

        `on_phase(phase, n)` is told what the turn is waiting for, before each model
        call: ``("summarizing", messages being folded)`` then ``("answering", prompt
        tokens being sent)``. The widget uses it for its progress indicator.
        """
        text = text.strip()
        if not text:
            raise ChatSessionError("type a message before sending")
        s = self.settings
        candidate = self.history + [{"role": "user", "content": text}]
        summary, folded, fold_call = self.summary, self.folded, None
        if s.strategy == "summary":
            buffer = self._buffer(candidate, summary, folded)
            if on_phase is not None and buffer.needs_fold():
                on_phase("summarizing", len(buffer.messages) - len(sliding_window(buffer.messages, s.keep_turns)))
            fold_call = buffer.fold_if_needed(client)  # may raise: nothing has changed yet
            if fold_call is not None:
                summary, folded = buffer.summary, len(candidate) - len(buffer.messages)
        messages, trimmed = self._strategy_payload(candidate, summary, folded)
        planned = int(self.count(messages))
        if on_phase is not None:
            on_phase("answering", planned)
        started = time.perf_counter()
        response = client.chat.completions.create(
            model=self.model or current_settings().model, messages=messages, max_tokens=s.max_tokens
        )
        reply = assistant_message(response)
        seconds = time.perf_counter() - started
        usage = read_usage(response.usage)
        record = TurnRecord(
            number=len(self.turns) + 1,
            user=text,
            reply=reply["content"],
            strategy=s.strategy,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens or 0,
            planned_tokens=planned,
            raw_tokens=self._raw_tokens(candidate),
            budget=s.budget,
            messages_sent=len(messages),
            turns_sent=count_turns(messages),
            trimmed_turns=trimmed,
            summary=summary,
            summary_changed=summary != self.summary,
            folded_messages=fold_call.folded_messages if fold_call else 0,
            summarizer_tokens=fold_call.tokens if fold_call else 0,
            seconds=seconds,
            sent=messages,
        )
        # Commit: only now, with the reply in hand, does the session change.
        self.history = candidate + [reply]
        self.summary, self.folded = summary, folded
        if fold_call is not None:
            self.summarizer_calls.append(fold_call)
        self.turns.append(record)
        return record

    def replay(
        self, texts: Sequence[str], client: Any, *, on_turn: Callable[[TurnRecord], None] | None = None
    ) -> list[TurnRecord]:
        """Send each of `texts` in order (a scripted conversation); `on_turn` sees each record."""
        records = []
        for text in texts:
            record = self.send(text, client)
            records.append(record)
            if on_turn is not None:
                on_turn(record)
        return records

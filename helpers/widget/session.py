"""Summarize-and-continue as a chat you can watch: a session object and a widget around it.

Two layers, so the logic is tested without a browser:

- `ChatSession` (pure Python, no ipywidgets): the whole conversation, the memory
  settings (`MemorySettings`: raw / window / summary buffer, fold threshold, turns
  kept verbatim, token budget), `plan(text)` (the exact payload the next turn would
  send, each message's tokens and what fills the context, against the budget) and
  `send(text, client)` (append the user turn, fold if needed, send, append the
  reply). Each turn is recorded (`TurnRecord`): the prompt tokens billed and what
  filled them, what the whole raw history would have cost that turn (the "ghost"),
  the summary and whether it changed. `recall(client, facts)` asks planted facts
  back, three ways, through what the session sends and through a window of the same
  verbatim turns without the summary (`RecallCheck`). A failed call changes nothing.
- `ChatWidget` (ipywidgets): a text box and Send button, the conversation, and live
  panels drawn from the session: the payload table, a stacked bar of the context
  against the budget, the prompt of every turn as stacked bars with the raw ghost
  line, the running summary (highlighted when it changes) and the recall panel.
  Controls re-plan the preview; "Replay" plays a scripted conversation.

The memory strategies are those of `helpers.history` (`sliding_window`,
`trim_to_budget`, `SummaryBuffer`), not copies of them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..backend.client import count_text_tokens, count_tokens, current_settings
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
from ..recall import RecallUnavailableError, answer_shares
from ..strategies import RECALL_PROBE, Fact, Run, recall_rows
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
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ChatSessionError(f"{name} must be a positive whole number, not {value!r}")

    @property
    def buffer(self) -> BufferSettings:
        return BufferSettings(self.threshold, self.keep_turns)


def _breakdown(parts: Sequence[str], message_tokens: Sequence[int], prompt_tokens: int) -> dict[str, int]:
    """Prompt tokens by part, in `PARTS` order, the chat template's own tokens last: they add up to `prompt_tokens`."""
    totals = dict.fromkeys(PARTS, 0)
    for part, tokens in zip(parts, message_tokens):
        totals[part] += tokens
    totals["template"] = prompt_tokens - sum(message_tokens)
    return totals


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
        return _breakdown(self.parts, self.message_tokens, self.prompt_tokens)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per message: position, part, role, tokens and text."""
        return [
            {"#": index, "part": part, "role": message["role"], "tokens": tokens, "content": message["content"]}
            for index, (message, part, tokens) in enumerate(zip(self.messages, self.parts, self.message_tokens))
        ]


@dataclass(frozen=True)
class TurnRecord:
    """What one sent turn cost and changed.

    `parts[i]` says what the i-th message sent was (system, summary, verbatim, new) and
    `message_tokens[i]` how many tokens its text holds, as in `Plan`.
    """

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
    parts: tuple[str, ...] = ()
    message_tokens: tuple[int, ...] = ()

    @property
    def breakdown(self) -> dict[str, int]:
        """What filled the prompt sent, by part in `PARTS` order; the values add up to `planned_tokens`.

        On the embedded model `planned_tokens` is exactly the `prompt_tokens` billed; on a provider
        it is `count_tokens`'s estimate, and so is the template part.
        """
        return _breakdown(self.parts, self.message_tokens, self.planned_tokens)

    def as_row(self) -> dict[str, Any]:
        """The figures as a flat dict (no payload, no per-message lists), for a pandas table."""
        row = dataclasses.asdict(self)
        for key in ("sent", "parts", "message_tokens"):
            row.pop(key)
        return row


STRATEGY_LABELS = {"raw": "raw history", "window": "window", "summary": "summary buffer"}


@dataclass(frozen=True)
class RecallCheck:
    """Planted facts asked back after turn `after_turn`, three ways (`helpers.strategies.recall_rows`).

    `labels[0]` is what the session sends (its strategy); when that payload carries a summary,
    `labels[1]` is a window of the same `verbatim_turns` turns without it, so the two differ by
    the summary alone. `rows` has one dict per label and fact: ``in what was sent``, ``share``
    (corrected for guessing; None where the server gives no log-probabilities), ``share,
    uncorrected``, ``favoured answer``, ``reply names it`` and the ``reply``.
    """

    after_turn: int
    verbatim_turns: int
    labels: tuple[str, ...]
    facts: tuple[str, ...]
    candidates: tuple[int, ...]  # how many candidate answers each fact has: a share of 1/n is no memory at all
    rows: list[dict[str, Any]]
    seconds: float

    def row(self, label: str, fact: str) -> dict[str, Any]:
        """The measurement of `fact` through the payload named `label`."""
        for row in self.rows:
            if row["strategy"] == label and row["fact"] == fact:
                return row
        raise KeyError(f"no measurement of {fact!r} through {label!r}")

    @property
    def shares_available(self) -> bool:
        """False when the server returned no log-probabilities (the shares are None)."""
        return any(row["share"] is not None for row in self.rows)


class ChatSession:
    """A conversation plus the memory strategy that decides what each turn sends.

    `history` holds every user and assistant message ever exchanged (the raw
    transcript); `summary` and `folded` (how many of those messages the summary
    covers) are the summary buffer's state. The loop of notebook 01, managed::

        session = ChatSession(SYSTEM, MemorySettings(strategy="summary", threshold=8, keep_turns=2))  # the defaults
        session.plan("Which city first?")          # what would be sent, and its tokens
        record = session.send("Which city first?", client)
        record.prompt_tokens, record.raw_tokens    # billed vs what raw history would cost

    `count` is the prompt counter (`helpers.count_tokens`, exact on a llama.cpp server) and
    `count_text` counts one message's text (`count_text_tokens`, the same server's tokenizer).
    """

    def __init__(
        self,
        system: str,
        settings: MemorySettings | None = None,
        *,
        model: str | None = None,
        count: TokenCounter = count_tokens,
        count_text: Callable[[str], int] = count_text_tokens,
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
                summary = summary or f"[the summary of {folded} messages, folded before sending]"
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
        parts = self._label(messages, s.strategy == "summary" and bool(summary), True)
        message_tokens = tuple(int(self.count_text(m["content"])) for m in messages)
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
            parts=tuple(parts),
            message_tokens=message_tokens,
        )
        # Commit: only now, with the reply in hand, does the session change.
        self.history = candidate + [reply]
        self.summary, self.folded = summary, folded
        if fold_call is not None:
            self.summarizer_calls.append(fold_call)
        self.turns.append(record)
        return record

    # --- recall ----------------------------------------------------------------------

    def recall_payloads(self) -> dict[str, list[Message]]:
        """What the session would send before a new message, and, when that carries a summary, the same
        verbatim turns without it (a window of the same size): label -> messages. No fold, no model call.
        """
        if not self.history:
            raise ChatSessionError("send a turn first: there is nothing to recall yet")
        s = self.settings
        messages, _ = self._strategy_payload(self.history, self.summary, self.folded)
        payloads = {STRATEGY_LABELS[s.strategy]: messages}
        if s.strategy == "summary" and self.summary:
            window = [messages[0], *messages[2:]]  # messages[1] is the summary: pinned there by _strategy_payload
            payloads[f"window of the same {count_turns(window)} turns"] = window
        return payloads

    def recall(self, client: Any, facts: Mapping[str, Fact], *, reply_tokens: int = 24) -> RecallCheck:
        """Ask each planted fact back through `recall_payloads()`, three ways; the session is not changed.

        Each fact's question (`helpers.strategies.RECALL_PROBE`) is appended to each payload: was the
        fact in what was sent, the model's share for the right answer among the fact's candidates
        (corrected for guessing), and the words of a `reply_tokens`-token reply. One payload's facts
        are all measured before the next payload's, so the model's cached prefix is reused.
        """
        if not facts:
            raise ChatSessionError("give the planted facts to ask back (a Conversation's .facts)")
        started = time.perf_counter()
        payloads = self.recall_payloads()
        # First what the model guesses from the system message alone, for every fact: `answer_shares` divides by
        # that guess and remembers it, so afterwards the model's cache stays on one payload while its facts are asked.
        for fact in facts.values():
            if fact.scorable:
                question = {"role": "user", "content": RECALL_PROBE.format(question=fact.question)}
                try:
                    answer_shares(client, [self.system_message], question, answer_prefix=str(fact.answer_prefix),
                                  candidates=fact.candidates, model=self.model)
                except RecallUnavailableError:
                    break  # no log-probabilities on this server: recall_rows records None shares
        rows: list[dict[str, Any]] = []
        for label, messages in payloads.items():
            sent = [dict(m) for m in messages]
            run = Run(label, next_payload=lambda question, sent=sent: [*sent, question])
            rows += recall_rows(client, run, dict(facts), reply_tokens=reply_tokens, model=self.model)
        verbatim = count_turns(next(iter(payloads.values())))
        return RecallCheck(after_turn=len(self.turns), verbatim_turns=verbatim, labels=tuple(payloads),
                           facts=tuple(facts), candidates=tuple(len(fact.candidates) for fact in facts.values()),
                           rows=rows, seconds=time.perf_counter() - started)

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

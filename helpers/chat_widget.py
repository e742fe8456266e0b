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
import html
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from .client import count_tokens, current_settings
from .errors import HelpersError
from .history import (
    Message,
    SummaryBuffer,
    SummaryCall,
    TokenCounter,
    count_turns,
    sliding_window,
    summary_message,
    trim_to_budget,
)
from .payload import assistant_message

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
    - `max_tokens` caps each reply; `summary_max_tokens` and `max_words` each summary.
    """

    strategy: Strategy = "summary"
    threshold: int = 8
    keep_turns: int = 2
    budget: int = 400
    max_tokens: int = 60
    summary_max_tokens: int = 80
    max_words: int = 60

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ChatSessionError(f"strategy must be one of {', '.join(STRATEGIES)}, not {self.strategy!r}")
        if self.keep_turns < 1:
            raise ChatSessionError(f"keep_turns must be at least 1 (the newest turn), not {self.keep_turns}")
        if self.threshold < 2 * self.keep_turns:
            raise ChatSessionError(
                f"threshold ({self.threshold} messages) must be at least 2 * keep_turns ({2 * self.keep_turns}), "
                "or every fold would keep more than it may hold"
            )
        for name in ("budget", "max_tokens", "summary_max_tokens", "max_words"):
            if getattr(self, name) < 1:
                raise ChatSessionError(f"{name} must be positive, not {getattr(self, name)}")


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


def load_script(path: str | Path) -> tuple[str, list[str]]:
    """The system prompt and user turns of a scripted conversation (`data/long_conversation.json` shape).

    Turns may be plain strings or ``{"user": text, ...}`` dicts (`data/trip_conversation.json`).
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    turns = [turn["user"] if isinstance(turn, dict) else str(turn) for turn in data["turns"]]
    return str(data["system"]), turns


def _default_count_text(text: str) -> int:
    from .embedded import load_embedded_model

    return load_embedded_model().count_text_tokens(text)


class ChatSession:
    """A conversation plus the memory strategy that decides what each turn sends.

    `history` holds every user and assistant message ever exchanged (the raw
    transcript); `summary` and `folded` (how many of those messages the summary
    covers) are the summary buffer's state. The loop of notebook 01, managed::

        session = ChatSession(SYSTEM, MemorySettings(strategy="summary", threshold=8, keep_turns=2))
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

    @property
    def verbatim(self) -> list[Message]:
        """The messages the summary does not cover (what the summary strategy sends verbatim)."""
        return [dict(m) for m in self.history[self.folded :]]

    def configure(self, **changes: Any) -> MemorySettings:
        """Replace some settings (validated); the conversation and summary are kept."""
        self.settings = dataclasses.replace(self.settings, **changes)
        return self.settings

    def _buffer(self, messages: Sequence[Message], summary: str, folded: int) -> SummaryBuffer:
        s = self.settings
        return SummaryBuffer(
            system=self.system_message,
            threshold=s.threshold,
            keep_turns=s.keep_turns,
            max_words=s.max_words,
            summary_max_tokens=s.summary_max_tokens,
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
        trimmed = trim_to_budget(chosen, s.budget, count=self.count)  # raises HistoryTooLongError
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
        usage = response.usage
        details = getattr(usage, "prompt_tokens_details", None)
        record = TurnRecord(
            number=len(self.turns) + 1,
            user=text,
            reply=reply["content"],
            strategy=s.strategy,
            prompt_tokens=int(usage.prompt_tokens),
            completion_tokens=int(usage.completion_tokens),
            cached_tokens=int(getattr(details, "cached_tokens", None) or 0),
            planned_tokens=planned,
            raw_tokens=self._raw_tokens(candidate),
            budget=s.budget,
            messages_sent=len(messages),
            turns_sent=count_turns(messages),
            trimmed_turns=trimmed,
            summary=summary,
            summary_changed=summary != self.summary,
            folded_messages=fold_call.folded_messages if fold_call else 0,
            summarizer_tokens=(fold_call.prompt_tokens + fold_call.completion_tokens) if fold_call else 0,
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


# --- drawing (matplotlib, without pyplot's global state) ----------------------------


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def context_bar_png(plan: Plan, *, width: float = 6.6) -> bytes:
    """A stacked horizontal bar: what fills the next prompt (system, summary, verbatim, new, template) vs the budget."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, 1.2), dpi=90)
    ax = figure.subplots()
    left = 0
    for part, tokens in plan.breakdown.items():
        if tokens > 0:
            ax.barh(0, tokens, left=left, color=PART_COLOURS[part], label=f"{part} {tokens}")
            left += tokens
    ax.axvline(plan.budget, color="red", linestyle="--", linewidth=1.5, label=f"budget {plan.budget}")
    ax.set_xlim(0, max(plan.budget, plan.prompt_tokens) * 1.08)
    ax.set_yticks([])
    ax.set_xlabel("prompt tokens")
    title = f"Next prompt: {plan.prompt_tokens} tokens ({plan.strategy})"
    ax.set_title(title + ("" if plan.exact else ", before the fold"), fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.6), ncol=6, fontsize=8, frameon=False, handlelength=1.2)
    return _png(figure)


def turn_chart_png(records: Sequence[TurnRecord], budget: int, *, width: float = 6.6) -> bytes:
    """Prompt tokens billed per turn, the raw-history ghost line, the budget and the turns that folded."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, 2.5), dpi=90)
    ax = figure.subplots()
    numbers = [r.number for r in records]
    ax.plot(numbers, [r.raw_tokens for r in records], color="grey", alpha=0.45, linestyle="--", label="raw history (ghost)")
    ax.plot(numbers, [r.prompt_tokens for r in records], marker="o", color="#1f77b4", label="prompt_tokens sent")
    for record in records:
        if record.folded_messages:
            ax.axvline(record.number, color="#ff7f0e", alpha=0.4, linewidth=1)
    ax.axhline(budget, color="red", linestyle=":", label=f"budget {budget}")
    if any(r.folded_messages for r in records):
        ax.plot([], [], color="#ff7f0e", alpha=0.4, label="fold (summarizer call)")
    ax.set_xlabel("turn")
    ax.set_ylabel("prompt tokens")
    ax.set_title("Prompt tokens per turn", fontsize=10)
    ax.set_xlim(0.5, max(numbers, default=1) + 0.5)
    ax.set_ylim(0, max([budget] + [r.raw_tokens for r in records]) * 1.1)
    ax.legend(fontsize=8, loc="upper left")
    return _png(figure)


# --- the widget -----------------------------------------------------------------------


def _escape(text: str) -> str:
    return html.escape(text).replace("\n", "<br>")


class ChatWidget:
    """The session as a chat in the notebook, with live panels (`display(widget)` or `widget.view`).

    Everything a click does is a method (`send`, `replay`, `refresh`), and the
    widgets are attributes (`text`, `send_button`, `payload_html`, ...), so tests
    drive it with `widget.text.value = "..."; widget.send_button.click()`.
    """

    def __init__(self, session: ChatSession, client: Any, *, script: Sequence[str] = (), title: str = "Chat with managed memory"):
        import ipywidgets as w

        self.session = session
        self.client = client
        self.script = list(script)
        self.script_position = 0
        self.last_error = ""
        s = session.settings

        self._quiet = False  # True while send() changes the text box itself (no re-plan per change)
        self.busy = False

        # Slider ranges always include the session's own settings, so no value is clamped on display.
        self.strategy = w.Dropdown(options=list(STRATEGIES), value=s.strategy, description="strategy")
        self.keep_turns = w.IntSlider(value=s.keep_turns, min=1, max=max(6, s.keep_turns), description="turns kept")
        self.threshold = w.IntSlider(
            value=s.threshold, min=2 * s.keep_turns, max=max(24, s.threshold), description="fold after"
        )
        self.budget = w.IntSlider(
            value=s.budget, min=min(100, s.budget), max=max(2000, s.budget), step=10, description="budget"
        )
        self.strategy.add_class("chat-widget-strategy")
        self.controls = (self.strategy, self.keep_turns, self.threshold, self.budget)
        for control in self.controls:
            control.style.description_width = "80px"
            control.layout.width = "250px"
            control.observe(self._on_control, names="value")

        self.text = w.Text(placeholder="Type a message and press Send", layout=w.Layout(width="100%"))
        self.text.add_class("chat-widget-input")
        self.text.observe(self._on_text, names="value")
        self.send_button = w.Button(description="Send", button_style="primary", icon="paper-plane")
        self.send_button.add_class("chat-widget-send")
        self.send_button.on_click(lambda _: self.send())
        self.replay_button = w.Button(description="Replay script", icon="play", disabled=not self.script)
        self.replay_button.add_class("chat-widget-replay")
        self.replay_button.on_click(lambda _: self.replay())
        self.status = w.HTML(value="ready")
        self.status.add_class("chat-widget-status")
        # While the model answers: a spinner and what the turn is waiting for (summarizer, then reply).
        self.busy_html = w.HTML(value="")
        self.busy_html.add_class("chat-widget-busy")
        self.progress = w.IntProgress(
            value=0, min=0, max=max(1, len(self.script)), description="script", layout=w.Layout(width="220px")
        )
        self.progress.style.description_width = "45px"
        self.progress.add_class("chat-widget-progress")

        self.log_html = w.HTML(layout=w.Layout(width="100%"))
        self.log_html.add_class("chat-widget-log")
        self.payload_html = w.HTML()
        self.payload_html.add_class("chat-widget-payload")
        # Natural size (flex-start): a VBox would otherwise stretch the PNGs to its width.
        self.context_image = w.Image(format="png", layout=w.Layout(align_self="flex-start", max_width="100%"))
        self.chart_image = w.Image(format="png", layout=w.Layout(align_self="flex-start", max_width="100%"))
        self.context_image.add_class("chat-widget-context")
        self.chart_image.add_class("chat-widget-chart")
        self.summary_html = w.HTML()
        self.summary_html.add_class("chat-widget-summary")

        left = w.VBox(
            [
                self.log_html,
                w.HBox([self.text, self.send_button], layout=w.Layout(width="100%")),
                self.busy_html,
                w.HBox([self.replay_button, self.progress]),
                self.status,
                w.HTML("<b>Running summary</b> (sent as a system message once a fold has happened)"),
                self.summary_html,
            ],
            layout=w.Layout(width="46%", border="1px solid #ddd", padding="6px"),
        )
        right = w.VBox(
            [
                w.HTML("<b>Next payload</b> (what Send would send now)"),
                self.payload_html,
                self.context_image,
                self.chart_image,
            ],
            layout=w.Layout(width="54%", padding="0 0 0 10px"),
        )
        controls = w.HBox([self.strategy, self.keep_turns, self.threshold, self.budget], layout=w.Layout(flex_flow="row wrap"))
        self.view = w.VBox([w.HTML(f"<h3 style='margin:4px 0'>{html.escape(title)}</h3>"), controls, w.HBox([left, right])])
        self.view.add_class("chat-widget")
        self.refresh()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.view)

    # --- actions -----------------------------------------------------------------

    def _on_text(self, _change: Any) -> None:
        if not self._quiet:
            self.refresh_plan()

    def _on_control(self, change: Any) -> None:
        if change["owner"] is self.keep_turns:
            self.threshold.min = 2 * self.keep_turns.value  # clamps the threshold too
        try:
            self.session.configure(
                strategy=self.strategy.value,
                keep_turns=self.keep_turns.value,
                threshold=self.threshold.value,
                budget=self.budget.value,
            )
        except ChatSessionError as exc:
            self._set_status(f"settings not applied: {exc}", error=True)
            return
        self.refresh_plan()

    def _set_status(self, message: str, *, error: bool = False) -> None:
        colour = "#b00020" if error else "#555"
        self.status.value = f"<span style='color:{colour}'>{html.escape(message)}</span>"

    def _set_busy(self, message: str = "") -> None:
        """Show (with `message`) or clear the progress indicator; inputs are locked while it shows.

        The kernel sends each widget change to the browser at once, so the
        spinner shows while the (blocking) model call runs.
        """
        self.busy = bool(message)
        self.busy_html.value = (
            "<div style='color:#1f77b4;font-size:13px;padding:2px 0'>"
            "<i class='fa fa-spinner fa-spin' aria-hidden='true'></i> "
            f"{html.escape(message)}</div>"
            if message
            else ""
        )
        for control in (self.text, self.send_button, *self.controls):
            control.disabled = self.busy
        self.replay_button.disabled = self.busy or not self.script
        self.send_button.description = "Waiting..." if self.busy else "Send"

    def _on_phase(self, phase: str, amount: int) -> None:
        if phase == "summarizing":
            self._set_busy(f"Summarizing {amount} older messages into the summary (one model call)...")
        else:
            self._set_busy(f"Waiting for the model's reply ({amount} prompt tokens sent)...")

    def send(self, text: str | None = None) -> TurnRecord | None:
        """Send `text` (by default the text box's) as the next turn and update every panel.

        On failure the session is unchanged, the text stays in the box, and the
        status line shows the error (also kept in `last_error`).
        """
        text = (self.text.value if text is None else text).strip()
        if not text:
            self._set_status("type a message first", error=True)
            return None
        if self.busy:  # a click that arrived while a turn was still running
            return None
        self._set_busy("Sending...")
        self._set_status(f"turn {len(self.session.turns) + 1} in progress")
        try:
            record = self.session.send(text, self.client, on_phase=self._on_phase)
        except Exception as exc:  # shown, not raised: a click handler has nowhere to raise to
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._set_status(f"not sent, nothing changed. {self.last_error}", error=True)
            return None
        finally:
            self._set_busy()
        self.last_error = ""
        self._quiet = True
        try:
            self.text.value = ""
        finally:
            self._quiet = False
        self.refresh()
        note = ""
        if record.folded_messages:
            note = f"; {record.folded_messages} messages folded, summary " + (
                "updated" if record.summary_changed else "rewritten unchanged"
            )
        self._set_status(
            f"turn {record.number} done: {record.prompt_tokens} prompt tokens sent, raw would be {record.raw_tokens}{note}"
        )
        return record

    def replay(self, limit: int | None = None) -> list[TurnRecord]:
        """Send the script's remaining turns (at most `limit`) one by one, updating the panels after each."""
        remaining = self.script[self.script_position :]
        records = []
        self.progress.max = max(1, len(self.script))
        for text in remaining[:limit]:
            self._quiet = True
            try:
                self.text.value = text  # shown in the box while it is sent
            finally:
                self._quiet = False
            record = self.send()
            if record is None:  # the error is in the status line; the failed text stays in the box
                self.refresh_plan()
                break
            self.script_position += 1
            self.progress.value = self.script_position
            records.append(record)
        return records

    # --- panels ------------------------------------------------------------------

    def refresh(self) -> None:
        """Redraw everything from the session."""
        self._render_log()
        self._render_summary()
        self.chart_image.value = turn_chart_png(self.session.turns, self.session.settings.budget)
        self.refresh_plan()

    def refresh_plan(self) -> Plan:
        """Re-plan the next payload from the text box and the controls; redraw its table and bar."""
        plan = self.session.plan(self.text.value)
        self.plan = plan
        self.payload_html.value = self._payload_table(plan)
        self.context_image.value = context_bar_png(plan)
        return plan

    def _payload_table(self, plan: Plan) -> str:
        rows = []
        for row in plan.rows():
            colour = PART_COLOURS[row["part"]]
            preview = " ".join(row["content"].split())
            preview = preview if len(preview) <= 70 else preview[:67] + "..."
            rows.append(
                f"<tr><td>{row['#']}</td><td style='color:{colour};font-weight:bold'>{row['part']}</td>"
                f"<td>{row['role']}</td><td style='text-align:right'>{row['tokens']}</td>"
                f"<td>{html.escape(preview)}</td></tr>"
            )
        verdict = "over" if plan.over_budget else "within"
        notes = [f"{plan.prompt_tokens} prompt tokens ({'exact' if plan.exact else 'estimate'}), {verdict} the budget of {plan.budget}; raw history: {plan.raw_tokens}"]
        if plan.fold_pending:
            notes.append(f"on send, {plan.fold_messages} messages are first folded into the summary (one summarizer call)")
        if plan.trimmed_turns:
            notes.append(f"{plan.trimmed_turns} turn(s) dropped to fit the budget")
        if plan.error:
            notes.append(f"cannot send: {plan.error}")
        return (
            "<table style='font-size:12px;border-collapse:collapse'>"
            "<tr><th>#</th><th>part</th><th>role</th><th>tokens</th><th style='text-align:left'>content</th></tr>"
            + "".join(rows)
            + "</table>"
            + "".join(f"<div style='font-size:12px'>{html.escape(n)}</div>" for n in notes)
        )

    def _render_log(self) -> None:
        folds = {r.number: r.folded_messages for r in self.session.turns if r.folded_messages}
        blocks = []
        for number, start in enumerate(range(0, len(self.session.history), 2), start=1):
            if number in folds:
                blocks.append(
                    f"<div style='color:#ff7f0e;font-size:11px;margin:2px 0'>--- {folds[number]} earlier messages folded into the summary ---</div>"
                )
            for message in self.session.history[start : start + 2]:
                align, shade = ("right", "#e8f0fe") if message["role"] == "user" else ("left", "#f1f3f4")
                blocks.append(
                    f"<div style='text-align:{align};margin:3px 0'><span style='display:inline-block;background:{shade};"
                    f"padding:4px 8px;border-radius:8px;max-width:85%;text-align:left'>"
                    f"<b>{message['role']}</b>: {_escape(message['content'])}</span></div>"
                )
        # column-reverse keeps the scroll position at the bottom: the newest turn stays in view.
        self.log_html.value = (
            "<div style='height:380px;overflow-y:auto;display:flex;flex-direction:column-reverse'><div>"
            + ("".join(blocks) or "<i>No messages yet. Type one, or press Replay script.</i>")
            + "</div></div>"
        )

    def _render_summary(self) -> None:
        turns = self.session.turns
        changed = bool(turns) and turns[-1].summary_changed
        text = _escape(self.session.summary) if self.session.summary else "<i>(no summary yet)</i>"
        style = "background:#fff3b0;border:2px solid #ff7f0e;" if changed else "background:#fafafa;border:1px solid #ddd;"
        if changed:
            label = f"<div style='font-size:11px;color:#ff7f0e'>updated at turn {turns[-1].number}</div>"
        elif turns and turns[-1].folded_messages:  # a fold whose summarizer returned the same text
            label = f"<div style='font-size:11px;color:#777'>rewritten at turn {turns[-1].number}, text unchanged</div>"
        else:
            label = ""
        self.summary_html.value = f"<div style='{style}padding:6px;font-size:12px'>{label}{text}</div>"

    @property
    def summary_highlighted(self) -> bool:
        """True when the summary panel shows the highlight (the last turn changed the summary)."""
        return "#fff3b0" in self.summary_html.value


# --- challenge check (notebook 04) ---------------------------------------------------


class ChallengeNotPassed(AssertionError):
    """A challenge check failed; the message says what to change."""


def net_saving(records: Sequence[TurnRecord]) -> int:
    """Reference answer: raw-history prompt tokens minus what was really spent (prompts + summarizer calls)."""
    return sum(r.raw_tokens for r in records) - sum(r.prompt_tokens + r.summarizer_tokens for r in records)


def check_net_saving(function: Callable[[Sequence[TurnRecord]], int], records: Sequence[TurnRecord] = ()) -> int:
    """Challenge (notebook 04): `function(records)` must return the tokens the strategy really saved.

    Passes when it matches the expected figure on made-up records and on `records`
    (the notebook's own run, if given); returns the saving on `records`.
    """

    def made_up(number: int, raw: int, sent: int, summarizer: int) -> TurnRecord:
        return TurnRecord(
            number=number, user="u", reply="r", strategy="summary", prompt_tokens=sent, completion_tokens=5,
            cached_tokens=0, planned_tokens=sent, raw_tokens=raw, budget=500, messages_sent=3, turns_sent=1,
            trimmed_turns=0, summary="", summary_changed=bool(summarizer), folded_messages=4 if summarizer else 0,
            summarizer_tokens=summarizer, seconds=0.1,
        )

    cases = [
        [made_up(1, 100, 100, 0), made_up(2, 200, 120, 0)],
        [made_up(1, 300, 150, 250), made_up(2, 350, 160, 0)],  # the summarizer call cost more than it saved
        [],
    ]
    if records:
        cases.append(list(records))
    for case in cases:
        expected, got = net_saving(case), function(case)
        if not isinstance(got, int) or isinstance(got, bool):
            raise ChallengeNotPassed(f"Return an int (tokens), not {type(got).__name__}.")
        if got != expected:
            hint = (
                "Did you subtract the summarizer's tokens (record.summarizer_tokens)? Folding is a model call too."
                if got == sum(r.raw_tokens - r.prompt_tokens for r in case)
                else "Sum raw_tokens over the turns, then subtract prompt_tokens and summarizer_tokens of every turn."
            )
            raise ChallengeNotPassed(f"Expected {expected} for {len(case)} turns, got {got}. {hint}")
    saving = function(list(records)) if records else 0
    print("Passed: your function agrees with the expected figures"
          + (f"; net saving on your run: {saving} prompt tokens" if records else ""))
    return saving

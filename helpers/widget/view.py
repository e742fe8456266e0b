"""The chat widget of notebook 04 (ipywidgets) and the figures it draws from a `ChatSession`.

Figures (matplotlib, PNG bytes, no pyplot state): `context_bar_png` (what fills the next
prompt), `turn_chart_png` (what filled each turn's prompt, with the raw-history ghost) and
`recall_png` (each planted fact's share through the summary buffer and through a window).
"""

from __future__ import annotations

import html
import io
from collections.abc import Mapping, Sequence
from typing import Any

from ..strategies import Fact
from .session import PART_COLOURS, PARTS, STRATEGIES, ChatSession, ChatSessionError, Plan, RecallCheck, TurnRecord

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


def turn_chart_png(records: Sequence[TurnRecord], budget: int, *, width: float = 5.6) -> bytes:
    """What filled each turn's prompt (stacked bars by part), the raw-history ghost line, the budget and the folds.

    Records made before turns kept their parts (no `parts`) are drawn as one bar of their prompt tokens.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, 2.7), dpi=90)
    ax = figure.subplots()
    numbers = [r.number for r in records]
    bottoms = [0] * len(records)
    for part in PARTS:
        heights = [r.breakdown[part] if r.parts else (r.prompt_tokens if part == "verbatim" else 0) for r in records]
        if any(heights):
            ax.bar(numbers, heights, bottom=bottoms, width=0.7, color=PART_COLOURS[part], label=part)
            bottoms = [b + h for b, h in zip(bottoms, heights)]
    ax.plot(numbers, [r.raw_tokens for r in records], color="grey", alpha=0.6, linestyle="--", marker=".",
            label="raw history (ghost)")
    for record in records:
        if record.folded_messages:
            ax.axvline(record.number - 0.5, color="#ff7f0e", alpha=0.6, linewidth=1)
    ax.axhline(budget, color="red", linestyle=":", label=f"budget {budget}")
    if any(r.folded_messages for r in records):
        ax.plot([], [], color="#ff7f0e", alpha=0.6, label="fold before this turn")
    ax.set_xlabel("turn")
    ax.set_ylabel("prompt tokens")
    ax.set_title("What filled each turn's prompt", fontsize=10)
    ax.set_xlim(0.4, max(numbers, default=1) + 0.6)
    ax.set_ylim(0, max([budget] + [r.raw_tokens for r in records]) * 1.1)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # beside: the bars stay clear
    return _png(figure)


def recall_png(check: RecallCheck, *, width: float = 6.6) -> bytes:
    """Each planted fact's share for the right answer (corrected for guessing), one bar per payload.

    Above each bar: whether the fact was in what was sent and whether the short reply named it.
    Where the server gave no log-probabilities, the bars stay empty and the title says so.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, 2.6), dpi=90)
    ax = figure.subplots()
    colours = ["#ff7f0e", "#1f77b4", "#7f7f7f"]
    width_each = 0.8 / len(check.labels)
    for index, label in enumerate(check.labels):
        xs = [position + (index - (len(check.labels) - 1) / 2) * width_each for position in range(len(check.facts))]
        rows = [check.row(label, fact) for fact in check.facts]
        shares = [row["share"] or 0.0 for row in rows]
        ax.bar(xs, shares, width=width_each * 0.95, color=colours[index % len(colours)], label=label)
        for x, row, share in zip(xs, rows, shares):
            sent = "sent" if row["in what was sent"] else "not sent"
            said = "said" if row["reply names it"] else "not said"
            ax.text(x, share + 0.02, f"{sent}\n{said}", ha="center", va="bottom", fontsize=6.5)
    labelled = False
    for position, candidates in enumerate(check.candidates):  # what a payload that adds nothing gets
        if candidates < 2:
            continue
        ax.hlines(1 / candidates, position - 0.45, position + 0.45, color="grey", linestyle=":", linewidth=1,
                  label="_" if labelled else "equal shares (no memory)")
        labelled = True
    ax.set_xticks(range(len(check.facts)), list(check.facts))
    ax.set_ylim(0, 1.32)
    ax.set_ylabel("share, right answer")
    title = f"Recall after turn {check.after_turn}: each fact asked back"
    if not check.shares_available:
        title += " (no log-probabilities on this server)"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper right", ncol=len(check.labels) + 1)
    return _png(figure)


# --- the widget -----------------------------------------------------------------------


def _escape(text: str) -> str:
    return html.escape(text).replace("\n", "<br>")


def _short(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ChatWidget:
    """The session as a chat in the notebook, with live panels (`display(widget)` or `widget.view`).

    Everything a click does is a method (`send`, `replay`, `ask_facts`, `refresh`), and the
    widgets are attributes (`text`, `send_button`, `payload_html`, ...), so tests
    drive it with `widget.text.value = "..."; widget.send_button.click()`.

    `facts` (a `Conversation`'s planted facts) enables the recall panel: "Ask the facts back"
    asks each one through what the session sends and through a window of the same verbatim
    turns (`ChatSession.recall`), and draws the shares, what was sent and what the reply said.
    """

    def __init__(
        self,
        session: ChatSession,
        client: Any,
        *,
        script: Sequence[str] = (),
        facts: Mapping[str, Fact] | None = None,
        title: str = "Chat with managed memory",
    ):
        import ipywidgets as w

        self.session = session
        self.client = client
        self.script = list(script)
        self.facts = dict(facts or {})
        self.script_position = 0
        self.summary_highlighted = False
        self.last_error = ""
        self.recall: RecallCheck | None = None
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
        self.recall_button = w.Button(description="Ask the facts back", icon="question", disabled=not self.facts,
                                      layout=w.Layout(width="190px"))
        self.recall_button.add_class("chat-widget-recall-button")
        self.recall_button.on_click(lambda _: self.ask_facts())
        self.recall_html = w.HTML()
        self.recall_html.add_class("chat-widget-recall")
        self.recall_image = w.Image(format="png", layout=w.Layout(align_self="flex-start", max_width="100%"))
        self.recall_image.add_class("chat-widget-recall-chart")

        left = w.VBox(
            [
                self.log_html,
                w.HBox([self.text, self.send_button], layout=w.Layout(width="100%")),
                self.busy_html,
                w.HBox([self.replay_button, self.progress]),
                self.status,
                w.HTML(f"<b>Running summary</b> ({html.escape(self._summarizer_name())}; sent as a system message "
                       "after the first fold)"),
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
        controls = w.HBox(list(self.controls), layout=w.Layout(flex_flow="row wrap"))
        recall = w.VBox(
            [
                w.HBox([self.recall_button, w.HTML(
                    "<b>Recall panel</b>: each planted fact asked back through the next payload, and through a "
                    "window of the same verbatim turns without the summary")]),
                w.HBox([self.recall_image, self.recall_html]),
            ],
            layout=w.Layout(width="100%", border="1px solid #ddd", padding="6px", margin="6px 0 0 0"),
        )
        recall.add_class("chat-widget-recall-panel")
        self.view = w.VBox([w.HTML(f"<h3 style='margin:4px 0'>{html.escape(title)}</h3>"), controls,
                            w.HBox([left, right]), recall])
        self.view.add_class("chat-widget")
        self.refresh()

    def _summarizer_name(self) -> str:
        summarizer = self.session.settings.summarizer
        return str(getattr(summarizer, "name", type(summarizer).__name__))

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
        self.recall_button.disabled = self.busy or not self.facts
        self.send_button.description = "Waiting..." if self.busy else "Send"

    def _on_phase(self, phase: str, amount: int) -> None:
        if phase == "summarizing":
            self._set_busy(f"Folding {amount} older messages into the summary ({self._summarizer_name()})...")
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
                "updated" if record.summary_changed else "unchanged"
            )
        self._set_status(
            f"turn {record.number} done: {record.prompt_tokens} prompt tokens sent, "
            f"raw would be {record.raw_tokens}{note}"
        )
        return record

    def ask_facts(self) -> RecallCheck | None:
        """Ask every planted fact back (`ChatSession.recall`) and redraw the recall panel.

        Nothing in the conversation changes. On failure the panel keeps its last measurement and
        the status line shows the error (also kept in `last_error`).
        """
        if self.busy:
            return None
        if not self.facts:
            self._set_status("no planted facts to ask: give the widget facts=conversation.facts", error=True)
            return None
        labels = len(self.session.recall_payloads()) if self.session.history else 1
        self._set_busy(f"Asking {len(self.facts)} facts back through {labels} payload(s): scoring the candidate "
                       "answers, then a short reply each...")
        try:
            check = self.session.recall(self.client, self.facts)
        except Exception as exc:  # shown, not raised: a click handler has nowhere to raise to
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._set_status(f"recall not measured. {self.last_error}", error=True)
            return None
        finally:
            self._set_busy()
        self.last_error = ""
        self.recall = check
        self._render_recall(redraw=True)
        self._set_status(f"recall measured after turn {check.after_turn} in {check.seconds:.1f} s")
        return check

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
        self._render_recall()
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
        notes = [f"{plan.prompt_tokens} prompt tokens ({'exact' if plan.exact else 'estimate'}), {verdict} the "
                 f"budget of {plan.budget}; raw history: {plan.raw_tokens}"]
        if plan.fold_pending:
            notes.append(f"on send, {plan.fold_messages} messages are first folded into the summary "
                         f"({self._summarizer_name()})")
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
                    f"<div style='color:#ff7f0e;font-size:11px;margin:2px 0'>--- {folds[number]} earlier messages "
                    "folded into the summary ---</div>"
                )
            for message in self.session.history[start : start + 2]:
                align, shade = ("right", "#e8f0fe") if message["role"] == "user" else ("left", "#f1f3f4")
                blocks.append(
                    f"<div style='text-align:{align};margin:3px 0'><span style='display:inline-block;"
                    f"background:{shade};padding:4px 8px;border-radius:8px;max-width:85%;text-align:left'>"
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
        style = ("background:#fff3b0;border:2px solid #ff7f0e;" if changed
                 else "background:#fafafa;border:1px solid #ddd;")
        if changed:
            label = f"<div style='font-size:11px;color:#ff7f0e'>updated at turn {turns[-1].number}</div>"
        elif turns and turns[-1].folded_messages:  # a fold that added nothing (only questions folded, say)
            label = f"<div style='font-size:11px;color:#777'>folded at turn {turns[-1].number}, summary unchanged</div>"
        else:
            label = ""
        self.summary_html.value = f"<div style='{style}padding:6px;font-size:12px'>{label}{text}</div>"
        self.summary_highlighted = changed  # the panel shows the highlight: the last turn changed the summary

    def _render_recall(self, *, redraw: bool = False) -> None:
        """The recall panel; its figure is drawn again only for a new measurement (`redraw`)."""
        check = self.recall
        if check is None:
            self.recall_image.layout.display = "none"
            self.recall_html.value = (
                "<div style='font-size:12px;color:#555;padding:4px'>"
                + ("Press <b>Ask the facts back</b> after a few turns." if self.facts
                   else "No planted facts given (ChatWidget(..., facts=conversation.facts)).")
                + "</div>"
            )
            return
        self.recall_image.layout.display = None
        if redraw:
            self.recall_image.value = recall_png(check)
        head = "".join(f"<th colspan='3'>{html.escape(label)}</th>" for label in check.labels)
        sub_head = "<th>sent</th><th>share</th><th>reply</th>" * len(check.labels)
        rows = []
        for fact in check.facts:
            cells = []
            for label in check.labels:
                row = check.row(label, fact)
                share = "n/a" if row["share"] is None else f"{row['share']:.2f} ({row['share, uncorrected']:.2f})"
                cells.append(f"<td>{'yes' if row['in what was sent'] else 'no'}</td><td>{share}</td>"
                             f"<td>{'names it' if row['reply names it'] else '-'}</td>")
            rows.append(f"<tr><td><b>{html.escape(fact)}</b></td>{''.join(cells)}</tr>")
        first = check.labels[0]
        replies = "".join(
            f"<div><b>{html.escape(fact)}</b>: {html.escape(_short(check.row(first, fact)['reply'], 110))}</div>"
            for fact in check.facts
        )
        stale = ""
        if len(self.session.turns) > check.after_turn:
            stale = (f"<div style='color:#b00020'>measured after turn {check.after_turn}; the chat is at turn "
                     f"{len(self.session.turns)}: press the button to measure again</div>")
        self.recall_html.value = (
            "<div style='font-size:11px;padding-left:8px'>"
            f"<div>after turn {check.after_turn}; share of the right answer, corrected for guessing "
            "(uncorrected in brackets)</div>"
            "<table style='font-size:11px;border-collapse:collapse'>"
            f"<tr><th></th>{head}</tr><tr><th>fact</th>{sub_head}</tr>{''.join(rows)}</table>"
            f"<div style='margin-top:4px;color:#555'>replies through the {html.escape(first)}:</div>{replies}"
            f"{stale}</div>"
        )

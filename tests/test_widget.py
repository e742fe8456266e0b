"""Tests for helpers.widget: the session logic (fake and real model) and the widget, headless."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import openai
import pytest

from helpers import count_tokens
from helpers.checks import ChallengeNotPassed
from helpers.checks.nb04 import check_net_saving, net_saving
from helpers.fake_server import Disconnect, Fail, FakeServer, Reply, chat_completion
from helpers.history import (
    SUMMARY_HEADER,
    HistoryTooLongError,
    RewriteSummary,
    SummaryError,
    UserStatements,
    count_turns,
)
from helpers.strategies import Fact, load_conversation
from helpers.widget import (
    PARTS,
    ChatSession,
    ChatSessionError,
    ChatWidget,
    MemorySettings,
    context_bar_png,
    recall_png,
    turn_chart_png,
)

DATA = Path(__file__).resolve().parent.parent / "data"
SYSTEM = "You are a concise travel assistant."


SUMMARY_REQUEST = "You keep a short running summary"  # how the summarizer's system message starts


def is_summary_request(body: dict) -> bool:
    return body["messages"][0]["content"].startswith(SUMMARY_REQUEST)


def summaries(server: FakeServer) -> int:
    """How many summarizer requests the server has received."""
    return sum(is_summary_request(body) for body in server.requests)


def fake_server(
    fail_chat: Reply | None = None,
    fail_summary: Reply | None = None,
    summary_text: str | None = None,
    on_request: Callable[[], None] | None = None,
) -> FakeServer:
    """A server at another address (no log-probabilities: recall shares are measured as unavailable).

    A chat turn is answered "Reply <n>." (n: the request's number, summarizer requests included), the k-th
    summarizer request "Summary number <k>." (or `summary_text`); each bills `count_tokens(messages)`, what
    the session plans. `fail_chat` / `fail_summary` (a `Fail` or `Disconnect`) answer those requests instead.
    `on_request()` is called as each request arrives, while the SDK call is waiting.
    """

    def answer(body: dict) -> Reply:
        if on_request is not None:
            on_request()
        if is_summary_request(body):
            if fail_summary is not None:
                return fail_summary
            text = summary_text if summary_text is not None else f"Summary number {summaries(server)}."
        else:
            if fail_chat is not None:
                return fail_chat
            text = f"Reply {len(server.requests)}."
        billed = int(count_tokens(body["messages"]))
        return chat_completion(text, prompt_tokens=billed, completion_tokens=4, cached_tokens=0, model=body["model"])

    server = FakeServer(answer)
    return server


def fake_client(**kwargs):
    """The SDK client of a `fake_server(**kwargs)`, for tests that do not look at the requests."""
    return fake_server(**kwargs).client


def rewriting_session(**settings) -> ChatSession:
    """A session that folds early with a summarizer that calls the (fake) model."""
    settings = {"threshold": 4, "keep_turns": 1, "summarizer": RewriteSummary(), **settings}
    return ChatSession(SYSTEM, MemorySettings(**settings), model="fake")


def session_with(turns: int, client=None, **settings) -> ChatSession:
    settings.setdefault("summarizer", RewriteSummary())  # a summarizer that calls the (fake) model
    session = ChatSession(SYSTEM, MemorySettings(**settings), model="fake")
    client = client or fake_client()
    for number in range(1, turns + 1):
        session.send(f"Question number {number}?", client)
    return session


def state(session: ChatSession):
    return copy.deepcopy((session.history, session.summary, session.folded, session.turns, session.summarizer_calls))


# --- settings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"strategy": "everything"}, "strategy"),
        ({"keep_turns": 0}, "keep_turns"),
        ({"threshold": 3, "keep_turns": 2}, "threshold"),
        ({"budget": 0}, "budget"),
        ({"max_tokens": 0}, "max_tokens"),
    ],
)
def test_settings_are_validated(bad, match):
    with pytest.raises(ChatSessionError, match=match):
        MemorySettings(**bad)


def test_configure_keeps_the_old_settings_when_the_new_ones_are_invalid():
    session = ChatSession(SYSTEM)
    session.configure(strategy="window", keep_turns=3, threshold=6)
    assert (session.settings.strategy, session.settings.keep_turns) == ("window", 3)
    with pytest.raises(ChatSessionError):
        session.configure(threshold=2)
    assert session.settings.threshold == 6


def test_empty_system_prompt_is_refused():
    with pytest.raises(ChatSessionError, match="system prompt"):
        ChatSession("  ")


# --- plan ----------------------------------------------------------------------------


def test_plan_of_a_first_message_is_exact_and_adds_up():
    session = ChatSession(SYSTEM)
    plan = session.plan("  I'm Maya.  ")
    assert plan.messages == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "I'm Maya."}]
    assert plan.parts == ["system", "new"]
    assert plan.prompt_tokens == int(count_tokens(plan.messages)) == plan.raw_tokens
    assert list(plan.breakdown) == list(PARTS)
    assert sum(plan.breakdown.values()) == plan.prompt_tokens
    assert plan.breakdown["template"] > 0 and plan.breakdown["new"] == plan.message_tokens[1] > 0
    assert plan.exact and not plan.over_budget and not plan.fold_pending
    assert [row["part"] for row in plan.rows()] == plan.parts
    assert session.history == [], "planning sends nothing and changes nothing"


def test_plan_without_text_previews_the_history_alone():
    session = session_with(1)
    plan = session.plan("")
    assert "new" not in plan.parts and plan.messages[-1]["role"] == "assistant"


def test_plan_shows_a_pending_fold_without_calling_the_model():
    server = fake_server()
    session = session_with(4, server.client, threshold=8, keep_turns=2)  # 8 messages: the next user turn is the 9th
    calls = len(server.requests)
    before = state(session)
    plan = session.plan("Question number 5?")
    assert plan.fold_pending and not plan.exact
    assert plan.fold_messages == 6, "9 messages, the last 2 turns (3 messages) kept"
    assert plan.parts == ["system", "summary", "verbatim", "verbatim", "new"]
    assert len(server.requests) == calls and state(session) == before


def test_window_plan_keeps_the_last_turns():
    session = session_with(5, strategy="window", keep_turns=2)
    plan = session.plan("Question number 6?")
    assert count_turns(plan.messages) == 2
    assert [m["content"] for m in plan.messages[1:]] == [
        "Question number 5?", session.history[-1]["content"], "Question number 6?"
    ]
    assert plan.parts == ["system", "verbatim", "verbatim", "new"]
    assert plan.raw_tokens > plan.prompt_tokens


def test_raw_plan_goes_over_the_budget_and_says_so():
    session = session_with(6, strategy="raw", budget=120)
    plan = session.plan("Question number 7?")
    assert len(plan.messages) == 1 + 13 and plan.over_budget and plan.prompt_tokens == plan.raw_tokens


def test_budget_trims_the_oldest_turns_and_plan_reports_it():
    session = session_with(6, strategy="window", keep_turns=5, threshold=10)
    full = session.plan("Question number 7?").prompt_tokens
    session.configure(budget=full - 1)
    plan = session.plan("Question number 7?")
    assert plan.trimmed_turns >= 1 and plan.prompt_tokens <= full - 1
    assert count_turns(plan.messages) == 5 - plan.trimmed_turns


def test_plan_reports_a_budget_nothing_fits_instead_of_raising():
    session = ChatSession(SYSTEM, MemorySettings(strategy="window", budget=5))
    plan = session.plan("hello")
    assert plan.error and "budget" in plan.error and not plan.exact


# --- send ------------------------------------------------------------------------------


def test_send_appends_both_messages_and_records_the_turn():
    server = fake_server()
    session = ChatSession(SYSTEM, model="fake")
    planned = session.plan("I'm Maya.")
    record = session.send("I'm Maya.", server.client)
    assert session.history == [{"role": "user", "content": "I'm Maya."}, {"role": "assistant", "content": "Reply 1."}]
    assert record.number == 1 and record.reply == "Reply 1."
    assert record.sent == planned.messages == server.requests[0]["messages"]
    assert record.prompt_tokens == record.planned_tokens == record.raw_tokens == planned.prompt_tokens
    assert server.requests[0]["max_tokens"] == session.settings.max_tokens
    assert record.as_row()["prompt_tokens"] == record.prompt_tokens and "sent" not in record.as_row()


def test_summary_strategy_folds_after_the_threshold_and_keeps_k_turns():
    client = fake_client()
    session = session_with(4, client, threshold=8, keep_turns=2)
    assert session.summary == "" and not any(r.summary_changed for r in session.turns)
    record = session.send("Question number 5?", client)
    assert record.summary_changed and record.folded_messages == 6 and record.summarizer_tokens > 0
    assert session.summary == "Summary number 1." and session.folded == 6
    assert record.turns_sent == 2 and record.sent[1]["content"].startswith(SUMMARY_HEADER)
    assert [m["content"] for m in record.sent[2:]] == ["Question number 4?", "Reply 4.", "Question number 5?"]
    # The ghost line: what sending the whole raw history would have cost on that turn.
    assert record.raw_tokens == int(count_tokens([session.system_message] + session.history[:-1]))
    assert record.raw_tokens > record.prompt_tokens
    later = session.send("Question number 6?", client)
    assert not later.summary_changed and later.summary == session.summary


def test_summary_strategy_stays_bounded_over_many_turns():
    session = session_with(20, threshold=6, keep_turns=2, budget=250)
    sizes = [r.prompt_tokens for r in session.turns]
    assert all(size <= 250 for size in sizes)
    assert max(r.turns_sent for r in session.turns) <= 4, "never more than threshold / 2 + 1 turns"
    assert all(r.turns_sent == 2 for r in session.turns if r.summary_changed)
    assert session.turns[-1].raw_tokens > 2 * session.turns[-1].prompt_tokens
    assert len(session.summarizer_calls) == sum(r.summary_changed for r in session.turns) >= 3


def test_empty_message_is_refused():
    with pytest.raises(ChatSessionError, match="type a message"):
        ChatSession(SYSTEM).send("   ", fake_client())


def test_failed_model_call_leaves_the_session_unchanged():
    session = session_with(2)
    before = state(session)
    with pytest.raises(openai.APIConnectionError):
        session.send("Question 3?", fake_client(fail_chat=Disconnect()))
    assert state(session) == before


def test_failed_model_call_after_a_fold_discards_the_fold():
    session = session_with(4, threshold=8, keep_turns=2)
    before = state(session)
    server = fake_server(fail_chat=Disconnect())
    with pytest.raises(openai.APIConnectionError):
        session.send("Question number 5?", server.client)
    assert summaries(server) == 1 and len(server.requests) == 2, "the fold ran, then the chat call failed"
    assert state(session) == before


@pytest.mark.parametrize(
    "server, error",
    [
        ({"fail_summary": Disconnect()}, openai.APIConnectionError),
        ({"fail_summary": Fail(500, "the summarizer crashed", type="server_error")}, openai.InternalServerError),
        ({"summary_text": "  "}, SummaryError),
    ],
)
def test_failed_summarizer_leaves_the_session_unchanged(server, error):
    session = session_with(4, threshold=8, keep_turns=2)
    before = state(session)
    with pytest.raises(error):
        session.send("Question number 5?", fake_client(**server))
    assert state(session) == before


def test_budget_too_small_raises_before_any_call():
    server = fake_server()
    session = session_with(1, server.client, strategy="window")
    session.configure(budget=10)
    before, calls = state(session), len(server.requests)
    with pytest.raises(HistoryTooLongError):
        session.send("Another question?", server.client)
    assert state(session) == before and len(server.requests) == calls


def test_switching_strategy_keeps_the_summary_for_later():
    client = fake_client()
    session = session_with(5, client, threshold=8, keep_turns=2)
    summary = session.summary
    session.configure(strategy="raw")
    raw = session.send("Question number 6?", client)
    assert raw.messages_sent == 1 + 11 and raw.prompt_tokens == raw.raw_tokens
    session.configure(strategy="summary")
    assert session.plan("Question number 7?").messages[1]["content"].endswith(summary)


def test_replay_sends_each_text_and_reports_each_turn():
    seen = []
    session = ChatSession(SYSTEM, model="fake")
    records = session.replay(["one?", "two?", "three?"], fake_client(), on_turn=seen.append)
    assert [r.user for r in records] == ["one?", "two?", "three?"] and seen == records == session.turns


def test_both_data_files_load_as_scripts():
    conversation = load_conversation(DATA / "long_conversation.json")
    system, turns = conversation.system, conversation.turns
    assert system.startswith("You are a concise travel assistant") and len(turns) == 28
    assert turns[0].startswith("Hi! My name is Maya")
    trip = load_conversation(DATA / "trip_conversation.json")
    system, turns = trip.system, trip.turns
    assert len(turns) == 12 and all(isinstance(t, str) for t in turns)


# --- against the real embedded model --------------------------------------------------------


def test_a_few_real_turns_bill_exactly_what_was_planned(client, model_name):
    session = ChatSession(SYSTEM, MemorySettings(strategy="summary", threshold=4, keep_turns=1, budget=300,
                                                 max_tokens=30, summarizer=RewriteSummary(max_tokens=60)))
    for text in ["Hi, I'm Maya.", "I'm allergic to shellfish.", "I arrive on 14 April.", "Which city first?"]:
        planned = session.plan(text)
        record = session.send(text, client)
        if not planned.fold_pending:
            assert record.planned_tokens == planned.prompt_tokens
        assert record.prompt_tokens == record.planned_tokens <= 300, "count_tokens is exact on the embedded model"
        assert 0 < record.completion_tokens <= 30
    assert session.summary and session.summarizer_calls, "3 turns past a 4-message threshold folded"
    assert session.turns[-1].raw_tokens > session.turns[-1].prompt_tokens
    session.configure(strategy="raw")
    record = session.send("Thanks!", client)
    assert record.prompt_tokens == record.raw_tokens


# --- drawing and the widget ---------------------------------------------------------------


def test_figures_are_png():
    session = session_with(3)
    assert context_bar_png(session.plan("next?")).startswith(b"\x89PNG")
    assert turn_chart_png(session.turns, 400).startswith(b"\x89PNG")
    assert turn_chart_png([], 400).startswith(b"\x89PNG")


def test_widget_builds_with_empty_panels():
    widget = ChatWidget(ChatSession(SYSTEM, model="fake"), fake_client())
    assert "No messages yet" in widget.log_html.value
    assert "no summary yet" in widget.summary_html.value and not widget.summary_highlighted
    assert bytes(widget.context_image.value).startswith(b"\x89PNG")
    assert bytes(widget.chart_image.value).startswith(b"\x89PNG")
    assert widget.replay_button.disabled, "no script given"
    assert "chat-widget-input" in widget.text._dom_classes


def test_clicking_send_updates_every_panel():
    client = fake_client()
    widget = ChatWidget(rewriting_session(), client)
    chart_before = widget.chart_image.value
    widget.text.value = "I'm Maya and I love trains."
    assert "I&#x27;m Maya and I love trains." in widget.payload_html.value, "typing re-plans the preview"
    widget.send_button.click()
    assert len(widget.session.turns) == 1 and widget.text.value == ""
    assert "love trains" in widget.log_html.value and "Reply 1." in widget.log_html.value
    assert widget.chart_image.value != chart_before
    assert "turn 1 done" in widget.status.value and not widget.send_button.disabled
    for number in range(2, 4):
        widget.text.value = f"Question {number}?"
        widget.send_button.click()
    assert widget.session.turns[-1].summary_changed and widget.summary_highlighted
    assert "folded into the summary" in widget.log_html.value and "Summary number 1." in widget.summary_html.value
    widget.text.value = "Question 4?"
    widget.send_button.click()
    assert not widget.summary_highlighted, "the highlight marks only the turn that changed it"


def test_progress_indicator_shows_while_the_model_answers():
    seen: list[dict] = []
    widget = None

    def watch():  # what the widget shows while each model call waits (the call blocks the kernel)
        seen.append(
            {
                "busy": widget.busy,
                "indicator": widget.busy_html.value,
                "send_disabled": widget.send_button.disabled,
                "text_disabled": widget.text.disabled,
                "controls_disabled": all(c.disabled for c in widget.controls),
                "replay_disabled": widget.replay_button.disabled,
                "second_click": widget.send("clicked again while waiting"),
            }
        )

    server = fake_server(on_request=watch)
    widget = ChatWidget(rewriting_session(), server.client, script=["a?"])
    assert widget.busy_html.value == "" and not widget.busy
    for number in range(1, 4):
        widget.text.value = f"Question {number}?"
        widget.send_button.click()
    assert len(widget.session.turns) == 3, "a click while waiting sends nothing"
    # Turns 1, 2: one reply call each; turn 3 folds first: summarizer call, then reply call.
    assert len(seen) == 4 and [is_summary_request(body) for body in server.requests] == [False, False, True, False]
    for shown in seen:
        assert shown["busy"] and "fa-spinner" in shown["indicator"]
        assert shown["send_disabled"] and shown["text_disabled"] and shown["controls_disabled"]
        assert shown["replay_disabled"] and shown["second_click"] is None
    assert "Waiting for the model" in seen[0]["indicator"]
    assert "prompt tokens sent" in seen[0]["indicator"]
    assert "Folding 4 older messages into the summary (rewrite)" in seen[2]["indicator"]
    assert "Waiting for the model" in seen[3]["indicator"]
    # Afterwards everything is usable again and the indicator is gone.
    assert not widget.busy and widget.busy_html.value == ""
    assert not widget.send_button.disabled and not widget.text.disabled and not widget.replay_button.disabled
    assert widget.send_button.description == "Send"


def test_session_reports_its_phases():
    phases = []
    session = session_with(4, threshold=8, keep_turns=2)
    session.send("Question number 5?", fake_client(), on_phase=lambda phase, n: phases.append((phase, n)))
    assert [p for p, _ in phases] == ["summarizing", "answering"]
    assert phases[0][1] == 6 and phases[1][1] == session.turns[-1].prompt_tokens


def test_a_fold_that_returns_the_same_summary_is_still_shown_as_a_fold():
    client = fake_client(summary_text="Maya, shellfish allergy.")
    widget = ChatWidget(rewriting_session(), client)
    for number in range(1, 6):  # folds at turns 3 and 5; the second returns the same text
        widget.send(f"Question {number}?")
    first, second = widget.session.turns[2], widget.session.turns[4]
    assert first.folded_messages and first.summary_changed
    assert second.folded_messages and not second.summary_changed
    assert not widget.summary_highlighted and "folded at turn 5, summary unchanged" in widget.summary_html.value
    assert widget.log_html.value.count("folded into the summary") == 2
    assert "summary unchanged" in widget.status.value


def test_a_failed_click_shows_the_error_and_changes_nothing():
    widget = ChatWidget(session_with(2), fake_client(fail_chat=Disconnect()))
    before = state(widget.session)
    widget.text.value = "Will this fail?"
    widget.send_button.click()
    assert state(widget.session) == before
    assert widget.text.value == "Will this fail?", "the text stays, to send again"
    assert "nothing changed" in widget.status.value and "APIConnectionError" in widget.last_error
    assert not widget.busy and not widget.send_button.disabled and not widget.text.disabled
    widget.text.value = ""
    widget.send_button.click()
    assert "type a message first" in widget.status.value


def test_controls_replan_the_preview():
    widget = ChatWidget(session_with(5, strategy="raw"), fake_client())
    widget.text.value = "Question 6?"
    assert widget.plan.strategy == "raw" and len(widget.plan.messages) == 12
    widget.strategy.value = "window"
    widget.keep_turns.value = 1
    assert widget.plan.strategy == "window" and len(widget.plan.messages) == 2
    widget.keep_turns.value = 6
    assert widget.threshold.value >= 12, "the threshold follows 2 * turns kept"
    widget.budget.value = 100
    assert widget.session.settings.budget == 100 and widget.plan.budget == 100
    assert widget.plan.prompt_tokens <= 100
    widget.strategy.value = "summary"
    widget.keep_turns.value = 2
    widget.threshold.value = 4
    assert widget.session.settings == MemorySettings(strategy="summary", keep_turns=2, threshold=4, budget=100,
                                                     summarizer=widget.session.settings.summarizer)
    assert widget.plan.fold_pending and "folded into the summary" in widget.payload_html.value


def test_sliders_hold_the_sessions_own_settings():
    settings = MemorySettings(keep_turns=8, threshold=30, budget=5000)
    widget = ChatWidget(ChatSession(SYSTEM, settings, model="fake"), fake_client())
    assert (widget.keep_turns.value, widget.threshold.value, widget.budget.value) == (8, 30, 5000)
    assert widget.session.settings == settings


def test_replay_button_plays_the_script_with_progress():
    turns = load_conversation(DATA / "long_conversation.json").turns
    widget = ChatWidget(ChatSession(SYSTEM, model="fake"), fake_client(), script=turns[:5])
    assert not widget.replay_button.disabled
    widget.replay(limit=2)
    assert widget.progress.value == 2 and len(widget.session.turns) == 2
    widget.replay_button.click()
    assert widget.progress.value == widget.progress.max == 5
    assert [r.user for r in widget.session.turns] == list(turns[:5])


# --- challenge check -----------------------------------------------------------------


def test_check_net_saving_accepts_the_answer_and_hints_otherwise():
    session = session_with(10, threshold=4, keep_turns=1)
    assert check_net_saving(net_saving, session.turns) == net_saving(session.turns)
    with pytest.raises(ChallengeNotPassed, match="summarizer"):
        check_net_saving(lambda records: sum(r.raw_tokens - r.prompt_tokens for r in records))
    with pytest.raises(ChallengeNotPassed, match="int"):
        check_net_saving(lambda records: 1.5)


def test_the_default_summary_copies_the_users_statements_without_a_model_call():
    server = fake_server()
    session = ChatSession(SYSTEM, MemorySettings(threshold=4, keep_turns=1), model="fake")
    assert isinstance(session.settings.summarizer, UserStatements)
    for text in ("My name is Maya and I love trains.", "Which city first?", "I land on 14 April in Tokyo.", "Ok?"):
        record = session.send(text, server.client)
    assert "- My name is Maya and I love trains." in session.summary
    assert summaries(server) == 0 and len(server.requests) == 4 and record.summarizer_tokens == 0


# --- what filled each prompt -----------------------------------------------------------------------


def test_each_turn_records_what_filled_its_prompt():
    session = session_with(5, threshold=8, keep_turns=2)  # turn 5 folds
    for record in session.turns:
        assert len(record.parts) == len(record.message_tokens) == len(record.sent)
        assert list(record.breakdown) == list(PARTS)
        assert sum(record.breakdown.values()) == record.planned_tokens == record.prompt_tokens
        assert record.parts[0] == "system" and record.parts[-1] == "new"
        assert record.breakdown["new"] == record.message_tokens[-1] > 0
    first, folded = session.turns[0], session.turns[4]
    assert first.parts == ("system", "new") and first.breakdown["summary"] == 0
    assert folded.parts == ("system", "summary", "verbatim", "verbatim", "new") and folded.breakdown["summary"] > 0
    assert "parts" not in folded.as_row() and "message_tokens" not in folded.as_row()


def test_the_turn_chart_draws_records_with_and_without_parts():
    session = session_with(5, threshold=8, keep_turns=2)
    import dataclasses

    bare = [dataclasses.replace(r, parts=(), message_tokens=()) for r in session.turns]  # records made before parts
    assert turn_chart_png(session.turns, 400).startswith(b"\x89PNG")
    assert turn_chart_png(bare, 400).startswith(b"\x89PNG")


# --- recall ------------------------------------------------------------------------------------------

FACTS = {
    "name": Fact("name", 1, "Maya", "What is my name?", ("maya",), "Your name is", ("Maya", "Sofia", "Emma")),
    "allergy": Fact("allergy", 2, "shellfish", "What am I allergic to?", ("shellfish",), "You are allergic to",
                    ("shellfish", "peanuts", "gluten")),
}
FACT_TURNS = ("Hi! My name is Maya and I'm planning a trip.", "Important: I'm allergic to shellfish.",
              "Which city first?", "How many days there?")


def test_recall_payloads_are_the_next_payload_and_the_same_turns_without_the_summary():
    session = ChatSession(SYSTEM, MemorySettings(threshold=4, keep_turns=1), model="fake")
    with pytest.raises(ChatSessionError, match="send a turn first"):
        session.recall_payloads()
    session.replay(FACT_TURNS, fake_client())
    payloads = session.recall_payloads()
    assert list(payloads) == ["summary buffer", "window of the same 2 turns"]
    summary, window = payloads.values()
    assert summary == session.plan("").messages and summary[1]["content"].startswith(SUMMARY_HEADER)
    assert window == [summary[0], *summary[2:]] and count_turns(window) == count_turns(summary) == 2
    session.configure(strategy="raw")
    assert list(session.recall_payloads()) == ["raw history"]


def test_recall_asks_every_fact_through_both_payloads_and_changes_nothing():
    server = fake_server()
    client = server.client
    session = ChatSession(SYSTEM, MemorySettings(threshold=4, keep_turns=1), model="fake")
    session.replay(FACT_TURNS, client)
    before, calls = state(session), len(server.requests)
    check = session.recall(client, FACTS)
    assert state(session) == before
    assert (check.after_turn, check.verbatim_turns) == (4, 2)
    assert (check.facts, check.candidates) == (("name", "allergy"), (3, 3))
    assert [(row["strategy"], row["fact"]) for row in check.rows] == [
        ("summary buffer", "name"), ("summary buffer", "allergy"),
        ("window of the same 2 turns", "name"), ("window of the same 2 turns", "allergy"),
    ]
    # Structural: the summary carries both facts (the user's statements, copied); the window neither.
    assert all(check.row("summary buffer", fact)["in what was sent"] for fact in FACTS)
    assert not any(check.row("window of the same 2 turns", fact)["in what was sent"] for fact in FACTS)
    # The fake server returns no log-probabilities: no shares, said so, and the replies are still asked for.
    assert not check.shares_available and all(row["share"] is None for row in check.rows)
    asked = server.requests[calls:]
    probes = [r["messages"][-1]["content"] for r in asked if not r.get("logprobs")]
    assert len(probes) == 4 and all(p.startswith("Think back to what I told you earlier") for p in probes)
    assert recall_png(check).startswith(b"\x89PNG")
    with pytest.raises(KeyError):
        check.row("raw history", "name")
    with pytest.raises(ChatSessionError, match="planted facts"):
        session.recall(client, {})


def test_recall_on_the_real_model_separates_the_summary_from_the_window(client):
    session = ChatSession(SYSTEM, MemorySettings(threshold=4, keep_turns=1, max_tokens=16))
    session.replay(FACT_TURNS, client)
    check = session.recall(client, FACTS, reply_tokens=8)
    assert check.shares_available
    for fact in FACTS:
        summary, window = check.row("summary buffer", fact), check.row("window of the same 2 turns", fact)
        assert summary["in what was sent"] and not window["in what was sent"]
        assert summary["share"] > 0.5 > window["share"], (fact, summary["share"], window["share"])


# --- the recall panel ---------------------------------------------------------------------------------


def test_the_recall_panel_measures_on_click_and_says_when_it_is_stale():
    client = fake_client()
    widget = ChatWidget(ChatSession(SYSTEM, MemorySettings(threshold=4, keep_turns=1), model="fake"), client,
                        facts=FACTS)
    assert not widget.recall_button.disabled and widget.recall is None
    assert "Ask the facts back" in widget.recall_html.value and widget.recall_image.layout.display == "none"
    widget.recall_button.click()  # nothing sent yet
    assert widget.recall is None and "send a turn first" in widget.last_error
    for text in FACT_TURNS:
        widget.send(text)
    widget.recall_button.click()
    assert widget.recall is not None and widget.recall.after_turn == 4 and not widget.busy
    assert widget.recall_image.layout.display is None and bytes(widget.recall_image.value).startswith(b"\x89PNG")
    panel = widget.recall_html.value
    assert "after turn 4" in panel and "summary buffer" in panel and "window of the same 2 turns" in panel
    assert "n/a" in panel and "allergy" in panel and "recall measured after turn 4" in widget.status.value
    widget.send("One more question?")
    assert "measured after turn 4; the chat is at turn 5" in widget.recall_html.value


def test_a_failed_recall_keeps_the_last_panel_and_shows_the_error():
    widget = ChatWidget(ChatSession(SYSTEM, MemorySettings(threshold=4, keep_turns=1), model="fake"), fake_client(),
                        facts=FACTS)
    for text in FACT_TURNS:
        widget.send(text)
    first = widget.ask_facts()
    widget.client = fake_client(fail_chat=Disconnect())
    assert widget.ask_facts() is None and widget.recall is first
    assert "recall not measured" in widget.status.value and "APIConnectionError" in widget.last_error
    assert not widget.busy and not widget.recall_button.disabled


def test_without_facts_the_recall_button_is_off():
    widget = ChatWidget(ChatSession(SYSTEM, model="fake"), fake_client())
    assert widget.recall_button.disabled and "No planted facts" in widget.recall_html.value
    assert widget.ask_facts() is None and "no planted facts" in widget.status.value

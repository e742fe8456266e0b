"""helpers.history: windows, budgets, summaries and the summary buffer."""

import copy
import re

import openai
import pytest

from helpers import count_tokens
from helpers.fake_server import Fail, FakeServer, chat_completion
from helpers.history import (
    BufferSettings,
    FoldNotes,
    HistoryTooLongError,
    JudgedNotes,
    RewriteSummary,
    SummaryBuffer,
    SummaryError,
    UserStatements,
    count_turns,
    is_statement,
    sentences,
    sliding_window,
    split_turns,
    statements,
    summarize,
    summary_message,
    summary_request,
    trim_to_budget,
)

SYSTEM = {"role": "system", "content": "You are a concise travel assistant."}


def make_history(turns: int, *, newest_pending: bool = True) -> list[dict]:
    history = [dict(SYSTEM)]
    for number in range(1, turns + 1):
        history.append({"role": "user", "content": f"Question {number} about Japan, with some detail to count."})
        history.append({"role": "assistant", "content": f"Answer {number}: a reply of a sentence or two."})
    if newest_pending:
        history.append({"role": "user", "content": "The newest question?"})
    return history


def no_orphans(messages: list[dict]) -> bool:
    """Every assistant message follows a user message (possibly after other assistant/tool messages)."""
    seen_user = False
    for message in messages:
        if message["role"] == "user":
            seen_user = True
        elif message["role"] == "assistant" and not seen_user:
            return False
    return True


# --- split_turns / sliding_window ------------------------------------------------


def test_split_turns_groups_each_reply_with_its_question():
    history = make_history(2)
    systems, turns = split_turns(history)
    assert systems == [0]
    assert turns == [[1, 2], [3, 4], [5]]
    assert count_turns(history) == 3


def test_leading_assistant_greeting_is_a_turn_of_its_own():
    history = [SYSTEM, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Hi"}]
    assert split_turns(history)[1] == [[1], [2]]


@pytest.mark.parametrize("keep_turns", [1, 2, 3, 10])
def test_sliding_window_keeps_system_and_last_turns(keep_turns):
    history = make_history(5)
    before = copy.deepcopy(history)
    window = sliding_window(history, keep_turns)
    assert history == before, "the input must not change"
    assert window[0] == SYSTEM
    assert window[-1] == history[-1]
    assert count_turns(window) == min(keep_turns, count_turns(history))
    assert no_orphans(window)
    assert window == [m for m in history if m in window], "order is kept"


def test_sliding_window_never_orphans_a_reply_even_with_tool_messages():
    history = [
        SYSTEM,
        {"role": "user", "content": "Weather in Kyoto?"},
        {"role": "assistant", "content": "Let me check."},
        {"role": "tool", "content": "sunny"},
        {"role": "assistant", "content": "Sunny."},
        {"role": "user", "content": "And Osaka?"},
    ]
    roles = ["system", "user", "assistant", "tool", "assistant", "user"]
    assert [m["role"] for m in sliding_window(history, 2)] == roles
    assert [m["role"] for m in sliding_window(history, 1)] == ["system", "user"]


def test_sliding_window_keeps_a_second_system_message_in_place():
    history = make_history(3)
    history.insert(3, {"role": "system", "content": "Summary: the user is Maya."})
    window = sliding_window(history, 1)
    assert [m["role"] for m in window] == ["system", "system", "user"]


def test_sliding_window_returns_copies():
    history = make_history(2)
    window = sliding_window(history, 2)
    window[-1]["content"] = "changed"
    assert history[-1]["content"] == "The newest question?"


def test_sliding_window_rejects_zero_turns():
    with pytest.raises(ValueError, match="at least 1"):
        sliding_window(make_history(1), 0)


# --- trim_to_budget ----------------------------------------------------------------


@pytest.mark.parametrize("budget", [60, 100, 150, 250, 10_000])
def test_trim_to_budget_fits_and_keeps_the_most_turns(budget):
    history = make_history(6)
    before = copy.deepcopy(history)
    trimmed = trim_to_budget(history, budget)
    assert history == before
    assert int(count_tokens(trimmed)) <= budget
    assert trimmed[0] == SYSTEM and trimmed[-1] == history[-1]
    assert no_orphans(trimmed)
    kept = count_turns(trimmed)
    if kept < count_turns(history):  # one more turn would not have fitted
        assert int(count_tokens(sliding_window(history, kept + 1))) > budget
    assert trimmed == sliding_window(history, kept)


def test_trim_to_budget_with_a_custom_counter():
    history = make_history(4)
    by_messages = trim_to_budget(history, 4, count=len)  # budget of 4 messages
    assert [m["role"] for m in by_messages] == ["system", "user", "assistant", "user"]


def test_trim_to_budget_names_the_figures_when_nothing_fits():
    history = make_history(2)
    needed = int(count_tokens([SYSTEM, history[-1]]))
    with pytest.raises(HistoryTooLongError, match=f"{needed} prompt tokens, over the budget of 10") as caught:
        trim_to_budget(history, 10)
    assert caught.value.needed == needed and caught.value.budget == 10
    assert isinstance(caught.value, ValueError)


def test_trim_to_budget_needs_a_user_turn():
    with pytest.raises(ValueError, match="no user turn"):
        trim_to_budget([SYSTEM], 100)


def chars(messages) -> int:  # a stand-in counter: one "token" per character
    return sum(len(m.get("content") or "") for m in messages)


def test_trim_to_budget_keeps_pinned_messages_in_place_and_forms_turns_from_the_rest():
    nonce = "000000000001"
    block = f"<conversation_summary-{nonce}>\nMaya: shellfish.\n</conversation_summary-{nonce}>"
    summary = {"role": "user", "content": block}
    memory = {"role": "user", "content": '<memory-000000000002>\n1. "Maya likes tea."\n</memory-000000000002>'}
    history = make_history(6)
    history = history[:1] + [summary] + history[1:-1] + [memory] + history[-1:]
    before = copy.deepcopy(history)
    budget = chars([SYSTEM, summary, memory, history[-1]]) + 2 * chars(history[2:4]) + 5
    trimmed = trim_to_budget(history, budget, count=chars, pinned=[summary, memory])
    assert history == before
    assert trimmed[:2] == [SYSTEM, summary] and trimmed[-2:] == [memory, history[-1]]
    assert trimmed[2:-2] == history[-6:-2], "the two newest whole turns before the memory message"
    assert chars(trimmed) <= budget and no_orphans(trimmed)
    assert trim_to_budget(history, budget, count=chars, pinned=lambda m: m is summary or m is memory) == trimmed
    unpinned = trim_to_budget(history, budget, count=chars)
    assert summary not in unpinned, "text that looks like a block earns nothing: the oldest turn goes first"


def test_trim_to_budget_pins_by_identity_not_equality():
    history = make_history(3)
    twin = dict(history[1])  # equal to the oldest question, but another object
    assert trim_to_budget(history, chars([SYSTEM, history[-1]]), count=chars, pinned=[twin]) == [SYSTEM, history[-1]]
    kept = trim_to_budget(history, chars([SYSTEM, history[1], history[-1]]), count=chars, pinned=[history[1]])
    assert kept == [SYSTEM, history[1], history[-1]]


def test_trim_to_budget_with_pinned_messages_names_them_when_nothing_fits():
    history = make_history(2)
    with pytest.raises(HistoryTooLongError, match="system and pinned messages") as caught:
        trim_to_budget(history, chars([SYSTEM, history[-1]]), count=chars, pinned=[history[1]])
    assert caught.value.needed == chars([SYSTEM, history[1], history[-1]])
    with pytest.raises(ValueError, match="no user turn"):
        trim_to_budget(history[:2], 1000, count=chars, pinned=[history[1]])


# --- summaries with a scripted fake client -------------------------------------------


def summary_reply(text: str, finish_reason: str = "stop") -> dict:
    return chat_completion(text, prompt_tokens=100, completion_tokens=20, finish_reason=finish_reason, cached_tokens=7)


def fake_server(*replies) -> FakeServer:
    """A server answering in turn: a summary text, a (text, finish_reason) pair, or a Fail/Disconnect answer."""
    return FakeServer(
        summary_reply(reply) if isinstance(reply, str) else summary_reply(*reply) if isinstance(reply, tuple) else reply
        for reply in replies
    )


def test_summary_request_is_incremental():
    turns = make_history(2, newest_pending=False)[1:]
    first = summary_request(turns)
    assert "Summary so far" not in first[1]["content"]
    second = summary_request(turns[2:], "Maya is allergic to shellfish.")
    text = second[1]["content"]
    assert re.search(r"<summary-\d{12}>\nMaya is allergic to shellfish.\n</summary-\d{12}>", text)
    assert "Question 2" in text and "Question 1" not in text, "only the new turns are sent"
    assert [m["role"] for m in second] == ["system", "user"]


def test_summarize_records_tokens_and_trims_a_truncated_reply():
    server = fake_server(("Maya is allergic to shellfish. She arrives on 14 Ap", "length"))
    client = server.client
    call = summarize(make_history(1, newest_pending=False)[1:], client, model="m")
    assert call.text == "Maya is allergic to shellfish."
    assert call.truncated
    assert (call.prompt_tokens, call.completion_tokens, call.cached_tokens) == (100, 20, 7)
    assert server.requests[0]["max_tokens"] == 100


def test_summarize_refuses_an_empty_reply():
    with pytest.raises(SummaryError):
        summarize(make_history(1)[1:], fake_server("   ").client, model="m")


def test_summarize_needs_turns():
    with pytest.raises(ValueError, match="nothing to summarize"):
        summarize([SYSTEM], fake_server("x").client, model="m")


def test_summary_message_placements():
    assert summary_message("Maya.")["role"] == "system"
    data = summary_message("Maya.", "user_data")
    assert data["role"] == "user" and re.search(
        r"<conversation_summary-\d{12}>\nMaya.\n</conversation_summary-\d{12}>", data["content"]
    )
    with pytest.raises(ValueError):
        summary_message("x", "assistant")


# --- SummaryBuffer -------------------------------------------------------------------


def drive(buffer, client, turns, start=1):
    """The notebook's loop, with canned assistant replies."""
    for number in range(start, start + turns):
        buffer.append({"role": "user", "content": f"user turn {number}"})
        buffer.fold_if_needed(client)
        buffer.append({"role": "assistant", "content": f"reply {number}"})


def test_summary_buffer_folds_past_the_threshold_and_keeps_k_turns():
    server = fake_server("Summary one.", "Summary two.", "Summary three.")
    client = server.client
    buffer = SummaryBuffer(system=SYSTEM, summarizer=RewriteSummary(), settings=BufferSettings(8, 2))
    drive(buffer, client, 4)
    assert buffer.summary == "" and len(buffer.messages) == 8, "8 messages: not past the threshold yet"
    drive(buffer, client, 1, start=5)  # the 9th message triggers the first fold
    assert buffer.summary == "Summary one."
    assert count_turns(buffer.messages) == 2
    assert [m["content"] for m in buffer.messages] == ["user turn 4", "reply 4", "user turn 5", "reply 5"]
    payload = buffer.payload()
    assert payload[0] == SYSTEM and payload[1]["role"] == "system" and "Summary one." in payload[1]["content"]
    assert no_orphans(payload[2:])
    assert len(buffer.summarizer_calls) == 1 and buffer.summarizer_tokens == 120
    # The summarizer was sent only the folded turns, not the verbatim tail.
    sent = server.requests[0]["messages"][1]["content"]
    assert "user turn 1" in sent and "user turn 3" in sent and "user turn 4" not in sent


def test_summary_buffer_is_incremental_and_bounded():
    server = fake_server(*[f"Summary {n}." for n in range(1, 20)])
    client = server.client
    buffer = SummaryBuffer(system=SYSTEM, summarizer=RewriteSummary(), settings=BufferSettings(6, 2))
    for number in range(1, 25):
        buffer.append({"role": "user", "content": f"user turn {number}"})
        buffer.fold_if_needed(client)
        assert len(buffer.messages) <= 7
        assert buffer.messages[-1]["content"] == f"user turn {number}"
        buffer.append({"role": "assistant", "content": f"reply {number}"})
    calls = server.requests
    assert len(calls) == len(buffer.summarizer_calls) >= 2
    second = calls[1]["messages"][1]["content"]
    assert re.search(r"<summary-\d{12}>\nSummary 1.\n</summary-\d{12}>", second), "each fold extends the summary"
    assert "user turn 1\n" not in second, "turns already summarized are not re-sent"


def test_failed_summarizer_call_leaves_the_buffer_untouched():
    server = fake_server("Summary one.", Fail(500, "boom"))
    client = server.client
    buffer = SummaryBuffer(system=SYSTEM, summarizer=RewriteSummary(), settings=BufferSettings(4, 1))
    drive(buffer, client, 3)  # folds once
    before = copy.deepcopy((buffer.summary, buffer.messages, buffer.summarizer_calls))
    buffer.append({"role": "user", "content": "one more"})
    buffer.append({"role": "assistant", "content": "reply"})
    buffer.append({"role": "user", "content": "and another"})
    snapshot = copy.deepcopy((buffer.summary, buffer.messages, buffer.summarizer_calls))
    with pytest.raises(openai.InternalServerError, match="boom"):
        buffer.fold_if_needed(client)
    assert len(server.requests) == 2, "the second fold was asked for, and failed"
    assert (buffer.summary, buffer.messages, buffer.summarizer_calls) == snapshot
    assert before[0] == buffer.summary


def test_empty_summary_leaves_the_buffer_untouched():
    buffer = SummaryBuffer(system=SYSTEM, summarizer=RewriteSummary(), settings=BufferSettings(2, 1))
    drive(buffer, fake_server().client, 1)
    buffer.append({"role": "user", "content": "next"})
    snapshot = copy.deepcopy(buffer.messages)
    with pytest.raises(SummaryError):
        buffer.fold_if_needed(fake_server("").client)
    assert buffer.messages == snapshot and buffer.summary == ""


def test_summary_buffer_validates_its_settings():
    with pytest.raises(ValueError, match="keep_turns"):
        SummaryBuffer(system=SYSTEM, summarizer=RewriteSummary(), settings=BufferSettings(8, 0))
    with pytest.raises(ValueError, match="threshold"):
        SummaryBuffer(system=SYSTEM, summarizer=RewriteSummary(), settings=BufferSettings(3, 2))
    with pytest.raises(ValueError, match="system message"):
        SummaryBuffer(system={"role": "user", "content": "x"}, summarizer=RewriteSummary())
    with pytest.raises(ValueError, match="append user, assistant or tool"):
        SummaryBuffer(system=SYSTEM).append({"role": "system", "content": "x"})
    with pytest.raises(ValueError, match="threshold"):
        BufferSettings(threshold=True, keep_turns=1)


def test_summary_buffer_user_data_placement():
    buffer = SummaryBuffer(
        system=SYSTEM, placement="user_data", summarizer=RewriteSummary(), settings=BufferSettings(2, 1)
    )
    drive(buffer, fake_server("Maya likes trains.").client, 2)
    payload = buffer.payload()
    assert [m["role"] for m in payload[:2]] == ["system", "user"]
    assert re.search(r"<conversation_summary-\d{12}>", payload[1]["content"])


# --- against the real embedded model ---------------------------------------------------


def test_summarize_on_the_embedded_model_counts_its_own_tokens(client):
    turns = [
        {"role": "user", "content": "My name is Maya and I'm allergic to shellfish."},
        {"role": "assistant", "content": "Noted, Maya: I will avoid shellfish in food ideas."},
    ]
    call = summarize(turns, client, max_tokens=60)
    assert call.text
    assert call.prompt_tokens == int(count_tokens(summary_request(turns)))
    assert 0 < call.completion_tokens <= 60


def test_summary_buffer_on_the_embedded_model_stays_bounded(client, model_name):
    from helpers.payload import assistant_message

    buffer = SummaryBuffer(system=SYSTEM, summarizer=RewriteSummary(max_tokens=60), settings=BufferSettings(4, 1))
    sizes = []
    texts = [
        "I'm Maya.",
        "I'm allergic to shellfish.",
        "I land on 14 April.",
        "Budget 3,200 dollars.",
        "Best base in Tokyo?",
    ]
    for text in texts:
        buffer.append({"role": "user", "content": text})
        buffer.fold_if_needed(client)
        response = client.chat.completions.create(model=model_name, messages=buffer.payload(), max_tokens=30)
        assert response.usage.prompt_tokens == int(count_tokens(buffer.payload()))
        sizes.append(response.usage.prompt_tokens)
        buffer.append(assistant_message(response))
    assert buffer.summarizer_calls, "five turns past a 4-message threshold fold at least once"
    assert count_turns(buffer.messages) <= 2


# --- the summarizer designs --------------------------------------------------------------


def test_sentences_split_at_ends_followed_by_a_capital_or_digit():
    assert sentences("Hi! My name is Maya. I land on 14 April. Is 3.5 days enough?") == [
        "Hi!",
        "My name is Maya.",
        "I land on 14 April.",
        "Is 3.5 days enough?",
    ]
    assert sentences("  ") == []


def test_rewrite_summary_can_read_the_user_lines_only():
    server = fake_server("Maya, shellfish.")
    client = server.client
    RewriteSummary(roles=("user",)).fold(make_history(2, newest_pending=False)[1:], "", client, "m")
    sent = server.requests[0]["messages"][1]["content"]
    assert "Question 1" in sent and "Answer 1" not in sent


def test_fold_notes_appends_one_note_and_never_rewrites_the_old_ones():
    server = fake_server("Maya is allergic to shellfish.", "NONE", "She lands on 14 April.")
    client = server.client
    notes = FoldNotes()
    first = notes.fold(make_history(1, newest_pending=False)[1:], "", client, "m")
    assert first.text == "- Maya is allergic to shellfish."
    second = notes.fold(make_history(1, newest_pending=False)[1:], first.text, client, "m")
    assert second.text == first.text, "NONE adds nothing"
    third = notes.fold(make_history(1, newest_pending=False)[1:], second.text, client, "m")
    assert third.text.splitlines() == ["- Maya is allergic to shellfish.", "- She lands on 14 April."]
    sent = server.requests[0]["messages"][1]["content"]
    assert "Question 1" in sent and "Answer 1" not in sent, "only the user's lines are sent"


def judge(body: dict) -> dict:
    """A provider without logprobs that answers the fact check: Yes for sentences containing a digit or a name."""
    if body.get("logprobs"):
        return chat_completion("Yes", prompt_tokens=50, completion_tokens=1, finish_reason="length")
    question = body["messages"][-1]["content"]
    fact = any(ch.isdigit() for ch in question) or "Maya" in question
    return chat_completion("Yes" if fact else "No", prompt_tokens=50, completion_tokens=1)


def test_judged_notes_copy_the_sentences_the_model_accepts_word_for_word():
    turns = [
        {"role": "user", "content": "Hi! My name is Maya. Which city first?"},
        {"role": "assistant", "content": "Tokyo, Maya. It has 14 wards."},
        {"role": "user", "content": "I land on 14 April."},
    ]
    call = JudgedNotes().fold(turns, "", FakeServer(judge).client, "m")
    assert call.text.splitlines() == ["- My name is Maya.", "- I land on 14 April."]
    assert call.calls == 4 and call.completion_tokens == 0, "one check per user sentence, none of the assistant's"
    again = JudgedNotes().fold(
        [{"role": "user", "content": "I land on 14 April. Thanks!"}], call.text, FakeServer(judge).client, "m"
    )
    assert again.text == call.text, "a note already kept is not added twice"


def test_statements_are_sentences_that_tell_not_ask():
    assert is_statement("I'm allergic to shellfish, so keep that in mind.")
    assert not is_statement("Which neighbourhood is best?") and not is_statement("Hi there!")
    assert statements("I'm vegetarian, so which dishes can I order? We have 1,800 euros, hotel included.") == [
        "I'm vegetarian",
        "We have 1,800 euros, hotel included.",
    ]
    assert statements("Thanks! Is Porto worth it? Hi, can you help?") == []
    assert statements("What is a ryokan, and should I stay in one?") == [], "a clause that asks is not kept"


def test_user_statements_copy_the_users_statements_and_call_no_model():
    turns = [
        {"role": "user", "content": "Hi! My name is Maya. Which city first?"},
        {"role": "assistant", "content": "Tokyo, Maya. It has 14 wards and I am sure you will love it."},
        {"role": "user", "content": "I land on 14 April. Thanks a lot!"},
    ]
    server = fake_server()  # no reply queued: any model call would fail
    client = server.client
    call = UserStatements().fold(turns, "", client, "m")
    assert call.text.splitlines() == ["- My name is Maya.", "- I land on 14 April.", "- Thanks a lot!"]
    assert (call.calls, call.tokens) == (0, 0) and server.requests == []
    again = UserStatements().fold([{"role": "user", "content": "I land on 14 April."}], call.text, client, "m")
    assert again.text == call.text, "a statement already kept is not added twice"


def test_user_statements_compact_the_oldest_past_the_cap_and_count_the_call():
    many = [{"role": "user", "content": " ".join(f"I own {n} maps of town number {n}." for n in range(1, 15))}]
    server = fake_server("The user owns many maps.")
    client = server.client
    call = UserStatements(cap_tokens=60).fold(many, "", client, "m")
    lines = call.text.splitlines()
    assert lines[0] == "Earlier: The user owns many maps." and len(call.dropped) == 7
    assert lines[1:] == [f"- I own {n} maps of town number {n}." for n in range(8, 15)]
    assert call.calls == 1 and call.tokens == 120, "the compaction is a model call, and it is counted"
    assert "I own 1 maps" in server.requests[0]["messages"][1]["content"]


def test_user_statements_fail_cleanly_when_compaction_fails():
    many = [{"role": "user", "content": " ".join(f"I own {n} maps of town number {n}." for n in range(1, 15))}]
    buffer = SummaryBuffer(system=SYSTEM, summarizer=UserStatements(cap_tokens=60), settings=BufferSettings(2, 1))
    buffer.append(many[0])
    buffer.append({"role": "assistant", "content": "Nice."})
    buffer.append({"role": "user", "content": "Next?"})
    server = fake_server(Fail(500, "boom"))
    with pytest.raises(openai.InternalServerError, match="boom"):
        buffer.fold_if_needed(server.client)
    assert len(server.requests) == 1
    assert buffer.summary == "" and len(buffer.messages) == 3


def test_judged_notes_on_the_embedded_model_run_and_count_their_checks(client):
    turns = [{"role": "user", "content": "I'm allergic to shellfish. Which museum opens first?"}]
    call = JudgedNotes().fold(turns, "", client, None)
    assert call.calls == 2 and call.prompt_tokens > 0  # what it keeps is measured in notebook 03, not asserted


# --- tool calls travel as one unit -----------------------------------------------------------

TOOL_TURN = [
    {"role": "user", "content": "Weather in Kyoto?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}],
    },
    {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    {"role": "assistant", "content": "Sunny."},
]


def test_a_tool_call_and_its_results_are_never_split():
    history = [SYSTEM] + TOOL_TURN + make_history(3)[1:]
    for keep in (1, 2, 3, 4):
        window = sliding_window(history, keep)
        has_call, has_result = any(m.get("tool_calls") for m in window), any(m["role"] == "tool" for m in window)
        assert has_call == has_result, f"keep_turns={keep} split the tool call from its result"
    for budget in range(chars([SYSTEM, history[-1]]), chars(history) + 1, 7):
        trimmed = trim_to_budget(history, budget, count=chars)
        assert any(m.get("tool_calls") for m in trimmed) == any(m["role"] == "tool" for m in trimmed)


def test_summary_buffer_folds_a_tool_turn_whole():
    buffer = SummaryBuffer(system=SYSTEM, summarizer=RewriteSummary(), settings=BufferSettings(4, 1))
    for message in TOOL_TURN:
        buffer.append(message)
    buffer.append({"role": "user", "content": "And Osaka?"})
    buffer.fold_if_needed(fake_server("Kyoto is sunny.").client)
    assert buffer.messages == [{"role": "user", "content": "And Osaka?"}]
    assert not any(m["role"] == "tool" for m in buffer.payload())

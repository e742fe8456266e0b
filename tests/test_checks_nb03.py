"""helpers.checks.nb03: the checks of notebook 03 pass right answers and fail typical wrong ones."""

import copy

import openai
import pytest

from helpers.checks import ChallengeNotPassed
from helpers.checks.nb03 import (
    CANNED_REPLIES,
    StubSummarizer,
    check_bounded_payload,
    check_summarize_and_continue,
    in_order,
    load_long_conversation,
    orphaned_replies,
)
from helpers.history import UserStatements, sliding_window, summarize, summary_message, trim_to_budget

THRESHOLD, KEEP = 8, 2


# --- helpers of the checks ----------------------------------------------------------------


def test_in_order_matches_repeated_messages_to_successive_occurrences():
    a, b = {"role": "assistant", "content": "same"}, {"role": "user", "content": "q"}
    history = [{"role": "system", "content": "s"}, b, a, b, a]
    assert in_order([history[0], history[3], history[4]], history)
    assert in_order(history, history)
    assert not in_order([history[0], a, a, a], history)
    assert not in_order([{"role": "user", "content": "not there"}], history)


def test_orphaned_replies_finds_a_reply_without_its_question():
    history = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "r1"},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "r2"},
        {"role": "user", "content": "q3"},
    ]
    assert orphaned_replies(history, history) == []
    assert orphaned_replies([history[0], history[2], history[5]], history) == [1]
    assert orphaned_replies([history[0], history[1], history[4], history[5]], history) == [2], "r2 does not answer q1"


def test_the_scripted_replies_carry_no_planted_fact():
    facts = load_long_conversation()["facts"]
    for reply in CANNED_REPLIES:
        assert not any(k in reply.lower() for fact in facts.values() for k in fact["match"])


# --- Bound the cost ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        lambda history: sliding_window(history, 2),
        lambda history: sliding_window(history, 3),
        lambda history: sliding_window(history, 6),
        lambda history: trim_to_budget(history, 250),
        lambda history: trim_to_budget(history, 400),
    ],
    ids=["window-2", "window-3", "window-6", "budget-250", "budget-400"],
)
def test_bounded_payload_passes_windows_and_budgets(payload, capsys):
    sizes = check_bounded_payload(payload)
    assert len(sizes) == 40
    assert "Passed" in capsys.readouterr().out


def test_bounded_payload_passes_a_hand_written_window():
    def last_turns(history):
        starts = [i for i, m in enumerate(history) if m["role"] == "user"]
        return [history[0]] + history[starts[-3] :] if len(starts) >= 3 else list(history)

    check_bounded_payload(last_turns)


def every_other_old_turn(history):
    """Grows, only more slowly: the newest two turns plus every other older one."""
    turns = [history[i : i + 2] for i in range(1, len(history), 2)]
    kept = turns[:-2][1::2] + turns[-2:] if len(turns) > 2 else turns
    return [history[0]] + [m for turn in kept for m in turn]


def swaps_two_turns(history):
    """Whole turns, but the two before the newest question in the wrong order."""
    if len(history) < 6:
        return list(history)
    return [history[0]] + history[-3:-1] + history[-5:-3] + [history[-1]]


def mutating(history):
    while sum(m["role"] == "user" for m in history) > 3:
        del history[1:3]
    return list(history)


@pytest.mark.parametrize(
    "payload, hint",
    [
        (lambda history: list(history), "kept growing"),
        (every_other_old_turn, "kept growing"),
        (lambda history: [history[0]] + history[1:][-4:], "without its question"),
        (mutating, "changed the history"),
        (lambda history: history, "the history itself"),
        (lambda history: [history[0], history[-1]], "keep at least the last 2"),
        (lambda history: history[1:], "Start the payload with the system message"),
        (lambda history: list(history[:-1]) if len(history) > 2 else list(history), "newest user message"),
        (
            lambda history: (
                [history[0]] + [{**m, "content": m["content"].upper()} for m in history[1:-1]][-2:] + [history[-1]]
            ),
            "unchanged",
        ),
        (swaps_two_turns, "order"),
    ],
    ids=[
        "unbounded",
        "slower-growth",
        "orphaned-reply",
        "mutates-input",
        "returns-input",
        "forgets-everything",
        "no-system",
        "drops-newest",
        "edits-messages",
        "reordered",
    ],
)
def test_bounded_payload_fails_wrong_answers_with_a_hint(payload, hint):
    with pytest.raises(ChallengeNotPassed, match=hint):
        check_bounded_payload(payload)


def test_bounded_payload_leaves_no_trace_between_turns():
    seen = []

    def window(history):
        seen.append(copy.deepcopy(history))
        return sliding_window(history, 2)

    check_bounded_payload(window, turns=6)
    assert [sum(m["role"] == "user" for m in h) for h in seen] == [1, 2, 3, 4, 5, 6], "a fresh history each turn"


# --- Summarize-and-continue ----------------------------------------------------------------


def _starts(messages):
    return [i for i, m in enumerate(messages) if m["role"] == "user"]


def fold_step(memory, client):
    messages = memory["messages"]
    starts = _starts(messages)
    if len(messages) <= THRESHOLD or len(starts) <= KEEP:
        return memory
    first_kept = starts[-KEEP]
    call = summarize(messages[:first_kept], client, previous_summary=memory["summary"], max_words=60, max_tokens=100)
    return {"summary": call.text, "messages": messages[first_kept:]}


def build_payload(system, memory):
    summary = [summary_message(memory["summary"])] if memory["summary"] else []
    return [system] + summary + memory["messages"]


def copy_statements(memory, client):
    """The solution of notebook 03: copy the user's statements, no model call."""
    messages = memory["messages"]
    starts = _starts(messages)
    if len(messages) <= THRESHOLD or len(starts) <= KEEP:
        return memory
    first_kept = starts[-KEEP]
    call = UserStatements().fold(messages[:first_kept], memory["summary"], client, None)
    return {"summary": call.text, "messages": messages[first_kept:]}


def test_copying_statements_passes_without_any_model_call(capsys):
    figures = check_summarize_and_continue(copy_statements, build_payload)
    assert figures["model_calls"] == 0 and figures["fold_turns"] == [5, 8, 11, 14, 17, 20, 23, 26]
    assert "(0 model calls)" in capsys.readouterr().out


def test_copying_statements_passes_on_the_real_model(client, capsys):
    figures = check_summarize_and_continue(copy_statements, build_payload, client=client)
    assert figures["summary_share"] >= 0.5 and figures["window_share"] <= 0.3
    assert figures["real_facts_kept"] == ["name", "allergy", "date", "budget"]
    assert "through your summary" in capsys.readouterr().out


def test_a_summary_that_lost_the_name_fails_on_the_real_model(client):
    def forget_everything(memory, client):  # keeps the facts for the stub only, so only the real-model part fails
        new = copy_statements(memory, client)
        if new is memory or isinstance(client, StubSummarizer):
            return new
        return {"summary": "The user is planning a trip.", "messages": new["messages"]}

    with pytest.raises(ChallengeNotPassed, match="Through your summary the model gives the right name only"):
        check_summarize_and_continue(forget_everything, build_payload, client=client)


def test_summarize_and_continue_passes_the_reference_solution(capsys):
    figures = check_summarize_and_continue(fold_step, build_payload)
    assert figures["fold_turns"] == [5, 8, 11, 14, 17, 20, 23, 26]
    assert len(figures["prompt_tokens"]) == 28
    assert "Passed: 8 folds" in capsys.readouterr().out
    facts = load_long_conversation()["facts"]
    assert all(fact["value"] in figures["summary"] for fact in facts.values())


def test_summarize_and_continue_accepts_the_user_data_placement():
    def as_data(system, memory):
        summary = [summary_message(memory["summary"], "user_data")] if memory["summary"] else []
        return [system] + summary + memory["messages"]

    check_summarize_and_continue(fold_step, as_data)


def forgets_the_previous_summary(memory, client):
    messages = memory["messages"]
    starts = _starts(messages)
    if len(messages) <= THRESHOLD or len(starts) <= KEEP:
        return memory
    call = summarize(messages[: starts[-KEEP]], client)
    return {"summary": call.text, "messages": messages[starts[-KEEP] :]}


def keeps_only_the_last_sentence(memory, client):
    """Passes the summary on, but keeps only its last sentence: the early facts fall out."""
    new = fold_step(memory, client)
    if new is memory:
        return memory
    last = new["summary"].rstrip(".").split(". ")[-1] + "."
    return {"summary": last, "messages": new["messages"]}


def mutates_the_memory(memory, client):
    new = fold_step(memory, client)
    memory["messages"][:] = new["messages"]
    memory["summary"] = new["summary"]
    return memory


def keeps_messages_not_turns(memory, client):
    messages = memory["messages"]
    if len(messages) <= THRESHOLD:
        return memory
    call = summarize(messages[: -2 * KEEP], client, previous_summary=memory["summary"])
    return {"summary": call.text, "messages": messages[-2 * KEEP :]}  # starts with an assistant reply


def summarizes_every_turn(memory, client):
    if len(memory["messages"]) < 3:
        return memory
    starts = _starts(memory["messages"])
    call = summarize(memory["messages"][: starts[-1]], client, previous_summary=memory["summary"])
    return {"summary": call.text, "messages": memory["messages"][starts[-1] :]}


def clears_the_summary_on_failure(memory, client):
    try:
        return fold_step(memory, client)
    except openai.APIConnectionError:
        return {"summary": "", "messages": memory["messages"]}


def has_a_bug(memory, client):
    """A NameError in the learner's code is a bug to show, not a "failed call" to accept."""
    if memory["summary"] and len(memory["messages"]) > THRESHOLD:
        return undefined_name  # noqa: F821
    return fold_step(memory, client)


def test_a_bug_in_the_fold_step_is_not_taken_for_a_failed_call():
    with pytest.raises(NameError):
        check_summarize_and_continue(has_a_bug, build_payload)


@pytest.mark.parametrize(
    "fold, payload, hint",
    [
        (forgets_the_previous_summary, build_payload, "did not include the previous summary"),
        (keeps_only_the_last_sentence, build_payload, "lost name, allergy, date"),
        (mutates_the_memory, build_payload, "changed the memory it was given"),
        (keeps_messages_not_turns, build_payload, "keep exactly the last 2 turns"),
        (summarizes_every_turn, build_payload, "should not call the model"),
        (clears_the_summary_on_failure, build_payload, "must stay exactly as it was"),
        (fold_step, lambda system, memory: [system] + memory["messages"], "does not carry the summary"),
        (fold_step, lambda system, memory: build_payload(system, memory)[1:], "start with the system message"),
    ],
    ids=[
        "no-previous-summary",
        "loses-facts",
        "mutates-memory",
        "orphaned-reply",
        "folds-too-often",
        "failure-changes-state",
        "payload-without-summary",
        "payload-without-system",
    ],
)
def test_summarize_and_continue_fails_wrong_answers_with_a_hint(fold, payload, hint):
    with pytest.raises(ChallengeNotPassed, match=hint):
        check_summarize_and_continue(fold, payload)


def test_stub_summarizer_only_knows_what_it_was_sent():
    facts = load_long_conversation()["facts"]
    stub = StubSummarizer(facts)
    reply = stub.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Maya has a 3,200 dollar budget"}]
    )
    text = reply.choices[0].message.content
    assert "Maya" in text and "3,200" in text and "shellfish" not in text
    with pytest.raises(openai.APIConnectionError):
        StubSummarizer(facts, fail=True).chat.completions.create(model="m", messages=[])

"""helpers.checks.nb07: the notebook 07 challenge checks pass good answers and reject weak ones with a hint."""

import asyncio

import pytest

from helpers.checks.nb07 import ChallengeNotPassed, check_summary_session, check_whole_turns
from helpers.frameworks import items_to_messages
from helpers.history import split_turns, summarize, summary_message

# --- challenge 2: whole turns (no model) --------------------------------------------------------


def whole_turns(history, new_input):
    _, turns = split_turns(history)
    return [history[i] for turn in turns[-2:] for i in turn] + list(new_input)


def test_a_good_whole_turns_passes():
    assert check_whole_turns(whole_turns) == {"cases": 4, "items_kept_of_6_turns": 4}


def last_three_items(history, new_input):  # what SessionSettings(limit=3) does
    return history[-3:] + new_input


def pops_the_history(history, new_input):
    while len(history) > 4:
        history.pop(0)
    return history + new_input


def forgets_the_new_input(history, new_input):
    return whole_turns(history, [])


def keeps_everything(history, new_input):
    return history + new_input


@pytest.mark.parametrize(
    "answer, hint",
    [
        (last_three_items, "starts on a 'assistant' item"),
        (pops_the_history, "changed a list"),
        (forgets_the_new_input, "end with new_input"),
        (keeps_everything, "expected the last 2 whole turns"),
    ],
    ids=["counts items", "mutates", "drops the new input", "no window"],
)
def test_weak_whole_turns_get_a_hint(answer, hint):
    with pytest.raises(ChallengeNotPassed, match=hint):
        check_whole_turns(answer)


# --- challenge 1: a summary instead of a window (real Agents SDK and model) ---------------------


def summary_session_input(client, keep_items=2, fold_over=4, summary_tokens=60):
    state = {"summary": "", "folded": 0}

    def combine(history, new_input):
        history = [item for item in history if item.get("role") != "system"]  # summaries the SDK saved
        unfolded = history[state["folded"]:]
        if len(unfolded) > fold_over:
            old, unfolded = unfolded[:-keep_items], unfolded[-keep_items:]
            call = summarize(
                items_to_messages(old), client, previous_summary=state["summary"], max_tokens=summary_tokens
            )
            state["summary"], state["folded"] = call.text, state["folded"] + len(old)
        summary = [summary_message(state["summary"])] if state["summary"] else []
        return summary + unfolded + new_input

    return combine


@pytest.mark.slow
def test_a_summarizing_callback_passes():
    figures = asyncio.run(check_summary_session(summary_session_input))
    assert figures["summarizer_calls"] >= 1 and figures["summaries_stored"] >= 1
    assert figures["last_prompt_tokens"] < figures["full_history_tokens"]
    assert figures["last_messages"] == 5  # instructions, summary, one turn, the new question


@pytest.mark.slow
def test_a_window_is_not_a_summary():
    with pytest.raises(ChallengeNotPassed, match="made no model call"):
        window = lambda client: lambda history, new_input: history[-2:] + new_input  # noqa: E731
        asyncio.run(check_summary_session(window, max_tokens=8))


@pytest.mark.slow
def test_summarizing_but_still_sending_everything_fails():
    def make(client):
        summarize_only = summary_session_input(client, summary_tokens=20)

        def combine(history, new_input):
            summaries = [item for item in summarize_only(history, new_input) if item.get("role") == "system"]
            return summaries + [item for item in history if item.get("role") != "system"] + new_input

        return combine

    with pytest.raises(ChallengeNotPassed, match="early user turn"):
        asyncio.run(check_summary_session(make, max_tokens=8))

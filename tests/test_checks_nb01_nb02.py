"""The challenge checks pass on correct answers and raise hints on the usual mistakes."""

import pytest

from helpers import MODEL
from helpers.checks import ChallengeNotPassed
from helpers.checks.nb01 import SYSTEM, check_chat_turn, check_server_forgets
from helpers.checks.nb02 import check_pinned_window
from helpers.payload import assistant_message

TELL = [SYSTEM, {"role": "user", "content": "My name is Ada and I'm allergic to peanuts."}]
ASK = [SYSTEM, {"role": "user", "content": "What am I allergic to?"}]


def test_server_forgets_passes_and_reports_equal_bills(capsys):
    figures = check_server_forgets(TELL, ASK)
    assert figures["ask_before"] == figures["ask_after"] > 0
    assert figures["tell"] > 0
    assert "Passed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "tell, ask, fragment",
    [
        (TELL, TELL[:1] + [TELL[1], ASK[1]], "repeats what tell said"),
        ([], ASK, "non-empty list"),
        (TELL, [SYSTEM], "End both lists with a user message"),
    ],
)
def test_server_forgets_hints(tell, ask, fragment):
    with pytest.raises(ChallengeNotPassed, match=fragment):
        check_server_forgets(tell, ask)


def correct_turn(client, history, user_text):
    messages = history + [{"role": "user", "content": user_text}]
    response = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=12)
    return messages + [assistant_message(response)]


def mutating_turn(client, history, user_text):
    history.append({"role": "user", "content": user_text})
    response = client.chat.completions.create(model=MODEL, messages=history, max_tokens=12)
    history.append(assistant_message(response))
    return history


def whole_message_turn(client, history, user_text):
    messages = history + [{"role": "user", "content": user_text}]
    response = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=12)
    return messages + [response.choices[0].message]  # the SDK object, with all its fields


def newest_only_turn(client, history, user_text):
    messages = history + [{"role": "user", "content": user_text}]
    response = client.chat.completions.create(model=MODEL, messages=messages[-1:], max_tokens=12)
    return messages + [assistant_message(response)]


def forgetful_turn(client, history, user_text):
    messages = history + [{"role": "user", "content": user_text}]
    client.chat.completions.create(model=MODEL, messages=messages, max_tokens=12)
    return messages


def invented_reply_turn(client, history, user_text):
    messages = history + [{"role": "user", "content": user_text}]
    client.chat.completions.create(model=MODEL, messages=messages, max_tokens=12)
    return messages + [{"role": "assistant", "content": "Sure!"}]


def test_chat_turn_passes_for_the_correct_loop(capsys):
    history = check_chat_turn(correct_turn)
    assert [m["role"] for m in history] == ["system", "user", "assistant", "user", "assistant"]
    assert "Passed: 2 turns" in capsys.readouterr().out


@pytest.mark.parametrize(
    "turn, fragment",
    [
        (mutating_turn, "changed the list it was given"),
        (whole_message_turn, "append exactly"),
        (newest_only_turn, "Send the whole history"),
        (forgetful_turn, r"history \+ \[user message, assistant message\]"),
        (invented_reply_turn, "text the API returned"),
    ],
)
def test_chat_turn_hints(turn, fragment):
    with pytest.raises(ChallengeNotPassed, match=fragment):
        check_chat_turn(turn)


def pinned(history, keep_last):
    if len(history) <= keep_last + 2:
        return list(history)
    return history[:2] + history[-keep_last:]


def test_pinned_window_passes(capsys):
    check_pinned_window(pinned)
    assert "Passed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "window, fragment",
    [
        (lambda history, keep_last: history[:1] + history[-keep_last:], "first user message"),
        (lambda history, keep_last: history[:2] + history[-keep_last - 1:], "Expected"),
        (lambda history, keep_last: history, "Expected 4 messages"),
        (lambda history, keep_last: history[:2] + history[-keep_last - 1:-1], "End with the last"),
        (lambda history, keep_last: history.pop() and history, "changed the history"),
    ],
)
def test_pinned_window_hints(window, fragment):
    with pytest.raises(ChallengeNotPassed, match=fragment):
        check_pinned_window(window)

"""Check for the challenge of notebook 02: a window that pins the turn holding the fact."""

from __future__ import annotations

import copy
from collections.abc import Callable

from ..backend.client import count_tokens
from . import require as _require
from .nb01 import SCRIPTED_TURNS, SYSTEM


def _fixture_history(number_of_turns: int) -> list[dict[str, str]]:
    """A history shaped like the trip conversation, for structural checks (no model call)."""
    history = [dict(SYSTEM)]
    for index in range(number_of_turns):
        history.append({"role": "user", "content": SCRIPTED_TURNS[index % len(SCRIPTED_TURNS)]})
        history.append({"role": "assistant", "content": f"(the assistant's reply to turn {index + 1})"})
    history.append({"role": "user", "content": "And which country am I visiting, again?"})
    return history


def check_pinned_window(pinned_window: Callable[[list[dict[str, str]], int], list[dict[str, str]]]) -> None:
    """Challenge (notebook 02): a window that never drops the turn holding the fact.

    `pinned_window(history, keep_last)` must return a new list: the system message,
    the first user message (where the user said "Japan"), then the last `keep_last`
    messages, with no message twice; a history that already fits is returned whole.
    """
    for turns, keep_last in ((6, 2), (6, 4), (6, 5), (1, 4), (2, 4)):
        history = _fixture_history(turns)
        before = copy.deepcopy(history)
        window = pinned_window(history, keep_last)
        case = f"(history of {len(history)} messages, keep_last={keep_last})"
        _require(history == before, f"pinned_window changed the history it was given {case}: build a new list.")
        _require(
            isinstance(window, list),
            f"pinned_window returned {type(window).__name__} {case}; return a list of messages.",
        )
        if len(history) <= keep_last + 2:
            _require(window == history, f"The whole history fits {case}: return it all, in order.")
            continue
        expected_tail = history[-keep_last:]
        _require(window[:1] == history[:1], f"Start with the system message {case}.")
        _require(
            window[1:2] == history[1:2],
            f"Keep the first user message (the one that says Japan) right after the system message {case}.",
        )
        _require(
            window[-keep_last:] == expected_tail,
            f"End with the last {keep_last} messages of the history, in order {case}.",
        )
        _require(
            len(window) == keep_last + 2,
            f"Expected {keep_last + 2} messages (system, first user turn, last {keep_last}); got {len(window)} {case}.",
        )
        _require(window[-1] == history[-1], f"The newest user message must be last {case}.")
    long_history = _fixture_history(6)
    full, pinned = int(count_tokens(long_history)), int(count_tokens(pinned_window(long_history, 4)))
    print(
        "Passed: the first user turn stays in every window; "
        f"on a 6-turn history it sends {pinned} prompt tokens instead of {full}."
    )

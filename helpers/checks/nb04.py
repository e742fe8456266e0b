"""Check for the challenge of notebook 04: the net token saving of summarize-and-continue."""

from __future__ import annotations

from typing import Callable, Sequence

from ..widget.session import TurnRecord
from . import ChallengeNotPassed


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

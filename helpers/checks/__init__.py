"""Challenge checks, one module per notebook (`nb01` ... `nb06`).

Each check passes (prints what it verified and returns the figures) or raises
`ChallengeNotPassed`, an `AssertionError` whose message is a hint. Checks look at
what was sent and at token counts, never at the wording of the model's reply.
"""

from __future__ import annotations


class ChallengeNotPassed(AssertionError):
    """A challenge check failed; the message says what to change."""


def require(condition: bool, hint: str) -> None:
    """Raise `ChallengeNotPassed(hint)` unless `condition` holds."""
    if not condition:
        raise ChallengeNotPassed(hint)


__all__ = ["ChallengeNotPassed", "require"]

"""Type aliases shared by the helpers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Message = dict[str, Any]
"""One chat message as the API takes it: ``{"role": ..., "content": ...}``."""

TokenCounter = Callable[[Sequence[Message]], int]
"""Counts the prompt tokens of a list of messages (`helpers.count_tokens` by default)."""

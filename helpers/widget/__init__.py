"""Summarize-and-continue as a chat you can watch (notebook 04): `ChatSession` (`session`) and `ChatWidget` (`view`)."""

from __future__ import annotations

from .session import (
    Strategy,
    STRATEGIES,
    PARTS,
    PART_COLOURS,
    ChatSessionError,
    MemorySettings,
    Plan,
    TurnRecord,
    load_script,
    ChatSession,
)
from .view import (
    context_bar_png,
    turn_chart_png,
    ChatWidget,
)

__all__ = [
    "Strategy",
    "STRATEGIES",
    "PARTS",
    "PART_COLOURS",
    "ChatSessionError",
    "MemorySettings",
    "Plan",
    "TurnRecord",
    "load_script",
    "ChatSession",
    "context_bar_png",
    "turn_chart_png",
    "ChatWidget",
]

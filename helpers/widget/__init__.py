"""Summarize-and-continue as a chat you can watch (notebook 04): `ChatSession` (`session`) and `ChatWidget` (`view`)."""

from __future__ import annotations

from .session import (
    PART_COLOURS,
    PARTS,
    STRATEGIES,
    ChatSession,
    ChatSessionError,
    MemorySettings,
    Plan,
    RecallCheck,
    Strategy,
    TurnRecord,
)
from .view import (
    ChatWidget,
    context_bar_png,
    recall_png,
    turn_chart_png,
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
    "RecallCheck",
    "ChatSession",
    "context_bar_png",
    "recall_png",
    "turn_chart_png",
    "ChatWidget",
]

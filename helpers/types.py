"""Type aliases shared by the helpers."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

Message = dict[str, Any]
"""One chat message as the API takes it: ``{"role": ..., "content": ...}``."""

TokenCounter = Callable[[Sequence[Message]], int]
"""Counts the prompt tokens of a list of messages (`helpers.count_tokens` by default)."""


CHAT_ROLES = ("system", "developer", "user", "assistant", "tool")


def message_text(content: Any, where: str = "content") -> str:
    """A message's content as text: a string, null, or OpenAI text parts joined. ValueError otherwise."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part.get("text") if isinstance(part, Mapping) else None for part in content]
        bad = [index for index, text in enumerate(texts) if not isinstance(text, str)]
        if bad:
            raise ValueError(f"{where}[{bad[0]}] is not a text part ({{'type': 'text', 'text': ...}})")
        return "".join(texts)
    raise ValueError(f"{where} must be a string or a list of text parts, not {type(content).__name__}")


def normalize_messages(messages: Sequence[Any]) -> list[dict[str, str]]:
    """Check `messages` and keep what a chat template reads: role and text (SDK message objects accepted).

    Raises `ValueError` naming the first message a provider would refuse.
    """
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...} objects")
    normalized = []
    for index, message in enumerate(messages):
        if hasattr(message, "model_dump"):  # an SDK message object appended as-is
            message = message.model_dump(exclude_none=True)
        if not isinstance(message, Mapping) or message.get("role") not in CHAT_ROLES:
            raise ValueError(f"messages[{index}] must be an object whose role is one of {', '.join(CHAT_ROLES)}")
        text = message_text(message.get("content"), f"messages[{index}].content")
        normalized.append({"role": message["role"], "content": text})
    return normalized

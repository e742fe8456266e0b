"""Helpers for the Conversation State & Memory notebooks.

Every notebook starts with::

    from helpers import get_client, MODEL, describe_backend

`get_client()` returns a real `openai.OpenAI` client: for the embedded offline
SmolLM2 model (llama.cpp's own server, started in this process) by default, or for the
provider set in the environment / `.env`.
`MODEL` is the model name to pass to `client.chat.completions.create`.
`get_async_client()` is the same as an `openai.AsyncOpenAI`, for async frameworks.
"""

from __future__ import annotations

from typing import Any

from .backend.aio import get_async_client
from .backend.client import TokenCount, count_text_tokens, count_tokens, current_settings, describe_backend, get_client
from .backend.config import EMBEDDED_MODEL, Settings, resolve_settings
from .backend.usage import Usage, read_usage
from .errors import (
    ConfigurationError,
    EmbeddedModelError,
    HelpersError,
    MissingAPIKeyError,
    ModelNotFoundError,
    ProviderUnreachableError,
    UsageNotReportedError,
)

__all__ = [
    "EMBEDDED_MODEL",
    "MODEL",
    "ConfigurationError",
    "EmbeddedModelError",
    "HelpersError",
    "MissingAPIKeyError",
    "ModelNotFoundError",
    "ProviderUnreachableError",
    "Settings",
    "TokenCount",
    "Usage",
    "UsageNotReportedError",
    "count_text_tokens",
    "count_tokens",
    "current_settings",
    "describe_backend",
    "get_async_client",
    "get_client",
    "read_usage",
    "resolve_settings",
]


def __getattr__(name: str) -> Any:
    # MODEL is read from the environment when first asked for, so a misconfigured
    # provider raises its named error in the notebook's setup cell, not at install.
    if name == "MODEL":
        return current_settings().model
    raise AttributeError(f"module 'helpers' has no attribute {name!r}")

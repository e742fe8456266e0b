"""`get_async_client()`: the async twin of `get_client()`, for async frameworks (notebook 07).

Same address, key, guarded transport (`transport.py`) and named errors as the sync client; only the
SDK class and the httpx client are async.
"""

from __future__ import annotations

from typing import Any

import openai

from ._http import httpx
from .client import REQUEST_TIMEOUT, check_reachable, client_options, current_settings, model_not_found_error
from .config import Settings
from .transport import AsyncGuardedTransport


class NamedErrorsAsyncOpenAI(openai.AsyncOpenAI):
    """`openai.AsyncOpenAI` that raises `ModelNotFoundError` when the server does not have the model."""

    def _make_status_error(self, err_msg: str, *, body: object, response: Any) -> openai.APIStatusError:
        error = super()._make_status_error(err_msg, body=body, response=response)
        return model_not_found_error(error) or error


def get_async_client(
    settings: Settings | None = None, *, check_connection: bool = True, **openai_options: Any
) -> openai.AsyncOpenAI:
    """An `openai.AsyncOpenAI` client for the configured backend (see `get_client`).

    For a provider it checks once that the server accepts connections, unless `check_connection=False`.
    Extra keyword arguments go to `openai.AsyncOpenAI` (e.g. `timeout`, `max_retries`).
    """
    settings = settings or current_settings()
    if not settings.is_embedded and check_connection:
        check_reachable(settings.base_url or "")
    options = client_options(settings)
    if settings.is_embedded:
        openai_options.setdefault("max_retries", 0)
    http_client = httpx.AsyncClient(transport=AsyncGuardedTransport(**options["guard"]), timeout=REQUEST_TIMEOUT)
    if "default_query" in options:
        openai_options.setdefault("default_query", options["default_query"])
    return NamedErrorsAsyncOpenAI(
        api_key=options["api_key"], base_url=options["base_url"], http_client=http_client, **openai_options
    )


__all__ = ["NamedErrorsAsyncOpenAI", "get_async_client"]

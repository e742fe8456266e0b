"""`get_client()`, `count_tokens()` and the backend description the notebooks use."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlparse

import openai
from dotenv import find_dotenv, load_dotenv

from ..errors import ProviderUnreachableError
from ._http import httpx
from .config import Settings, resolve_settings
from .embedded import EmbeddedTransport, load_embedded_model

EMBEDDED_BASE_URL = "http://embedded.smollm2/v1"  # never resolved: the transport answers in-process


def load_env_file() -> Path | None:
    """Load the nearest `.env` (searching up from the working directory); variables already set win."""
    found = find_dotenv(usecwd=True)
    if found:
        load_dotenv(found, override=False)
        return Path(found)
    return None


def current_settings() -> Settings:
    """The backend chosen by the environment (after reading `.env`)."""
    load_env_file()
    return resolve_settings()


def describe_backend(settings: Settings | None = None) -> str:
    """One line naming the backend in use, e.g. for a notebook's setup cell."""
    return (settings or current_settings()).describe()


class _NamedConnectErrors(httpx.BaseTransport):
    """Wraps a transport so a refused connection names the URL it tried."""

    def __init__(self, inner: httpx.BaseTransport):
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return self._inner.handle_request(request)
        except httpx.ConnectError as error:
            raise httpx.ConnectError(f"Cannot reach {request.url}: {error}", request=request) from error

    def close(self) -> None:
        self._inner.close()


def check_reachable(base_url: str, timeout: float = 3.0) -> None:
    """Open (and close) a TCP connection to the server behind `base_url`.

    Raises `ProviderUnreachableError` naming the URL when nothing answers.
    """
    parsed = urlparse(base_url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return
    except OSError as error:
        raise ProviderUnreachableError(
            f"Cannot reach the model server at {base_url} ({error.__class__.__name__}: {error}). "
            "Is it running (e.g. `ollama serve`), and is OPENAI_BASE_URL right? "
            "Unset LLM_PROVIDER to use the embedded offline model."
        ) from error


def get_client(settings: Settings | None = None, *, check_connection: bool = True, **client_options: Any) -> openai.OpenAI:
    """An `openai.OpenAI` client for the configured backend.

    With no configuration it talks to the embedded SmolLM2 model (loaded once per
    process) through an in-process httpx transport. For a provider, it first checks
    that the server accepts connections unless `check_connection=False`.
    Extra keyword arguments go to `openai.OpenAI` (e.g. `timeout`, `max_retries`).
    """
    settings = settings or current_settings()
    if settings.is_embedded:
        transport = EmbeddedTransport(load_embedded_model())
        client_options.setdefault("max_retries", 0)  # nothing to retry in-process
        return openai.OpenAI(
            api_key="embedded",
            base_url=EMBEDDED_BASE_URL,
            http_client=httpx.Client(transport=transport),
            **client_options,
        )
    if check_connection:
        check_reachable(settings.base_url or "")
    return openai.OpenAI(
        api_key=settings.api_key,
        base_url=settings.base_url,
        http_client=httpx.Client(transport=_NamedConnectErrors(httpx.HTTPTransport()), timeout=60.0),
        **client_options,
    )


class TokenCount(int):
    """An int that says whether it is exact (`.exact`) and how it was counted (`.method`)."""

    exact: bool
    method: str

    def __new__(cls, value: int, *, exact: bool, method: str) -> "TokenCount":
        count = super().__new__(cls, value)
        count.exact = exact
        count.method = method
        return count

    def __repr__(self) -> str:
        return f"{int(self)} ({'exact' if self.exact else 'estimate'}: {self.method})"

    def __reduce__(self) -> tuple[Any, ...]:
        # copy, deepcopy and pickle rebuild it with its labels (int's default would drop them or fail).
        return (_rebuild_token_count, (int(self), self.exact, self.method))


def _rebuild_token_count(value: int, exact: bool, method: str) -> TokenCount:
    return TokenCount(value, exact=exact, method=method)


# Per-message framing a provider adds (role markers), as in OpenAI's published counting recipe.
ESTIMATE_TOKENS_PER_MESSAGE = 4
ESTIMATE_REPLY_PRIMING = 3


def count_tokens(messages: Sequence[Any], settings: Settings | None = None) -> TokenCount:
    """The prompt size of `messages` before sending them.

    Embedded model: exact, the same chat template and tokenizer as the call, so it
    equals `usage.prompt_tokens`. A provider: an estimate (the embedded tokenizer
    on the text plus a fixed per-message overhead), marked `exact=False`; the
    provider's `usage.prompt_tokens` is the real figure.
    """
    settings = settings or current_settings()
    model = load_embedded_model()
    if settings.is_embedded:
        return TokenCount(model.count_tokens(messages), exact=True, method="SmolLM2 chat template + tokenizer")
    from .embedded import normalize_messages

    normalized = normalize_messages(messages)
    text_tokens = sum(model.count_text_tokens(m["content"]) for m in normalized)
    estimate = text_tokens + ESTIMATE_TOKENS_PER_MESSAGE * len(normalized) + ESTIMATE_REPLY_PRIMING
    return TokenCount(
        estimate,
        exact=False,
        method=f"SmolLM2 tokenizer + {ESTIMATE_TOKENS_PER_MESSAGE}/message; {settings.provider} counts its own",
    )

"""`get_client()`, `count_tokens()` and the backend description the notebooks use."""

from __future__ import annotations

import json
import math
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import openai
from dotenv import find_dotenv, load_dotenv

from ..errors import ConfigurationError, ModelNotFoundError, ProviderUnreachableError
from ._http import httpx
from .config import Settings, resolve_settings, validate_base_url
from .embedded import EmbeddedTransport, load_embedded_model, normalize_messages

if TYPE_CHECKING:
    from typing_extensions import Self

EMBEDDED_BASE_URL = "http://embedded.smollm2/v1"  # never resolved: the transport answers in-process


def load_env_file() -> Path | None:
    """Load the nearest `.env` (searching up from the working directory); variables already set win.

    Raises `ConfigurationError` naming the file when it is not UTF-8 text.
    """
    found = find_dotenv(usecwd=True)
    if not found:
        return None
    path = Path(found)
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigurationError(
            f"{path} is not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start}): "
            "save it as UTF-8, or delete it to use the embedded offline model."
        ) from None
    load_dotenv(path, override=False, encoding="utf-8")
    return path


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

    Raises `ConfigurationError` for a malformed URL and `ProviderUnreachableError` naming
    the URL when nothing answers.
    """
    validate_base_url(base_url, "the base URL")
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


# What servers answer for a model they do not have (all seen in public reports, 2025-2026):
# OpenAI 404 "The model `x` does not exist or you do not have access to it." (code model_not_found);
# DeepSeek 400 "Model Not Exist" and, for retired names, "The supported API model names are ...";
# OpenRouter 400 "x is not a valid model ID"; Ollama 404 'model "x" not found, try pulling it first';
# LM Studio 400 'Invalid model identifier "x"'; the embedded backend 404 model_not_found.
_MODEL_NOT_FOUND = re.compile(
    r"model.*(does not exist|not exist|not found)|not a valid model|invalid model|supported api model names",
    re.IGNORECASE | re.DOTALL,
)


class ModelNotFoundError404(ModelNotFoundError, openai.NotFoundError):
    """`ModelNotFoundError` for an HTTP 404: also the SDK's `openai.NotFoundError`."""


class ModelNotFoundError400(ModelNotFoundError, openai.BadRequestError):
    """`ModelNotFoundError` for an HTTP 400 (DeepSeek, OpenRouter): also the SDK's `openai.BadRequestError`."""


def model_not_found_error(error: openai.APIStatusError) -> ModelNotFoundError | None:
    """The named error for a 400/404 that says the model does not exist, or None for any other error.

    Its message names the model and the server, points to `LLM_MODEL` and to
    `data/providers.csv` (the presets' dated default models), and quotes the server.
    """
    if error.status_code not in (400, 404):
        return None
    body = error.body if isinstance(error.body, Mapping) else {}
    server_said = str(body.get("message") or error.message)
    if body.get("code") != "model_not_found" and not _MODEL_NOT_FOUND.search(server_said):
        return None
    request = error.response.request
    try:
        model = str(json.loads(request.content or b"{}").get("model", "?"))
    except (ValueError, AttributeError):
        model = "?"
    host = request.url.host
    message = (
        f"{model} was not found at {host}: set LLM_MODEL to a model this server has (the presets' default "
        f"models, with the date they were checked, are in data/providers.csv). The server said: {server_said}"
    )
    named = (ModelNotFoundError404 if error.status_code == 404 else ModelNotFoundError400)(
        message, response=error.response, body=error.body
    )
    named.model, named.base_url = model, f"{request.url.scheme}://{host}"
    return named


class NamedErrorsOpenAI(openai.OpenAI):
    """`openai.OpenAI` that raises `ModelNotFoundError` when the server does not have the model."""

    def _make_status_error(self, err_msg: str, *, body: object, response: Any) -> openai.APIStatusError:
        # The SDK builds every HTTP error here; naming the model-not-found case is all that is added.
        error = super()._make_status_error(err_msg, body=body, response=response)
        return model_not_found_error(error) or error


HttpEventHooks = Mapping[str, Sequence[Callable[[Any], None]]]


def get_client(
    settings: Settings | None = None,
    *,
    check_connection: bool = True,
    http_event_hooks: HttpEventHooks | None = None,
    **client_options: Any,
) -> openai.OpenAI:
    """An `openai.OpenAI` client for the configured backend.

    With no configuration it talks to the embedded SmolLM2 model (loaded once per
    process) through an in-process httpx transport. For a provider, it first checks
    that the server accepts connections unless `check_connection=False`. A model the
    server does not have raises `ModelNotFoundError` on the first call.
    `http_event_hooks` go to the underlying `httpx.Client` (`{"request": [...], "response": [...]}`);
    other keyword arguments go to `openai.OpenAI` (e.g. `timeout`, `max_retries`).
    """
    settings = settings or current_settings()
    hooks = {name: list(functions) for name, functions in (http_event_hooks or {}).items()}
    if settings.is_embedded:
        client_options.setdefault("max_retries", 0)  # nothing to retry in-process
        http_client = httpx.Client(transport=EmbeddedTransport(load_embedded_model()), event_hooks=hooks)
        return NamedErrorsOpenAI(
            api_key="embedded", base_url=EMBEDDED_BASE_URL, http_client=http_client, **client_options
        )
    if check_connection:
        check_reachable(settings.base_url or "")
    http_client = httpx.Client(transport=_NamedConnectErrors(httpx.HTTPTransport()), timeout=60.0, event_hooks=hooks)
    return NamedErrorsOpenAI(
        api_key=settings.api_key, base_url=settings.base_url, http_client=http_client, **client_options
    )


class TokenCount(int):
    """An int that says whether it is exact (`.exact`) and how it was counted (`.method`)."""

    exact: bool
    method: str

    def __new__(cls, value: int, *, exact: bool, method: str) -> Self:
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


# A provider's tokenizer is not ours, so its counts are estimated without loading any model:
# OpenAI's rule of thumb of about 4 characters per English token, plus the per-message framing
# (role markers) and reply priming of OpenAI's published counting recipe.
ESTIMATE_CHARS_PER_TOKEN = 4
ESTIMATE_TOKENS_PER_MESSAGE = 4
ESTIMATE_REPLY_PRIMING = 3


def count_text_tokens(text: str, settings: Settings | None = None) -> int:
    """Tokens in a bare string: exact with the embedded model's tokenizer, else ceil(characters / 4)."""
    settings = settings or current_settings()
    if settings.is_embedded:
        return load_embedded_model().count_text_tokens(text)
    return math.ceil(len(text) / ESTIMATE_CHARS_PER_TOKEN)


def count_tokens(messages: Sequence[Any], settings: Settings | None = None) -> TokenCount:
    """The prompt size of `messages` before sending them.

    Embedded model: exact, the same chat template and tokenizer as the call, so it
    equals `usage.prompt_tokens`. A provider: an estimate that loads no model (about 4
    characters per token, plus 4 tokens of framing per message and 3 of reply priming),
    marked `exact=False`; the provider's `usage.prompt_tokens` is the real figure.
    """
    settings = settings or current_settings()
    if settings.is_embedded:
        exact = load_embedded_model().count_tokens(messages)
        return TokenCount(exact, exact=True, method="SmolLM2 chat template + tokenizer")
    normalized = normalize_messages(messages)
    text_tokens = sum(count_text_tokens(message["content"], settings) for message in normalized)
    estimate = text_tokens + ESTIMATE_TOKENS_PER_MESSAGE * len(normalized) + ESTIMATE_REPLY_PRIMING
    return TokenCount(
        estimate,
        exact=False,
        method=f"~{ESTIMATE_CHARS_PER_TOKEN} characters/token + {ESTIMATE_TOKENS_PER_MESSAGE}/message; "
        f"{settings.provider} counts its own",
    )

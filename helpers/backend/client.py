"""`get_client()`, `count_tokens()` and the backend description the notebooks use."""

from __future__ import annotations

import json
import math
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import openai
from dotenv import find_dotenv, load_dotenv

from ..errors import ModelNotFoundError, ProviderUnreachableError
from . import llamacpp
from ._http import httpx
from .config import EMBEDDED_MODEL, PLACEHOLDER_KEY, Settings, check_env_file, resolve_settings, validate_base_url
from .embedded import embedded_sampling, embedded_server
from .transport import GuardedTransport

if TYPE_CHECKING:
    from typing_extensions import Self

# A provider that accepts the connection and then never answers fails after this long (per attempt), and a
# refused or unroutable address within the connect timeout; the SDK's own defaults are 600 s and 2 retries.
REQUEST_TIMEOUT = httpx.Timeout(60.0, connect=5.0)


def load_env_file() -> Path | None:
    """Load the nearest `.env` (searching up from the working directory); variables already set win.

    Raises `ConfigurationError` naming the file when it is not UTF-8 text.
    """
    found = find_dotenv(usecwd=True)
    if not found:
        return None
    path = Path(found)
    check_env_file(path)  # not UTF-8, a NUL byte, a line python-dotenv would skip: named
    load_dotenv(path, override=False, encoding="utf-8")
    return path


def current_settings() -> Settings:
    """The backend chosen by the environment (after reading `.env`)."""
    load_env_file()
    return resolve_settings()


def describe_backend(settings: Settings | None = None) -> str:
    """One line naming the backend in use, e.g. for a notebook's setup cell."""
    return (settings or current_settings()).describe()


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
# LM Studio 400 'Invalid model identifier "x"'; the embedded client 404 model_not_found (transport.py).
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


# Hosted presets: never llama.cpp servers, so token counts for them are estimated without asking.
HOSTED_PROVIDERS = frozenset({"openai", "deepseek", "openrouter"})

HttpEventHooks = Mapping[str, Sequence[Callable[[Any], None]]]


def client_options(settings: Settings) -> dict[str, Any]:
    """`openai.OpenAI` keyword arguments for `settings`: address, key, and the guarded transport's options.

    The one place both clients (`get_client`, `get_async_client`) take them from.
    """
    if settings.is_embedded:
        server = embedded_server()
        return {
            "base_url": f"{server.base_url}/v1",
            "api_key": server.api_key or PLACEHOLDER_KEY,
            "guard": {"defaults": embedded_sampling(), "served_model": EMBEDDED_MODEL},
        }
    options: dict[str, Any] = {"base_url": settings.base_url, "api_key": settings.api_key, "guard": {}}
    if settings.default_query:
        options["default_query"] = dict(settings.default_query)
    return options


def get_client(
    settings: Settings | None = None,
    *,
    check_connection: bool = True,
    http_event_hooks: HttpEventHooks | None = None,
    **openai_options: Any,
) -> openai.OpenAI:
    """An `openai.OpenAI` client for the configured backend.

    With no configuration it talks HTTP to the embedded llama.cpp server (started once per process on a
    loopback port). For a provider, it first checks that the server accepts connections unless
    `check_connection=False`. Every request goes through `GuardedTransport` (chat-control markers in
    message text neutralised; the embedded server's default decoding). A model the server does not have
    raises `ModelNotFoundError` on the first call. `http_event_hooks` go to the underlying `httpx.Client`
    (`{"request": [...], "response": [...]}`); other keyword arguments go to `openai.OpenAI` (e.g.
    `timeout`, `max_retries`).
    """
    settings = settings or current_settings()
    if not settings.is_embedded and check_connection:
        check_reachable(settings.base_url or "")
    options = client_options(settings)
    hooks = {name: list(functions) for name, functions in (http_event_hooks or {}).items()}
    http_client = httpx.Client(
        transport=GuardedTransport(**options["guard"]), timeout=REQUEST_TIMEOUT, event_hooks=hooks
    )
    if settings.is_embedded:
        openai_options.setdefault("max_retries", 0)  # a local server: nothing to wait out
    if "default_query" in options:
        openai_options.setdefault("default_query", options["default_query"])
    return NamedErrorsOpenAI(
        api_key=options["api_key"], base_url=options["base_url"], http_client=http_client, **openai_options
    )


@lru_cache(maxsize=8)
def _default_client(settings: Settings) -> openai.OpenAI:
    return get_client(settings, check_connection=False)


def counting_client(client: Any | None = None, settings: Settings | None = None) -> Any:
    """The client to count with: the one given, else one for `settings` (default: the environment's)."""
    return client if client is not None else _default_client(settings or current_settings())


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


def _exact_counter(client: Any, settings: Settings | None) -> bool:
    """Count on the server itself: the embedded one, or any llama.cpp server (detected, not configured).

    Hosted presets (OpenAI, DeepSeek, OpenRouter) are not llama.cpp servers: nothing is asked of them.
    """
    if settings is not None and settings.provider in HOSTED_PROVIDERS:
        return False
    return llamacpp.is_llamacpp(client)


def count_text_tokens(text: str, settings: Settings | None = None, *, client: Any | None = None) -> TokenCount:
    """Tokens in a bare string: exact on a llama.cpp server (its tokenizer), else ceil(characters / 4)."""
    if client is None:
        settings = settings or current_settings()
    client = counting_client(client, settings)
    if _exact_counter(client, settings):
        return TokenCount(len(llamacpp.tokenize(client, text)), exact=True, method="the server's tokenizer")
    return TokenCount(
        math.ceil(len(text) / ESTIMATE_CHARS_PER_TOKEN),
        exact=False,
        method=f"~{ESTIMATE_CHARS_PER_TOKEN} characters/token",
    )


def count_tokens(messages: Sequence[Any], settings: Settings | None = None, *, client: Any | None = None) -> TokenCount:
    """The prompt size of `messages` before sending them, counted for `client` (default: the environment's).

    On a llama.cpp server (the embedded one, or any other: detected) it is exact: the server's own chat
    template and tokenizer (`/apply-template`, `/tokenize`), so it equals `usage.prompt_tokens`. Elsewhere,
    an estimate that loads no model (about 4 characters per token, plus 4 tokens of framing per message and
    3 of reply priming), marked `exact=False`; the provider's `usage.prompt_tokens` is the real figure.
    """
    if client is None:
        settings = settings or current_settings()
    client = counting_client(client, settings)
    if _exact_counter(client, settings):
        tokens = llamacpp.prompt_token_ids(client, messages)
        return TokenCount(len(tokens), exact=True, method="the server's chat template + tokenizer")
    texts = [_plain_text(message) for message in messages]
    estimate = sum(math.ceil(len(text) / ESTIMATE_CHARS_PER_TOKEN) for text in texts)
    estimate += ESTIMATE_TOKENS_PER_MESSAGE * len(texts) + ESTIMATE_REPLY_PRIMING
    provider = settings.provider if settings else "the server"
    return TokenCount(
        estimate,
        exact=False,
        method=f"~{ESTIMATE_CHARS_PER_TOKEN} characters/token + {ESTIMATE_TOKENS_PER_MESSAGE}/message; "
        f"{provider} counts its own",
    )


def _plain_text(message: Any) -> str:
    """A message's text: its content string, or its text parts joined (tool calls' arguments included)."""
    message = message if isinstance(message, Mapping) else getattr(message, "model_dump", lambda: {})()
    content = message.get("content")
    if isinstance(content, list):
        content = "\n".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    calls = message.get("tool_calls") or []
    arguments = " ".join(
        str((call.get("function") or {}).get("arguments", "")) for call in calls if isinstance(call, Mapping)
    )
    return f"{content or ''}{arguments}"

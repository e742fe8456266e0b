"""Frameworks and provider-held state, seen from the wire (notebook 07).

- `recording_connection()`: what any framework needs to reach the configured backend (base URL,
  API key, a sync and an async HTTP client), with every request body recorded. The OpenAI Agents
  SDK takes `openai.AsyncOpenAI(base_url=..., api_key=..., http_client=conn.http_async_client)`;
  LangChain's `ChatOpenAI` takes `http_client` and `http_async_client` directly.
- `reply_cap(max_tokens)`: the keyword arguments that cap a LangChain `ChatOpenAI` reply on the
  configured server (langchain-openai renames `max_tokens`, which many servers then ignore).
- `items_to_messages(items)`: the Agents SDK's session items as plain chat messages (role, text).
- `RequestLog`, `openai_state_client()`, `anthropic_capture_client()` and `send_or_capture()`:
  the request bodies of provider-side state (Responses `store` / `previous_response_id`, the
  Conversations API, compaction; Anthropic's context editing and compaction) captured from the
  real SDKs. Offline they are **captured, not sent**: the transport keeps the request and answers
  HTTP 501, so no reply is ever made up. With an OpenAI key configured, the OpenAI calls are sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import openai

from .backend._http import httpx
from .backend.client import REQUEST_TIMEOUT, check_reachable, client_options, current_settings
from .backend.config import PROVIDERS, Settings
from .backend.transport import AsyncGuardedTransport, GuardedTransport
from .payload import Recorded

# --- Any framework on the configured backend, recorded ---------------------------------------------


@dataclass
class RecordingConnection:
    """Where a framework sends its requests, and the log of what it sent.

    `recorded.requests[i]` is the JSON body of the i-th POST made through either client, in order;
    `recorded.responses[i]` the JSON reply (None for a stream).
    """

    base_url: str
    api_key: str
    http_client: httpx.Client
    http_async_client: httpx.AsyncClient
    recorded: Recorded

    def openai_client(self, **options: Any) -> openai.OpenAI:
        """An `openai.OpenAI` on this connection (its requests are recorded too)."""
        return openai.OpenAI(base_url=self.base_url, api_key=self.api_key, http_client=self.http_client, **options)

    def async_openai_client(self, **options: Any) -> openai.AsyncOpenAI:
        """An `openai.AsyncOpenAI` on this connection, e.g. for the Agents SDK's `OpenAIChatCompletionsModel`."""
        return openai.AsyncOpenAI(
            base_url=self.base_url, api_key=self.api_key, http_client=self.http_async_client, **options
        )


def recording_connection(settings: Settings | None = None, *, check_connection: bool = True) -> RecordingConnection:
    """A `RecordingConnection` to the configured backend: the embedded model by default, else the provider.

    Both HTTP clients record into one `Recorded` log, so a framework that mixes sync and async
    calls is recorded in the order it made them. For a provider, the server is checked once
    (`ProviderUnreachableError`) unless `check_connection=False`.
    """
    settings = settings or current_settings()
    if not settings.is_embedded and check_connection:
        check_reachable(settings.base_url or "")
    options, recorded = client_options(settings), Recorded()
    return RecordingConnection(
        base_url=options["base_url"] or "",
        api_key=options["api_key"] or "",
        http_client=httpx.Client(
            transport=GuardedTransport(**options["guard"]), timeout=REQUEST_TIMEOUT, event_hooks=recorded.event_hooks()
        ),
        http_async_client=httpx.AsyncClient(
            transport=AsyncGuardedTransport(**options["guard"]),
            timeout=REQUEST_TIMEOUT,
            event_hooks=recorded.async_event_hooks(),
        ),
        recorded=recorded,
    )


# --- A reply cap every server honours ---------------------------------------------------------------

OPENAI_API_HOST = "api.openai.com"


def reply_cap(max_tokens: int, settings: Settings | None = None) -> dict[str, Any]:
    """Keyword arguments that cap a LangChain `ChatOpenAI` reply at `max_tokens` on the configured server.

    Pass them to the constructor (``ChatOpenAI(..., **reply_cap(40))``) or to ``.bind(**reply_cap(64))``.
    langchain-openai always sends its `max_tokens` as ``max_completion_tokens``, OpenAI's current name,
    which OpenAI's reasoning models require and which OpenAI refuses beside ``max_tokens``. llama.cpp's
    server (llama-cpp-python issue 1907), and other OpenAI-compatible servers, read only ``max_tokens``
    and ignore the other: the reply then runs on until the context is full. So OpenAI's own API gets
    ``max_tokens=`` (sent as ``max_completion_tokens``) and every other server, the embedded model
    included, gets ``max_tokens`` in the request body (``extra_body``).
    """
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be a whole number of at least 1, not {max_tokens!r}")
    settings = settings or current_settings()
    host = urlsplit(settings.base_url or "").hostname or ""
    if not settings.is_embedded and host == OPENAI_API_HOST:
        return {"max_tokens": max_tokens}
    return {"extra_body": {"max_tokens": max_tokens}}


# --- The Agents SDK's session items as chat messages -----------------------------------------------


def _item_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, Mapping) or part.get("type") not in ("input_text", "output_text", "text"):
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                raise ValueError(f"{where} holds a {kind!r} part; only text parts become chat text")
            texts.append(part.get("text", ""))
        return "".join(texts)
    raise ValueError(f"{where} content must be a string or a list of text parts, not {type(content).__name__}")


def items_to_messages(items: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Agents SDK input items (what `session.get_items()` returns) as ``{"role", "content"}`` messages.

    A user item stores its text as a string, an assistant reply as a list of `output_text` parts
    with an id and a status; both become one plain message, so a session can be compared with a
    hand-kept history. Items that are not messages (tool calls, reasoning) raise `ValueError`
    naming the item. The input is not modified.
    """
    messages = []
    for index, item in enumerate(items):
        where = f"items[{index}]"
        if not isinstance(item, Mapping):
            raise TypeError(f"{where} is a {type(item).__name__}, not an item dict")
        if item.get("type", "message") != "message" or "role" not in item:
            raise ValueError(f"{where} is a {item.get('type')!r} item, not a message")
        messages.append({"role": str(item["role"]), "content": _item_text(item.get("content"), where)})
    return messages


# --- Provider-held state: captured, not sent (or sent, with an OpenAI key) -------------------------

CAPTURED_HEADER = "x-captured-not-sent"
CAPTURE_STATUS = 501  # Not Implemented: nothing here can answer these endpoints offline
OPENAI_API_URL = PROVIDERS["openai"].base_url
ANTHROPIC_API_URL = "https://api.anthropic.com"
_BETA_HEADERS = ("anthropic-beta", "openai-beta")


@dataclass(frozen=True)
class SentRequest:
    """One request a client made: method, path, its beta header (if any) and its JSON body."""

    method: str
    path: str
    body: dict[str, Any] | None
    beta: str | None = None

    def __str__(self) -> str:
        beta = f"  ({self.beta})" if self.beta else ""
        body = json.dumps(self.body, indent=2, ensure_ascii=False) if self.body is not None else "(no body)"
        return f"{self.method} {self.path}{beta}\n{body}"


@dataclass
class RequestLog(httpx.BaseTransport):
    """An httpx transport that keeps every request, then forwards it or answers "captured, not sent".

    With `forward=None` nothing leaves the machine: each request is answered with HTTP 501 and an
    error body saying it was captured, which the SDK raises as its own `APIStatusError`; no
    response is made up. With a transport to forward to, the request is really sent.
    """

    forward: httpx.BaseTransport | None = None
    requests: list[SentRequest] = field(default_factory=list)

    @property
    def live(self) -> bool:
        """True when requests are really sent."""
        return self.forward is not None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        content = request.read()
        body = json.loads(content) if content else None
        beta = next((request.headers[name] for name in _BETA_HEADERS if name in request.headers), None)
        self.requests.append(SentRequest(request.method, request.url.path, body, beta))
        if self.forward is not None:
            return self.forward.handle_request(request)
        message = (
            f"Captured, not sent: {request.method} {request.url.path} was recorded offline and never left "
            "this machine, so there is no reply."
        )
        return httpx.Response(
            CAPTURE_STATUS,
            headers={CAPTURED_HEADER: "1"},
            json={
                "type": "error",
                "error": {"type": "captured_not_sent", "code": "captured_not_sent", "message": message},
            },
        )

    def close(self) -> None:
        if self.forward is not None:
            self.forward.close()


def openai_state_client(settings: Settings | None = None) -> tuple[openai.OpenAI, RequestLog]:
    """An `openai.OpenAI` for the Responses and Conversations APIs, and the log of what it sent.

    Sends for real only when the configured provider is OpenAI itself (those APIs are OpenAI's);
    otherwise every request is captured, not sent, and answered with HTTP 501.
    """
    settings = settings or current_settings()
    if settings.provider == "openai":
        log = RequestLog(forward=GuardedTransport())
        client = openai.OpenAI(
            api_key=settings.api_key,
            base_url=settings.base_url,
            http_client=httpx.Client(transport=log, timeout=REQUEST_TIMEOUT),
        )
        return client, log
    log = RequestLog()
    client = openai.OpenAI(
        api_key="captured-offline", base_url=OPENAI_API_URL, http_client=httpx.Client(transport=log), max_retries=0
    )
    return client, log


def anthropic_capture_client() -> tuple[Any, RequestLog]:
    """An `anthropic.Anthropic` client whose requests are always captured, not sent (HTTP 501)."""
    import anthropic

    log = RequestLog()
    client = anthropic.Anthropic(
        api_key="captured-offline", base_url=ANTHROPIC_API_URL, http_client=httpx.Client(transport=log), max_retries=0
    )
    return client, log


T = TypeVar("T")


def send_or_capture(call: Callable[[], T]) -> T | None:
    """Run `call` (an SDK call on a client from this module): its response, or None if it was captured.

    Only the "captured, not sent" answer is turned into None; every other error, from the SDK or
    a provider, is raised unchanged.
    """
    try:
        return call()
    except Exception as error:  # the SDKs' APIStatusError carries the response
        response = getattr(error, "response", None)
        if response is not None and response.headers.get(CAPTURED_HEADER) == "1":
            return None
        raise


__all__ = [
    "CAPTURED_HEADER",
    "RecordingConnection",
    "RequestLog",
    "SentRequest",
    "anthropic_capture_client",
    "items_to_messages",
    "openai_state_client",
    "recording_connection",
    "reply_cap",
    "send_or_capture",
]

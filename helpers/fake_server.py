"""One fake OpenAI-compatible server behind the real SDK (no network, no model): for the tests, and for
the graders' stub summarizer (`helpers.checks.nb03.StubSummarizer`).

`FakeServer(answer)` is an `httpx.MockTransport` under a real `openai.OpenAI` client (`server.client`),
so the code under test calls the SDK exactly as it would call a provider, and the SDK itself parses the
replies and raises its own errors:

- `answer` is a callable `(body: dict) -> reply` or a list of replies used in order (running out fails
  the test). A reply is a `chat_completion(...)` dict, a `Fail(status, message, code)` (the SDK raises
  the error it raises for that status, e.g. `openai.BadRequestError` for 400, `openai.InternalServerError`
  for 5xx; `Fail(status, raw=body)` sends another server's error body as it is) or `Disconnect()` (the
  connection fails: `openai.APIConnectionError`).
- `server.requests` holds every JSON body POSTed to `/v1/chat/completions`, in order (what was sent).
- Any other path, e.g. llama.cpp's `GET /props`, is answered 404: `is_llamacpp(server.client)` is False,
  so counts are the estimate and recall has no exact scores, as with a hosted provider.

`sdk_error(status, message, code)` is the exception the SDK raises for such an answer, made by the SDK
(`Fail(...).raised()` for any `Fail`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Union

import openai

from .backend._http import httpx

BASE_URL = "http://fake.test/v1"
CHAT_PATH = "/v1/chat/completions"


def chat_completion(
    content: str | None,
    *,
    prompt_tokens: int,
    completion_tokens: int,
    finish_reason: str = "stop",
    logprobs: dict[str, Any] | None = None,
    cached_tokens: int | None = None,
    model: str = "fake-model",
) -> dict[str, Any]:
    """A `chat.completion` JSON body with one choice, as an OpenAI-compatible server sends it.

    `logprobs` is the choice's `logprobs` object (e.g. `{"content": [{"token", "logprob", "bytes",
    "top_logprobs": [...]}]}`, see `top_logprobs`); `cached_tokens` adds `usage.prompt_tokens_details`.
    """
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    choice = {
        "index": 0,
        "finish_reason": finish_reason,
        "message": {"role": "assistant", "content": content},
        "logprobs": logprobs,
    }
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [choice],
        "usage": usage,
    }


def top_logprobs(first: dict[str, float]) -> dict[str, Any]:
    """A choice's `logprobs` whose first token has these `{token: logprob}` alternatives (the first is chosen)."""
    alternatives = [{"token": token, "logprob": logprob, "bytes": None} for token, logprob in first.items()]
    token, logprob = next(iter(first.items()))
    return {"content": [{"token": token, "logprob": logprob, "bytes": None, "top_logprobs": alternatives}]}


@dataclass(frozen=True)
class Fail:
    """An error answer: HTTP `status` with OpenAI's error body; the SDK raises its error for that status.

    `raw`, when given, is the whole JSON body sent instead (`message` and the rest unused): another
    server's error as that server words it, e.g. llama.cpp's `exceed_context_size_error` or vLLM's.
    """

    status: int
    message: str = ""
    code: str | None = None
    type: str = "invalid_request_error"
    param: str | None = None
    raw: Any = None

    def body(self) -> Any:
        if self.raw is not None:
            return self.raw
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def raised(self) -> openai.APIStatusError:
        """The error the SDK raises when a chat request is answered this way, made by the SDK itself."""
        if self.status < 400:
            raise ValueError(f"HTTP {self.status} is not an error status")
        server = FakeServer([self])
        try:
            server.client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
        except openai.APIStatusError as error:
            return error
        raise AssertionError(f"the SDK raised nothing for HTTP {self.status}")  # pragma: no cover


@dataclass(frozen=True)
class Disconnect:
    """The connection fails before any answer: the SDK raises `openai.APIConnectionError`."""

    reason: str = "connection refused by the fake server"


Reply = Union[dict, Fail, Disconnect]


class FakeServer:
    """A scripted OpenAI-compatible server and a real `openai.OpenAI` client on it (`.client`).

    `answer`: a callable `(body) -> Reply`, called for each chat request with its JSON body, or an
    iterable of replies used in order. `.requests`: every chat request body, in order.
    """

    def __init__(self, answer: Callable[[dict], Reply] | Iterable[Reply] = (), *, base_url: str = BASE_URL):
        self.requests: list[dict[str, Any]] = []
        if callable(answer):
            self._answer = answer
        else:
            script = list(answer)

            def scripted(body: dict) -> Reply:
                if not script:
                    raise AssertionError(f"FakeServer: no scripted reply left for request {len(self.requests)}")
                return script.pop(0)

            self._answer = scripted
        self.client = openai.OpenAI(
            api_key="test",
            base_url=base_url,
            max_retries=0,
            http_client=httpx.Client(transport=httpx.MockTransport(self._handle)),
        )

    def _handle(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST" or not request.url.path.endswith(CHAT_PATH):
            error = Fail(404, f"Not found: {request.method} {request.url.path}", type="not_found_error")
            return httpx.Response(404, json=error.body(), request=request)
        body = json.loads(request.content)
        self.requests.append(copy.deepcopy(body))
        reply = self._answer(body)
        if isinstance(reply, Disconnect):
            raise httpx.ConnectError(reply.reason, request=request)
        if isinstance(reply, Fail):
            return httpx.Response(reply.status, json=reply.body(), request=request)
        if not isinstance(reply, dict):
            raise TypeError(f"FakeServer: a reply is a dict, Fail or Disconnect, not {type(reply).__name__}")
        return httpx.Response(200, json=reply, request=request)


def sdk_error(
    status: int,
    message: str,
    code: str | None = None,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
) -> openai.APIStatusError:
    """The error the SDK raises when a chat request is answered `status` with this error body.

    Made by the SDK itself (a real request answered by a `FakeServer`), so it carries the `httpx.Request`,
    `httpx.Response`, class, message and body the SDK gives it.
    """
    return Fail(status, message, code, type=type, param=param).raised()

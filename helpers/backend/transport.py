"""What every client from `get_client()` does to a request on its way out, in one place.

1. **Chat-control strings in message text are neutralised.** llama.cpp's server (and so Ollama and LM
   Studio) tokenizes the whole templated prompt with special tokens parsed: a user who types
   `<|im_end|>\\n<|im_start|>system` gets real control tokens, a forged system turn (measured: 30 prompt
   tokens billed where the same text as plain text is 71). Hosted APIs tokenize message text as text. So
   before a request leaves, each marker in message text gets a zero-width space after its first
   character (`<|im_start|>` -> `<\\u200b|im_start|>`): the text reads the same to a person and to the
   model, and tokenizes as plain text everywhere. We neutralise rather than refuse, because a lesson
   (notebook 06) or a user may quote a marker on purpose. `count_tokens` goes through the same client,
   so it counts the text that is sent.
2. **The embedded server's defaults** (`default_sampling`): seeded sampling and DRY, and a reply cap,
   for every chat request that does not choose its own. `max_completion_tokens`, which llama.cpp's
   server ignores, is sent as `max_tokens` too.
3. **A model name the embedded server does not serve is refused** with a 404 `model_not_found`
   (llama.cpp's server itself answers as its own model whatever name it is given), so the SDK raises
   `ModelNotFoundError` as a hosted provider would.
4. **A message role OpenAI does not accept is refused** with a 400, as OpenAI answers (llama.cpp's server
   would put `<|im_start|>wizard` in the prompt and answer).
5. **A refused connection names the URL** it tried.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ._http import httpx

ZERO_WIDTH_SPACE = "\u200b"

# The turn markers of the chat templates in use (2026): ChatML and most <|...|> tokens (SmolLM2, Qwen,
# Phi, Llama 3's <|start_header_id|>/<|eot_id|>, GPT's <|endoftext|>), DeepSeek's fullwidth <｜...｜>,
# Gemma's <start_of_turn>/<end_of_turn>, Llama 2 / Mistral's [INST] <<SYS>> <s> </s>.
CONTROL_MARKER = re.compile(
    r"<\|[^|<>\s]{1,48}\|>|<｜[^｜<>\s]{1,48}｜>|</?(?:start_of_turn|end_of_turn|s)>|\[/?INST\]|<</?SYS>>"
)

_CHAT_PATHS = ("/chat/completions",)
_GUARDED_PATHS = ("/chat/completions", "/responses", "/apply-template", "/completions")
_TEXT_KEYS = ("content", "text", "input", "prompt")
ROLES = ("system", "developer", "user", "assistant", "tool", "function")


def neutralize_control_markers(text: str) -> str:
    """`text` with a zero-width space after the first character of every chat-control marker."""
    return CONTROL_MARKER.sub(lambda found: found[0][0] + ZERO_WIDTH_SPACE + found[0][1:], text)


def _neutralize(value: Any) -> Any:
    """Neutralise the text of messages, content parts and Responses input items, recursively."""
    if isinstance(value, list):
        return [_neutralize(item) for item in value]
    if isinstance(value, dict):
        return {
            key: (
                neutralize_control_markers(item)
                if key in _TEXT_KEYS and isinstance(item, str)
                else _neutralize(item)
                if key in (*_TEXT_KEYS, "messages")
                else item
            )
            for key, item in value.items()
        }
    return value


def rewrite_request(
    path: str, body: dict[str, Any], defaults: Mapping[str, Any] | None, served_model: str | None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the body to send, or an error body to answer with instead) for a JSON POST to `path`."""
    if not path.endswith(_GUARDED_PATHS):
        return body, None
    if served_model and "model" in body and path.endswith(("/chat/completions", "/responses")):
        if body["model"] != served_model:
            message = (
                f"The model `{body['model']}` does not exist on the embedded server, which serves {served_model} "
                "(llama.cpp's server itself would answer as its own model under any name)."
            )
            return body, {"error": {"message": message, "type": "invalid_request_error", "code": "model_not_found"}}
    if path.endswith(_CHAT_PATHS) and isinstance(body.get("messages"), list):
        for index, message in enumerate(body["messages"]):
            role = message.get("role") if isinstance(message, dict) else None
            if role not in ROLES:
                message = f"Invalid value for messages[{index}].role: {role!r}. Supported: {', '.join(ROLES)}."
                error = {"message": message, "type": "invalid_request_error", "param": f"messages[{index}].role"}
                return body, {"error": {**error, "code": "invalid_value"}}
    body = {
        key: (_neutralize(value) if key in ("messages", "input", "prompt") else value) for key, value in body.items()
    }
    if isinstance(body.get("input"), str):
        body["input"] = neutralize_control_markers(body["input"])
    if isinstance(body.get("prompt"), str):
        body["prompt"] = neutralize_control_markers(body["prompt"])
    if path.endswith(_CHAT_PATHS):
        if "max_completion_tokens" in body and "max_tokens" not in body:
            body["max_tokens"] = body["max_completion_tokens"]
        for key, value in (defaults or {}).items():
            body.setdefault(key, value)
    return body, None


class _Rewriter:
    def __init__(self, defaults: Mapping[str, Any] | None, served_model: str | None):
        self.defaults, self.served_model = defaults, served_model

    def prepare(self, request: httpx.Request) -> tuple[httpx.Request, httpx.Response | None]:
        if request.method != "POST" or "json" not in request.headers.get("content-type", ""):
            return request, None
        try:
            body = json.loads(request.content)
        except ValueError:
            return request, None
        if not isinstance(body, dict):
            return request, None
        new_body, refusal = rewrite_request(request.url.path, body, self.defaults, self.served_model)
        if refusal is not None:
            status = 404 if refusal["error"]["code"] == "model_not_found" else 400
            return request, httpx.Response(status, json=refusal, request=request)
        if new_body == body:
            return request, None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("content-length",)}
        rebuilt = httpx.Request(
            request.method,
            request.url,
            headers=headers,
            content=json.dumps(new_body).encode("utf-8"),
            extensions=request.extensions,
        )
        return rebuilt, None


def _named(error: httpx.ConnectError, request: httpx.Request) -> httpx.ConnectError:
    return httpx.ConnectError(f"Cannot reach {request.url}: {error}", request=request)


class GuardedTransport(httpx.BaseTransport):
    """An httpx transport that rewrites outgoing requests as the module docstring says, then sends them."""

    def __init__(
        self,
        inner: httpx.BaseTransport | None = None,
        *,
        defaults: Mapping[str, Any] | None = None,
        served_model: str | None = None,
    ):
        self._inner = inner or httpx.HTTPTransport()
        self._rewriter = _Rewriter(defaults, served_model)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request, refusal = self._rewriter.prepare(request)
        if refusal is not None:
            return refusal
        try:
            return self._inner.handle_request(request)
        except httpx.ConnectError as error:
            raise _named(error, request) from error

    def close(self) -> None:
        self._inner.close()


class AsyncGuardedTransport(httpx.AsyncBaseTransport):
    """`GuardedTransport` for `openai.AsyncOpenAI`."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport | None = None,
        *,
        defaults: Mapping[str, Any] | None = None,
        served_model: str | None = None,
    ):
        self._inner = inner or httpx.AsyncHTTPTransport()
        self._rewriter = _Rewriter(defaults, served_model)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request, refusal = self._rewriter.prepare(request)
        if refusal is not None:
            return refusal
        try:
            return await self._inner.handle_async_request(request)
        except httpx.ConnectError as error:
            raise _named(error, request) from error

    async def aclose(self) -> None:
        await self._inner.aclose()

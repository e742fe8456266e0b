"""What you send each turn, message by message, and what you append after it.

`show_payload(messages)` prints the list a call would send: each message's role,
length in characters and tokens, and the prompt total (`count_tokens`), so a
learner can watch the history grow turn by turn. `payload_table(messages)` returns
the per-message figures as a pandas table.

`assistant_message(reply)` turns a reply into the only thing worth appending to a
history: ``{"role": "assistant", "content": text}``. Everything else a provider
returns with the message (DeepSeek's `reasoning_content`, `refusal`, `annotations`,
...) stays out, because the SDK would otherwise send it back with every later turn.

`recording_client()` is `get_client()` plus a log of every request body the SDK
actually sent (and every JSON response), so a notebook can assert what went over
the wire rather than what it meant to send.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import openai
import pandas as pd

from .backend import llamacpp
from .backend._http import httpx
from .backend.client import count_text_tokens, count_tokens, current_settings, get_client
from .backend.config import Settings
from .errors import HelpersError
from .types import normalize_messages

KEPT_KEYS = ("role", "content")


class ToolCallTurnError(HelpersError, ValueError):
    """An assistant turn that calls tools cannot be reduced to role and content.

    Its `tool_calls` must be appended with the tool results that answer them, and
    DeepSeek's thinking mode also requires that turn's `reasoning_content` to be sent
    back in every later request. Append such a message whole.
    """


def _as_dict(message: Any) -> dict[str, Any]:
    """A message as a plain dict: SDK objects are dumped the way the SDK sends them."""
    if hasattr(message, "model_dump"):
        return message.model_dump(exclude_none=True)
    if isinstance(message, Mapping):
        return dict(message)
    raise TypeError(f"a message must be a dict or an SDK message object, not {type(message).__name__}")


def payload_table(messages: Sequence[Any], settings: Settings | None = None) -> pd.DataFrame:
    """One row per message: role, characters and tokens of its text, its other keys, and its text.

    `tokens` counts the message's text alone: exactly with the embedded model's tokenizer
    on the embedded backend, estimated for a provider (`helpers.backend.client.count_text_tokens`);
    the prompt total adds the chat template's role markers: that is `count_tokens(messages)`.
    `other keys` names any key besides role and content (e.g. `reasoning_content`),
    and `other tokens` counts the text those keys carry. `messages` is not modified.
    """
    normalized = normalize_messages(messages)  # raises ValueError on a malformed list
    settings = settings or current_settings()
    rows = []
    for raw, message in zip(messages, normalized):
        other = {key: value for key, value in _as_dict(raw).items() if key not in KEPT_KEYS}
        rows.append(
            {
                "role": message["role"],
                "chars": len(message["content"]),
                "tokens": count_text_tokens(message["content"], settings),
                "other keys": ", ".join(other),
                "other tokens": sum(count_text_tokens(v, settings) for v in other.values() if isinstance(v, str)),
                "content": message["content"],
            }
        )
    table = pd.DataFrame(rows, columns=["role", "chars", "tokens", "other keys", "other tokens", "content"])
    table.index.name = "#"
    return table


def _preview(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def show_payload(
    messages: Sequence[Any],
    *,
    width: int = 60,
    settings: Settings | None = None,
    file: TextIO | None = None,
) -> None:
    """Print the list a call would send: one line per message, then the prompt total.

    The last line splits `count_tokens(messages)` into the messages' own text and
    what the chat template adds (role markers, the reply priming and, on SmolLM2, a
    default system message when you send none)::

         #  role        chars  tokens  content
         0  system         35       7  You are a concise travel assistant.
         1  user           29       8  I'm planning a trip to Japan.
        sent: 2 messages, 15 tokens of text + 14 of chat template = 29 prompt tokens (exact: ...)

    A message carrying keys besides role and content is flagged with the tokens
    they hold, since the SDK sends them too.
    """
    settings = settings or current_settings()
    table = payload_table(messages, settings)
    total = count_tokens(messages, settings)
    out = file or sys.stdout
    print(f"{'#':>2}  {'role':<10} {'chars':>6} {'tokens':>7}  content", file=out)
    for index, row in table.iterrows():
        extra = ""
        if row["other keys"]:
            extra = f"  [+ {row['other keys']}: {_plural(int(row['other tokens']), 'token')}]"
        preview = _preview(row["content"], width)
        print(f"{index:>2}  {row['role']:<10} {row['chars']:>6} {row['tokens']:>7}  {preview}{extra}", file=out)
    text_tokens = int(table["tokens"].sum())
    how = "exact" if total.exact else "estimate"
    print(
        f"sent: {_plural(len(table), 'message')}, {_plural(text_tokens, 'token')} of text + "
        f"{int(total) - text_tokens} of chat template = {int(total)} prompt tokens ({how}: {total.method})",
        file=out,
    )
    other_tokens = int(table["other tokens"].sum())
    if other_tokens:
        print(f"also in the request body: {other_tokens} tokens in other keys, not in the count above", file=out)


def _reply_message(reply: Any) -> dict[str, Any]:
    """The assistant message inside a ChatCompletion, a response dict, or a message."""
    if hasattr(reply, "choices"):
        reply = reply.choices[0].message
    elif isinstance(reply, Mapping) and "choices" in reply:
        reply = reply["choices"][0]["message"]
    return _as_dict(reply)


def assistant_message(reply: Any) -> dict[str, str]:
    """The reply as ``{"role": "assistant", "content": text}``: the two keys worth appending.

    `reply` may be a `ChatCompletion`, its `.choices[0].message`, or the same as
    plain JSON (a whole response dict or a message dict). Any other field
    (`reasoning_content`, `refusal`, `annotations`, `audio`, ...) is left out, so
    the next call does not resend it.

    Raises `ToolCallTurnError` for a turn with `tool_calls` (append that message
    whole, with its tool results), and `ValueError` when the content is not text
    (e.g. `None` on a refusal).
    """
    message = _reply_message(reply)
    if message.get("role", "assistant") != "assistant":
        raise ValueError(f"expected an assistant message, got role {message.get('role')!r}")
    if message.get("tool_calls"):
        raise ToolCallTurnError(
            "This assistant turn calls tools: append the message whole (with its tool_calls) followed by "
            "the tool results. On DeepSeek's thinking mode, keep its reasoning_content too: the API requires it "
            "in every later request and answers 400 without it."
        )
    content = message.get("content")
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    raise ValueError(f"the reply has no text content to append (content={content!r})")


@dataclass
class Recorded:
    """What a `recording_client` sent and received, one entry per HTTP call, in order.

    `requests[i]` is the JSON body of the i-th POST to the API (model, messages, max_tokens, ...);
    `responses[i]` is the JSON body that came back, or None for a streamed reply. The calls that only
    measure, at a llama.cpp server's root (`/tokenize`, `/apply-template`, `/completion` for
    `count_tokens` and recall scores), are not requests to the model's API and are not kept.
    """

    requests: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any] | None] = field(default_factory=list)

    @property
    def messages(self) -> list[list[dict[str, Any]]]:
        """The `messages` list of each request, as sent."""
        return [body.get("messages", []) for body in self.requests]

    @staticmethod
    def _kept(request: httpx.Request) -> bool:
        return request.method == "POST" and not llamacpp.is_measuring_path(request.url.path)

    def _keep_request(self, request: httpx.Request) -> None:
        if self._kept(request):
            self.requests.append(json.loads(request.content or b"{}"))

    def _keep_response(self, response: httpx.Response) -> None:
        """Keep a JSON reply whose body was read; a stream is kept as None (reading it would hold back its chunks)."""
        if not self._kept(response.request):
            return
        if response.headers.get("content-type", "").startswith("application/json"):
            self.responses.append(response.json())
        else:
            self.responses.append(None)

    def event_hooks(self) -> dict[str, list[Any]]:
        """httpx `event_hooks` for an `httpx.Client` that records into this log."""

        def keep_response(response: httpx.Response) -> None:
            if response.headers.get("content-type", "").startswith("application/json"):
                response.read()
            self._keep_response(response)

        return {"request": [self._keep_request], "response": [keep_response]}

    def async_event_hooks(self) -> dict[str, list[Any]]:
        """The same hooks for an `httpx.AsyncClient` (async frameworks: the Agents SDK, LangChain's async calls)."""

        async def keep_request(request: httpx.Request) -> None:
            self._keep_request(request)

        async def keep_response(response: httpx.Response) -> None:
            if response.headers.get("content-type", "").startswith("application/json"):
                await response.aread()
            self._keep_response(response)

        return {"request": [keep_request], "response": [keep_response]}


def recording_client(
    settings: Settings | None = None, *, check_connection: bool = True, **client_options: Any
) -> tuple[openai.OpenAI, Recorded]:
    """`get_client()` plus a log of what it sent: the same client, errors and connection check.

    Every POST body the SDK serializes is parsed and kept in `recorded.requests`
    (exactly what went over the wire, after the SDK dumped any message objects), and
    every JSON reply in `recorded.responses`. Extra keyword arguments go to `get_client`.
    """
    recorded = Recorded()
    client = get_client(
        settings,
        check_connection=check_connection,
        http_event_hooks=recorded.event_hooks(),
        **client_options,
    )
    return client, recorded

"""The embedded model for async code: `AsyncEmbeddedTransport` and `get_async_client()`.

Frameworks such as the OpenAI Agents SDK call the model through `openai.AsyncOpenAI`, and
LangChain's `ChatOpenAI` takes an `http_async_client`. `AsyncEmbeddedTransport` serves the same
requests as the sync `EmbeddedTransport` (it delegates to it, so both answer alike) without
blocking the event loop: the model runs in a worker thread while the loop serves other tasks.

A streamed reply is produced by one thread from its first chunk to its last, because the
embedded model holds its lock for the whole stream and a lock is released by the thread that
took it. Chunks reach the event loop through a queue as they are decoded.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
import openai

from ._http import httpx
from .client import EMBEDDED_BASE_URL, check_reachable, current_settings
from .config import Settings
from .embedded import EmbeddedModel, EmbeddedTransport, load_embedded_model

_END = object()  # put on a stream's queue after its last chunk


class _ThreadedStream(httpx.AsyncByteStream):
    """An async byte stream fed by one thread that iterates a sync stream to its end.

    Closing it early (the SDK closes a stream it stops reading) tells the thread to stop
    and close the sync stream from that same thread, which releases the model.
    """

    def __init__(self, sync_stream: httpx.SyncByteStream):
        self._sync_stream = sync_stream
        self._chunks: queue.Queue[Any] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="embedded-stream", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        try:
            for chunk in self._sync_stream:
                if self._stop.is_set():
                    break
                self._chunks.put(chunk)
        except Exception as error:  # noqa: BLE001 - handed to the reader, who raises it in the event loop
            self._chunks.put(error)
        finally:
            self._sync_stream.close()
            self._chunks.put(_END)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            item = await anyio.to_thread.run_sync(self._chunks.get)
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    async def aclose(self) -> None:
        self._stop.set()
        await anyio.to_thread.run_sync(self._thread.join)


class AsyncEmbeddedTransport(httpx.AsyncBaseTransport):
    """An async httpx transport that serves OpenAI's chat-completions API from the embedded model.

    Every request is answered by `EmbeddedTransport.handle_request` in a worker thread: the
    same validation, errors (OpenAI's error bodies, so the SDK raises its own exceptions),
    usage and streaming as the sync client. Concurrent requests are served one at a time by
    the model's lock, in the order they reach it.
    """

    def __init__(self, model: EmbeddedModel | None = None):
        self._sync = EmbeddedTransport(model)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()  # the sync transport reads the body with request.read()
        response = await anyio.to_thread.run_sync(self._sync.handle_request, request)
        if isinstance(response.stream, httpx.AsyncByteStream):  # a JSON body: already whole
            return response
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_ThreadedStream(response.stream),
            request=request,
        )


def get_async_client(
    settings: Settings | None = None, *, check_connection: bool = True, **client_options: Any
) -> openai.AsyncOpenAI:
    """An `openai.AsyncOpenAI` client for the configured backend: the async twin of `get_client()`.

    With no configuration it talks to the embedded SmolLM2 model through
    `AsyncEmbeddedTransport`. For a provider it checks once that the server accepts
    connections, unless `check_connection=False`. Extra keyword arguments go to
    `openai.AsyncOpenAI` (e.g. `timeout`, `max_retries`).
    """
    settings = settings or current_settings()
    if settings.is_embedded:
        client_options.setdefault("max_retries", 0)  # nothing to retry in-process
        return openai.AsyncOpenAI(
            api_key="embedded",
            base_url=EMBEDDED_BASE_URL,
            http_client=httpx.AsyncClient(transport=AsyncEmbeddedTransport(load_embedded_model())),
            **client_options,
        )
    if check_connection:
        check_reachable(settings.base_url or "")
    return openai.AsyncOpenAI(
        api_key=settings.api_key,
        base_url=settings.base_url,
        http_client=httpx.AsyncClient(timeout=60.0),
        **client_options,
    )


__all__ = ["AsyncEmbeddedTransport", "get_async_client"]

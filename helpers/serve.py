"""The class server: `python -m helpers.serve --port 8080 --parallel 8 [--api-key KEY]` (or `make serve`).

The same llama.cpp engine and GGUF as the embedded default, as a server a room shares: N slots decoded
together (continuous batching), each with a context big enough for the longest notebook, the host-memory
prompt cache, an optional API key, and the web UI and `/slots` off. On start it prints the `.env` lines
learners paste; Ctrl-C or SIGTERM stops it. Every notebook's exact measures (token counts, answer
shares) work against it, because it is a llama.cpp server (`helpers.backend.llamacpp`).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

from .backend.config import EMBEDDED_MODEL
from .backend.embedded import DEFAULT_N_CTX, ServerSettings, start_server


def env_lines(base_url: str, api_key: str | None) -> list[str]:
    """The `.env` lines that point a learner's notebooks at this server."""
    return [
        "LLM_PROVIDER=custom",
        f"OPENAI_BASE_URL={base_url}/v1",
        f"LLM_MODEL={EMBEDDED_MODEL}",
        f"LLM_API_KEY={api_key or ''}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve the room (default: this machine)")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--parallel", type=int, default=4, help="slots decoded together")
    parser.add_argument("--ctx", type=int, default=DEFAULT_N_CTX, help="context per slot, in tokens")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--api-key", default=os.environ.get("CLASS_API_KEY"), help="or CLASS_API_KEY")
    args = parser.parse_args(argv)
    if args.parallel < 1 or args.ctx < 512 or not 0 <= args.port <= 65535:
        parser.error("--parallel >= 1, --ctx >= 512 and a --port from 0 to 65535")
    started = time.perf_counter()
    server = start_server(
        ServerSettings(
            n_ctx=args.ctx,
            parallel=args.parallel,
            threads=args.threads,
            host=args.host,
            port=args.port,
            api_key=args.api_key,
            cache_ram_mib=2048,
        )
    )
    print(
        f"llama.cpp server ready in {time.perf_counter() - started:.1f} s at {server.base_url} "
        f"({args.parallel} slots x {args.ctx} tokens, {args.threads} threads). Learners paste into .env:",
        flush=True,
    )
    for line in env_lines(server.base_url, args.api_key):
        print(f"  {line}", flush=True)
    if not args.api_key and args.host not in ("127.0.0.1", "localhost", "::1"):
        print("Warning: no --api-key, so anyone who can reach this address can use it.", file=sys.stderr, flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    print("Stopping the class server.", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

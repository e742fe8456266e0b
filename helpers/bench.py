"""Benchmark of the embedded backend: `python -m helpers.bench` (or `make bench`).

Prints, measured side by side in one run:
1. generation speed through `get_client()` (the course's path: openai SDK -> guarded httpx transport ->
   HTTP on loopback -> llama.cpp's server) against the same engine called directly, one bare HTTP POST with no
   SDK and no guard (`xllamacpp.Server.handle_chat_completions` ran at 1.4 tokens/s here, so not that),
   at each thread count; each setting in a fresh
   process, rounds alternating. The ratio of `get_client()` to the best direct setting is the target
   (at least 0.9);
2. the speed-up the server's prompt cache gives on a growing history: the same final prompt with the
   earlier turns cached (warm) and with `cache_prompt: false` (cold);
3. how long the embedded server takes to start, model loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from .backend.config import EMBEDDED_MODEL

SYSTEM = {"role": "system", "content": "You are a concise travel assistant."}
LONG_ANSWER = {"role": "user", "content": "Describe a two-week first trip to Japan in detail, day by day."}

# A fixed growing history (no model text), so warm and cold runs read identical prompts.
SCRIPTED_TURNS = [
    ("I'm planning a trip to Japan in April.", "April is cherry-blossom season: book early."),
    ("I'm allergic to peanuts.", "Noted: carry a card in Japanese explaining the allergy."),
    ("My budget is 3000 dollars.", "That covers two weeks with mid-range hotels and a rail pass."),
    ("Which cities should I see?", "Tokyo, Kyoto and Osaka make a good first loop."),
    ("How do I get between them?", "The Shinkansen; a 7-day JR Pass covers the loop."),
    ("What should I eat in Osaka?", "Takoyaki and okonomiyaki; ask about peanut oil."),
    ("Any etiquette tips?", "No tipping, quiet on trains, shoes off indoors."),
    ("What about money?", "Carry cash; many small shops do not take cards."),
]


class BenchmarkError(RuntimeError):
    """A measurement could not be made as designed (the figures would mean nothing)."""


def generation_request(tokens: int) -> dict[str, Any]:
    """One reply of exactly `tokens` tokens (end of turn ignored), with the embedded default decoding."""
    from .backend.embedded import default_sampling

    body = {**default_sampling(), "model": EMBEDDED_MODEL, "messages": [SYSTEM, LONG_ANSWER]}
    return {**body, "max_tokens": tokens, "ignore_eos": True}


def _child(path: str, threads: int, tokens: int, repeats: int) -> list[float]:
    """Tokens per second of `repeats` replies, in this (fresh) process: `path` is "client" or "direct"."""
    os.environ["EMBEDDED_THREADS"] = str(threads)
    from .backend.client import get_client
    from .backend.embedded import embedded_server

    body = generation_request(tokens)
    if path == "client":
        client = get_client()
        extra = {k: v for k, v in body.items() if k not in ("model", "messages", "max_tokens")}

        def call() -> int:
            reply = client.chat.completions.create(
                model=body["model"], messages=body["messages"], max_tokens=tokens, extra_body=extra
            )
            return reply.usage.completion_tokens
    else:
        from .backend._http import httpx

        server = embedded_server()
        session = httpx.Client(headers={"Authorization": f"Bearer {server.api_key}"}, timeout=600)

        def call() -> int:
            reply = session.post(f"{server.base_url}/v1/chat/completions", json=body)
            return int(reply.json()["usage"]["completion_tokens"])

    call()  # warm-up: the first reply pays for buffer allocation
    speeds = []
    for _ in range(repeats):
        start = time.perf_counter()
        produced = call()
        if produced != tokens:
            raise BenchmarkError(f"{path}: {produced} tokens generated, {tokens} asked")
        speeds.append(produced / (time.perf_counter() - start))
    return speeds


def _run_child(path: str, threads: int, tokens: int, repeats: int) -> list[float]:
    command = [
        sys.executable,
        "-m",
        "helpers.bench",
        "--child",
        path,
        "--threads",
        str(threads),
        "--tokens",
        str(tokens),
        "--repeats",
        str(repeats),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    if result.returncode:
        raise BenchmarkError(f"{' '.join(command)} failed: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def thread_table(tokens: int, repeats: int, rounds: int) -> dict[str, float]:
    """Median tokens/s of each (path, threads), rounds alternating; prints the table and the ratio."""
    cores = os.cpu_count() or 1
    settings = [("direct", n) for n in sorted({1, cores})] + [("client", cores)]
    speeds: dict[tuple[str, int], list[float]] = {setting: [] for setting in settings}
    for _ in range(rounds):
        for path, threads in settings:
            speeds[(path, threads)] += _run_child(path, threads, tokens, repeats)
    print(f"1. generation, {tokens}-token replies, {rounds} rounds x {repeats} (median tokens/s, one process each):")
    medians = {}
    for (path, threads), values in speeds.items():
        medians[f"{path}/{threads}"] = statistics.median(values)
        label = "get_client() (SDK + HTTP)" if path == "client" else "direct (bare HTTP POST)"
        print(f"   {label:<34} threads {threads}: {medians[f'{path}/{threads}']:6.1f}")
    best_direct = max(value for key, value in medians.items() if key.startswith("direct"))
    ratio = medians[f"client/{cores}"] / best_direct
    print(f"   get_client() / best direct setting = {ratio:.2f} (target >= 0.9)")
    return {**medians, "ratio": ratio}


def prompt_cache(repeats: int) -> dict[str, float]:
    """Seconds for the final prompt of the scripted history, cached (warm) and with the cache off (cold)."""
    from .backend.client import get_client

    client = get_client()
    history = [SYSTEM]
    for user, reply in SCRIPTED_TURNS:
        history += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
    history.append({"role": "user", "content": "Summarise my plan."})
    timings: dict[str, list[float]] = {"warm": [], "cold": []}
    for _ in range(repeats):
        for label, cache in (("cold", False), ("warm", True)):
            client.chat.completions.create(model=EMBEDDED_MODEL, messages=history[:-3], max_tokens=1)  # earlier turns
            start = time.perf_counter()
            client.chat.completions.create(
                model=EMBEDDED_MODEL, messages=history, max_tokens=1, extra_body={"cache_prompt": cache}
            )
            timings[label].append(time.perf_counter() - start)
    warm, cold = statistics.median(timings["warm"]), statistics.median(timings["cold"])
    print(f"2. prompt cache, {len(history)} messages: warm {warm:.3f} s, cold {cold:.3f} s: {cold / warm:.1f}x faster")
    return {"warm": warm, "cold": cold}


def startup() -> float:
    """Seconds from nothing to a started embedded server with the model loaded (a fresh process)."""
    code = "import time; t = time.perf_counter(); from helpers.backend.embedded import embedded_server; "
    code += "embedded_server(); print(time.perf_counter() - t)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    seconds = float(result.stdout.strip().splitlines()[-1])
    print(f"3. the embedded server started, model loaded, in {seconds:.2f} s")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", choices=["client", "direct"], help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.threads, args.tokens, args.repeats)))
        return 0
    thread_table(args.tokens, args.repeats, args.rounds)
    prompt_cache(args.repeats)
    startup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark of the embedded backend: `python -m helpers.bench` (or `make bench`).

Prints, measured side by side in one run:
1. generation speed through `get_client()` (the course's path: openai SDK -> httpx transport ->
   llama-cpp) against the best direct `llama_cpp.Llama` setting, each in a fresh process (thread
   settings and OpenMP's wait policy are per process), rounds alternating; the ratio is the target
   (at least 0.9). `--under-load` repeats it with two processes generating at once, as two
   kernels of a class on a 2-core machine would;
2. the openai-SDK path against `Llama.create_chat_completion` on the same request, in one process;
3. the embedded model's prompt and generation speed in tokens/s;
4. the speed-up a cached prefix gives on a growing history: the same final prompt with the KV
   cache holding the earlier turns (warm) and emptied (cold).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

from .backend.client import get_client
from .backend.config import EMBEDDED_MODEL, resolve_settings
from .backend.embedded import DEFAULT_SEED, DEFAULT_TEMPERATURE, DEFAULT_TOP_P, ThreadSettings, load_embedded_model

SYSTEM = {"role": "system", "content": "You are a concise travel assistant."}
QUESTION = {"role": "user", "content": "I'm planning a trip to Japan. What's the best season to visit?"}
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


def _time(call: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


# --- 1. generation speed: get_client() against direct llama_cpp.Llama settings ---------------------

# Runs in a fresh interpreter: `direct <n_threads> <n_threads_batch> <tokens>` or `client <tokens>`.
# Prints generation tokens/s: the prompt is cached first, so the timed call is (almost) all decoding.
_CHILD = r"""
import json, sys, time
mode, tokens = sys.argv[1], int(sys.argv[-1])
messages = json.loads(sys.argv[-2])
options = dict(max_tokens=tokens, temperature={temperature}, top_p={top_p}, seed={seed})
if mode == "direct":
    from llama_cpp import Llama
    from helpers.backend.embedded import gguf_path
    llm = Llama(model_path=str(gguf_path()), n_ctx=4096, n_threads=int(sys.argv[2]),
                n_threads_batch=int(sys.argv[3]), seed=0, verbose=False)
    def call(max_tokens):
        return llm.create_chat_completion(messages=messages, **dict(options, max_tokens=max_tokens))["usage"]
else:
    from helpers import MODEL, get_client
    client = get_client()
    def call(max_tokens):
        usage = client.chat.completions.create(model=MODEL, messages=messages,
                                               **dict(options, max_tokens=max_tokens)).usage
        return usage.model_dump()
call(1)  # prompt into the KV cache
start = time.perf_counter()
usage = call(tokens)
print(json.dumps({{"tokens_per_s": usage["completion_tokens"] / (time.perf_counter() - start),
                   "completion_tokens": usage["completion_tokens"]}}))
""".format(temperature=DEFAULT_TEMPERATURE, top_p=DEFAULT_TOP_P, seed=DEFAULT_SEED)


@dataclass(frozen=True)
class Setting:
    """One way to run the model: through get_client(), or llama_cpp.Llama directly with given threads."""

    label: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str | None], ...]

    def command(self, tokens: int) -> list[str]:
        return [sys.executable, "-c", _CHILD, *self.args, json.dumps([SYSTEM, LONG_ANSWER]), str(tokens)]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        for name, value in self.env:
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env


def thread_settings() -> list[Setting]:
    """get_client() as configured, and the direct settings of the issue's table (1-2 decode threads, OpenMP)."""
    batch = str(ThreadSettings.from_environment().batch or min(os.cpu_count() or 2, 4))
    settings = [Setting("get_client() (embedded defaults)", ("client",), ())]
    for policy in (None, "PASSIVE"):
        for decode in ("1", "2"):
            settings.append(
                Setting(
                    f"direct Llama n_threads={decode} n_threads_batch={batch} OMP_WAIT_POLICY={policy or 'unset'}",
                    ("direct", decode, batch),
                    (("OMP_WAIT_POLICY", policy),),
                )
            )
    return settings


def _run_children(setting: Setting, copies: int, tokens: int) -> list[float]:
    processes = [
        subprocess.Popen(
            setting.command(tokens),
            env=setting.environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(copies)
    ]
    rates = []
    for process in processes:
        out, err = process.communicate(timeout=600)
        if process.returncode != 0:
            raise BenchmarkError(f"{setting.label} failed (exit {process.returncode}): {err.strip()[-500:]}")
        rates.append(json.loads(out.strip().splitlines()[-1])["tokens_per_s"])
    return rates


def generation_by_setting(repeats: int, tokens: int, copies: int = 1) -> dict[str, float]:
    """Best generation tokens/s of each setting over `repeats` alternating rounds (`copies` processes at once:
    with 2, the figure is the slower process of the pair, what a learner waiting on either kernel sees)."""
    settings = thread_settings()
    best = {setting.label: 0.0 for setting in settings}
    for _ in range(repeats):
        for setting in settings:
            rates = _run_children(setting, copies, tokens)
            best[setting.label] = max(best[setting.label], min(rates))
    return best


def print_generation_table(title: str, rates: dict[str, float]) -> float:
    ours_label = next(label for label in rates if label.startswith("get_client"))
    direct = {label: rate for label, rate in rates.items() if label != ours_label}
    best_label = max(direct, key=direct.get)
    ratio = rates[ours_label] / direct[best_label]
    print(title)
    for label, rate in rates.items():
        print(f"   {rate:6.1f} tokens/s  {label}")
    print(f"   get_client() / best direct ({best_label}): {ratio:.2f}")
    return ratio


# --- 2-4. in this process ---------------------------------------------------------------------------


def sdk_overhead(repeats: int, max_tokens: int) -> dict[str, float]:
    """Alternate direct llama-cpp calls and SDK calls on one request, each from an empty cache."""
    model = load_embedded_model()
    client = get_client(resolve_settings({}))
    messages = [SYSTEM, QUESTION]
    options = {
        "max_tokens": max_tokens,
        "temperature": DEFAULT_TEMPERATURE,
        "top_p": DEFAULT_TOP_P,
        "seed": DEFAULT_SEED,
    }
    direct_times, sdk_times, completion_tokens, prompt_tokens, same_text = [], [], [], 0, 0
    for _ in range(repeats):
        model.empty_cache()
        with model.lock:
            seconds, result = _time(lambda: model.llm.create_chat_completion(messages=messages, **options))
        direct_times.append(seconds)
        model.empty_cache()
        seconds, response = _time(
            lambda: client.chat.completions.create(model=EMBEDDED_MODEL, messages=messages, **options)
        )
        sdk_times.append(seconds)
        same_text += response.choices[0].message.content == result["choices"][0]["message"]["content"]
        completion_tokens.append(response.usage.completion_tokens)
        prompt_tokens = response.usage.prompt_tokens
    direct, sdk = statistics.median(direct_times), statistics.median(sdk_times)
    return {
        "direct_s": direct,
        "sdk_s": sdk,
        "overhead_pct": 100.0 * (sdk - direct) / direct,
        "completion_tokens": statistics.median(completion_tokens),
        "prompt_tokens": prompt_tokens,
        "same_text": same_text,
        "repeats": repeats,
    }


def _history() -> list[dict[str, str]]:
    history = [SYSTEM]
    for user, reply in SCRIPTED_TURNS:
        history += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
    return history


def model_speed(repeats: int, max_tokens: int = 128) -> dict[str, float]:
    """Prompt processing (1-token replies, empty cache) and generation tokens/s, through the SDK."""
    model = load_embedded_model()
    client = get_client(resolve_settings({}))
    long_prompt = _history() + [LONG_ANSWER]
    prompt_rates, generation_rates = [], []
    for _ in range(repeats):
        model.empty_cache()
        prefill_s, prefill = _time(
            lambda: client.chat.completions.create(model=EMBEDDED_MODEL, messages=long_prompt, max_tokens=1)
        )
        prompt_rates.append(prefill.usage.prompt_tokens / prefill_s)
        model.empty_cache()
        total_s, full = _time(
            lambda: client.chat.completions.create(model=EMBEDDED_MODEL, messages=long_prompt, max_tokens=max_tokens)
        )
        generated = full.usage.completion_tokens
        generation_rates.append(max(generated - 1, 1) / max(total_s - prefill_s, 1e-6))
    return {
        "prompt_tokens_per_s": statistics.median(prompt_rates),
        "generation_tokens_per_s": statistics.median(generation_rates),
    }


def cached_prefix_speedup(repeats: int) -> dict[str, float]:
    """Time the final prompt of a growing history with the earlier turns cached, then cold."""
    model = load_embedded_model()
    client = get_client(resolve_settings({}))
    history = _history()
    final = history + [{"role": "user", "content": "Summarise my plan in one sentence."}]

    def ask(messages):
        return client.chat.completions.create(model=EMBEDDED_MODEL, messages=messages, max_tokens=1)

    warm_times, cold_times, cached = [], [], 0
    for _ in range(repeats):
        model.empty_cache()
        ask(history[:-1])  # the previous turn's call leaves its prompt in the KV cache
        seconds, response = _time(lambda: ask(final))
        warm_times.append(seconds)
        cached = response.usage.prompt_tokens_details.cached_tokens
        model.empty_cache()
        seconds, cold = _time(lambda: ask(final))
        cold_times.append(seconds)
        if cold.usage.prompt_tokens_details.cached_tokens != 0:
            raise BenchmarkError("the cold run found tokens in an emptied cache: the comparison would be wrong")
    warm, cold = statistics.median(warm_times), statistics.median(cold_times)
    return {
        "prompt_tokens": response.usage.prompt_tokens,
        "cached_tokens": cached,
        "warm_s": warm,
        "cold_s": cold,
        "speedup": cold / warm,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement (default 5)")
    parser.add_argument("--max-tokens", type=int, default=120, help="reply length for the timed replies (default 120)")
    parser.add_argument(
        "--under-load",
        action="store_true",
        help="also measure the thread settings with two processes generating at once",
    )
    parser.add_argument("--skip-threads", action="store_true", help="leave out measurement 1 (fresh processes)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.max_tokens < 2:
        parser.error("--repeats must be at least 1 and --max-tokens at least 2")

    threads = ThreadSettings.from_environment()
    print(
        f"Embedded {EMBEDDED_MODEL}: {threads.describe()}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; "
        f"sampling temperature {DEFAULT_TEMPERATURE}, top_p {DEFAULT_TOP_P}, seed {DEFAULT_SEED}\n"
    )
    if not args.skip_threads:
        rates = generation_by_setting(args.repeats, args.max_tokens)
        print_generation_table(
            f"1. generation, {args.max_tokens}-token reply, fresh process per run, best of "
            f"{args.repeats} alternating rounds, machine otherwise as it is",
            rates,
        )
        if args.under_load:
            loaded = generation_by_setting(args.repeats, args.max_tokens, copies=2)
            print_generation_table("1b. the same with two processes generating at once (slower of the pair)", loaded)
    load_embedded_model()
    overhead = sdk_overhead(args.repeats, args.max_tokens)
    print(
        f"2. openai SDK path vs llama-cpp create_chat_completion (same request, alternating, empty cache each, "
        f"medians of {args.repeats})"
    )
    print(
        f"   prompt {overhead['prompt_tokens']} tokens, reply {overhead['completion_tokens']:.0f} tokens, same text "
        f"{overhead['same_text']}/{overhead['repeats']}"
    )
    print(
        f"   direct {overhead['direct_s']:.3f} s   via SDK {overhead['sdk_s']:.3f} s   overhead "
        f"{overhead['overhead_pct']:+.1f}%"
    )
    speed = model_speed(args.repeats, max(args.max_tokens, 8))
    print("3. embedded model speed through the SDK")
    print(
        f"   prompt processing {speed['prompt_tokens_per_s']:.0f} tokens/s   generation "
        f"{speed['generation_tokens_per_s']:.0f} tokens/s"
    )
    cache = cached_prefix_speedup(args.repeats)
    print("4. growing history: final prompt with the earlier turns cached vs cold (1-token reply)")
    print(
        f"   {cache['prompt_tokens']} prompt tokens, {cache['cached_tokens']} cached   warm {cache['warm_s']:.3f} s   "
        f"cold {cache['cold_s']:.3f} s   speed-up x{cache['speedup']:.1f}"
    )


if __name__ == "__main__":
    main()

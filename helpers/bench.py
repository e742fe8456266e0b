"""Benchmark of the embedded backend: `python -m helpers.bench` (or `make bench`).

Prints, measured side by side in one run:
1. the openai-SDK path (client -> httpx transport -> llama-cpp) against calling
   `Llama.create_chat_completion` directly, on the same request, alternating;
2. the embedded model's prompt and generation speed in tokens/s;
3. the speed-up a cached prefix gives on a growing history: the same final prompt
   with the KV cache holding the earlier turns (warm) and emptied (cold).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable

from .backend.client import get_client
from .backend.config import EMBEDDED_MODEL, resolve_settings
from .backend.embedded import load_embedded_model

SYSTEM = {"role": "system", "content": "You are a concise travel assistant."}
QUESTION = {"role": "user", "content": "I'm planning a trip to Japan. What's the best season to visit?"}

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


def _time(call: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def sdk_overhead(repeats: int, max_tokens: int) -> dict[str, float]:
    """Alternate direct llama-cpp calls and SDK calls on one request, each from an empty cache."""
    model = load_embedded_model()
    client = get_client(resolve_settings({}))
    messages = [SYSTEM, QUESTION]
    direct_times, sdk_times, completion_tokens, prompt_tokens = [], [], [], 0
    for _ in range(repeats):
        with model.lock:
            model.llm.reset()
            seconds, result = _time(
                lambda: model.llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0, seed=0)
            )
        direct_times.append(seconds)
        model.llm.reset()
        seconds, response = _time(
            lambda: client.chat.completions.create(model=EMBEDDED_MODEL, messages=messages, max_tokens=max_tokens)
        )
        sdk_times.append(seconds)
        assert response.choices[0].message.content == result["choices"][0]["message"]["content"]
        completion_tokens.append(response.usage.completion_tokens)
        prompt_tokens = response.usage.prompt_tokens
    direct, sdk = statistics.median(direct_times), statistics.median(sdk_times)
    return {
        "direct_s": direct,
        "sdk_s": sdk,
        "overhead_pct": 100.0 * (sdk - direct) / direct,
        "completion_tokens": statistics.median(completion_tokens),
        "prompt_tokens": prompt_tokens,
    }


def model_speed(repeats: int) -> dict[str, float]:
    """Prompt processing (1-token replies, empty cache) and generation tokens/s."""
    model = load_embedded_model()
    client = get_client(resolve_settings({}))
    long_prompt = [SYSTEM] + [
        {"role": role, "content": text} for user, reply in SCRIPTED_TURNS for role, text in (("user", user), ("assistant", reply))
    ] + [QUESTION]
    prompt_rates, generation_rates = [], []
    for _ in range(repeats):
        model.llm.reset()
        prefill_s, prefill = _time(lambda: client.chat.completions.create(model=EMBEDDED_MODEL, messages=long_prompt, max_tokens=1))
        prompt_rates.append(prefill.usage.prompt_tokens / prefill_s)
        model.llm.reset()
        total_s, full = _time(lambda: client.chat.completions.create(model=EMBEDDED_MODEL, messages=long_prompt, max_tokens=128))
        generated = full.usage.completion_tokens
        generation_rates.append(max(generated - 1, 1) / max(total_s - prefill_s, 1e-6))
    return {"prompt_tokens_per_s": statistics.median(prompt_rates), "generation_tokens_per_s": statistics.median(generation_rates)}


def cached_prefix_speedup(repeats: int) -> dict[str, float]:
    """Time the final prompt of a growing history with the earlier turns cached, then cold."""
    model = load_embedded_model()
    client = get_client(resolve_settings({}))
    history = [SYSTEM]
    for user, reply in SCRIPTED_TURNS:
        history += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
    final = history + [{"role": "user", "content": "Summarise my plan in one sentence."}]

    def ask(messages):
        return client.chat.completions.create(model=EMBEDDED_MODEL, messages=messages, max_tokens=1)

    warm_times, cold_times, cached = [], [], 0
    for _ in range(repeats):
        model.llm.reset()
        ask(history[:-1])  # the previous turn's call leaves its prompt in the KV cache
        seconds, response = _time(lambda: ask(final))
        warm_times.append(seconds)
        cached = response.usage.prompt_tokens_details.cached_tokens
        model.llm.reset()
        seconds, cold = _time(lambda: ask(final))
        cold_times.append(seconds)
        assert cold.usage.prompt_tokens_details.cached_tokens == 0
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
    parser.add_argument("--repeats", type=int, default=7, help="runs per measurement; medians are reported")
    parser.add_argument("--max-tokens", type=int, default=120, help="reply length for the SDK-overhead turns")
    args = parser.parse_args(argv)

    load_embedded_model()
    print(f"Embedded {EMBEDDED_MODEL}, medians of {args.repeats} runs\n")
    overhead = sdk_overhead(args.repeats, args.max_tokens)
    print("1. openai SDK path vs llama-cpp direct (same request, alternating, empty cache each)")
    print(f"   prompt {overhead['prompt_tokens']} tokens, reply {overhead['completion_tokens']:.0f} tokens")
    print(f"   direct {overhead['direct_s']:.3f} s   via SDK {overhead['sdk_s']:.3f} s   overhead {overhead['overhead_pct']:+.1f}%")
    speed = model_speed(args.repeats)
    print("2. embedded model speed")
    print(f"   prompt processing {speed['prompt_tokens_per_s']:.0f} tokens/s   generation {speed['generation_tokens_per_s']:.0f} tokens/s")
    cache = cached_prefix_speedup(args.repeats)
    print("3. growing history: final prompt with the earlier turns cached vs cold (1-token reply)")
    print(
        f"   {cache['prompt_tokens']} prompt tokens, {cache['cached_tokens']} cached   "
        f"warm {cache['warm_s']:.3f} s   cold {cache['cold_s']:.3f} s   speed-up x{cache['speedup']:.1f}"
    )


if __name__ == "__main__":
    main()

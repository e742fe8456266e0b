"""Benchmark the four history strategies of notebook 03 on the same long conversation.

    python benchmarks/strategies.py                  # 28 turns, the notebook's settings
    python benchmarks/strategies.py --turns 12 --max-tokens 32 --no-quiz

Runs data/long_conversation.json through raw, window, budget and summary (the
summary buffer) one after the other, on the same user turns, and prints in one
table:

- total prompt tokens of each strategy as a ratio to raw (the summary buffer's
  summarizer calls included, prompt and completion);
- the largest and smallest per-turn prompt_tokens after a warm-up (--warmup
  turns), and their ratio: about 1 when the prompt is bounded, large when it grows;
- the share of prompt tokens the server reported as cached (summarizer calls included);
- wall time of the conversation, and of the quiz, per strategy;
- recall of the planted facts: each fact's question appended to what the
  strategy would send next, the answer keyword-matched.

The backend is the embedded model unless `.env` or LLM_PROVIDER selects a provider;
`make bench`-style runs set LLM_PROVIDER=embedded. The loop itself lives in
`helpers.strategies` (shared with examples/trim_history.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from helpers import describe_backend, get_client
from helpers.strategies import (
    LONG_CONVERSATION,
    STRATEGIES,
    StrategySettings,
    load_conversation,
    quiz,
    recall,
    run_strategy,
    spread_after_warmup,
)

DEFAULTS = StrategySettings()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=None, metavar="N", help="user turns to run (default: all 28)")
    parser.add_argument("--max-tokens", type=int, default=DEFAULTS.max_tokens,
                        help=f"reply cap per turn (default {DEFAULTS.max_tokens})")
    parser.add_argument("--keep-turns", type=int, default=DEFAULTS.keep_turns,
                        help=f"window: turns kept (default {DEFAULTS.keep_turns})")
    parser.add_argument("--budget", type=int, default=DEFAULTS.budget,
                        help=f"budget: prompt-token budget (default {DEFAULTS.budget})")
    parser.add_argument("--threshold", type=int, default=DEFAULTS.threshold,
                        help=f"summary: fold past this many verbatim messages (default {DEFAULTS.threshold})")
    parser.add_argument("--summary-keep-turns", type=int, default=DEFAULTS.summary_keep_turns,
                        help=f"summary: turns kept verbatim after a fold (default {DEFAULTS.summary_keep_turns})")
    parser.add_argument("--summary-max-tokens", type=int, default=DEFAULTS.summary_max_tokens,
                        help=f"summary: cap on each summary (default {DEFAULTS.summary_max_tokens})")
    parser.add_argument("--warmup", type=int, default=8, help="turns left out of the per-turn max/min (default 8)")
    parser.add_argument("--quiz-max-tokens", type=int, default=40, help="answer cap per quiz question (default 40)")
    parser.add_argument("--no-quiz", action="store_true", help="skip the planted-facts quiz")
    parser.add_argument("--conversation", type=Path, default=LONG_CONVERSATION, help="scripted conversation JSON")
    args = parser.parse_args(argv)
    available = len(load_conversation(args.conversation)["turns"])
    args.turns = available if args.turns is None else args.turns
    if not 1 <= args.turns <= available:
        parser.error(f"--turns must be between 1 and {available}, not {args.turns}")
    if not 0 <= args.warmup < args.turns:
        parser.error(f"--warmup must be at least 0 and less than --turns ({args.turns}), not {args.warmup}")
    for name in ("max_tokens", "keep_turns", "budget", "summary_keep_turns", "summary_max_tokens", "quiz_max_tokens"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.threshold < 2 * args.summary_keep_turns:
        parser.error(f"--threshold must be at least 2 x --summary-keep-turns ({2 * args.summary_keep_turns})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    conversation = load_conversation(args.conversation)
    settings = StrategySettings(
        max_tokens=args.max_tokens,
        keep_turns=args.keep_turns,
        summary_keep_turns=args.summary_keep_turns,
        budget=args.budget,
        threshold=args.threshold,
        summary_max_tokens=args.summary_max_tokens,
    )
    client = get_client()
    print(describe_backend())
    print(
        f"{args.turns} turns of {args.conversation.name}, replies capped at {settings.max_tokens} tokens; "
        f"window: last {settings.keep_turns} turns; budget: {settings.budget} prompt tokens; summary: fold past "
        f"{settings.threshold} messages, keep {settings.summary_keep_turns} turns, summaries capped at "
        f"{settings.summary_max_tokens} tokens",
        flush=True,
    )
    turns = conversation["turns"][: args.turns]
    runs, quizzes, quiz_seconds = {}, {}, {}
    for strategy in STRATEGIES:
        runs[strategy] = run_strategy(client, strategy, conversation["system"], turns, settings)
        if not args.no_quiz:
            start = time.perf_counter()
            quizzes[strategy] = quiz(client, runs[strategy], conversation["facts"], args.quiz_max_tokens)
            quiz_seconds[strategy] = time.perf_counter() - start
        print(f"  ran {strategy} ({runs[strategy].seconds:.1f} s)", flush=True)

    raw_total = runs["raw"].total_tokens
    after = f"max/min after turn {args.warmup}"
    header = (f"{'strategy':<9} {'prompt tok':>10} {'summarizer':>10} {'total':>7} {'vs raw':>7} "
              f"{after:>27} {'cached':>7} {'run s':>6} {'quiz s':>6}  recall")
    print()
    print(header)
    print("-" * len(header))
    for strategy, run in runs.items():
        high, low = spread_after_warmup(run, args.warmup)
        spread = f"{high}/{low} (x{high / low:.2f})"
        prompt_all = run.prompt_tokens + sum(row["prompt_tokens"] for row in run.summarizer_rows)
        cached = (run.cached_tokens + sum(row["cached_tokens"] for row in run.summarizer_rows)) / prompt_all
        if strategy in quizzes:
            found, asked = recall(quizzes[strategy])
            names = ", ".join(row["fact"] for row in quizzes[strategy] if row["answer has it"]) or "none"
            recalled = f"{found}/{asked} ({names})"
            quiz_time = f"{quiz_seconds[strategy]:.1f}"
        else:
            recalled, quiz_time = "-", "-"
        print(
            f"{strategy:<9} {run.prompt_tokens:>10,} {run.summarizer_tokens:>10,} {run.total_tokens:>7,} "
            f"{run.total_tokens / raw_total:>7.2f} {spread:>27} {cached:>7.0%} {run.seconds:>6.1f} {quiz_time:>6}  {recalled}"
        )
    summary_run = runs["summary"]
    print()
    print(f"summary buffer: {len(summary_run.summarizer_rows)} summarizer calls "
          f"(at turns {', '.join(str(r['turn']) for r in summary_run.summarizer_rows) or 'none'})")
    if summary_run.summary:
        print(f"final summary: {summary_run.summary}")
    if quizzes:
        print("facts in what was sent with the question (not the answer): " + "; ".join(
            f"{strategy} {sum(r['in what was sent'] for r in rows)}/{len(rows)}" for strategy, rows in quizzes.items()
        ))
    return 0


if __name__ == "__main__":
    sys.exit(main())

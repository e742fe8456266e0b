"""Benchmark the history strategies of notebook 03 on whole conversations: cost, and what each remembers.

    python benchmarks/strategies.py                                   # both data conversations
    python benchmarks/strategies.py --conversation my_chat.json       # any file in the same shape
    python benchmarks/strategies.py --skip-decoding --designs statements

For each conversation (data/long_conversation.json and data/second_conversation.json by default):

1. Decoding: the conversation played with the whole history, once greedy without DRY or a
   repeat penalty (the project's old default) and once with the embedded defaults (temperature 0.2, top_p 0.9,
   seed 0, DRY, repeat penalty); the share of replies that repeat a 6-word run from themselves or an earlier
   reply.
2. Strategies on that recording (notebook 03's replay: the same turns and replies for all):
   raw, window (last 3 turns), budget (400 tokens) and the summary buffer with each summarizer
   design: total tokens against raw (summarizer included), max/min prompt after the warm-up,
   the cached share a server would report, the planted facts in what was sent, in the final
   summary, their probability share corrected for guessing, and in a short reply's words.

Everything printed is measured in this run; nothing is read from a file of results.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from helpers import describe_backend, get_client
from helpers.history import BufferSettings, FoldNotes, JudgedNotes, RewriteSummary, UserStatements
from helpers.strategies import (
    LONG_CONVERSATION,
    SECOND_CONVERSATION,
    ConversationFileError,
    StrategySettings,
    load_conversation,
    looping_share,
    mentions,
    recall_rows,
    record,
    replay_strategy,
    spread_after_warmup,
)

DESIGNS = {
    "rewrite": lambda: RewriteSummary(),
    "rewrite-user": lambda: RewriteSummary(roles=("user",)),
    "note-per-fold": lambda: FoldNotes(),
    "judged": lambda: JudgedNotes(),
    "statements": lambda: UserStatements(),
}
DEFAULT_DESIGN = "statements"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--conversation",
        type=Path,
        action="append",
        default=None,
        help="scripted conversation JSON (repeatable; default: both data conversations)",
    )
    parser.add_argument("--turns", type=int, default=None, metavar="N", help="play only the first N turns")
    parser.add_argument("--max-tokens", type=int, default=40, help="reply cap per turn (default 40)")
    parser.add_argument("--window-turns", type=int, default=3, help="window: turns kept (default 3)")
    parser.add_argument("--budget", type=int, default=400, help="budget: prompt tokens (default 400)")
    parser.add_argument("--threshold", type=int, default=8, help="summary: fold past this many messages (default 8)")
    parser.add_argument("--keep-turns", type=int, default=2, help="summary: turns kept verbatim (default 2)")
    parser.add_argument(
        "--designs",
        nargs="+",
        choices=sorted(DESIGNS),
        default=list(DESIGNS),
        help="summarizer designs to compare (default: all)",
    )
    parser.add_argument("--warmup", type=int, default=8, help="turns left out of the per-turn max/min (default 8)")
    parser.add_argument("--skip-decoding", action="store_true", help="leave out the greedy recording")
    args = parser.parse_args(argv)
    for name in ("max_tokens", "window_turns", "budget", "keep_turns", "turns"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    try:
        args.buffer = BufferSettings(args.threshold, args.keep_turns)
    except ValueError as error:
        parser.error(str(error))
    args.conversation = args.conversation or [LONG_CONVERSATION, SECOND_CONVERSATION]
    return args


def shares_text(rows: list[dict]) -> str:
    values = [row["share"] for row in rows]
    return " ".join("-" if value is None else f"{value:.2f}" for value in values)


def bench_conversation(client, path: Path, args: argparse.Namespace) -> None:
    conversation = load_conversation(path)
    if args.turns is not None:
        conversation = replace(conversation, turns=conversation.turns[: args.turns])
    facts = conversation.facts
    print(f"\n=== {path.name}: {len(conversation.turns)} turns, facts {', '.join(facts)} ===", flush=True)
    if not args.skip_decoding:
        start = time.perf_counter()
        plain = {"dry_multiplier": 0, "repeat_penalty": 1.0}  # no penalty at all: the old default
        before = _replies(client, conversation, args.max_tokens, temperature=0, extra_body=plain)
        print(
            f"decoding  greedy, no penalties (before): {looping_share(before):.0%} of replies repeat a 6-word run "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    recording = record(client, conversation, args.max_tokens)
    replies = [m["content"] for m in recording.history if m["role"] == "assistant"]
    print(
        f"decoding  defaults (after): {looping_share(replies):.0%} of replies repeat a 6-word run "
        f"({recording.seconds:.0f} s)",
        flush=True,
    )

    settings = StrategySettings(args.max_tokens, args.window_turns, args.budget, args.buffer)
    runs = {name: replay_strategy(client, name, recording, settings) for name in ("raw", "window", "budget")}
    for design in args.designs:
        start = time.perf_counter()
        runs[f"summary: {design}"] = replay_strategy(
            client, "summary", recording, settings, summarizer=DESIGNS[design]()
        )
        runs[f"summary: {design}"].seconds = time.perf_counter() - start
    raw_total = runs["raw"].total_tokens
    header = (
        f"{'strategy':<24} {'total':>7} {'summ.':>6} {'vs raw':>6} {'max/min after ' + str(args.warmup):>18} "
        f"{'cached':>6}  {'sent':>4} {'kept':>4}  {'share per fact':<29} {'words':>5}"
    )
    print(header)
    print("-" * len(header))
    for name, run in runs.items():
        rows = recall_rows(client, run, facts)
        high, low = spread_after_warmup(run, min(args.warmup, len(run.rows) - 1))
        prompt_all = run.prompt_tokens + sum(r["prompt_tokens"] for r in run.summarizer_rows)
        cached = (run.cached_tokens + sum(r["cached_tokens"] for r in run.summarizer_rows)) / prompt_all
        kept = f"{sum(mentions(run.summary, fact) for fact in facts.values())}" if name.startswith("summary") else "-"
        spread, sent = f"{high}/{low} (x{high / low:.2f})", sum(r["in what was sent"] for r in rows)
        print(
            f"{name:<24} {run.total_tokens:>7,} {run.summarizer_tokens:>6,} {run.total_tokens / raw_total:>6.2f} "
            f"{spread:>18} {cached:>6.0%}  {sent:>4} {kept:>4}  {shares_text(rows):<29} "
            f"{sum(r['reply names it'] for r in rows):>5}",
            flush=True,
        )
    for name, run in runs.items():
        if name.startswith("summary"):
            per_fold = [sum(mentions(text, fact) for fact in facts.values()) for text in run.summaries]
            print(
                f"  {name}: facts in the summary after each fold {per_fold}; final: "
                f"{' | '.join(run.summary.splitlines())[:220]}"
            )


def _replies(client, conversation, max_tokens: int, **options) -> list[str]:
    from helpers import MODEL
    from helpers.payload import assistant_message

    history, replies = [conversation.system_message], []
    for text in conversation.turns:
        history.append({"role": "user", "content": text})
        response = client.chat.completions.create(model=MODEL, messages=history, max_tokens=max_tokens, **options)
        history.append(assistant_message(response))
        replies.append(history[-1]["content"])
    return replies


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    client = get_client()
    print(describe_backend())
    print(
        f"replies capped at {args.max_tokens} tokens; window {args.window_turns} turns; budget {args.budget} "
        f"tokens; summary: fold past {args.buffer.threshold} messages, keep {args.buffer.keep_turns} turns. "
        "share = the right answer's probability share among the fact's candidates, corrected for guessing; "
        "sent/kept/words = facts in what was sent / in the final summary / named in a short reply."
    )
    try:
        for path in args.conversation:
            bench_conversation(client, path, args)
    except ConversationFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

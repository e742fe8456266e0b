"""The history strategies of notebook 03, as a script: one strategy, one long conversation.

Each turn appends the user message to the history, chooses what to send with the
strategy, sends it, and appends the reply (role and content only). It prints each
turn's prompt_tokens, and a total at the end:

    raw      send the whole history (grows every turn)
    window   the system message and the last --keep-turns turns
    budget   the newest turns that fit in --budget prompt tokens
    summary  a running summary (system message) + the last --keep-turns turns,
             folded once the verbatim turns pass --threshold messages (by default
             the user's own statements, copied; --summarizer rewrite asks the model
             to rewrite the summary); the summarizer's own tokens count in the total

    python examples/trim_history.py --strategy window --turns 10
    python examples/trim_history.py --strategy summary --quiz    # then ask the planted facts back

The backend is the embedded model unless `.env` or LLM_PROVIDER selects a provider.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from helpers import HelpersError, describe_backend, get_client
from helpers.history import BufferSettings, RewriteSummary, UserStatements
from helpers.strategies import (
    LONG_CONVERSATION,
    STRATEGIES,
    StrategySettings,
    load_conversation,
    recall_rows,
    run_strategy,
)

DEFAULT_CONVERSATION = LONG_CONVERSATION
DEFAULTS = StrategySettings()
SUMMARIZERS = {"statements": UserStatements, "rewrite": RewriteSummary}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategy", choices=STRATEGIES, default="raw", help="what to send each turn (default raw)")
    parser.add_argument("--turns", type=int, default=None, metavar="N", help="stop after N user turns (default: all)")
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=DEFAULTS.max_tokens,
        help=f"reply length cap per turn (default {DEFAULTS.max_tokens})",
    )
    parser.add_argument(
        "--keep-turns",
        type=int,
        default=None,
        metavar="K",
        help=f"turns kept verbatim (default {DEFAULTS.window_turns} for window, "
        f"{DEFAULTS.buffer.keep_turns} for summary)",
    )
    parser.add_argument(
        "--budget",
        type=int,
        default=DEFAULTS.budget,
        help=f"prompt-token budget for --strategy budget (default {DEFAULTS.budget})",
    )
    parser.add_argument(
        "--threshold",
        type=int,
        default=DEFAULTS.buffer.threshold,
        help=f"summary: fold past this many verbatim messages (default {DEFAULTS.buffer.threshold})",
    )
    parser.add_argument(
        "--summarizer",
        choices=sorted(SUMMARIZERS),
        default="statements",
        help="summary: how old turns are folded (default statements)",
    )
    parser.add_argument("--quiz", action="store_true", help="at the end, ask the planted facts back and report recall")
    parser.add_argument("--conversation", type=Path, default=DEFAULT_CONVERSATION, help="scripted conversation JSON")
    args = parser.parse_args(argv)

    try:
        conversation = load_conversation(args.conversation)
    except HelpersError as error:
        parser.error(str(error))
    available = len(conversation.turns)
    turns = args.turns if args.turns is not None else available
    if not 1 <= turns <= available:
        parser.error(f"--turns must be between 1 and {available} (the conversation's user turns), not {turns}")
    if args.max_tokens < 1:
        parser.error("--max-tokens must be at least 1")
    if args.keep_turns is not None and args.keep_turns < 1:
        parser.error("--keep-turns must be at least 1")
    if args.budget < 1:
        parser.error("--budget must be at least 1")
    buffer = DEFAULTS.buffer
    if args.strategy == "summary":
        try:
            buffer = BufferSettings(args.threshold, args.keep_turns or DEFAULTS.buffer.keep_turns)
        except ValueError as error:
            parser.error(str(error))
    settings = StrategySettings(
        max_tokens=args.max_tokens,
        window_turns=args.keep_turns or DEFAULTS.window_turns,
        budget=args.budget,
        buffer=buffer,
    )

    client = get_client()
    print(describe_backend())
    print(f"strategy: {args.strategy}, {turns} turns, replies capped at {args.max_tokens} tokens")

    def report(row: dict[str, Any]) -> None:
        extra = f" summarizer_tokens={row['summarizer_tokens']}" if row["summarizer_tokens"] else ""
        cached = "n/a" if row["cached_tokens"] is None else row["cached_tokens"]
        print(
            f"turn {row['turn']:>2}: prompt_tokens={row['prompt_tokens']:>5} cached_tokens={cached:>5} "
            f"completion_tokens={row['completion_tokens']:>3} messages_sent={row['messages sent']:>2}{extra}",
            flush=True,
        )

    try:
        run = run_strategy(
            client,
            args.strategy,
            conversation,
            settings,
            report,
            turns=turns,
            summarizer=SUMMARIZERS[args.summarizer](),
        )
    except HelpersError as error:  # e.g. HistoryTooLongError: the budget cannot hold even the newest turn
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(
        f"total: {turns} turns, {run.prompt_tokens} prompt tokens sent, {run.summarizer_tokens} summarizer tokens, "
        f"{run.total_tokens} in all"
    )
    if run.summary:
        print(f"summary: {run.summary}")
    if args.quiz:
        rows = recall_rows(client, run, conversation.facts)
        for row in rows:
            share = "n/a" if row["share"] is None else f"{row['share']:.2f}"
            print(
                f"quiz {row['fact']}: in what was sent={row['in what was sent']} share={share} "
                f"reply names it={row['reply names it']} | {row['reply'][:80]}"
            )
        print(
            f"recall: {sum(r['reply names it'] for r in rows)} of {len(rows)} facts named in the replies, "
            f"{sum(r['in what was sent'] for r in rows)} sent"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

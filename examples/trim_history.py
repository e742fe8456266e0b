"""The history strategies of notebook 03, as a script: one strategy, one long conversation.

Each turn appends the user message to the history, chooses what to send with the
strategy, sends it, and appends the reply (role and content only). It prints each
turn's prompt_tokens, and a total at the end:

    raw      send the whole history (grows every turn)
    window   the system message and the last --keep-turns turns
    budget   the newest turns that fit in --budget prompt tokens
    summary  a running summary (system message) + the last --keep-turns turns,
             folded by a summarizer call once the verbatim turns pass --threshold
             messages; the summarizer's own tokens are counted in the total

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
from helpers.strategies import (
    LONG_CONVERSATION,
    STRATEGIES,
    StrategySettings,
    load_conversation,
    quiz,
    recall,
    run_strategy,
)

DEFAULT_CONVERSATION = LONG_CONVERSATION
DEFAULTS = StrategySettings()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategy", choices=STRATEGIES, default="raw", help="what to send each turn (default raw)")
    parser.add_argument("--turns", type=int, default=None, metavar="N", help="stop after N user turns (default: all)")
    parser.add_argument("--max-tokens", type=int, default=DEFAULTS.max_tokens,
                        help=f"reply length cap per turn (default {DEFAULTS.max_tokens})")
    parser.add_argument("--keep-turns", type=int, default=None, metavar="K",
                        help=f"turns kept verbatim (default {DEFAULTS.keep_turns} for window, "
                             f"{DEFAULTS.summary_keep_turns} for summary)")
    parser.add_argument("--budget", type=int, default=DEFAULTS.budget,
                        help=f"prompt-token budget for --strategy budget (default {DEFAULTS.budget})")
    parser.add_argument("--threshold", type=int, default=DEFAULTS.threshold,
                        help=f"summary: fold past this many verbatim messages (default {DEFAULTS.threshold})")
    parser.add_argument("--quiz", action="store_true", help="at the end, ask the planted facts back and report recall")
    parser.add_argument("--conversation", type=Path, default=DEFAULT_CONVERSATION, help="scripted conversation JSON")
    args = parser.parse_args(argv)

    conversation = load_conversation(args.conversation)
    available = len(conversation["turns"])
    turns = args.turns if args.turns is not None else available
    if not 1 <= turns <= available:
        parser.error(f"--turns must be between 1 and {available} (the conversation's user turns), not {turns}")
    if args.max_tokens < 1:
        parser.error("--max-tokens must be at least 1")
    if args.keep_turns is not None and args.keep_turns < 1:
        parser.error("--keep-turns must be at least 1")
    if args.budget < 1:
        parser.error("--budget must be at least 1")
    keep = args.keep_turns
    summary_keep = keep if keep and args.strategy == "summary" else DEFAULTS.summary_keep_turns
    if args.strategy == "summary" and args.threshold < 2 * summary_keep:
        parser.error(f"--threshold must be at least 2 x keep-turns ({2 * summary_keep}) for the summary strategy")
    settings = StrategySettings(
        max_tokens=args.max_tokens,
        budget=args.budget,
        threshold=args.threshold if args.strategy == "summary" else max(args.threshold, 2 * summary_keep),
        keep_turns=keep or DEFAULTS.keep_turns,
        summary_keep_turns=summary_keep,
    )

    client = get_client()
    print(describe_backend())
    print(f"strategy: {args.strategy}, {turns} turns, replies capped at {args.max_tokens} tokens")

    def report(row: dict[str, Any]) -> None:
        extra = f" summarizer_tokens={row['summarizer_tokens']}" if row["summarizer_tokens"] else ""
        print(f"turn {row['turn']:>2}: prompt_tokens={row['prompt_tokens']:>5} cached_tokens={row['cached_tokens']:>5} "
              f"completion_tokens={row['completion_tokens']:>3} messages_sent={row['messages sent']:>2}{extra}", flush=True)

    try:
        run = run_strategy(client, args.strategy, conversation["system"], conversation["turns"][:turns], settings, report)
    except HelpersError as error:  # e.g. HistoryTooLongError: the budget cannot hold even the newest turn
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(f"total: {turns} turns, {run.prompt_tokens} prompt tokens sent, {run.summarizer_tokens} summarizer tokens, "
          f"{run.total_tokens} in all")
    if run.summary:
        print(f"summary: {run.summary}")
    if args.quiz:
        rows = quiz(client, run, conversation["facts"])
        for row in rows:
            print(f"quiz {row['fact']}: in what was sent={row['in what was sent']} answer has it={row['answer has it']} "
                  f"| {' '.join(row['answer'].split())[:80]}")
        found, asked = recall(rows)
        print(f"recall: {found} of {asked} facts")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The stateless chat loop of notebook 01, as a script.

The API keeps nothing between calls, so each turn appends your message to a
history list, sends the whole list, and appends the reply (role and content
only). Each turn prints its prompt_tokens: watch them grow.

    python examples/chat_loop.py                 # the scripted trip conversation
    python examples/chat_loop.py --turns 3       # only its first 3 turns
    python examples/chat_loop.py --interactive   # type your own turns (empty line ends)

The backend is the embedded model unless `.env` or LLM_PROVIDER selects a provider.
"""

from __future__ import annotations

import argparse
import sys
from itertools import islice
from pathlib import Path
from typing import Iterator

from helpers import MODEL, describe_backend, get_client
from helpers.payload import assistant_message
from helpers.strategies import ConversationFileError, load_conversation

DEFAULT_CONVERSATION = Path(__file__).resolve().parent.parent / "data" / "trip_conversation.json"


def scripted_turns(path: Path, limit: int | None) -> tuple[str, list[str]]:
    """The system message and the user turns of a scripted conversation file (`ConversationFileError` if malformed)."""
    conversation = load_conversation(path)
    turns = list(conversation.turns)
    return conversation.system, turns[:limit] if limit is not None else turns


def typed_turns() -> Iterator[str]:
    """User turns read from the keyboard until an empty line or end of input."""
    while True:
        try:
            text = input("you> ").strip()
        except EOFError:
            print()
            return
        if not text:
            return
        yield text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--turns", type=int, default=None, metavar="N", help="stop after N turns (default: all scripted turns)"
    )
    parser.add_argument(
        "--interactive", action="store_true", help="type the user turns instead (input(); empty line ends)"
    )
    parser.add_argument("--max-tokens", type=int, default=80, help="reply length cap per turn (default 80)")
    parser.add_argument("--conversation", type=Path, default=DEFAULT_CONVERSATION, help="scripted conversation JSON")
    args = parser.parse_args(argv)
    if args.turns is not None and args.turns < 1:
        parser.error("--turns must be at least 1")

    try:
        system, scripted = scripted_turns(args.conversation, args.turns)
    except ConversationFileError as error:
        parser.error(str(error))
    client = get_client()
    print(describe_backend())

    history = [{"role": "system", "content": system}]
    total_prompt = 0
    user_turns = islice(typed_turns(), args.turns) if args.interactive else scripted
    for turn, user_text in enumerate(user_turns, start=1):
        history.append({"role": "user", "content": user_text})  # 1. append the user turn
        response = client.chat.completions.create(
            model=MODEL, messages=history, max_tokens=args.max_tokens
        )  # 2. send it all
        history.append(assistant_message(response))  # 3. append the reply: role and content only
        usage = response.usage
        total_prompt += usage.prompt_tokens
        print(
            f"\n--- turn {turn}: prompt_tokens={usage.prompt_tokens} completion_tokens={usage.completion_tokens} "
            f"(messages sent: {len(history) - 1})"
        )
        if not args.interactive:
            print(f"user: {user_text}")
        print(f"assistant: {history[-1]['content']}")
    turns = len(history) // 2
    print(f"\n{turns} turn{'' if turns == 1 else 's'}, {total_prompt} prompt tokens sent in total")
    return 0


if __name__ == "__main__":
    sys.exit(main())

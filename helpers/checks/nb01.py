"""Check functions for the "Prove statelessness" challenges in notebooks 01 and 02.

Each check either passes (it prints what it verified and returns the figures) or
raises `ChallengeNotPassed` (an `AssertionError`) whose message is a hint. The
checks look at what was actually sent, through `helpers.payload.recording_client`,
and at token counts, never at the wording of the model's reply. Read one with
`check_chat_turn??` in a notebook.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import openai

from ..backend.client import count_tokens, current_settings
from ..payload import recording_client
from . import ChallengeNotPassed
from . import require as _require

SYSTEM = {"role": "system", "content": "You are a concise travel assistant."}
SCRIPTED_TURNS = (
    "I'm planning a trip to Japan.",
    "What's the best season to visit?",
    "And what should I pack for that season?",
    "Which cities should I see first?",
    "How do I get between those cities?",
    "Is a rail pass worth it for that route?",
)


def _is_message_list(messages: Any) -> bool:
    return (
        isinstance(messages, list)
        and bool(messages)
        and all(isinstance(m, dict) and "role" in m and isinstance(m.get("content"), str) for m in messages)
    )


def check_server_forgets(
    tell: list[dict[str, str]], ask: list[dict[str, str]], *, max_tokens: int = 20
) -> dict[str, int]:
    """Challenge 1 (notebook 01): prove that the server keeps nothing between calls.

    `tell` is a message list that states a fact ("My name is Ada..."); `ask` is a
    separate message list asking about it, without the fact. The check sends `ask`,
    then `tell`, then `ask` again, and passes when the server billed the second `ask`
    exactly as the first: whatever it was told in between added no token to it.
    Returns the prompt tokens of each call.
    """
    _require(_is_message_list(tell), "tell must be a non-empty list of {'role': ..., 'content': '...'} dicts.")
    _require(_is_message_list(ask), "ask must be a non-empty list of {'role': ..., 'content': '...'} dicts.")
    _require(tell[-1]["role"] == "user" and ask[-1]["role"] == "user", "End both lists with a user message.")
    told = {m["content"].strip() for m in tell if m["role"] == "user"}
    leaked = [m["content"] for m in ask if m["content"].strip() in told]
    if leaked:
        raise ChallengeNotPassed(
            f"ask repeats what tell said ({leaked[0]!r}): then the model sees the fact because you sent it. "
            "Ask in a fresh list that does not contain tell's messages."
        )

    client, recorded = recording_client()
    model = current_settings().model

    def send(messages: list[dict[str, str]]) -> int:
        return client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens).usage.prompt_tokens

    before = send(ask)
    told_tokens = send(tell)
    after = send(ask)
    _require(recorded.messages[2] == ask, "The third request should have been exactly ask.")
    _require(
        after == before,
        f"The second ask was billed {after} prompt tokens, the first {before}. Send the same ask list both times.",
    )
    predicted = count_tokens(ask)
    if predicted.exact:
        _require(int(predicted) == before, f"count_tokens(ask) = {int(predicted)} but the server billed {before}.")
    print(
        f"Passed: ask was billed {before} prompt tokens before and {after} after the server read tell "
        f"({told_tokens} tokens). It kept nothing: the only memory is the list you send."
    )
    return {"ask_before": before, "tell": told_tokens, "ask_after": after}


ChatTurn = Callable[[openai.OpenAI, list[dict[str, str]], str], list[dict[str, str]]]


def check_chat_turn(chat_turn: ChatTurn, *, turns: Sequence[str] = SCRIPTED_TURNS[:2]) -> list[dict[str, str]]:
    """Challenge 2 (notebook 01): one correct turn of the loop, as a function.

    `chat_turn(client, history, user_text)` must call the API once with the whole
    history plus the new user message, and return a *new* list: the history, the
    user message, and the reply as ``{"role": "assistant", "content": text}``. The
    check runs it for `turns` from a system message, on a client that records every
    request, and returns the final history.
    """
    client, recorded = recording_client()
    history: list[dict[str, str]] = [dict(SYSTEM)]
    for number, user_text in enumerate(turns, start=1):
        before = copy.deepcopy(history)
        calls = len(recorded.requests)
        result = chat_turn(client, history, user_text)
        _require(
            history == before,
            f"Turn {number}: chat_turn changed the list it was given. Return a new list, e.g. history + [...].",
        )
        _require(
            isinstance(result, list),
            f"Turn {number}: chat_turn returned {type(result).__name__}; return the new history (a list).",
        )
        _require(
            len(recorded.requests) == calls + 1,
            f"Turn {number}: chat_turn made {len(recorded.requests) - calls} API calls; "
            "make exactly one, with the client it was given.",
        )
        sent = recorded.messages[-1]
        user_message = {"role": "user", "content": user_text}
        _require(
            sent == history + [user_message],
            f"Turn {number}: the request carried {len(sent)} messages, not the {len(history) + 1} of history + "
            "the new user message. Send the whole history every time: the server has nothing else.",
        )
        _require(
            len(result) == len(history) + 2,
            f"Turn {number}: return history + [user message, assistant message] ({len(history) + 2} messages), "
            f"got {len(result)}.",
        )
        _require(
            result[: len(history) + 1] == history + [user_message],
            f"Turn {number}: keep the earlier history and the user message unchanged, in order.",
        )
        reply = result[-1]
        _require(
            isinstance(reply, dict) and set(reply) == {"role", "content"} and reply.get("role") == "assistant",
            f"Turn {number}: append exactly {{'role': 'assistant', 'content': text}}, got keys "
            f"{sorted(reply) if isinstance(reply, dict) else reply!r}. "
            "Appending response.choices[0].message whole would carry fields such as reasoning_content.",
        )
        answered = (recorded.responses[-1] or {}).get("choices", [{}])[0].get("message", {}).get("content")
        _require(
            reply["content"] == answered, f"Turn {number}: the assistant message should hold the text the API returned."
        )
        history = result
    sizes = ", ".join(str(len(m)) for m in recorded.messages)
    print(
        f"Passed: {len(turns)} turns, each sent the whole history ({sizes} messages) and appended role + content only."
    )
    return history

"""Check functions for the challenges in notebook 07 (frameworks and provider-held state).

Each check either passes (it prints what it verified and returns the figures) or raises
`ChallengeNotPassed` (an `AssertionError`) whose message is a hint. The checks look at what was
sent (recorded by `helpers.frameworks.recording_connection`) and at token counts, never at the
wording of the model's replies. Read one with `check_summary_session??` in a notebook.

- `check_whole_turns(whole_turns)`: a `session_input_callback` that windows by whole turns.
  No model call.
- `await check_summary_session(make_callback)`: a `session_input_callback` that sends a running
  summary plus the recent turns instead of the whole history. Runs the real OpenAI Agents SDK
  on the configured backend (a few short calls); it is async, so `await` it in a notebook.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from ..backend.client import count_tokens, current_settings
from ..frameworks import items_to_messages, recording_connection
from . import ChallengeNotPassed
from . import require as _require

__all__ = ["ChallengeNotPassed", "check_summary_session", "check_whole_turns"]

Item = dict[str, Any]
SessionInput = Callable[[list[Item], list[Item]], Any]

INSTRUCTIONS = "You are a concise travel assistant."
CHALLENGE_TURNS = (
    "Hi, I'm Maya and I'm planning a trip to Japan in April.",
    "I'm allergic to shellfish.",
    "Which city should I visit first?",
    "How many days should I stay there?",
    "What should I eat there?",
    "Which train should I take next?",
)


def _user(text: str) -> Item:
    return {"role": "user", "content": text}


def _reply(text: str) -> Item:
    # An assistant item as the Agents SDK stores it: output_text parts, an id and a status.
    return {
        "id": "__fake_id__",
        "content": [{"annotations": [], "text": text, "type": "output_text", "logprobs": []}],
        "role": "assistant",
        "status": "completed",
        "type": "message",
    }


def _history(turns: int, *, greeting: bool = False) -> list[Item]:
    items = [_reply("Welcome! Where are you travelling?")] if greeting else []
    for number in range(1, turns + 1):
        items += [_user(f"Question {number}?"), _reply(f"Answer {number}.")]
    return items


def check_whole_turns(whole_turns: SessionInput) -> dict[str, int]:
    """Challenge 2: a sliding window that never cuts a turn in half.

    `whole_turns(history, new_input)` is a `session_input_callback`: it gets the session's
    stored items and the new input items, and returns the items to send. It must return the
    last 2 whole turns of `history` (a turn starts at a user item), then `new_input`; all of
    `history` when it holds fewer turns; and leave both lists unchanged. `SessionSettings(limit=N)`
    counts items instead, so an odd N starts the window on an assistant reply.
    """
    new_input = [_user("And the weather there?")]
    cases = {
        "6 turns": (_history(6), _history(6)[-4:]),
        "a greeting, then 3 turns": (_history(3, greeting=True), _history(3)[-4:]),
        "1 turn": (_history(1), _history(1)),
        "an empty session": ([], []),
    }
    for name, (history, kept) in cases.items():
        before, before_input = copy.deepcopy(history), copy.deepcopy(new_input)
        result = whole_turns(history, new_input)
        _require(
            history == before and new_input == before_input,
            f"{name}: whole_turns changed a list it was given; build a new one.",
        )
        _require(isinstance(result, list), f"{name}: return a list of items, not {type(result).__name__}.")
        _require(result[-len(new_input):] == new_input, f"{name}: end with new_input, unchanged.")
        sent = result[: -len(new_input)]
        if sent and sent[0].get("role") != "user":
            raise ChallengeNotPassed(
                f"{name}: the window starts on a {sent[0].get('role')!r} item. Cut at a user item, so no reply is "
                "sent without the question it answers (helpers.history.split_turns finds where turns start)."
            )
        _require(
            sent == kept,
            f"{name}: sent {len(sent)} history items, expected the last {min(2, len(kept) // 2)} whole turns "
            f"({len(kept)} items), unchanged and in order.",
        )
    print(f"Passed: whole_turns keeps the last 2 whole turns in {len(cases)} sessions (odd lengths and a greeting "
          "included), starts on a user item and changes nothing it was given.")
    return {"cases": len(cases), "items_kept_of_6_turns": 4}


def _sent_texts(request: dict[str, Any]) -> list[str]:
    return [str(message.get("content") or "") for message in request.get("messages", [])]


def _flat(text: str) -> str:
    return " ".join(text.split())


async def check_summary_session(
    make_callback: Callable[[Any], SessionInput], *, max_tokens: int = 24
) -> dict[str, int]:
    """Challenge 1: an Agents SDK session that sends a running summary instead of the whole history.

    `make_callback(client)` gets an `openai.OpenAI` client (its calls are recorded) and returns
    a `session_input_callback(history, new_input)`. The check runs 6 turns of an `Agent` with a
    `SQLiteSession` and `RunConfig(session_input_callback=...)`. It passes when, by the last turn:

    - the callback summarized the older turns with the client it was given, sending their text;
    - the agent's request held the summary (the summarizer's reply, in a message of its own), the
      latest turn verbatim and the new question, and none of the older user turns as a message;
    - that request was smaller, in prompt tokens, than the whole history would have been.
    """
    from agents import (
        Agent,
        ModelSettings,
        OpenAIChatCompletionsModel,
        RunConfig,
        Runner,
        SQLiteSession,
        set_tracing_disabled,
    )

    set_tracing_disabled(True)  # traces would otherwise be uploaded to OpenAI
    wire = recording_connection()
    callback = make_callback(wire.openai_client(max_retries=0))
    _require(
        callable(callback), "make_callback(client) must return the callback (a function of history and new_input)."
    )
    model = current_settings().model
    agent = Agent(
        name="travel",
        instructions=INSTRUCTIONS,
        model=OpenAIChatCompletionsModel(model=model, openai_client=wire.async_openai_client(max_retries=0)),
        model_settings=ModelSettings(max_tokens=max_tokens),
    )
    session = SQLiteSession("challenge")  # in memory
    run_config = RunConfig(session_input_callback=callback)
    summarizer_requests: list[dict[str, Any]] = []
    summarizer_replies: list[str] = []
    for text in CHALLENGE_TURNS:
        first = len(wire.recorded.requests)
        await Runner.run(agent, text, session=session, run_config=run_config)
        made = wire.recorded.requests[first:]
        replies = wire.recorded.responses[first:]
        _require(made and made[-1].get("messages", [{}])[-1].get("content") == text,
                 "The agent's request did not end with the new question: return history items, then new_input.")
        summarizer_requests += made[:-1]
        summarizer_replies += [r["choices"][0]["message"]["content"] or "" for r in replies[:-1] if r]

    stored = items_to_messages(await session.get_items())
    turns = [m for m in stored if m["role"] in ("user", "assistant")]
    extra_stored = len(stored) - len(turns)
    last = wire.recorded.requests[-1]["messages"]
    full = [{"role": "system", "content": INSTRUCTIONS}, *turns[:-1]]
    _require(
        len(turns) == 2 * len(CHALLENGE_TURNS),
        "The session should still store every turn; the callback only shapes what is sent.",
    )
    _require(
        summarizer_requests,
        "The callback made no model call: summarize the older turns with the client make_callback was given "
        "(helpers.history.summarize(messages, client) does it), so the summary is written by the model.",
    )
    old_users = [m["content"] for m in turns[:4] if m["role"] == "user"]
    _require(
        any(old in json.dumps(request) for request in summarizer_requests for old in old_users),
        "No summarizer call carried the text of the older turns: summarize the turns you stop sending.",
    )
    sent_texts = [_flat(text) for text in _sent_texts({"messages": last})]
    _require(
        not any(old in sent_texts for old in map(_flat, old_users)),
        "The last request still carried an early user turn as a message of its own: fold the older turns into "
        "the summary instead of sending them.",
    )
    summaries = [_flat(reply)[:40] for reply in summarizer_replies if reply.strip()]
    holding = [text for text in sent_texts if any(summary and summary in text for summary in summaries)]
    _require(
        holding,
        "The last request held no message with the summarizer's reply in it: send the running summary as a "
        "message of its own (helpers.history.summary_message), before the recent turns.",
    )
    _require(
        len(holding) == 1,
        f"The last request carried {len(holding)} summaries. The SDK saves every item your callback adds to the "
        "session (it cannot tell a summary from new input), so earlier summaries come back in `history`: skip "
        "them there and send only the latest.",
    )
    _require(
        [_flat(m["content"]) for m in turns[-4:-2]] == sent_texts[-3:-1],
        "Keep the latest turn (the previous question and its reply) verbatim, just before the new question.",
    )
    sent_tokens, full_tokens = int(count_tokens(last)), int(count_tokens(full))
    _require(sent_tokens < full_tokens,
             f"The last request took {sent_tokens} prompt tokens, no fewer than the whole history ({full_tokens}).")
    print(f"Passed: {len(summarizer_requests)} summarizer call(s); the last request sent {len(last)} messages "
          f"({sent_tokens} prompt tokens) where the whole history was {len(full)} ({full_tokens} tokens); "
          f"the session stores all {len(turns)} turn items, plus {extra_stored} summary item(s) the SDK saved from "
          "your callback.")
    return {
        "turns": len(CHALLENGE_TURNS),
        "summarizer_calls": len(summarizer_requests),
        "last_messages": len(last),
        "last_prompt_tokens": sent_tokens,
        "full_history_tokens": full_tokens,
        "summaries_stored": extra_stored,
    }


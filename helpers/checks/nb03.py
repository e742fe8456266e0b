"""Check functions for the challenges of notebook 03 (bounding the history).

- `check_bounded_payload(payload)`: "Bound the cost". `payload(history)` returns
  what to send for a history; the check runs it over many turns and verifies that
  the prompt stops growing, that no reply is sent without its question, and that
  the history it was given is left alone.
- `check_summarize_and_continue(fold_step, build_payload)`: "Summarize-and-continue".
  The learner's fold step turns old turns into a running summary (with at most one
  model call per fold); the check drives the loop for 28 turns and verifies the
  mechanism, and that an early fact survives via the summary alone.

Both checks run without the chat model by default: the assistant replies are canned,
and the summarize-and-continue check gives the fold step a *stub* summarizer client (an
ideal summarizer that keeps every planted fact it is shown), so a pass or a failure says
something about your code. With `client=get_client()` the check also runs your fold step
with the real model and asks it the name said in turn 1, in its own terms: through your
summary its probability share for the right name must be at least 0.5, and through a
window of the same verbatim turns at most 0.3. Each check passes (prints what it verified,
returns figures) or raises `ChallengeNotPassed` with a hint.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Sequence

import openai

from ..backend.client import count_tokens
from ..fake_server import Disconnect, FakeServer, Reply, chat_completion
from ..strategies import LONG_CONVERSATION, RECALL_PROBE, load_conversation
from ..types import Message
from . import require as _require

PayloadFunction = Callable[[list[Message]], list[Message]]
FoldStep = Callable[[dict[str, Any], Any], dict[str, Any]]
BuildPayload = Callable[[Message, dict[str, Any]], list[Message]]

# Canned replies of different lengths (no model text, no planted fact in them).
CANNED_REPLIES = (
    "Good question. Here is a short answer with one practical tip.",
    "It depends on your plans; most visitors find it easy once they have tried it once, and the staff "
    "at stations are used to helping travellers with questions like this one.",
    "Yes. Book a day ahead in busy weeks, keep some time free, and check the opening hours before you go.",
    "Start early, travel light, and leave room for a slow afternoon: the best moments are often unplanned.",
)


def load_long_conversation(path: Path = LONG_CONVERSATION) -> dict[str, Any]:
    """The scripted 28-turn conversation as plain data: system, turns and facts (`data/long_conversation.json`)."""
    conversation = load_conversation(path)
    return {
        "system": conversation.system,
        "turns": list(conversation.turns),
        "facts": {
            name: {
                "value": f.value,
                "match": list(f.match),
                "question": f.question,
                "answer_prefix": f.answer_prefix,
                "candidates": list(f.candidates),
            }
            for name, f in conversation.facts.items()
        },
    }


def orphaned_replies(payload: Sequence[Message], history: Sequence[Message]) -> list[int]:
    """Positions in `payload` of assistant messages sent without the user message they answer.

    An assistant message answers the user message before it in `history`; in the
    payload that same user message must come before it, with only assistant or
    tool messages in between.
    """
    orphans = []
    for position, message in enumerate(payload):
        if message.get("role") != "assistant":
            continue
        earlier = position - 1
        while earlier >= 0 and payload[earlier].get("role") in ("assistant", "tool"):
            earlier -= 1
        if earlier < 0 or payload[earlier].get("role") != "user":
            orphans.append(position)
            continue
        question = payload[earlier]
        # In the history, the same question must be the user message this reply answers.
        answered_in_history = False
        for index, original in enumerate(history):
            if original == message:
                back = index - 1
                while back >= 0 and history[back].get("role") in ("assistant", "tool"):
                    back -= 1
                if back >= 0 and history[back] == question:
                    answered_in_history = True
                    break
        if not answered_in_history:
            orphans.append(position)
    return orphans


def in_order(payload: Sequence[Message], history: Sequence[Message]) -> bool:
    """Whether `payload` is `history` with some messages left out: the rest unchanged, in the same order.

    Matched as a subsequence, so repeated messages (the same canned reply in two
    turns, say) are matched to successive occurrences, not all to the first one.
    """
    position = 0
    for message in payload:
        while position < len(history) and history[position] != message:
            position += 1
        if position == len(history):
            return False
        position += 1
    return True


def largest_turn_tokens(user_turns: Sequence[str], system: Message) -> int:
    """Prompt tokens the largest scripted turn (a user turn and a canned reply) adds to a history."""
    base = int(count_tokens([system]))
    return max(
        int(count_tokens([system, {"role": "user", "content": text}, {"role": "assistant", "content": reply}])) - base
        for text in user_turns
        for reply in CANNED_REPLIES
    )


def _scripted_history(user_turns: Sequence[str], system: Message, turns: int) -> list[Message]:
    """A history of `turns` completed turns plus a pending user message, with canned replies."""
    history = [dict(system)]
    for number in range(turns):
        history.append({"role": "user", "content": user_turns[number % len(user_turns)]})
        history.append({"role": "assistant", "content": CANNED_REPLIES[number % len(CANNED_REPLIES)]})
    history.append({"role": "user", "content": user_turns[turns % len(user_turns)]})
    return history


def check_bounded_payload(payload: PayloadFunction, *, turns: int = 40, min_kept_turns: int = 2) -> list[int]:
    """Challenge "Bound the cost": `payload(history)` returns what to send, and its size stops growing.

    The check grows a history of the long conversation's user turns (with canned
    replies) to `turns` turns and calls `payload` before each send. It requires,
    every turn: a new list (the history is not changed), the system message first,
    the newest user message last, no assistant reply without its question, at
    least `min_kept_turns` turns kept once the history has them (a payload of the
    newest message alone is bounded but has forgotten the conversation), and
    messages taken from the history unchanged and in order. Then, over the run:
    the prompt size (`count_tokens`) of the last half of the turns never exceeds
    the largest size seen in the first half by more than one turn's tokens (the
    turns that fill a window differ in length; a growing prompt gains a turn's
    worth every turn). Returns the prompt size per turn.
    """
    conversation = load_long_conversation()
    system = {"role": "system", "content": conversation["system"]}
    sizes: list[int] = []
    for completed in range(turns):
        history = _scripted_history(conversation["turns"], system, completed)
        before = copy.deepcopy(history)
        case = f"(turn {completed + 1}, a history of {len(history)} messages)"
        sent = payload(history)
        _require(history == before, f"payload changed the history it was given {case}: build and return a new list.")
        _require(
            isinstance(sent, list) and all(isinstance(m, dict) for m in sent),
            f"payload returned {type(sent).__name__} {case}; return a list of message dicts.",
        )
        _require(sent is not history, f"payload returned the history itself {case}; return a new list.")
        _require(bool(sent) and sent[0] == system, f"Start the payload with the system message {case}.")
        _require(sent[-1] == history[-1], f"End the payload with the newest user message {case}.")
        _require(
            all(message in history for message in sent),
            f"Every message sent should come from the history, unchanged {case}.",
        )
        _require(in_order(sent, history), f"Keep the messages in the history's order {case}.")
        orphans = orphaned_replies(sent, history)
        _require(
            not orphans,
            f"Message {orphans[0] if orphans else ''} of the payload is an assistant reply sent without its "
            f"question {case}. "
            "Drop whole turns: a turn starts at a user message.",
        )
        kept_turns = sum(1 for message in sent if message.get("role") == "user")
        wanted = min(min_kept_turns, completed + 1)
        _require(
            kept_turns >= wanted,
            f"The payload keeps {kept_turns} turn(s) {case}; keep at least the last {wanted} so the newest question "
            "has some context. Bounded is easy if you forget everything.",
        )
        sizes.append(int(count_tokens(sent)))
    half = turns // 2
    early_max, late_max = max(sizes[:half]), max(sizes[half:])
    # Which turns fill a window changes its size a little: allow one turn's worth, never a trend.
    slack = largest_turn_tokens(conversation["turns"], system)
    raw_size = int(count_tokens(_scripted_history(conversation["turns"], system, turns - 1)))
    _require(
        late_max <= early_max + slack,
        f"The prompt kept growing: up to {early_max} tokens in turns 1-{half}, then {late_max} in turns "
        f"{half + 1}-{turns} "
        f"(more than one turn, {slack} tokens, above). "
        "Send the system message and only the last few turns (or trim to a token budget).",
    )
    print(
        f"Passed: over {turns} turns the prompt stayed at or under {max(sizes)} tokens; "
        f"turns {half + 1}-{turns} peaked "
        f"at {late_max}, turns 1-{half} at {early_max} (allowed: one turn more, {slack}); last turn: {sizes[-1]}, "
        f"where sending the whole history would be {raw_size}. No reply without its question; "
        "the history was never changed."
    )
    return sizes


# --- Summarize-and-continue --------------------------------------------------------------


class StubSummarizer:
    """A client whose only job is summarizing, with perfect recall of the planted facts.

    It stands for a real `openai.OpenAI` client on a `FakeServer` (every other attribute is that client's):
    the fold step calls it as it calls any provider; the SDK parses the replies and raises its own errors.
    Whatever a request carries (instructions, a previous summary, transcript), the reply is one sentence per
    planted fact found anywhere in the request text, plus one generic sentence. It never copies the turns'
    wording, so a fact in its reply can only have come from what the fold step sent it. Records every chat
    request (`requests`) and reply (`replies`). With `fail=True` every connection fails
    (`openai.APIConnectionError`, as a network error would); any other path (e.g. llama.cpp's `/props`)
    is answered 404, so token counts through it are estimates, as with a hosted provider.
    """

    def __init__(self, facts: dict[str, dict[str, Any]], *, fail: bool = False) -> None:
        self.facts = facts
        self.fail = fail
        self.replies: list[str] = []
        self.server = FakeServer(self._answer, base_url="http://stub-summarizer.invalid/v1")
        self.client = self.server.client

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.server.requests

    def __getattr__(self, name: str) -> Any:
        if name in ("server", "client"):  # not set yet: no delegation to itself
            raise AttributeError(name)
        return getattr(self.client, name)

    def fact_sentence(self, name: str) -> str:
        return f"The user's {name} is {self.facts[name]['value']}."

    def _answer(self, body: dict[str, Any]) -> Reply:
        if self.fail:
            return Disconnect("stub summarizer: the connection failed")
        text = " ".join(str(m.get("content") or "") for m in body.get("messages", [])).lower()
        sentences = [
            self.fact_sentence(name) for name, fact in self.facts.items() if any(k in text for k in fact["match"])
        ]
        reply = " ".join(sentences + ["The user is planning a trip to Japan."])
        self.replies.append(reply)
        return chat_completion(reply, prompt_tokens=100, completion_tokens=20, model=str(body.get("model", "stub")))


def _user_turn_starts(messages: Sequence[Message]) -> list[int]:
    return [i for i, m in enumerate(messages) if m.get("role") == "user"]


def _check_memory_shape(memory: Any, case: str) -> None:
    _require(
        isinstance(memory, dict)
        and isinstance(memory.get("summary"), str)
        and isinstance(memory.get("messages"), list),
        f"fold_step must return a dict {{'summary': str, 'messages': list}} {case}; got {type(memory).__name__}.",
    )


def _drive(
    fold_step: FoldStep,
    build_payload: BuildPayload,
    summarizer: Any,
    replies: list[str],
    conversation: dict[str, Any],
    *,
    threshold: int,
    keep_turns: int,
    turns: int,
) -> tuple[dict[str, Any], list[list[Message]], list[int], list[str]]:
    """Run the loop the learner would run, with canned replies; check each step.

    Returns the final memory, each turn's payload, the turns that folded, and the
    summary the memory held just before each fold (what the fold should pass on).
    """
    system = {"role": "system", "content": conversation["system"]}
    memory: dict[str, Any] = {"summary": "", "messages": []}
    payloads: list[list[Message]] = []
    fold_turns: list[int] = []
    summaries_before_fold: list[str] = []
    for number in range(1, turns + 1):
        user = {"role": "user", "content": conversation["turns"][(number - 1) % len(conversation["turns"])]}
        memory = {"summary": memory["summary"], "messages": memory["messages"] + [user]}  # 1. append the user turn
        before = copy.deepcopy(memory)
        calls = len(replies)
        case = f"(turn {number}, {len(before['messages'])} verbatim messages, threshold {threshold})"
        new_memory = fold_step(memory, summarizer)
        _require(memory == before, f"fold_step changed the memory it was given {case}: return a new dict.")
        _check_memory_shape(new_memory, case)
        made = len(replies) - calls
        starts = _user_turn_starts(before["messages"])
        if len(before["messages"]) > threshold and len(starts) > keep_turns:
            first_kept = starts[-keep_turns]
            _require(
                made <= 1, f"Past the threshold fold_step should make at most one model call; it made {made} {case}."
            )
            _require(
                new_memory["messages"] == before["messages"][first_kept:],
                f"After a fold, keep exactly the last {keep_turns} turns verbatim (from a user message to the "
                f"end) {case}; "
                f"kept {len(new_memory['messages'])} messages, expected {len(before['messages']) - first_kept}.",
            )
            if made:
                reply, summary = _clean(replies[-1]), _clean(new_memory["summary"])
                _require(
                    bool(summary) and (reply in summary or summary in reply),
                    f"After a fold with a model call, the summary should hold the text the model just returned {case}; "
                    f"it returned {replies[-1][:60]!r}..., the summary is {new_memory['summary'][:60]!r}...",
                )
            fold_turns.append(number)
            summaries_before_fold.append(before["summary"])
        else:
            _require(
                made == 0, f"Under the threshold fold_step should not call the model; it made {made} call(s) {case}."
            )
            _require(new_memory == before, f"Under the threshold, return the memory unchanged {case}.")
        memory = new_memory
        sent = build_payload(system, memory)
        _require(
            isinstance(sent, list) and sent and sent[0] == system,
            f"build_payload must start with the system message {case}.",
        )
        _require(
            sent[-len(memory["messages"]) :] == memory["messages"],
            f"build_payload must end with the verbatim messages, in order, newest user message last {case}.",
        )
        if memory["summary"]:
            _require(
                any(memory["summary"] in str(m.get("content")) for m in sent[1 : len(sent) - len(memory["messages"])]),
                f"The payload does not carry the summary {case}: put it in a message between the system message "
                "and the turns.",
            )
        payloads.append(sent)
        reply = {"role": "assistant", "content": CANNED_REPLIES[number % len(CANNED_REPLIES)]}
        memory = {"summary": memory["summary"], "messages": memory["messages"] + [reply]}  # 3. append the reply
    return memory, payloads, fold_turns, summaries_before_fold


def check_summarize_and_continue(
    fold_step: FoldStep,
    build_payload: BuildPayload,
    *,
    threshold: int = 8,
    keep_turns: int = 2,
    turns: int = 28,
    client: Any = None,
) -> dict[str, Any]:
    """Challenge "Summarize-and-continue": old turns folded into a summary, and an early fact survives.

    Your code keeps `memory = {"summary": str, "messages": [...]}` (the verbatim
    turns, without the system message). `fold_step(memory, client)` returns a new
    memory: when `memory["messages"]` holds more than `threshold` messages, it folds
    every turn but the last `keep_turns` into the summary, with at most one model call
    (e.g. `summarize(..., previous_summary=memory["summary"])`, or none if your summary
    copies what it keeps), and keeps those last turns verbatim; otherwise it returns the
    memory as it was. `build_payload(system, memory)` returns what to send: the system
    message, the summary, then the verbatim turns.

    The check runs the long conversation's 28 user turns through your functions with
    canned assistant replies and a stub summarizer that keeps every planted fact it is
    shown (name, allergy, date, budget; all said in turns 1-4). It verifies each fold,
    the payload, that a failed model call leaves the memory as it was, and that after 28
    turns every planted fact is still in the summary. With `client` (e.g. `get_client()`)
    it then runs your fold step on the real model and asks for the name said in turn 1:
    through your payload the right name's probability share must be at least 0.5, and
    through a window of the same last turns at most 0.3.
    """
    conversation = load_long_conversation()
    facts = conversation["facts"]
    stub = StubSummarizer(facts)
    memory, payloads, fold_turns, summaries_before_fold = _drive(
        fold_step,
        build_payload,
        stub,
        stub.replies,
        conversation,
        threshold=threshold,
        keep_turns=keep_turns,
        turns=turns,
    )
    _require(
        len(fold_turns) >= 2,
        f"Only {len(fold_turns)} fold(s) in {turns} turns: fold whenever the verbatim turns pass {threshold} messages.",
    )
    # Incremental: a later model call carries the previous summary, not the turns folded before.
    first_turn = conversation["turns"][0]
    for index in range(1, len(stub.requests)):
        text = " ".join(str(m.get("content") or "") for m in stub.requests[index].get("messages", []))
        previous = summaries_before_fold[index] if index < len(summaries_before_fold) else ""
        _require(
            not previous or previous in text or _clean(previous) in _clean(text),
            f"Model call {index + 1} did not include the previous summary: extend it with the new turns "
            "(e.g. summarize(old_turns, client, previous_summary=memory['summary'])).",
        )
        _require(
            first_turn not in text,
            f"Model call {index + 1} re-sent turn 1, already folded: send only the turns being folded now.",
        )
    lost = [name for name, fact in facts.items() if not any(k in memory["summary"].lower() for k in fact["match"])]
    _require(
        not lost,
        f"After {turns} turns the summary lost {', '.join(lost)}: each fold must carry the summary so far forward.",
    )
    # A failed model call changes nothing.
    failing = StubSummarizer(facts, fail=True)
    extra = _scripted_history(conversation["turns"], {"role": "system", "content": ""}, threshold)[1:]
    over = {"summary": memory["summary"], "messages": memory["messages"] + extra}
    snapshot = copy.deepcopy(over)
    try:
        result = fold_step(over, failing)
    except openai.APIConnectionError:  # the stub's failure; any other error is a bug in the fold step: it propagates
        result = snapshot
    _require(over == snapshot, "fold_step changed the memory it was given while its model call failed.")
    if failing.requests:  # a fold step that calls no model has no failed call to survive
        _require(result == snapshot, "When the model call fails, the memory must stay exactly as it was.")
    sizes = [int(count_tokens(p)) for p in payloads]
    print(
        f"Passed: {len(fold_turns)} folds (at turns {', '.join(map(str, fold_turns))}); "
        f"each kept the last {keep_turns} "
        f"turns verbatim and carried the summary on ({len(stub.requests)} model calls); after {turns} turns the "
        f"summary still holds all {len(facts)} planted facts (stub); prompt per turn {min(sizes)}-{max(sizes)} tokens; "
        "a failed call changed nothing."
    )
    figures: dict[str, Any] = {
        "fold_turns": fold_turns,
        "prompt_tokens": sizes,
        "summary": memory["summary"],
        "model_calls": len(stub.requests),
    }
    if client is not None:
        figures.update(
            _recall_on_the_model(fold_step, build_payload, client, conversation, threshold, keep_turns, turns)
        )
    return figures


def _recall_on_the_model(
    fold_step: FoldStep,
    build_payload: BuildPayload,
    client: Any,
    conversation: dict[str, Any],
    threshold: int,
    keep_turns: int,
    turns: int,
) -> dict[str, Any]:
    """Run the fold step on the real model, then ask the name back through the summary and through a window."""
    from ..history import sliding_window
    from ..recall import answer_shares

    real_replies: list[str] = []
    real = _RecordingClient(client, real_replies)
    real_memory, _, real_folds, _ = _drive(
        fold_step,
        build_payload,
        real,
        real_replies,
        conversation,
        threshold=threshold,
        keep_turns=keep_turns,
        turns=turns,
    )
    facts = conversation["facts"]
    kept = [name for name, fact in facts.items() if any(k in real_memory["summary"].lower() for k in fact["match"])]
    name = facts["name"]
    question = {"role": "user", "content": RECALL_PROBE.format(question=name["question"])}
    system = {"role": "system", "content": conversation["system"]}
    through_summary = build_payload(system, real_memory)
    through_window = sliding_window([system, *real_memory["messages"]], keep_turns)

    def share(messages: list[Message]) -> float:
        return answer_shares(
            client, messages, question, answer_prefix=name["answer_prefix"], candidates=name["candidates"]
        )[name["value"]]

    summary_share, window_share = share(through_summary), share(through_window)
    print(
        f"On the real model: {len(real_folds)} folds, {len(real_replies)} model calls; the final summary keeps "
        f"{len(kept)} of {len(facts)} planted facts ({', '.join(kept) or 'none'}). Asked the name said in turn 1, the "
        f"model gives {name['value']!r} a share of {summary_share:.2f} through your summary and {window_share:.2f} "
        f"through a window of the same last {keep_turns} turns (shares corrected for guessing)."
    )
    _require(
        summary_share >= 0.5,
        f"Through your summary the model gives the right name only {summary_share:.2f} (at least 0.5 needed). Is the "
        "name still in it? A small model rewriting its own summary every fold drops facts: copy the user's own "
        "sentences into the summary instead of asking the model to rewrite them.",
    )
    _require(
        window_share <= 0.3,
        f"A window of the last {keep_turns} turns should not know the name, yet the model "
        f"gives it {window_share:.2f}: is turn 1 still among your verbatim messages?",
    )
    return {
        "real_summary": real_memory["summary"],
        "real_facts_kept": kept,
        "summary_share": summary_share,
        "window_share": window_share,
        "real_model_calls": len(real_replies),
    }


def _clean(text: str) -> str:
    return " ".join(text.split())


class _RecordingClient:
    """Wraps a client and keeps the text of every reply its chat.completions.create returns.

    Everything else (`base_url`, `with_options`, the server's own endpoints) is the wrapped client's.
    """

    def __init__(self, client: Any, replies: list[str]):
        def create(**request: Any) -> Any:
            response = client.chat.completions.create(**request)
            replies.append(response.choices[0].message.content or "")
            return response

        self._client = client
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=create))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

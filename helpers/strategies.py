"""One long conversation through every history strategy, and what each one still remembers.

The engine of notebook 03, `benchmarks/strategies.py` and `examples/trim_history.py`
(the notebook writes the same loop out cell by cell first). Four strategies decide what
each turn sends:

- ``raw``: the whole history (notebook 01); grows every turn.
- ``window``: the system message and the last `window_turns` turns (`sliding_window`).
- ``budget``: the newest turns that fit in `budget` prompt tokens (`trim_to_budget`).
- ``summary``: a `SummaryBuffer`: a running summary plus the last turns verbatim, folded
  past a threshold; its summarizer's tokens are counted apart.

Two ways to run them:

- `run_strategy` (live): the append -> send -> append loop with real calls, each strategy
  with its own replies; what the benchmark measures.
- `replay_strategy`: the conversation is recorded once with the whole history (`record`),
  then each strategy's payload for every turn is built from that recording and counted
  with `count_tokens` (exact on the embedded model); only the summary buffer's folds call
  the model. Every strategy then sees the same turns and replies, so the comparison is
  like for like, and it costs one conversation instead of four (notebook 03).

Recall is measured three ways (`recall_rows`): was the fact in what was sent (structural),
the model's probability share for the right answer among candidates (`helpers.recall`),
and the words of a short reply (whole-word match).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backend import llamacpp
from .backend.client import count_tokens, current_settings
from .backend.usage import read_usage
from .errors import HelpersError
from .history import BufferSettings, Summarizer, SummaryBuffer, SummaryCall, sliding_window, trim_to_budget
from .payload import assistant_message
from .recall import RecallUnavailableError, answer_shares, guess_scores
from .types import Message

DATA = Path(__file__).resolve().parent.parent / "data"
LONG_CONVERSATION = DATA / "long_conversation.json"
SECOND_CONVERSATION = DATA / "second_conversation.json"
STRATEGIES = ("raw", "window", "budget", "summary")
MAX_CONVERSATION_BYTES = 1_000_000


class ConversationFileError(HelpersError, ValueError):
    """A scripted conversation file is missing, unreadable or not in the expected shape; the message says where."""


@dataclass(frozen=True)
class Fact:
    """A fact planted in a scripted conversation, and how to ask for it back."""

    name: str
    turn: int
    value: str
    question: str
    match: tuple[str, ...]
    answer_prefix: str | None = None
    candidates: tuple[str, ...] = ()

    @property
    def scorable(self) -> bool:
        """True when the probability share can be measured (an answer prefix and candidates are given)."""
        return self.answer_prefix is not None and len(self.candidates) >= 2


@dataclass(frozen=True)
class Conversation:
    """A scripted conversation: the system prompt, the user turns, and the planted facts."""

    system: str
    turns: tuple[str, ...]
    facts: dict[str, Fact]
    path: Path | None = None
    notes: dict[str, str] = field(default_factory=dict)  # facts described in words only (trip_conversation.json)

    @property
    def system_message(self) -> Message:
        return {"role": "system", "content": self.system}


def _require(condition: bool, path: Path, where: str, what: str) -> None:
    if not condition:
        raise ConversationFileError(f"{path}: {where} {what}")


def load_conversation(path: Path | str = LONG_CONVERSATION) -> Conversation:
    """Read and check a scripted conversation (the shape of `data/long_conversation.json`).

    Turns are strings, or ``{"user": text, ...}`` objects (`data/trip_conversation.json`). Each fact
    needs `turn`, `value`, `question` and `match`; `answer_prefix` and `candidates` (which must include
    the value) make its probability share measurable. A bad file raises `ConversationFileError`.
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_CONVERSATION_BYTES + 1)
    except OSError as error:
        raise ConversationFileError(f"{path}: cannot read it ({error.strerror or error})") from None
    _require(len(raw) <= MAX_CONVERSATION_BYTES, path, "is", f"larger than {MAX_CONVERSATION_BYTES:,} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ConversationFileError(f"{path}: not valid UTF-8 JSON ({error})") from None
    _require(isinstance(data, dict), path, "the top level", "must be an object")
    _require(isinstance(data.get("system"), str), path, "'system'", "must be a string")
    turns = data.get("turns")
    _require(isinstance(turns, list) and turns, path, "'turns'", "must be a non-empty list")
    texts = []
    for index, turn in enumerate(turns):
        text = turn.get("user") if isinstance(turn, dict) else turn
        _require(isinstance(text, str) and text.strip(), path, f"turns[{index}]", "must be a non-empty string")
        texts.append(text)
    facts, notes = {}, {}
    _require(isinstance(data.get("facts") or {}, dict), path, "'facts'", "must be an object")
    for name, spec in (data.get("facts") or {}).items():
        where = f"facts.{name}"
        if isinstance(spec, str):
            notes[name] = spec
            continue
        _require(isinstance(spec, dict), path, where, "must be an object or a description")
        for key in ("value", "question"):
            _require(isinstance(spec.get(key), str) and spec[key], path, f"{where}.{key}", "must be a string")
        _require(
            isinstance(spec.get("turn"), int) and 1 <= spec["turn"] <= len(texts),
            path,
            f"{where}.turn",
            f"must be a turn number between 1 and {len(texts)}",
        )
        match = spec.get("match") or [spec["value"].lower()]
        _require(
            isinstance(match, list) and all(isinstance(m, str) and m for m in match),
            path,
            f"{where}.match",
            "must be a list of strings",
        )
        candidates = spec.get("candidates") or []
        _require(
            isinstance(candidates, list) and all(isinstance(c, str) and c for c in candidates),
            path,
            f"{where}.candidates",
            "must be a list of strings",
        )
        if candidates:
            _require(
                spec["value"] in candidates and len(set(candidates)) == len(candidates),
                path,
                f"{where}.candidates",
                "must be distinct and include the value",
            )
            _require(
                isinstance(spec.get("answer_prefix"), str),
                path,
                f"{where}.answer_prefix",
                "must be a string when candidates are given",
            )
        facts[name] = Fact(
            name,
            spec["turn"],
            spec["value"],
            spec["question"],
            tuple(m.lower() for m in match),
            spec.get("answer_prefix"),
            tuple(candidates),
        )
    return Conversation(data["system"], tuple(texts), facts, path, notes)


@dataclass(frozen=True)
class StrategySettings:
    """How each strategy is tuned (notebook 03's values by default)."""

    max_tokens: int = 40  # reply cap per turn
    window_turns: int = 3
    budget: int = 400
    buffer: BufferSettings = field(default_factory=BufferSettings)

    def __post_init__(self) -> None:
        for name in ("max_tokens", "window_turns", "budget"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, not {value!r}")


@dataclass
class Run:
    """What one strategy did: a row per turn, the summarizer's folds, and its next payload."""

    strategy: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    summarizer_rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    next_payload: Callable[[Message], list[Message]] | None = None
    summary: str = ""
    summaries: list[str] = field(default_factory=list)  # the summary after each fold

    @property
    def prompt_tokens(self) -> int:
        """Prompt tokens of the conversation's own calls (summarizer calls not included)."""
        return sum(row["prompt_tokens"] for row in self.rows)

    @property
    def cached_tokens(self) -> int:
        return sum(row["cached_tokens"] or 0 for row in self.rows)

    @property
    def summarizer_tokens(self) -> int:
        """Prompt plus completion tokens of every fold."""
        return sum(row["prompt_tokens"] + row["completion_tokens"] for row in self.summarizer_rows)

    @property
    def total_tokens(self) -> int:
        """What the strategy cost in tokens, its summarizer's included."""
        return self.prompt_tokens + self.summarizer_tokens

    def per_turn(self) -> list[int]:
        """prompt_tokens of each turn, in order."""
        return [row["prompt_tokens"] for row in self.rows]


def choose_payload(
    strategy: str, settings: StrategySettings = StrategySettings()
) -> Callable[[list[Message]], list[Message]]:
    """The function that turns the full history into what is sent (raw, window, budget)."""
    if strategy == "raw":
        return lambda history: list(history)
    if strategy == "window":
        return lambda history: sliding_window(history, settings.window_turns)
    if strategy == "budget":
        return lambda history: trim_to_budget(history, settings.budget)
    if strategy == "summary":
        raise ValueError("the summary strategy keeps a SummaryBuffer, not a payload function")
    raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")


def usage_row(turn: int, response: Any, sent: Sequence[Message]) -> dict[str, Any]:
    """One turn's figures from a response's `usage` (cached_tokens None when the server does not say)."""
    usage = read_usage(response.usage)
    return {
        "turn": turn,
        "messages sent": len(sent),
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cached_tokens": usage.cached_tokens,
    }


def _fold_row(turn: int, call: Any) -> dict[str, Any]:
    return {
        "turn": turn,
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": call.completion_tokens,
        "cached_tokens": call.cached_tokens,
        "calls": call.calls,
        "summary": call.text,
    }


def _buffer(system: Message, settings: StrategySettings, summarizer: Summarizer | None, model: str) -> SummaryBuffer:
    options: dict[str, Any] = {"summarizer": summarizer} if summarizer is not None else {}
    return SummaryBuffer(system=system, settings=settings.buffer, model=model, **options)


def run_strategy(
    client: Any,
    strategy: str,
    conversation: Conversation,
    settings: StrategySettings = StrategySettings(),
    on_turn: Callable[[dict[str, Any]], None] | None = None,
    *,
    turns: int | None = None,
    summarizer: Summarizer | None = None,
    model: str | None = None,
) -> Run:
    """Run the conversation's user turns live through one strategy; `on_turn(row)` after each turn.

    Every turn: append the user message, choose what to send, send it, append the reply
    (role and content only). `model` defaults to the configured backend's.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    model = model or current_settings().model
    run, start = Run(strategy), time.perf_counter()
    system = conversation.system_message
    memory = _buffer(system, settings, summarizer, model) if strategy == "summary" else None
    payload = None if memory else choose_payload(strategy, settings)
    history = [system]
    for turn, text in enumerate(conversation.turns[:turns], start=1):
        user = {"role": "user", "content": text}
        history.append(user)  # 1. append the user turn
        sent, call = _next_request(user, history, memory, payload, client)
        response = client.chat.completions.create(model=model, messages=sent, max_tokens=settings.max_tokens)  # 2.
        reply = assistant_message(response)
        history.append(reply)  # 3. append the reply
        if memory is not None:
            memory.append(reply)
        row = usage_row(turn, response, sent)
        row["summarizer_tokens"] = call.tokens if call else 0
        if call:
            run.summarizer_rows.append(_fold_row(turn, call))
            run.summaries.append(call.text)
        run.rows.append(row)
        if on_turn:
            on_turn(row)
    _finish(run, memory, payload, history)
    run.seconds = time.perf_counter() - start
    return run


def _next_request(
    user: Message, history: list[Message], memory: SummaryBuffer | None, payload: Any, client: Any
) -> tuple[list[Message], SummaryCall | None]:
    """What a strategy sends after the user turn `user` (already in `history`), and the fold it made, if any."""
    if memory is None:
        return payload(history), None
    memory.append(user)
    call = memory.fold_if_needed(client)
    return memory.payload(), call


def _finish(run: Run, memory: SummaryBuffer | None, payload: Any, history: list[Message]) -> None:
    if memory is not None:
        run.summary = memory.summary
        run.next_payload = lambda question: memory.payload() + [question]
    else:
        run.next_payload = lambda question: payload(history + [question])


# --- replay: record once, then every strategy on the same turns and replies ------------------------


def _prompt_ids(client: Any, messages: Sequence[Message]) -> list[int]:
    """The prompt's token ids on a llama.cpp server; elsewhere one stand-in id per message's estimated token
    (a changed message then breaks the shared prefix where it starts, as a real tokenization would)."""
    if llamacpp.is_llamacpp(client):
        return llamacpp.prompt_token_ids(client, messages)
    ids: list[int] = []
    for position, message in enumerate(messages):
        ids += [hash((position, str(message.get("content")))) & 0xFFFFFFF] * int(count_tokens([message], client=client))
    return ids


def _text_ids(client: Any, text: str) -> list[int]:
    if llamacpp.is_llamacpp(client):
        return llamacpp.tokenize(client, text)
    return [hash(text) & 0xFFFFFFF] * max(1, len(text) // 4)


@dataclass
class Recording:
    """A conversation played once with the whole history: what the model said, and each call's usage."""

    history: list[Message]
    rows: list[dict[str, Any]]
    seconds: float


def record(
    client: Any, conversation: Conversation, max_tokens: int = 40, *, turns: int | None = None, model: str | None = None
) -> Recording:
    """Play the user turns with the whole history (the raw loop of notebook 01), keeping every reply."""
    model = model or current_settings().model
    start = time.perf_counter()
    history: list[Message] = [conversation.system_message]
    rows = []
    for turn, text in enumerate(conversation.turns[:turns], start=1):
        history.append({"role": "user", "content": text})
        response = client.chat.completions.create(model=model, messages=history, max_tokens=max_tokens)
        rows.append(usage_row(turn, response, history))
        history.append(assistant_message(response))
    return Recording(history, rows, time.perf_counter() - start)


def replay_strategy(
    client: Any,
    strategy: str,
    recording: Recording,
    settings: StrategySettings = StrategySettings(),
    *,
    summarizer: Summarizer | None = None,
    model: str | None = None,
) -> Run:
    """Each turn's payload under `strategy`, built from `recording`; only summary folds call the model.

    `prompt_tokens` are counted with `count_tokens` (on the embedded model exactly what the
    server bills). `cached_tokens` is what the embedded server would reuse: the longest prefix
    shared with the previous request (its reply included; a fold in between replaces it), and
    `cached_tokens_openai_rule` a hosted provider's estimate: the previous prompt only, from 1,024
    tokens, in 128-token blocks (OpenAI's documented rule).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    model = model or current_settings().model
    run, start = Run(strategy), time.perf_counter()
    system = recording.history[0]
    memory = _buffer(system, settings, summarizer, model) if strategy == "summary" else None
    payload = None if memory else choose_payload(strategy, settings)
    history = [system]
    previous_prompt: list[int] = []
    previous_sequence: list[int] = []
    for turn, position in enumerate(range(1, len(recording.history), 2), start=1):
        user, reply = recording.history[position], recording.history[position + 1]
        history.append(user)
        sent, call = _next_request(user, history, memory, payload, client)
        tokens = _prompt_ids(client, sent)
        if call:  # the fold's own requests sat in the cache in between
            previous_sequence = []
        prompt_tokens = int(count_tokens(sent, client=client))
        shared = llamacpp.common_prefix(previous_prompt, tokens)
        provider_cached = (shared // 128) * 128 if shared >= 1024 else 0
        run.rows.append(
            {
                "turn": turn,
                "messages sent": len(sent),
                "prompt_tokens": prompt_tokens,
                "completion_tokens": recording.rows[turn - 1]["completion_tokens"],
                "cached_tokens": llamacpp.common_prefix(previous_sequence, tokens[:-1]),
                "cached_tokens_openai_rule": provider_cached,
                "summarizer_tokens": call.tokens if call else 0,
            }
        )
        if call:
            run.summarizer_rows.append(_fold_row(turn, call))
            run.summaries.append(call.text)
        history.append(reply)
        if memory is not None:
            memory.append(reply)
        previous_prompt = tokens
        previous_sequence = tokens + _text_ids(client, str(reply["content"]))
    _finish(run, memory, payload, history)
    run.seconds = time.perf_counter() - start
    return run


# --- recall, three ways -----------------------------------------------------------------------

RECALL_PROBE = "Think back to what I told you earlier in this chat. {question}"
"""How a planted fact is asked back: the question, with a pointer to the user's own earlier words.
Asked the bare question after 28 turns, the 135M model often answers from the last few turns."""


def mentions(text: str, fact: Fact) -> bool:
    """Whether `text` names the fact: any of its `match` phrases as whole words, case-insensitive."""
    lowered = " ".join(str(text).lower().split())
    return any(re.search(rf"(?<![\w]){re.escape(phrase)}(?![\w])", lowered) for phrase in fact.match)


def recall_rows(
    client: Any,
    run: Run,
    facts: dict[str, Fact],
    *,
    label: str | None = None,
    reply_tokens: int = 24,
    model: str | None = None,
) -> list[dict[str, Any]]:
    """Ask each fact back (`RECALL_PROBE`), appended to what the strategy would send next; measure recall
    three ways.

    - ``in what was sent``: the fact is in the payload before the question (structural);
    - ``share``: the model's probability share for the right answer among the fact's candidates, corrected
      for guessing (``share, uncorrected`` beside it); None when the fact has no candidates or the server
      returns no log-probabilities;
    - ``reply names it``: a short reply (`reply_tokens`), whole-word matched; the reply is kept.
    """
    if run.next_payload is None:
        raise ValueError("run has no next payload: use a Run from run_strategy or replay_strategy")
    model = model or current_settings().model
    questions = {
        name: {"role": "user", "content": RECALL_PROBE.format(question=fact.question)} for name, fact in facts.items()
    }
    _prime_priors(client, run, facts, questions, model)
    rows = []
    for name, fact in facts.items():
        question = questions[name]
        sent = run.next_payload(question)
        share = uncorrected = best = None
        if fact.scorable:
            try:
                shares = answer_shares(
                    client,
                    sent[:-1],
                    question,
                    answer_prefix=fact.answer_prefix,
                    candidates=fact.candidates,
                    model=model,
                )
                share, uncorrected, best = shares[fact.value], shares.raw_shares[fact.value], shares.best
            except RecallUnavailableError:
                pass
        response = client.chat.completions.create(model=model, messages=sent, max_tokens=reply_tokens)
        reply = response.choices[0].message.content or ""
        rows.append(
            {
                "strategy": label or run.strategy,
                "fact": name,
                "in what was sent": any(mentions(str(m.get("content") or ""), fact) for m in sent[:-1]),
                "share": share,
                "share, uncorrected": uncorrected,
                "favoured answer": best,
                "reply names it": mentions(reply, fact),
                "reply": " ".join(reply.split()),
            }
        )
    return rows


def _prime_priors(client: Any, run: Run, facts: dict[str, Fact], questions: dict[str, Message], model: str) -> None:
    """Score every fact's guess (system message only) first: the long context then stays in the KV cache."""
    for name, fact in facts.items():
        if fact.scorable:
            try:
                guess_scores(
                    client,
                    run.next_payload(questions[name])[:1],
                    questions[name],
                    answer_prefix=fact.answer_prefix,
                    candidates=fact.candidates,
                    model=model,
                )
            except RecallUnavailableError:
                return


def spread_after_warmup(run: Run, warmup: int) -> tuple[int, int]:
    """(max, min) of per-turn prompt_tokens over the turns after the first `warmup`."""
    later = run.per_turn()[warmup:]
    if not later:
        raise ValueError(f"no turns after a warm-up of {warmup} (the run has {len(run.rows)})")
    return max(later), min(later)


def repeated_ngram(text: str, earlier: Sequence[str] = (), n: int = 6) -> bool:
    """True when `text` repeats a run of `n` words from itself or from `earlier` texts (a reply that loops)."""

    def grams(piece: str) -> list[tuple[str, ...]]:
        words = [w.strip(".,!?;:\"'()").lower() for w in piece.split()]
        return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]

    own = grams(text)
    seen = {gram for piece in earlier for gram in grams(piece)}
    return len(own) != len(set(own)) or any(gram in seen for gram in own)


def looping_share(replies: Sequence[str], n: int = 6) -> float:
    """The share of replies that repeat an `n`-word run from themselves or an earlier reply."""
    if not replies:
        return 0.0
    return sum(repeated_ngram(reply, replies[:index], n) for index, reply in enumerate(replies)) / len(replies)

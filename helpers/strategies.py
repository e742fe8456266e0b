"""Run one long conversation through a history strategy, and quiz what it kept.

The shared engine of `examples/trim_history.py` and `benchmarks/strategies.py`
(notebook 03 writes the same loop out cell by cell). Four strategies decide what
each turn sends:

- ``raw``: the whole history (notebook 01); grows every turn.
- ``window``: the system message and the last `keep_turns` turns (`sliding_window`).
- ``budget``: the newest turns that fit in `budget` prompt tokens (`trim_to_budget`).
- ``summary``: a `SummaryBuffer`: a running summary plus the last
  `summary_keep_turns` turns, folded by a summarizer call past `threshold`
  verbatim messages. Its summarizer tokens are recorded apart.

`run_strategy` runs the append -> send -> append loop and records each turn's
`usage`; `quiz` asks the planted facts back, appended to what the strategy would
send next, and keyword-matches the answers (`fact_found`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .backend.client import current_settings
from .history import SummaryBuffer, sliding_window, trim_to_budget
from .payload import assistant_message

LONG_CONVERSATION = Path(__file__).resolve().parent.parent / "data" / "long_conversation.json"
STRATEGIES = ("raw", "window", "budget", "summary")
Message = dict[str, Any]


@dataclass(frozen=True)
class StrategySettings:
    """How each strategy is tuned (notebook 03's values by default)."""

    max_tokens: int = 40  # reply cap per turn
    keep_turns: int = 3  # window; the summary buffer keeps `summary_keep_turns`
    summary_keep_turns: int = 2
    budget: int = 400
    threshold: int = 8
    summary_max_tokens: int = 100
    summary_max_words: int = 60

    def __post_init__(self) -> None:
        if self.max_tokens < 1 or self.keep_turns < 1 or self.summary_keep_turns < 1 or self.budget < 1:
            raise ValueError("max_tokens, keep_turns, summary_keep_turns and budget must be at least 1")
        if self.threshold < 2 * self.summary_keep_turns:
            raise ValueError(
                f"threshold ({self.threshold}) must be at least 2 x summary_keep_turns ({2 * self.summary_keep_turns})"
            )


@dataclass
class Run:
    """What one strategy did: a row per turn, the summarizer calls, and how to build its next payload."""

    strategy: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    summarizer_rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    next_payload: Callable[[Message], list[Message]] | None = None
    summary: str = ""

    @property
    def prompt_tokens(self) -> int:
        """Prompt tokens of the conversation's own calls (summarizer calls not included)."""
        return sum(row["prompt_tokens"] for row in self.rows)

    @property
    def cached_tokens(self) -> int:
        return sum(row["cached_tokens"] for row in self.rows)

    @property
    def summarizer_tokens(self) -> int:
        """Prompt plus completion tokens of every summarizer call."""
        return sum(row["prompt_tokens"] + row["completion_tokens"] for row in self.summarizer_rows)

    @property
    def total_tokens(self) -> int:
        """What the strategy cost in prompt tokens, its summarizer's tokens included."""
        return self.prompt_tokens + self.summarizer_tokens

    def per_turn(self) -> list[int]:
        """prompt_tokens of each turn, in order."""
        return [row["prompt_tokens"] for row in self.rows]


def load_conversation(path: Path = LONG_CONVERSATION) -> dict[str, Any]:
    """A scripted conversation: `system`, `turns` (user texts) and planted `facts`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def choose_payload(strategy: str, settings: StrategySettings = StrategySettings()) -> Callable[[list[Message]], list[Message]]:
    """The function that turns the full history into what is sent (raw, window, budget)."""
    if strategy == "raw":
        return lambda history: list(history)
    if strategy == "window":
        return lambda history: sliding_window(history, settings.keep_turns)
    if strategy == "budget":
        return lambda history: trim_to_budget(history, settings.budget)
    if strategy == "summary":
        raise ValueError("the summary strategy keeps a SummaryBuffer, not a payload function: use run_strategy")
    raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")


def usage_row(turn: int, response: Any, sent: Sequence[Message]) -> dict[str, Any]:
    """One turn's figures from a response's `usage` (cached_tokens 0 when the server omits it)."""
    usage = response.usage
    details = getattr(usage, "prompt_tokens_details", None)
    return {
        "turn": turn,
        "messages sent": len(sent),
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cached_tokens": (getattr(details, "cached_tokens", None) or 0) if details else 0,
    }


def run_strategy(
    client: Any,
    strategy: str,
    system: str,
    turns: Sequence[str],
    settings: StrategySettings = StrategySettings(),
    on_turn: Callable[[dict[str, Any]], None] | None = None,
    *,
    model: str | None = None,
) -> Run:
    """Run the user `turns` through one strategy; `on_turn(row)` is called after each turn.

    Every turn: append the user message, choose what to send, send it, append the
    reply (role and content only). `model` defaults to the configured backend's.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    model = model or current_settings().model
    run = Run(strategy)
    start = time.perf_counter()
    system_message = {"role": "system", "content": system}
    if strategy == "summary":
        memory = SummaryBuffer(
            system=system_message,
            threshold=settings.threshold,
            keep_turns=settings.summary_keep_turns,
            max_words=settings.summary_max_words,
            summary_max_tokens=settings.summary_max_tokens,
            model=model,
        )
        for turn, text in enumerate(turns, start=1):
            memory.append({"role": "user", "content": text})  # 1. append the user turn
            call = memory.fold_if_needed(client)  # fold the oldest turns into the summary, if over the threshold
            sent = memory.payload()
            response = client.chat.completions.create(model=model, messages=sent, max_tokens=settings.max_tokens)  # 2. send
            memory.append(assistant_message(response))  # 3. append the reply
            row = usage_row(turn, response, sent)
            row["summarizer_tokens"] = call.prompt_tokens + call.completion_tokens if call else 0
            if call:
                run.summarizer_rows.append({"turn": turn, "prompt_tokens": call.prompt_tokens,
                                            "completion_tokens": call.completion_tokens, "cached_tokens": call.cached_tokens})
            run.rows.append(row)
            if on_turn:
                on_turn(row)
        run.summary = memory.summary
        run.next_payload = lambda question: memory.payload() + [question]
    else:
        payload = choose_payload(strategy, settings)
        history = [system_message]
        for turn, text in enumerate(turns, start=1):
            history.append({"role": "user", "content": text})  # 1. append the user turn
            sent = payload(history)  # what this strategy sends
            response = client.chat.completions.create(model=model, messages=sent, max_tokens=settings.max_tokens)  # 2. send
            history.append(assistant_message(response))  # 3. append the reply
            row = usage_row(turn, response, sent)
            row["summarizer_tokens"] = 0
            run.rows.append(row)
            if on_turn:
                on_turn(row)
        run.next_payload = lambda question: payload(history + [question])
    run.seconds = time.perf_counter() - start
    return run


def fact_found(text: str, fact: dict[str, Any]) -> bool:
    """Whether `text` mentions a planted fact (any of its `match` keywords, case-insensitive)."""
    lowered = text.lower()
    return any(keyword in lowered for keyword in fact["match"])


def quiz(
    client: Any,
    run: Run,
    facts: dict[str, dict[str, Any]],
    max_tokens: int = 40,
    *,
    model: str | None = None,
) -> list[dict[str, Any]]:
    """Ask each planted-fact question appended to the strategy's next payload; keyword-match the answers.

    `in what was sent` says whether the fact was anywhere in the payload before the
    question (in a user turn, a reply or the summary): without it, a right answer
    is a guess.
    """
    if run.next_payload is None:
        raise ValueError("run has no next payload: quiz a Run returned by run_strategy")
    model = model or current_settings().model
    rows = []
    for name, fact in facts.items():
        sent = run.next_payload({"role": "user", "content": fact["question"]})
        response = client.chat.completions.create(model=model, messages=sent, max_tokens=max_tokens)
        answer = response.choices[0].message.content or ""
        rows.append({"strategy": run.strategy, "fact": name,
                     "in what was sent": any(fact_found(str(m["content"]), fact) for m in sent[:-1]),
                     "answer has it": fact_found(answer, fact), "answer": answer})
    return rows


def recall(rows: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """(facts the answers named, facts asked) over quiz rows."""
    return sum(bool(row["answer has it"]) for row in rows), len(rows)


def spread_after_warmup(run: Run, warmup: int) -> tuple[int, int]:
    """(max, min) of per-turn prompt_tokens over the turns after the first `warmup`."""
    later = run.per_turn()[warmup:]
    if not later:
        raise ValueError(f"no turns after a warm-up of {warmup} (the run has {len(run.rows)})")
    return max(later), min(later)

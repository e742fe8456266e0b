"""helpers.strategies: the loop shared by examples/trim_history.py and benchmarks/strategies.py."""

import copy
from types import SimpleNamespace

import pytest

from helpers import count_tokens
from helpers.history import count_turns
from helpers.strategies import (
    STRATEGIES,
    Run,
    StrategySettings,
    choose_payload,
    fact_found,
    load_conversation,
    quiz,
    recall,
    run_strategy,
    spread_after_warmup,
    usage_row,
)

CONVERSATION = load_conversation()
SYSTEM = CONVERSATION["system"]
TURNS = CONVERSATION["turns"]
FACTS = CONVERSATION["facts"]


class ScriptedClient:
    """Answers every call with a fixed reply, bills count_tokens(messages), records what was sent.

    Summarizer requests (their system message asks for a summary) are answered with
    `summary`; every other call with `reply`, or, for a planted-fact question, with
    the fact's value when that value is anywhere in what was sent.
    """

    def __init__(self, reply="Noted. Enjoy the trip.", summary="Maya is allergic to shellfish."):
        self.reply, self.summary = reply, summary
        self.requests = []
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self.create))

    def create(self, **request):
        self.requests.append(copy.deepcopy(request))
        messages = request["messages"]
        if "running summary" in messages[0]["content"]:
            text = self.summary
        else:
            text = self.reply
            sent = " ".join(m["content"] for m in messages[:-1]).lower()
            for fact in FACTS.values():
                if messages[-1]["content"] == fact["question"]:
                    text = f"It is {fact['value']}." if fact_found(sent, fact) else "I do not know."
        usage = SimpleNamespace(prompt_tokens=int(count_tokens(messages)), completion_tokens=7,
                                prompt_tokens_details=SimpleNamespace(cached_tokens=3))
        message = SimpleNamespace(role="assistant", content=text, model_dump=lambda **_: {"role": "assistant", "content": text})
        return SimpleNamespace(choices=[SimpleNamespace(message=message, finish_reason="stop")], usage=usage)

    def conversation_calls(self):
        return [r for r in self.requests if "running summary" not in r["messages"][0]["content"]]


def test_settings_validate():
    assert StrategySettings().threshold >= 2 * StrategySettings().summary_keep_turns
    with pytest.raises(ValueError, match="threshold"):
        StrategySettings(threshold=3, summary_keep_turns=2)
    with pytest.raises(ValueError, match="at least 1"):
        StrategySettings(max_tokens=0)


def test_choose_payload():
    history = [{"role": "system", "content": SYSTEM}]
    for text in TURNS[:6]:
        history += [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}]
    history.append({"role": "user", "content": TURNS[6]})
    before = copy.deepcopy(history)
    settings = StrategySettings(keep_turns=2, budget=120)
    assert choose_payload("raw")(history) == history
    assert count_turns(choose_payload("window", settings)(history)) == 2
    assert int(count_tokens(choose_payload("budget", settings)(history))) <= 120
    assert history == before
    for wrong in ("summary", "nope"):
        with pytest.raises(ValueError):
            choose_payload(wrong)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_run_strategy_runs_the_loop_and_records_usage(strategy):
    client = ScriptedClient()
    settings = StrategySettings(max_tokens=16, keep_turns=2, budget=150, threshold=4, summary_keep_turns=1)
    seen = []
    run = run_strategy(client, strategy, SYSTEM, TURNS[:7], settings, seen.append, model="m")
    calls = client.conversation_calls()
    assert len(run.rows) == len(calls) == 7 and seen == run.rows
    assert [row["turn"] for row in run.rows] == list(range(1, 8))
    for row, call in zip(run.rows, calls):
        sent = call["messages"]
        assert call["model"] == "m" and call["max_tokens"] == 16
        assert sent[0] == {"role": "system", "content": SYSTEM}
        assert sent[-1] == {"role": "user", "content": TURNS[row["turn"] - 1]}
        assert row["prompt_tokens"] == int(count_tokens(sent)) and row["cached_tokens"] == 3
        assert row["messages sent"] == len(sent)
    sizes = run.per_turn()
    if strategy == "raw":
        assert all(b > a for a, b in zip(sizes, sizes[1:]))
        assert [row["messages sent"] for row in run.rows] == [2 * n for n in range(1, 8)]
    if strategy == "window":
        assert max(count_turns(c["messages"]) for c in calls) == 2
    if strategy == "budget":
        assert max(sizes) <= 150
    if strategy == "summary":
        assert run.summarizer_rows and run.summary == "Maya is allergic to shellfish."
        assert run.summarizer_tokens == sum(r["prompt_tokens"] + r["completion_tokens"] for r in run.summarizer_rows)
        assert run.total_tokens == run.prompt_tokens + run.summarizer_tokens
        assert sum(row["summarizer_tokens"] for row in run.rows) == run.summarizer_tokens
        assert any("Maya is allergic" in m["content"] for m in calls[-1]["messages"][1:2])
    else:
        assert run.summarizer_tokens == 0 and run.total_tokens == run.prompt_tokens


def test_run_strategy_rejects_an_unknown_strategy():
    with pytest.raises(ValueError, match="strategy must be one of"):
        run_strategy(ScriptedClient(), "everything", SYSTEM, TURNS[:1], model="m")


def test_quiz_asks_each_fact_after_the_strategy_payload():
    client = ScriptedClient()
    settings = StrategySettings(max_tokens=16, keep_turns=2)
    raw = run_strategy(client, "raw", SYSTEM, TURNS[:8], settings, model="m")
    window = run_strategy(client, "window", SYSTEM, TURNS[:8], settings, model="m")
    raw_rows, window_rows = quiz(client, raw, FACTS, model="m"), quiz(client, window, FACTS, model="m")
    assert [r["fact"] for r in raw_rows] == list(FACTS)
    assert all(r["in what was sent"] and r["answer has it"] for r in raw_rows)
    assert not any(r["in what was sent"] or r["answer has it"] for r in window_rows)
    assert recall(raw_rows) == (4, 4) and recall(window_rows) == (0, 4)
    last = client.requests[-1]
    assert last["messages"][-1]["content"] == FACTS["budget"]["question"]
    assert last["max_tokens"] == 40
    with pytest.raises(ValueError):
        quiz(client, Run("raw"), FACTS)


def test_fact_found_uses_the_match_list():
    assert fact_found("You land on April 14th.", FACTS["date"])
    assert fact_found("a budget of $3200", FACTS["budget"])
    assert not fact_found("You land in April.", FACTS["date"])


def test_usage_row_without_cache_details():
    response = SimpleNamespace(usage=SimpleNamespace(prompt_tokens=10, completion_tokens=2, prompt_tokens_details=None))
    assert usage_row(3, response, [{}, {}])["cached_tokens"] == 0


def test_spread_after_warmup():
    run = Run("raw", rows=[{"prompt_tokens": n} for n in (10, 50, 40, 45)])
    assert spread_after_warmup(run, 1) == (50, 40)
    with pytest.raises(ValueError):
        spread_after_warmup(run, 4)


def test_run_strategy_on_the_embedded_model(client):
    run = run_strategy(client, "window", SYSTEM, TURNS[:3], StrategySettings(max_tokens=8, keep_turns=1))
    assert [row["messages sent"] for row in run.rows] == [2, 2, 2]
    assert all(0 < row["completion_tokens"] <= 8 for row in run.rows)
    assert run.seconds > 0

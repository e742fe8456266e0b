"""helpers.strategies: conversations from data/, live runs, replays and recall measured three ways."""

import copy
import json

import pytest
from openai.types.chat import ChatCompletion

from helpers import count_tokens
from helpers.fake_server import FakeServer, chat_completion
from helpers.history import BufferSettings, RewriteSummary, count_turns
from helpers.strategies import (
    RECALL_PROBE,
    SECOND_CONVERSATION,
    STRATEGIES,
    ConversationFileError,
    Recording,
    Run,
    StrategySettings,
    choose_payload,
    load_conversation,
    looping_share,
    mentions,
    recall_rows,
    record,
    repeated_ngram,
    replay_strategy,
    run_strategy,
    spread_after_warmup,
    usage_row,
)

CONVERSATION = load_conversation()
FACTS = CONVERSATION.facts


def scripted(reply="Noted. Enjoy the trip.", summary="Maya is allergic to shellfish.") -> FakeServer:
    """A server that answers every call with a fixed reply and bills count_tokens(messages) for itself.

    Summarizer requests (their system message asks for a summary) are answered with
    `summary`; every other call with `reply`, or, for a planted-fact question, with
    the fact's value when that value is anywhere in what was sent.
    """

    def answer(body: dict) -> dict:
        messages = body["messages"]
        if "running summary" in messages[0]["content"]:
            text = summary
        else:
            text = reply
            sent = " ".join(str(m["content"]) for m in messages[:-1])
            for fact in FACTS.values():
                if messages[-1]["content"] == RECALL_PROBE.format(question=fact.question):
                    text = f"It is {fact.value}." if mentions(sent, fact) else "I do not know."
        billed = int(count_tokens(messages, client=server.client))  # what helpers counts for this server
        return chat_completion(text, prompt_tokens=billed, completion_tokens=7, cached_tokens=3)

    server = FakeServer(answer)
    return server


def conversation_calls(server: FakeServer) -> list[dict]:
    return [r for r in server.requests if "running summary" not in r["messages"][0]["content"]]


def test_the_data_conversations_load_with_scorable_facts():
    for conversation in (CONVERSATION, load_conversation(SECOND_CONVERSATION)):
        assert conversation.turns and conversation.facts
        for fact in conversation.facts.values():
            assert fact.scorable and fact.value in fact.candidates
            assert mentions(conversation.turns[fact.turn - 1], fact), f"{fact.name} is said in turn {fact.turn}"


@pytest.mark.parametrize(
    "document, fragment",
    [
        ("[]", "top level"),
        ('{"system": "s", "turns": []}', "'turns'"),
        ('{"system": "s", "turns": ["hi"], "facts": {"x": {"value": "v", "question": "q", "turn": 3}}}', "turn"),
        (
            '{"system": "s", "turns": ["v"], "facts": {"x": {"value": "v", "question": "q", "turn": 1, '
            '"candidates": ["a", "b"], "answer_prefix": "It is"}}}',
            "include the value",
        ),
        ("{not json", "not valid UTF-8 JSON"),
    ],
)
def test_a_malformed_conversation_file_is_named_and_left_alone(tmp_path, document, fragment):
    path = tmp_path / "bad.json"
    path.write_text(document)
    before = path.read_bytes()
    with pytest.raises(ConversationFileError, match=fragment) as caught:
        load_conversation(path)
    assert str(path) in str(caught.value) and path.read_bytes() == before


def test_a_missing_conversation_file_is_named(tmp_path):
    with pytest.raises(ConversationFileError, match="cannot read"):
        load_conversation(tmp_path / "nowhere.json")


def test_settings_validate():
    with pytest.raises(ValueError, match="threshold"):
        StrategySettings(buffer=BufferSettings(threshold=3, keep_turns=2))
    with pytest.raises(ValueError, match="at least 1"):
        StrategySettings(max_tokens=0)


def test_choose_payload():
    history = [CONVERSATION.system_message]
    for text in CONVERSATION.turns[:6]:
        history += [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}]
    history.append({"role": "user", "content": CONVERSATION.turns[6]})
    before = copy.deepcopy(history)
    settings = StrategySettings(window_turns=2, budget=120)
    assert choose_payload("raw")(history) == history
    assert count_turns(choose_payload("window", settings)(history)) == 2
    assert int(count_tokens(choose_payload("budget", settings)(history))) <= 120
    assert history == before
    for wrong in ("summary", "nope"):
        with pytest.raises(ValueError):
            choose_payload(wrong)


SMALL = StrategySettings(max_tokens=16, window_turns=2, budget=150, buffer=BufferSettings(threshold=4, keep_turns=1))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_run_strategy_runs_the_loop_and_records_usage(strategy):
    server = scripted()
    seen = []
    run = run_strategy(
        server.client, strategy, CONVERSATION, SMALL, seen.append, turns=7, model="m", summarizer=RewriteSummary()
    )
    calls = conversation_calls(server)
    assert len(run.rows) == len(calls) == 7 and seen == run.rows
    for row, call in zip(run.rows, calls):
        sent = call["messages"]
        assert call["model"] == "m" and call["max_tokens"] == 16
        assert sent[0] == CONVERSATION.system_message
        assert sent[-1] == {"role": "user", "content": CONVERSATION.turns[row["turn"] - 1]}
        assert row["prompt_tokens"] == int(count_tokens(sent, client=server.client)) and row["cached_tokens"] == 3
    sizes = run.per_turn()
    if strategy == "raw":
        assert all(b > a for a, b in zip(sizes, sizes[1:]))
    if strategy == "window":
        assert max(count_turns(c["messages"]) for c in calls) == 2
    if strategy == "budget":
        assert max(sizes) <= 150
    if strategy == "summary":
        assert run.summarizer_rows and run.summary == "Maya is allergic to shellfish."
        assert run.total_tokens == run.prompt_tokens + run.summarizer_tokens
        assert sum(row["summarizer_tokens"] for row in run.rows) == run.summarizer_tokens
        assert any("Maya is allergic" in m["content"] for m in calls[-1]["messages"][1:2])
    else:
        assert run.summarizer_tokens == 0 and run.total_tokens == run.prompt_tokens


def test_run_strategy_rejects_an_unknown_strategy():
    with pytest.raises(ValueError, match="strategy must be one of"):
        run_strategy(scripted().client, "everything", CONVERSATION, turns=1, model="m")


def recording(turns=8):
    return record(scripted().client, CONVERSATION, 16, turns=turns, model="m")


def test_replay_sends_exactly_what_a_live_run_sends():
    server = scripted()
    client = server.client
    recorded = recording()
    assert [m["role"] for m in recorded.history] == ["system"] + ["user", "assistant"] * 8
    for strategy in ("raw", "window", "budget"):
        live = run_strategy(scripted().client, strategy, CONVERSATION, SMALL, turns=8, model="m")
        replayed = replay_strategy(client, strategy, recorded, SMALL, model="m")
        assert replayed.per_turn() == live.per_turn(), strategy
    summary = replay_strategy(client, "summary", recorded, SMALL, model="m", summarizer=RewriteSummary())
    assert summary.summarizer_rows and all(r["calls"] == 1 for r in summary.summarizer_rows)
    assert len(server.requests) == len(summary.summarizer_rows), "a replay calls the model only to fold"


def test_replay_counts_the_cache_a_server_would_use(embedded_model):
    replayed = replay_strategy(scripted().client, "raw", recording(), SMALL, model="m")
    rows = replayed.rows
    assert rows[0]["cached_tokens"] == 0
    for previous, row in zip(rows, rows[1:]):  # raw keeps the prefix: the whole previous prompt is reused
        assert row["cached_tokens"] >= previous["prompt_tokens"]
        assert row["cached_tokens_openai_rule"] == 0 or row["cached_tokens_openai_rule"] % 128 == 0
    window = replay_strategy(scripted().client, "window", recording(), SMALL, model="m").rows
    assert window[-1]["cached_tokens"] < 40, "a window changes the start of the prompt every turn"


def test_recall_rows_measure_three_ways():
    client = scripted().client
    recorded = recording()
    raw = recall_rows(client, replay_strategy(client, "raw", recorded, SMALL, model="m"), FACTS, model="m")
    window = recall_rows(client, replay_strategy(client, "window", recorded, SMALL, model="m"), FACTS, model="m")
    assert [r["fact"] for r in raw] == list(FACTS)
    assert all(r["in what was sent"] and r["reply names it"] for r in raw)
    assert not any(r["in what was sent"] or r["reply names it"] for r in window)
    assert all(r["share"] is None for r in raw), "a server without logprobs gives no share, and no crash"
    with pytest.raises(ValueError):
        recall_rows(client, Run("raw"), FACTS)


def test_mentions_match_whole_words_only():
    date = FACTS["date"]
    assert mentions("You land on April 14th.", date) and mentions("a budget of $3200", FACTS["budget"])
    assert not mentions("You land in April.", date)
    japan = load_conversation(SECOND_CONVERSATION).facts["diet"]
    assert mentions("You are vegetarian.", japan) and not mentions("Vegetarianism is common.", japan)


def test_looping_replies_are_counted():
    assert repeated_ngram("a b c d e f a b c d e f")
    assert repeated_ngram("one two three four five six", ["zero one two three four five six seven"])
    assert not repeated_ngram("one two three four five six", ["one two three four five"])
    assert looping_share(["a b c d e f g", "x a b c d e f", "fresh words here only"]) == pytest.approx(1 / 3)


def test_usage_row_without_cache_details():
    response = ChatCompletion.model_validate(chat_completion("Hi.", prompt_tokens=10, completion_tokens=2))
    assert usage_row(3, response, [{}, {}])["cached_tokens"] is None


def test_spread_after_warmup():
    run = Run("raw", rows=[{"prompt_tokens": n} for n in (10, 50, 40, 45)])
    assert spread_after_warmup(run, 1) == (50, 40)
    with pytest.raises(ValueError):
        spread_after_warmup(run, 4)


def test_live_and_replayed_runs_on_the_embedded_model(client):
    run = run_strategy(client, "window", CONVERSATION, StrategySettings(max_tokens=8, window_turns=1), turns=3)
    assert [row["messages sent"] for row in run.rows] == [2, 2, 2]
    assert all(0 < row["completion_tokens"] <= 8 for row in run.rows)
    recorded = record(client, CONVERSATION, 8, turns=4)
    assert isinstance(recorded, Recording)
    raw = replay_strategy(client, "raw", recorded)
    assert [row["prompt_tokens"] for row in raw.rows] == [row["prompt_tokens"] for row in recorded.rows]
    rows = recall_rows(client, raw, {"name": FACTS["name"]}, reply_tokens=8)
    assert rows[0]["in what was sent"] and 0 <= rows[0]["share"] <= 1
    assert json.dumps(rows)  # plain values, ready for a table

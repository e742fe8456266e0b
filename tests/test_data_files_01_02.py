"""The data files notebooks 01 and 02 read: the scripted trip, the price table, the DeepSeek example."""

import json
from datetime import date
from pathlib import Path

import pandas as pd
from openai.types.chat import ChatCompletion

from helpers import count_tokens

DATA = Path(__file__).resolve().parent.parent / "data"


def test_trip_conversation_is_scripted_as_the_lesson_needs():
    trip = json.loads((DATA / "trip_conversation.json").read_text())
    users = [turn["user"] for turn in trip["turns"]]
    assert trip["system"] == "You are a concise travel assistant."
    assert len(users) >= 10
    assert users[:3] == ["I'm planning a trip to Japan.", "What's the best season to visit?", "And what should I pack for that season?"]
    assert all(turn["needs"] in trip["facts"] for turn in trip["turns"] if turn["needs"] is not None)
    # "Japan" is said once, by the user, in turn 1: later turns that need it must get it from the history.
    assert [i for i, text in enumerate(users) if "japan" in text.lower()] == [0]
    assert {"destination", "assistant_season"} <= {turn["needs"] for turn in trip["turns"]}


def test_prices_are_dated_sourced_and_consistent():
    prices = pd.read_csv(DATA / "prices.csv")
    assert list(prices.columns) == [
        "provider", "model", "input_usd_per_mtok", "cached_input_usd_per_mtok", "output_usd_per_mtok", "as_of", "source",
    ]
    assert not prices.isna().any().any()
    assert (prices["cached_input_usd_per_mtok"] < prices["input_usd_per_mtok"]).all()
    assert (prices["input_usd_per_mtok"] < prices["output_usd_per_mtok"]).all()
    for as_of in prices["as_of"]:
        assert date.fromisoformat(as_of) <= date.today()
    assert prices["source"].str.contains("https://").all()
    assert not prices.duplicated(["provider", "model", "as_of"]).any()


def test_deepseek_example_parses_and_its_usage_matches_the_tokenizer(embedded_model):
    raw = json.loads((DATA / "deepseek_reasoning_response.json").read_text())
    completion = ChatCompletion.model_validate(raw)
    message = completion.choices[0].message
    assert completion.model == "deepseek-reasoner" and message.role == "assistant"
    reasoning = embedded_model.count_text_tokens(message.reasoning_content)
    answer = embedded_model.count_text_tokens(message.content)
    request = [
        {"role": "system", "content": "You are a concise travel assistant."},
        {"role": "user", "content": "I'm planning a trip to Japan. What's the best season to visit?"},
    ]
    usage = completion.usage
    assert usage.completion_tokens_details.reasoning_tokens == reasoning
    assert usage.completion_tokens == reasoning + answer
    assert usage.prompt_tokens == int(count_tokens(request))
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert raw["usage"]["prompt_cache_hit_tokens"] + raw["usage"]["prompt_cache_miss_tokens"] == usage.prompt_tokens
    assert reasoning > 3 * answer  # the point of the example: the reasoning dwarfs the answer

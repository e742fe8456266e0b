"""The data files notebooks 01 and 02 read: the scripted trip, the price table, the DeepSeek example."""

import json
from datetime import date
from pathlib import Path

import pandas as pd
from openai.types.chat import ChatCompletion

from helpers import count_tokens
from helpers.backend.config import provider_presets
from helpers.strategies import load_conversation, mentions

DATA = Path(__file__).resolve().parent.parent / "data"


def test_trip_conversation_is_scripted_as_the_lesson_needs():
    trip = json.loads((DATA / "trip_conversation.json").read_text())
    users = [turn["user"] for turn in trip["turns"]]
    assert trip["system"] == "You are a concise travel assistant."
    assert len(users) >= 10
    assert users[:3] == [
        "I'm planning a trip to Japan.",
        "What's the best season to visit?",
        "And what should I pack for that season?",
    ]
    assert all(turn["needs"] in trip["facts"] for turn in trip["turns"] if turn["needs"] is not None)
    # "Japan" is said once, by the user, in turn 1: later turns that need it must get it from the history.
    assert [i for i, text in enumerate(users) if "japan" in text.lower()] == [0]
    assert {"destination", "assistant_season"} <= {turn["needs"] for turn in trip["turns"]}


PRICE_COLUMNS = [
    "provider",
    "model",
    "band",
    "input_usd_per_mtok",
    "cached_input_usd_per_mtok",
    "output_usd_per_mtok",
    "shutdown",
    "as_of",
    "source",
    "confidence",
    "note",
]
CONFIDENCE = {"confirmed", "secondary", "unconfirmed"}


def test_prices_are_dated_sourced_and_consistent():
    prices = pd.read_csv(DATA / "prices.csv", dtype=str, keep_default_na=False)
    assert list(prices.columns) == PRICE_COLUMNS
    for column in ("provider", "model", "band", "as_of", "source", "confidence"):
        assert (prices[column].str.strip() != "").all(), f"a price row has no {column}"
    numbers = prices[["input_usd_per_mtok", "cached_input_usd_per_mtok", "output_usd_per_mtok"]].astype(float)
    assert (numbers["cached_input_usd_per_mtok"] < numbers["input_usd_per_mtok"]).all()
    assert (numbers["input_usd_per_mtok"] < numbers["output_usd_per_mtok"]).all()
    for as_of, shutdown in zip(prices["as_of"], prices["shutdown"]):
        assert date.fromisoformat(as_of) <= date.today()
        if shutdown:
            assert date.fromisoformat(shutdown) > date.fromisoformat(as_of)
    assert prices["source"].str.contains("https://").all()
    assert set(prices["confidence"]) <= CONFIDENCE
    assert set(prices["band"]) <= {"standard", "off-peak", "peak"}
    assert not prices.duplicated(["provider", "model", "band", "as_of"]).any()


def test_every_preset_is_dated_and_sourced_and_its_default_model_has_a_current_price():
    providers = pd.read_csv(DATA / "providers.csv", dtype=str, keep_default_na=False)
    prices = pd.read_csv(DATA / "prices.csv", dtype=str, keep_default_na=False)
    assert set(providers["provider"]) == set(provider_presets())  # config reads this file
    for row in providers.itertuples():
        assert date.fromisoformat(row.as_of) <= date.today(), row.provider
        assert row.source.strip() and row.confidence in CONFIDENCE, row.provider
        if row.key_variable != "LLM_API_KEY":  # a hosted provider: its source is a public page
            assert "https://" in row.source, row.provider
        if not row.default_model:
            assert not row.priced_as, row.provider
            continue
        # priced_as names the prices.csv rows for the default model ("provider:model"); a router such as
        # OpenRouter is priced as the lab that serves the model.
        price_provider, _, price_model = row.priced_as.partition(":")
        assert row.default_model.endswith(price_model), f"{row.provider}: priced_as {row.priced_as!r}"
        rows = prices[(prices["provider"] == price_provider) & (prices["model"] == price_model)]
        assert not rows.empty, f"{row.provider}'s default model {row.default_model} has no row in prices.csv"
        for shutdown in set(rows["shutdown"]) - {""}:
            assert date.fromisoformat(shutdown) > date.today(), (
                f"{row.provider}'s default model {row.default_model} shut down on {shutdown}: "
                "choose a current model in data/providers.csv (and prices.csv, README)"
            )


def test_the_readme_names_each_presets_default_model():
    readme = (DATA.parent / "README.md").read_text(encoding="utf-8")
    providers_section = readme[readme.index("## Providers") : readme.index("## The embedded model")]
    for name, preset in provider_presets().items():
        if preset.default_model:
            assert f"`{preset.default_model}`" in providers_section, (
                f"README does not name {name}'s {preset.default_model}"
            )


def test_deepseek_example_parses_and_its_usage_matches_the_tokenizer(embedded_model):
    raw = json.loads((DATA / "deepseek_reasoning_response.json").read_text())
    completion = ChatCompletion.model_validate(raw)
    message = completion.choices[0].message
    assert completion.model == "deepseek-flash" and message.role == "assistant"  # thinking is on by default
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


def test_the_trip_destination_is_a_scorable_fact_said_once_by_the_user():
    trip = load_conversation(DATA / "trip_conversation.json")
    destination = trip.facts["destination"]
    assert destination.scorable and destination.value == "Japan" and destination.turn == 1
    assert destination.value in destination.candidates and len(set(destination.candidates)) >= 4
    assert destination.question == trip.turns[-1]  # turn 12 asks for it back, in the script's own words
    assert [mentions(text, destination) for text in trip.turns] == [True] + [False] * (len(trip.turns) - 1)
    assert not mentions("Try the Japanese food.", destination)  # whole words only
    # the facts the assistant states are found at run time (notebook 02), so they stay descriptions
    assert {"assistant_season", "assistant_cities", "assistant_dishes"} <= set(trip.notes)

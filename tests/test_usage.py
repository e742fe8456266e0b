"""helpers.backend.usage.read_usage: every server's usage shape, and what it does not report."""

import json
from pathlib import Path

import pytest
from openai.types.chat import ChatCompletion

from helpers import Usage, UsageNotReportedError, read_usage

DATA = Path(__file__).resolve().parent.parent / "data"


def completion(usage: dict) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": usage,
    }


OPENAI = {
    "prompt_tokens": 1200,
    "completion_tokens": 40,
    "total_tokens": 1240,
    "prompt_tokens_details": {"cached_tokens": 1024},
    "completion_tokens_details": {"reasoning_tokens": 0},
}
DEEPSEEK = {
    "prompt_tokens": 300,
    "completion_tokens": 90,
    "total_tokens": 390,
    "prompt_tokens_details": {"cached_tokens": 0},  # may disagree with the field DeepSeek bills
    "prompt_cache_hit_tokens": 256,
    "prompt_cache_miss_tokens": 44,
    "completion_tokens_details": {"reasoning_tokens": 70},
}
# llama-cpp-python's server, Ollama, LM Studio, older vLLM: the counts and nothing else.
BARE = {"prompt_tokens": 31, "completion_tokens": 5, "total_tokens": 36}
RESPONSES_API = {
    "input_tokens": 500,
    "output_tokens": 60,
    "total_tokens": 560,
    "input_tokens_details": {"cached_tokens": 384},
    "output_tokens_details": {"reasoning_tokens": 12},
}


def test_openai_usage_names_its_cached_and_reasoning_fields():
    usage = read_usage(ChatCompletion.model_validate(completion(OPENAI)))
    assert usage == Usage(
        1200,
        40,
        1024,
        0,
        "usage.prompt_tokens_details.cached_tokens",
        "usage.completion_tokens_details.reasoning_tokens",
    )
    assert usage.uncached_prompt_tokens == 176 and usage.total_tokens == 1240


def test_deepseek_cache_hits_come_from_the_field_deepseek_bills():
    for shape in (ChatCompletion.model_validate(completion(DEEPSEEK)), completion(DEEPSEEK), DEEPSEEK):
        usage = read_usage(shape)
        assert (usage.cached_tokens, usage.cached_source) == (256, "usage.prompt_cache_hit_tokens")
        assert usage.reasoning_tokens == 70


def test_a_server_that_omits_the_details_reads_as_not_reported_not_as_zero():
    # Before: notebook 00 crashed here with "'NoneType' object has no attribute 'cached_tokens'".
    response = ChatCompletion.model_validate(completion(BARE))
    assert response.usage.prompt_tokens_details is None
    usage = read_usage(response)
    assert (usage.prompt_tokens, usage.completion_tokens) == (31, 5)
    assert usage.cached_tokens is None and usage.reasoning_tokens is None
    assert usage.uncached_prompt_tokens is None
    assert usage.describe() == "prompt 31, completion 5, cached not reported, reasoning not reported"


def test_details_present_but_empty_are_not_reported_either():
    usage = read_usage({**BARE, "prompt_tokens_details": {"cached_tokens": None}, "completion_tokens_details": None})
    assert usage.cached_tokens is None and usage.reasoning_tokens is None


def test_responses_api_usage_is_read_with_its_own_names():
    usage = read_usage({"id": "resp_1", "usage": RESPONSES_API})
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.reasoning_tokens) == (
        500,
        60,
        384,
        12,
    )
    assert usage.cached_source == "usage.input_tokens_details.cached_tokens"


def test_the_stored_deepseek_example_reads_its_reasoning_and_cache_fields():
    example = json.loads((DATA / "deepseek_reasoning_response.json").read_text())
    usage = read_usage(ChatCompletion.model_validate(example))
    assert usage.reasoning_tokens == example["usage"]["completion_tokens_details"]["reasoning_tokens"]
    assert usage.cached_source == "usage.prompt_cache_hit_tokens"


def test_a_real_embedded_response(client, model_name):
    response = client.chat.completions.create(
        model=model_name, messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    usage = read_usage(response)
    assert usage.prompt_tokens == response.usage.prompt_tokens
    assert usage.cached_tokens == response.usage.prompt_tokens_details.cached_tokens
    assert read_usage(response.usage) == usage


@pytest.mark.parametrize(
    "value, fragment",
    [
        ({"usage": None}, "no usage"),
        ({}, "no usage"),
        ({"completion_tokens": 3}, "no prompt and completion"),
        ({"prompt_tokens": "12", "completion_tokens": 3}, "not a token count"),
        ({"prompt_tokens": -1, "completion_tokens": 3}, "not a token count"),
        ({**BARE, "prompt_tokens_details": {"cached_tokens": True}}, "not a token count"),
    ],
)
def test_missing_or_malformed_usage_is_a_named_error(value, fragment):
    with pytest.raises(UsageNotReportedError, match=fragment):
        read_usage(value)


def test_something_that_is_not_a_response_is_a_type_error():
    with pytest.raises(TypeError, match="not int"):
        read_usage(42)

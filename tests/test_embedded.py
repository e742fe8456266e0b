"""The embedded model behind the real openai SDK: responses, usage, caching, errors."""

import json

import openai
import pytest

from helpers import count_tokens
from helpers.backend.embedded import EmbeddedTransport, gguf_path, normalize_messages

SYSTEM = {"role": "system", "content": "You are a concise travel assistant."}

CONVERSATIONS = {
    "one user message": [{"role": "user", "content": "Hello!"}],
    "system and user": [SYSTEM, {"role": "user", "content": "I'm planning a trip to Japan."}],
    "three turns": [
        SYSTEM,
        {"role": "user", "content": "I'm planning a trip to Japan."},
        {"role": "assistant", "content": "Lovely! When are you going?"},
        {"role": "user", "content": "In April. What's the best season to visit?"},
        {"role": "assistant", "content": "Spring, for the cherry blossoms."},
        {"role": "user", "content": "And what should I pack for that season?"},
    ],
    "unicode and content parts": [
        SYSTEM,
        {"role": "user", "content": [{"type": "text", "text": "Tōkyō or 京都? "}, {"type": "text", "text": "Pick one 🙂"}]},
    ],
    "developer role": [{"role": "developer", "content": "Answer in one word."}, {"role": "user", "content": "Capital of Japan?"}],
}


def test_gguf_ships_inside_the_package():
    path = gguf_path()
    assert path.name.endswith(".gguf") and path.stat().st_size > 50_000_000


def test_returns_a_real_chat_completion(client, model_name):
    response = client.chat.completions.create(model=model_name, messages=CONVERSATIONS["system and user"], max_tokens=20)
    assert isinstance(response, openai.types.chat.ChatCompletion)
    assert response.model == model_name
    assert response.choices[0].message.role == "assistant"
    assert response.choices[0].message.content
    assert response.usage.completion_tokens <= 20
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens
    assert response.usage.prompt_tokens_details.cached_tokens >= 0


@pytest.mark.parametrize("name", CONVERSATIONS)
def test_count_tokens_equals_usage_prompt_tokens(client, model_name, name):
    messages = CONVERSATIONS[name]
    expected = count_tokens(messages)
    response = client.chat.completions.create(model=model_name, messages=messages, max_tokens=5)
    assert expected.exact
    assert int(expected) == response.usage.prompt_tokens


def test_count_tokens_on_a_history_grown_by_the_model(client, model_name):
    history = [SYSTEM]
    for question in ["I'm planning a trip to Japan.", "What's the best season?", "What should I pack?"]:
        history.append({"role": "user", "content": question})
        before = count_tokens(history)
        response = client.chat.completions.create(model=model_name, messages=history, max_tokens=30)
        assert response.usage.prompt_tokens == before
        history.append({"role": "assistant", "content": response.choices[0].message.content})


def test_greedy_by_default_so_repeatable(client, model_name):
    messages = CONVERSATIONS["system and user"]
    first = client.chat.completions.create(model=model_name, messages=messages, max_tokens=25)
    client.chat.completions.create(model=model_name, messages=CONVERSATIONS["one user message"], max_tokens=5)
    second = client.chat.completions.create(model=model_name, messages=messages, max_tokens=25)
    assert first.choices[0].message.content == second.choices[0].message.content


def test_cached_tokens_report_the_reused_prefix(client, model_name):
    history = [SYSTEM, {"role": "user", "content": "Name three cities in Japan."}]
    first = client.chat.completions.create(model=model_name, messages=history, max_tokens=20)
    history += [
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "Which is the oldest?"},
    ]
    second = client.chat.completions.create(model=model_name, messages=history, max_tokens=5)
    cached = second.usage.prompt_tokens_details.cached_tokens
    # The whole first prompt was in the KV cache; the new turn was not.
    assert first.usage.prompt_tokens <= cached < second.usage.prompt_tokens

    other = [{"role": "system", "content": "Reply in French."}, {"role": "user", "content": "Bonjour"}]
    third = client.chat.completions.create(model=model_name, messages=other, max_tokens=5)
    assert third.usage.prompt_tokens_details.cached_tokens < 5  # only the template's opening tokens match


def test_context_over_the_window_is_openais_error(client, model_name, embedded_model):
    long_text = "Tell me about Kyoto. " * (embedded_model.n_ctx // 3)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model_name, messages=[{"role": "user", "content": long_text}])
    assert caught.value.status_code == 400
    assert caught.value.code == "context_length_exceeded"
    assert f"maximum context length is {embedded_model.n_ctx}" in caught.value.message


def test_prompt_plus_max_tokens_over_the_window_is_refused(client, model_name, embedded_model):
    with pytest.raises(openai.BadRequestError, match="context length") as caught:
        client.chat.completions.create(model=model_name, messages=CONVERSATIONS["one user message"], max_tokens=embedded_model.n_ctx)
    assert caught.value.code == "context_length_exceeded"


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError, match="helpers.MODEL") as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=CONVERSATIONS["one user message"])
    assert caught.value.code == "model_not_found"


@pytest.mark.parametrize(
    "messages, fragment",
    [
        ([], "non-empty list"),
        ([{"content": "no role"}], "role"),
        ([{"role": "wizard", "content": "hi"}], "not a chat role"),
        ([{"role": "user", "content": 42}], "string or a list"),
    ],
)
def test_malformed_messages_are_bad_requests(client, model_name, messages, fragment):
    with pytest.raises(openai.BadRequestError, match=fragment):
        client.chat.completions.create(model=model_name, messages=messages)


def test_tools_are_refused_clearly(client, model_name):
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    with pytest.raises(openai.BadRequestError, match="does not support 'tools'"):
        client.chat.completions.create(model=model_name, messages=CONVERSATIONS["one user message"], tools=[tool])


def test_streaming_gives_the_same_text_and_usage(client, model_name):
    messages = CONVERSATIONS["system and user"]
    whole = client.chat.completions.create(model=model_name, messages=messages, max_tokens=30)
    stream = client.chat.completions.create(
        model=model_name, messages=messages, max_tokens=30, stream=True, stream_options={"include_usage": True}
    )
    pieces, usage = [], None
    for chunk in stream:
        pieces.extend(choice.delta.content or "" for choice in chunk.choices)
        usage = chunk.usage or usage
    assert "".join(pieces) == whole.choices[0].message.content
    assert usage.prompt_tokens == whole.usage.prompt_tokens
    assert abs(usage.completion_tokens - whole.usage.completion_tokens) <= 1


def test_models_endpoint_lists_the_embedded_model(client, model_name):
    assert [m.id for m in client.models.list()] == [model_name]


def test_transport_answers_unknown_paths_with_404(embedded_model):
    from helpers.backend._http import httpx

    with httpx.Client(transport=EmbeddedTransport(embedded_model), base_url="http://embedded/v1") as http:
        response = http.post("/v1/embeddings", json={})
        assert response.status_code == 404
        assert "chat/completions" in response.json()["error"]["message"]
        bad_json = http.post("/v1/chat/completions", content=b"{not json")
        assert bad_json.status_code == 400


def test_normalize_keeps_role_and_text_only():
    messages = [{"role": "assistant", "content": "hi", "reasoning_content": "long thoughts"}]
    assert normalize_messages(messages) == [{"role": "assistant", "content": "hi"}]
    assert json.dumps(messages)  # input untouched
    assert messages[0]["reasoning_content"] == "long thoughts"

"""helpers.payload: the payload view, the role+content whitelist, and the recording client."""

import copy
import io
import json
from pathlib import Path

import pytest
from openai.types.chat import ChatCompletion

from helpers import count_tokens
from helpers.payload import ToolCallTurnError, assistant_message, payload_table, recording_client, show_payload

DATA = Path(__file__).resolve().parent.parent / "data"
SYSTEM = {"role": "system", "content": "You are a concise travel assistant."}
USER = {"role": "user", "content": "I'm planning a trip to Japan."}


@pytest.fixture(scope="module")
def deepseek_example() -> dict:
    return json.loads((DATA / "deepseek_reasoning_response.json").read_text())


def printed(messages, **options) -> str:
    out = io.StringIO()
    assert show_payload(messages, file=out, **options) is None
    return out.getvalue()


def test_table_counts_each_message_and_leaves_the_list_alone(embedded_model):
    messages = [SYSTEM, USER, {"role": "assistant", "content": "Lovely! When?", "reasoning_content": "Think first."}]
    before = copy.deepcopy(messages)
    table = payload_table(messages)
    assert messages == before
    assert list(table["role"]) == ["system", "user", "assistant"]
    assert list(table["chars"]) == [len(m["content"]) for m in messages]
    assert list(table["tokens"]) == [embedded_model.count_text_tokens(m["content"]) for m in messages]
    assert list(table["other keys"]) == ["", "", "reasoning_content"]
    assert list(table["other tokens"]) == [0, 0, embedded_model.count_text_tokens("Think first.")]


def test_show_payload_prints_one_line_per_message_and_the_exact_total():
    text = printed([SYSTEM, USER])
    lines = text.splitlines()
    assert lines[0].split() == ["#", "role", "chars", "tokens", "content"]
    assert lines[1].split()[:4] == ["0", "system", "35", "7"]
    assert lines[2].split()[:4] == ["1", "user", "29", "8"]
    total = int(count_tokens([SYSTEM, USER]))
    assert lines[3].startswith(
        f"sent: 2 messages, 15 tokens of text + {total - 15} of chat template = {total} prompt tokens (exact"
    )
    assert len(lines) == 4


def test_show_payload_flags_extra_keys_and_shortens_long_text(embedded_model):
    long_reply = {"role": "assistant", "content": "word " * 50, "reasoning_content": "step " * 30}
    text = printed([SYSTEM, USER, long_reply], width=30)
    reasoning_tokens = embedded_model.count_text_tokens("step " * 30)
    assert f"[+ reasoning_content: {reasoning_tokens} tokens]" in text
    assert " ".join(["word"] * 50)[:27] + "..." in text
    assert f"also in the request body: {reasoning_tokens} tokens in other keys" in text


def test_show_payload_accepts_sdk_message_objects(deepseek_example):
    message = ChatCompletion.model_validate(deepseek_example).choices[0].message
    text = printed([SYSTEM, USER, message])
    assert "assistant" in text and "reasoning_content" in text


def test_malformed_payload_is_a_value_error():
    with pytest.raises(ValueError, match="role"):
        payload_table([{"content": "no role"}])


def test_assistant_message_from_a_real_completion(client, model_name):
    response = client.chat.completions.create(model=model_name, messages=[SYSTEM, USER], max_tokens=10)
    assert assistant_message(response) == {"role": "assistant", "content": response.choices[0].message.content}
    assert assistant_message(response.choices[0].message) == assistant_message(response)


def test_assistant_message_drops_reasoning_content_from_every_input_shape(deepseek_example):
    content = deepseek_example["choices"][0]["message"]["content"]
    expected = {"role": "assistant", "content": content}
    completion = ChatCompletion.model_validate(deepseek_example)
    assert completion.choices[0].message.reasoning_content  # the SDK keeps the extra field
    for reply in (
        completion,
        completion.choices[0].message,
        deepseek_example,
        deepseek_example["choices"][0]["message"],
    ):
        assert assistant_message(reply) == expected
    assert "reasoning_content" in deepseek_example["choices"][0]["message"]  # input untouched


def test_tool_call_turns_are_refused_with_the_reason():
    turn = {
        "role": "assistant",
        "content": None,
        "reasoning_content": "I need the weather.",
        "tool_calls": [{"id": "call_0", "type": "function", "function": {"name": "weather", "arguments": "{}"}}],
    }
    with pytest.raises(ToolCallTurnError, match="reasoning_content") as caught:
        assistant_message(turn)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    "reply, fragment",
    [({"role": "user", "content": "hi"}, "assistant"), ({"role": "assistant", "content": None}, "no text")],
)
def test_replies_without_assistant_text_are_value_errors(reply, fragment):
    with pytest.raises(ValueError, match=fragment):
        assistant_message(reply)


def test_recording_client_keeps_the_bodies_sent_and_received(model_name):
    client, recorded = recording_client()
    response = client.chat.completions.create(model=model_name, messages=[SYSTEM, USER], max_tokens=5)
    assert recorded.requests == [{"model": model_name, "messages": [SYSTEM, USER], "max_tokens": 5}]
    assert recorded.messages == [[SYSTEM, USER]]
    assert recorded.responses[0]["choices"][0]["message"]["content"] == response.choices[0].message.content
    assert recorded.responses[0]["usage"]["prompt_tokens"] == response.usage.prompt_tokens


def test_recording_client_keeps_api_requests_not_the_servers_measurements(model_name):
    from helpers import count_tokens

    client, recorded = recording_client()
    counted = count_tokens([SYSTEM, USER], client=client)  # /apply-template and /tokenize at the server's root
    assert counted.exact and recorded.requests == [] and recorded.responses == []
    client.chat.completions.create(model=model_name, messages=[SYSTEM, USER], max_tokens=2)
    assert recorded.messages == [[SYSTEM, USER]] and len(recorded.responses) == 1
    assert recorded.responses[0]["usage"]["prompt_tokens"] == int(counted)


def test_measuring_paths_are_the_servers_root_endpoints_only():
    from helpers.backend.llamacpp import is_measuring_path

    assert all(is_measuring_path(p) for p in ("/tokenize", "/apply-template", "/completion", "/proxy/props"))
    assert not any(is_measuring_path(p) for p in ("/v1/chat/completions", "/v1/completions", "/v1/completion"))


def test_the_sdk_sends_reasoning_content_when_the_message_object_is_appended(model_name, deepseek_example):
    """The claim notebook 01 makes: appending the message object resends reasoning_content."""
    message = ChatCompletion.model_validate(deepseek_example).choices[0].message
    follow_up = {"role": "user", "content": "And what should I pack for that season?"}
    client, recorded = recording_client()
    as_is = client.chat.completions.create(model=model_name, messages=[SYSTEM, USER, message, follow_up], max_tokens=1)
    whitelisted = client.chat.completions.create(
        model=model_name, messages=[SYSTEM, USER, assistant_message(message), follow_up], max_tokens=1
    )
    sent_as_is, sent_whitelisted = recorded.messages[0][2], recorded.messages[1][2]
    assert sent_as_is["reasoning_content"] == message.reasoning_content
    assert sent_whitelisted == {"role": "assistant", "content": message.content}
    # The embedded server reads role and content only, so both prompts are the same size.
    assert as_is.usage.prompt_tokens == whitelisted.usage.prompt_tokens


def test_recording_client_marks_streamed_replies(model_name):
    client, recorded = recording_client()
    stream = client.chat.completions.create(model=model_name, messages=[USER], max_tokens=3, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text
    assert recorded.responses == [None]
    assert recorded.requests[0]["stream"] is True


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_recording_client_keeps_get_clients_named_errors_on_the_provider_path():
    # Before: recording_client rebuilt the client without the transport that names the URL on a refused call.
    import openai

    from helpers import ModelNotFoundError, ProviderUnreachableError, resolve_settings

    url = f"http://127.0.0.1:{_closed_port()}/v1"
    settings = resolve_settings({"OPENAI_BASE_URL": url, "LLM_MODEL": "m"})
    with pytest.raises(ProviderUnreachableError, match=url):
        recording_client(settings)
    client, recorded = recording_client(settings, check_connection=False, max_retries=0)
    with pytest.raises(openai.APIConnectionError) as caught:
        client.chat.completions.create(model="m", messages=[USER])
    assert url in str(caught.value.__cause__)
    assert recorded.requests == [{"model": "m", "messages": [USER]}]
    embedded_client, _ = recording_client()
    with pytest.raises(ModelNotFoundError):
        embedded_client.chat.completions.create(model="deepseek-chat", messages=[USER], max_tokens=1)


def test_payload_table_for_a_provider_estimates_without_a_model():
    from helpers import resolve_settings

    settings = resolve_settings({"LLM_PROVIDER": "ollama", "LLM_MODEL": "llama3.2"})
    table = payload_table([SYSTEM, USER], settings)
    assert list(table["tokens"]) == [9, 8]  # ceil(35 / 4), ceil(29 / 4)
    assert "estimate" in printed([SYSTEM, USER], settings=settings)

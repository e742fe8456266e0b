"""helpers.frameworks: recorded connections for real frameworks, session items, captured provider requests."""

import asyncio
import copy

import openai
import pytest

from helpers import ProviderUnreachableError, count_tokens, resolve_settings
from helpers.backend._http import httpx
from helpers.frameworks import (
    CAPTURED_HEADER,
    RequestLog,
    SentRequest,
    anthropic_capture_client,
    items_to_messages,
    openai_state_client,
    recording_connection,
    reply_cap,
    send_or_capture,
)

SYSTEM = {"role": "system", "content": "You are a concise travel assistant."}
USER = {"role": "user", "content": "I'm planning a trip to Japan."}
OPENAI = {"LLM_PROVIDER": "openai", "OPENAI_API_KEY": "sk-test-not-real"}


# --- recording_connection ----------------------------------------------------------------------


def test_sync_and_async_clients_record_into_one_log_in_order(model_name):
    wire = recording_connection()
    sync_reply = wire.openai_client().chat.completions.create(model=model_name, messages=[SYSTEM, USER], max_tokens=5)
    async_reply = asyncio.run(
        wire.async_openai_client().chat.completions.create(model=model_name, messages=[USER], max_tokens=5)
    )
    assert wire.base_url.endswith("/v1") and wire.api_key
    assert wire.recorded.messages == [[SYSTEM, USER], [USER]]
    assert [r["usage"]["prompt_tokens"] for r in wire.recorded.responses] == [
        sync_reply.usage.prompt_tokens,
        async_reply.usage.prompt_tokens,
    ]


def test_an_async_stream_is_recorded_as_sent(model_name):
    wire = recording_connection()

    async def stream():
        chunks = await wire.async_openai_client().chat.completions.create(
            model=model_name, messages=[USER], max_tokens=5, stream=True
        )
        return [chunk async for chunk in chunks]

    assert len(asyncio.run(stream())) > 1
    assert wire.recorded.requests[0]["stream"] is True and wire.recorded.responses == [None]


def test_langchain_chat_openai_runs_on_the_connection(model_name):
    from langchain_openai import ChatOpenAI

    wire = recording_connection()
    llm = ChatOpenAI(model=model_name, base_url=wire.base_url, api_key=wire.api_key,
                     http_client=wire.http_client, http_async_client=wire.http_async_client, max_tokens=6)
    reply = llm.invoke([("system", SYSTEM["content"]), ("user", USER["content"])])
    again = asyncio.run(llm.ainvoke([("user", USER["content"])]))
    assert reply.usage_metadata["input_tokens"] == count_tokens([SYSTEM, USER])
    assert again.usage_metadata["input_tokens"] == count_tokens([USER])
    assert wire.recorded.messages == [[SYSTEM, USER], [USER]]
    assert wire.recorded.requests[0]["max_completion_tokens"] == 6


def test_reply_cap_sends_max_tokens_in_the_body_and_the_embedded_model_honours_it(model_name):
    from langchain_openai import ChatOpenAI

    wire = recording_connection()
    llm = ChatOpenAI(model=model_name, base_url=wire.base_url, api_key=wire.api_key,
                     http_client=wire.http_client, http_async_client=wire.http_async_client, **reply_cap(5))
    reply = llm.invoke([("user", "Describe Japan in detail.")])
    capped = llm.bind(**reply_cap(3)).invoke([("user", "Describe Japan in detail.")])
    assert wire.recorded.requests[0]["max_tokens"] == 5 and "max_completion_tokens" not in wire.recorded.requests[0]
    assert wire.recorded.requests[1]["max_tokens"] == 3 and "max_completion_tokens" not in wire.recorded.requests[1]
    assert reply.usage_metadata["output_tokens"] <= 5 and capped.usage_metadata["output_tokens"] <= 3


def _captured_body(settings, **cap):
    from langchain_openai import ChatOpenAI

    log = RequestLog()
    llm = ChatOpenAI(model=settings.model, base_url=settings.base_url, api_key=settings.api_key or "none",
                     http_client=httpx.Client(transport=log), max_retries=0, **cap)
    with pytest.raises(openai.APIStatusError):  # answered "captured, not sent"
        llm.invoke([("user", "hi")])
    return log.requests[0].body


def test_reply_cap_sends_the_one_name_each_server_reads():
    openai_settings = resolve_settings(OPENAI)
    server = resolve_settings({"LLM_PROVIDER": "custom", "OPENAI_BASE_URL": "http://127.0.0.1:8000/v1",
                               "LLM_MODEL": "SmolLM2-135M-Instruct"})
    # OpenAI refuses both names at once and its reasoning models need max_completion_tokens.
    assert reply_cap(40, openai_settings) == {"max_tokens": 40}
    body = _captured_body(openai_settings, **reply_cap(40, openai_settings))
    assert body["max_completion_tokens"] == 40 and "max_tokens" not in body
    # llama.cpp's server reads only max_tokens (langchain-openai would send max_completion_tokens).
    body = _captured_body(server, **reply_cap(40, server))
    assert body["max_tokens"] == 40 and "max_completion_tokens" not in body
    moved = resolve_settings({**OPENAI, "OPENAI_BASE_URL": "http://127.0.0.1:8000/v1"})
    assert reply_cap(40, moved) == {"extra_body": {"max_tokens": 40}}, "a moved preset is another server"


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "40"])
def test_reply_cap_refuses_what_is_not_a_token_count(bad):
    with pytest.raises(ValueError, match="max_tokens"):
        reply_cap(bad)


def test_agents_sdk_runs_on_the_connection(model_name):
    from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, Runner, set_tracing_disabled

    set_tracing_disabled(True)
    wire = recording_connection()
    agent = Agent(name="travel", instructions=SYSTEM["content"], model_settings=ModelSettings(max_tokens=6),
                  model=OpenAIChatCompletionsModel(model=model_name, openai_client=wire.async_openai_client()))
    result = asyncio.run(Runner.run(agent, USER["content"]))
    assert wire.recorded.messages == [[SYSTEM, USER]]
    assert result.final_output == wire.recorded.responses[0]["choices"][0]["message"]["content"]


def test_provider_connection_is_checked_once_and_keeps_the_settings():
    settings = resolve_settings(
        {"LLM_PROVIDER": "custom", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "LLM_MODEL": "m"}
    )
    with pytest.raises(ProviderUnreachableError, match="127.0.0.1:9"):
        recording_connection(settings)
    wire = recording_connection(settings, check_connection=False)
    assert (wire.base_url, wire.api_key) == ("http://127.0.0.1:9/v1", "not-needed")
    with pytest.raises(openai.APIConnectionError):
        wire.openai_client(max_retries=0).chat.completions.create(model="m", messages=[USER])
    assert wire.recorded.messages == [[USER]]  # recorded before the connection failed


# --- items_to_messages -------------------------------------------------------------------------

REPLY_ITEM = {
    "id": "__fake_id__",
    "content": [
        {"annotations": [], "text": "Lovely! ", "type": "output_text"},
        {"text": "When?", "type": "output_text"},
    ],
    "role": "assistant",
    "status": "completed",
    "type": "message",
}


def test_items_become_plain_messages_and_the_input_is_unchanged():
    items = [
        {"role": "system", "content": "Summary: Japan."},
        {"content": "I'm planning a trip to Japan.", "role": "user"},
        REPLY_ITEM,
        {"role": "user", "content": [{"type": "input_text", "text": "In April."}], "type": "message"},
    ]
    before = copy.deepcopy(items)
    assert items_to_messages(items) == [
        {"role": "system", "content": "Summary: Japan."},
        USER,
        {"role": "assistant", "content": "Lovely! When?"},
        {"role": "user", "content": "In April."},
    ]
    assert items == before


@pytest.mark.parametrize(
    "item, error, fragment",
    [
        (
            {"type": "function_call", "name": "weather", "arguments": "{}", "call_id": "c1"},
            ValueError,
            "'function_call' item",
        ),
        ({"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}, ValueError, "'input_image' part"),
        ({"role": "user", "content": 42}, ValueError, "string or a list"),
        ("hello", TypeError, "not an item dict"),
    ],
    ids=["tool call", "image part", "number content", "a string"],
)
def test_items_that_are_not_text_messages_are_named(item, error, fragment):
    with pytest.raises(error, match=fragment) as raised:
        items_to_messages([USER, item])
    assert "items[1]" in str(raised.value)


# --- provider-held state: captured, not sent ---------------------------------------------------


def test_offline_openai_requests_are_captured_not_sent():
    client, log = openai_state_client(resolve_settings({}))
    assert not log.live
    first = send_or_capture(lambda: client.responses.create(model="gpt-5.4-mini", input="Hi", store=True))
    second = send_or_capture(
        lambda: client.responses.create(model="gpt-5.4-mini", input="Again", previous_response_id="resp_1", store=False)
    )
    made = send_or_capture(lambda: client.conversations.create(metadata={"user": "maya"}))
    assert first is second is made is None
    assert [(r.method, r.path) for r in log.requests] == [
        ("POST", "/v1/responses"),
        ("POST", "/v1/responses"),
        ("POST", "/v1/conversations"),
    ]
    assert log.requests[1].body == {"model": "gpt-5.4-mini", "input": "Again", "previous_response_id": "resp_1",
                                    "store": False}
    assert "POST /v1/conversations" in str(log.requests[2]) and '"user": "maya"' in str(log.requests[2])


def test_the_capture_is_an_sdk_error_that_says_so():
    client, _ = openai_state_client(resolve_settings({}))
    with pytest.raises(openai.APIStatusError, match="Captured, not sent") as raised:
        client.responses.create(model="gpt-5.4-mini", input="Hi")
    assert raised.value.status_code == 501 and raised.value.response.headers[CAPTURED_HEADER] == "1"


def test_with_an_openai_key_the_requests_are_sent():
    client, log = openai_state_client(resolve_settings(OPENAI))
    assert log.live and str(client.base_url) == "https://api.openai.com/v1/"


def test_send_or_capture_lets_every_other_error_through():
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "bad", "type": "invalid_request_error", "code": "x"}})

    log = RequestLog(forward=httpx.MockTransport(refuse))
    http_client = httpx.Client(transport=log)
    client = openai.OpenAI(api_key="k", base_url="http://test/v1", http_client=http_client, max_retries=0)
    with pytest.raises(openai.BadRequestError):
        send_or_capture(lambda: client.responses.create(model="m", input="Hi"))
    assert log.requests == [SentRequest("POST", "/v1/responses", {"model": "m", "input": "Hi"})]
    with pytest.raises(ZeroDivisionError):
        send_or_capture(lambda: 1 / 0)


def test_anthropic_requests_are_captured_with_their_beta_header():
    client, log = anthropic_capture_client()
    edits = {"edits": [{"type": "compact_20260112", "trigger": {"type": "input_tokens", "value": 150000}}]}
    reply = send_or_capture(lambda: client.beta.messages.create(
        model="claude-sonnet-5", max_tokens=1024, betas=["compact-2026-01-12"],
        messages=[{"role": "user", "content": "Hi"}], context_management=edits,
    ))
    assert reply is None and not log.live
    sent = log.requests[0]
    assert (sent.method, sent.path, sent.beta) == ("POST", "/v1/messages", "compact-2026-01-12")
    assert sent.body["context_management"] == edits and sent.body["max_tokens"] == 1024

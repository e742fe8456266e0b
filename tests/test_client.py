"""get_client / MODEL / count_tokens for providers: a local HTTP server stands in for one."""

import json
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import openai
import pytest

import helpers
from helpers import (
    ConfigurationError,
    MissingAPIKeyError,
    ModelNotFoundError,
    ProviderUnreachableError,
    count_tokens,
    describe_backend,
    get_client,
    resolve_settings,
)

PROVIDER_VARIABLES = [
    "LLM_PROVIDER",
    "LLM_MODEL",
    "LLM_API_KEY",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "DEEPSEEK_API_KEY",
    "OPENROUTER_API_KEY",
]


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No provider variables, and a working directory without a .env above it."""
    for name in PROVIDER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


class _RecordingProvider(BaseHTTPRequestHandler):
    """Answers /v1/chat/completions like a provider and records what it was sent."""

    seen: ClassVar[list] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        reply = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "Konnichiwa"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def local_provider():
    server = HTTPServer(("127.0.0.1", 0), _RecordingProvider)
    _RecordingProvider.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1", _RecordingProvider.seen
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_model_and_description_default_to_embedded(clean_env):
    assert helpers.MODEL == helpers.EMBEDDED_MODEL
    assert describe_backend().startswith("Backend: embedded SmolLM2-135M-Instruct")


def test_provider_client_sends_model_key_and_history(clean_env, local_provider):
    base_url, seen = local_provider
    clean_env.setenv("OPENAI_BASE_URL", base_url)
    clean_env.setenv("LLM_MODEL", "llama3.2")
    clean_env.setenv("LLM_API_KEY", "sk-local-test")
    assert helpers.MODEL == "llama3.2"
    assert describe_backend() == f"Backend: custom at {base_url}, model llama3.2"
    client = get_client()
    history = [{"role": "user", "content": "Hello"}]
    response = client.chat.completions.create(model=helpers.MODEL, messages=history)
    assert response.choices[0].message.content == "Konnichiwa"
    assert seen[0]["path"] == "/v1/chat/completions"
    assert seen[0]["auth"] == "Bearer sk-local-test"
    assert seen[0]["body"]["messages"] == history


def test_a_shell_openai_key_never_reaches_a_custom_server(clean_env, local_provider):
    # Before: OPENAI_BASE_URL pointing at any host received the shell's OPENAI_API_KEY.
    base_url, seen = local_provider
    clean_env.setenv("OPENAI_BASE_URL", base_url)
    clean_env.setenv("LLM_MODEL", "llama3.2")
    clean_env.setenv("OPENAI_API_KEY", "sk-openai-secret")
    get_client().chat.completions.create(model=helpers.MODEL, messages=[{"role": "user", "content": "Hello"}])
    assert seen[0]["auth"] == "Bearer not-needed"


def test_env_file_selects_a_provider(clean_env, tmp_path, local_provider):
    base_url, _ = local_provider
    (tmp_path / ".env").write_text(f"LLM_PROVIDER=vllm\nOPENAI_BASE_URL={base_url}\nLLM_MODEL=qwen\n")
    nested = tmp_path / "notebooks"
    nested.mkdir()
    clean_env.chdir(nested)  # notebooks run one folder below the .env
    assert helpers.MODEL == "qwen"
    assert helpers.current_settings().provider == "vllm"


def test_missing_key_surfaces_when_model_is_imported(clean_env):
    clean_env.setenv("LLM_PROVIDER", "openai")
    with pytest.raises(MissingAPIKeyError, match="OPENAI_API_KEY"):
        from helpers import MODEL  # noqa: F401


def test_unreachable_server_is_named_with_its_url(clean_env):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    settings = resolve_settings({"LLM_PROVIDER": "ollama", "LLM_MODEL": "llama3.2", "OPENAI_BASE_URL": url})
    with pytest.raises(ProviderUnreachableError, match=url):
        get_client(settings)


def test_unreachable_server_during_a_call_names_the_url(clean_env):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    settings = resolve_settings({"LLM_PROVIDER": "custom", "LLM_MODEL": "m", "OPENAI_BASE_URL": url})
    client = get_client(settings, check_connection=False, max_retries=0)
    with pytest.raises(openai.APIConnectionError) as caught:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert url in str(caught.value.__cause__)


def test_a_dotenv_that_is_not_utf8_is_named_with_its_path(clean_env, tmp_path):
    # Before: a bare UnicodeDecodeError that named no file.
    env_file = tmp_path / ".env"
    env_file.write_bytes("LLM_PROVIDER=ollama\nLLM_MODEL=caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigurationError, match="not UTF-8") as caught:
        helpers.current_settings()
    assert str(env_file) in str(caught.value) and "0xe9" in str(caught.value)
    assert env_file.read_bytes().endswith(b"caf\xe9\n")  # refused, not rewritten


def test_count_tokens_for_a_provider_is_a_labelled_estimate():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What's the best season to visit Japan?"},
    ]
    exact = count_tokens(messages)
    settings = resolve_settings({"LLM_PROVIDER": "openai", "OPENAI_API_KEY": "sk-x"})
    estimate = count_tokens(messages, settings)
    assert exact.exact and not estimate.exact
    assert "estimate" in repr(estimate) and "openai" in estimate.method
    assert 0.5 * exact < estimate < 1.5 * exact


def test_count_tokens_for_a_provider_loads_no_model():
    # Before: count_tokens loaded the whole GGUF even when a provider answers the calls.
    probe = (
        "from helpers import count_tokens, resolve_settings\n"
        "from helpers.backend.embedded import embedded_server\n"
        "settings = resolve_settings({'LLM_PROVIDER': 'openai', 'OPENAI_API_KEY': 'sk-test'})\n"
        "count = count_tokens([{'role': 'user', 'content': 'I am planning a trip to Japan.'}], settings)\n"
        "print(int(count), count.exact, embedded_server.cache_info().currsize)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["15", "False", "0"]  # ceil(30 / 4) = 8 text + 4 framing + 3 priming


def test_token_count_survives_copy_deepcopy_and_pickle():
    import copy
    import pickle

    from helpers.backend.client import TokenCount

    count = TokenCount(42, exact=False, method="SmolLM2 tokenizer estimate")
    for clone in (copy.copy(count), copy.deepcopy({"n": count})["n"], pickle.loads(pickle.dumps(count))):
        assert clone == 42 and isinstance(clone, TokenCount)
        assert (clone.exact, clone.method) == (False, "SmolLM2 tokenizer estimate")


class _ModelNotFoundProvider(BaseHTTPRequestHandler):
    """Answers like a provider that does not have the model asked for, in each provider's words."""

    answers: ClassVar[dict] = {
        "deepseek-chat": (
            400,
            {
                "error": {
                    "message": "The supported API model names are deepseek-v4-pro or "
                    "deepseek-v4-flash, but you passed deepseek-chat.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_request_error",
                }
            },
        ),
        "deepseek-r9": (
            400,
            {
                "error": {
                    "message": "Model Not Exist",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_request_error",
                }
            },
        ),
        "gpt-4.1-mini": (
            404,
            {
                "error": {
                    "message": "The model `gpt-4.1-mini` does not exist or you do not have access to it.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "model_not_found",
                }
            },
        ),
        "openai/gpt-9": (400, {"error": {"message": "openai/gpt-9 is not a valid model ID", "code": 400}}),
        "llama9": (404, {"error": {"message": 'model "llama9" not found, try pulling it first', "type": "api_error"}}),
        "too-long": (
            400,
            {
                "error": {
                    "message": "This model's maximum context length is 2048 tokens.",
                    "type": "invalid_request_error",
                    "code": "context_length_exceeded",
                }
            },
        ),
    }

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        status, answer = self.answers[body["model"]]
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def model_not_found_provider():
    server = HTTPServer(("127.0.0.1", 0), _ModelNotFoundProvider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "model, sdk_error",
    [
        ("deepseek-chat", openai.BadRequestError),
        ("deepseek-r9", openai.BadRequestError),
        ("gpt-4.1-mini", openai.NotFoundError),
        ("openai/gpt-9", openai.BadRequestError),
        ("llama9", openai.NotFoundError),
    ],
)
def test_a_model_the_server_does_not_have_is_a_named_error(clean_env, model_not_found_provider, model, sdk_error):
    settings = resolve_settings({"OPENAI_BASE_URL": model_not_found_provider, "LLM_MODEL": model})
    client = get_client(settings, max_retries=0)
    with pytest.raises(ModelNotFoundError) as caught:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    error = caught.value
    assert isinstance(error, sdk_error)  # existing `except openai.NotFoundError` handlers still catch it
    assert str(error).startswith(f"{model} was not found at 127.0.0.1: set LLM_MODEL")
    assert "data/providers.csv" in str(error)
    assert error.model == model and error.base_url == "http://127.0.0.1"


def test_other_bad_requests_stay_the_sdks_own_errors(clean_env, model_not_found_provider):
    settings = resolve_settings({"OPENAI_BASE_URL": model_not_found_provider, "LLM_MODEL": "too-long"})
    with pytest.raises(openai.BadRequestError) as caught:
        get_client(settings, max_retries=0).chat.completions.create(
            model="too-long", messages=[{"role": "user", "content": "hi"}]
        )
    assert not isinstance(caught.value, ModelNotFoundError)
    assert caught.value.code == "context_length_exceeded"


def test_the_embedded_backend_names_an_unknown_model_too(client):
    with pytest.raises(ModelNotFoundError, match="deepseek-chat was not found at 127.0.0.1") as caught:
        client.chat.completions.create(model="deepseek-chat", messages=[{"role": "user", "content": "hi"}])
    assert isinstance(caught.value, openai.NotFoundError)


class _OldWheelParams:
    """xllamacpp 2026.5's CommonParams (macOS's wheel): `hostname` and `webui`, not `hostnames` and `ui`."""

    __slots__ = ("model", "model_alias", "n_parallel", "n_ctx", "cpuparams", "cpuparams_batch", "hostname", "port")
    __slots__ += ("api_keys", "cache_ram_mib", "webui", "endpoint_slots", "endpoint_metrics", "verbosity")

    def __init__(self):
        from types import SimpleNamespace

        self.model, self.cpuparams, self.cpuparams_batch = SimpleNamespace(), SimpleNamespace(), SimpleNamespace()


def test_server_params_use_the_field_names_of_either_wheel(monkeypatch):
    import xllamacpp

    from helpers.backend.embedded import ServerSettings

    settings = ServerSettings(n_ctx=1024, threads=1, host="127.0.0.1", api_key="k")
    new = settings.params()
    assert list(new.hostnames) == ["127.0.0.1"] and new.ui is False
    monkeypatch.setattr(xllamacpp, "CommonParams", _OldWheelParams)
    old = settings.params()
    assert old.hostname == "127.0.0.1" and old.webui is False and old.api_keys == ["k"] and old.n_ctx == 1024

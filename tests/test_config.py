"""Backend selection from environment variables and data/providers.csv: no model, no network."""

import pytest
from dotenv import dotenv_values

from helpers.backend.config import (
    CUSTOM_KEY_VARIABLE,
    EMBEDDED_MODEL,
    PLACEHOLDER_KEY,
    check_env_file,
    check_env_text,
    is_local_url,
    load_presets,
    provider_presets,
    resolve_settings,
    validate_base_url,
)
from helpers.errors import ConfigurationError, MissingAPIKeyError

PRESETS = provider_presets()


def test_nothing_set_is_the_embedded_model():
    settings = resolve_settings({})
    assert settings.is_embedded
    assert settings.model == EMBEDDED_MODEL
    assert "embedded" in settings.describe() and "offline" in settings.describe()


def test_a_key_alone_does_not_leave_the_offline_default():
    # A key in the shell must not silently start billing: a provider is chosen explicitly.
    assert resolve_settings({"OPENAI_API_KEY": "sk-test"}).is_embedded


def test_openai_preset_reads_its_key_and_the_dated_default_model_from_the_data_file():
    settings = resolve_settings({"LLM_PROVIDER": "openai", "OPENAI_API_KEY": "sk-test"})
    assert settings.base_url == PRESETS["openai"].base_url == "https://api.openai.com/v1"
    assert settings.api_key == "sk-test"
    assert settings.model == PRESETS["openai"].default_model
    assert settings.as_of == PRESETS["openai"].as_of
    assert f"as of {settings.as_of}" in settings.describe()
    assert "sk-test" not in settings.describe()


def test_a_model_chosen_with_llm_model_carries_no_preset_date():
    settings = resolve_settings(
        {"LLM_PROVIDER": "deepseek", "DEEPSEEK_API_KEY": "sk-d", "LLM_MODEL": "deepseek-v4-pro"}
    )
    assert settings.model == "deepseek-v4-pro" and settings.as_of is None
    assert "as of" not in settings.describe()


@pytest.mark.parametrize(
    "provider, own_variable", [("deepseek", "DEEPSEEK_API_KEY"), ("openrouter", "OPENROUTER_API_KEY")]
)
def test_a_hosted_provider_never_reads_another_providers_key(provider, own_variable):
    # Before: with only OPENAI_API_KEY set, the OpenAI key was sent to DeepSeek's or OpenRouter's URL.
    with pytest.raises(MissingAPIKeyError, match=own_variable) as caught:
        resolve_settings({"LLM_PROVIDER": provider, "OPENAI_API_KEY": "sk-openai"})
    assert "OPENAI_API_KEY" not in str(caught.value)
    settings = resolve_settings({"LLM_PROVIDER": provider, own_variable: "sk-own", "OPENAI_API_KEY": "sk-openai"})
    assert settings.api_key == "sk-own"
    assert settings.base_url == PRESETS[provider].base_url


def test_a_shell_openai_key_is_not_forwarded_to_a_custom_address():
    # Before: OPENAI_BASE_URL to any host plus a shell OPENAI_API_KEY sent that key there.
    settings = resolve_settings(
        {"OPENAI_BASE_URL": "http://10.1.2.3:8000/v1", "LLM_MODEL": "m", "OPENAI_API_KEY": "sk-openai"}
    )
    assert settings.provider == "custom"
    assert settings.api_key == PLACEHOLDER_KEY
    explicit = resolve_settings(
        {"OPENAI_BASE_URL": "http://10.1.2.3:8000/v1", "LLM_MODEL": "m", CUSTOM_KEY_VARIABLE: "sk-for-this-server"}
    )
    assert explicit.api_key == "sk-for-this-server"


def test_a_hosted_preset_moved_to_another_host_needs_a_key_given_for_it():
    env = {"LLM_PROVIDER": "openai", "OPENAI_BASE_URL": "https://proxy.example.com/v1", "OPENAI_API_KEY": "sk-openai"}
    with pytest.raises(MissingAPIKeyError, match=CUSTOM_KEY_VARIABLE):
        resolve_settings(env)
    settings = resolve_settings({**env, CUSTOM_KEY_VARIABLE: "sk-proxy"})
    assert settings.api_key == "sk-proxy" and settings.base_url == "https://proxy.example.com/v1"
    # Its own address, spelled out, is still its own address.
    same = resolve_settings({**env, "OPENAI_BASE_URL": "https://api.openai.com/v1"})
    assert same.api_key == "sk-openai"


def test_local_servers_need_no_key_but_need_a_model():
    with pytest.raises(ConfigurationError, match="LLM_MODEL"):
        resolve_settings({"LLM_PROVIDER": "ollama"})
    settings = resolve_settings({"LLM_PROVIDER": "ollama", "LLM_MODEL": "llama3.2", "OPENAI_API_KEY": "sk-openai"})
    assert settings.base_url == "http://localhost:11434/v1"
    assert settings.api_key == PLACEHOLDER_KEY


def test_base_url_alone_selects_custom_and_overrides_presets():
    settings = resolve_settings({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "LLM_MODEL": "m"})
    assert settings.provider == "custom"
    assert settings.base_url == "http://127.0.0.1:9/v1"
    lmstudio = resolve_settings({"LLM_PROVIDER": "lmstudio", "LLM_MODEL": "m", "OPENAI_BASE_URL": "http://h:1/v1"})
    assert lmstudio.base_url == "http://h:1/v1"


def test_a_base_url_without_scheme_is_named_not_probed_on_port_80():
    # Before: "localhost:18434/v1" parsed as scheme "localhost", probed port 80, said "unreachable".
    with pytest.raises(ConfigurationError, match=r"does not start with http:// or https://.*http://localhost:18434/v1"):
        resolve_settings({"OPENAI_BASE_URL": "localhost:18434/v1", "LLM_MODEL": "m"})


@pytest.mark.parametrize("url", ["http://localhost:99999/v1", "http://localhost:0/v1", "http://localhost:port/v1"])
def test_an_impossible_port_is_named(url):
    # Before: port 99999 raised a bare ValueError("Port out of range 0-65535").
    with pytest.raises(ConfigurationError, match="1 to 65535"):
        resolve_settings({"OPENAI_BASE_URL": url, "LLM_MODEL": "m"})


def test_a_base_url_without_host_is_named():
    with pytest.raises(ConfigurationError, match="names no host"):
        validate_base_url("http:///v1")


def test_unknown_provider_lists_the_choices():
    with pytest.raises(ConfigurationError, match="openrouter"):
        resolve_settings({"LLM_PROVIDER": "gemini-ish"})


def test_embedded_wins_when_forced():
    settings = resolve_settings({"LLM_PROVIDER": "EMBEDDED", "OPENAI_BASE_URL": "http://x/v1"})
    assert settings.is_embedded


def test_presets_are_read_from_the_csv_given(tmp_path):
    path = tmp_path / "providers.csv"
    path.write_text(
        "provider,base_url,default_model,key_variable,as_of,source\n"
        "acme,https://api.acme.test/v1,acme-small,ACME_API_KEY,2026-11-30,https://acme.test/pricing\n",
        encoding="utf-8",
    )
    acme = load_presets(path)["acme"]
    assert (acme.base_url, acme.default_model, acme.key_variable, acme.as_of) == (
        "https://api.acme.test/v1",
        "acme-small",
        "ACME_API_KEY",
        "2026-11-30",
    )
    assert acme.is_hosted


def test_a_preset_row_without_date_or_source_is_refused_with_its_line(tmp_path):
    path = tmp_path / "providers.csv"
    path.write_text(
        "provider,base_url,default_model,key_variable,as_of,source\n"
        "acme,https://api.acme.test/v1,acme-small,ACME_API_KEY,,\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigurationError, match=r"line 2: no as_of, source"):
        load_presets(path)


def test_a_missing_presets_file_is_named(tmp_path):
    with pytest.raises(ConfigurationError, match="nowhere.csv"):
        load_presets(tmp_path / "nowhere.csv")


def test_providers_is_a_read_only_view_of_the_data_file():
    from helpers.backend.config import PROVIDERS

    assert dict(PROVIDERS) == provider_presets()
    assert PROVIDERS["openai"].default_model == PRESETS["openai"].default_model
    with pytest.raises(TypeError):
        PROVIDERS["acme"] = PRESETS["openai"]  # type: ignore[index]


# --- issue 22, item 8: a hosted preset's own address is https -----------------------------------


@pytest.mark.parametrize(
    "provider, variable, url",
    [
        ("openai", "OPENAI_API_KEY", "http://api.openai.com/v1"),
        ("deepseek", "DEEPSEEK_API_KEY", "http://api.deepseek.com"),
        ("openrouter", "OPENROUTER_API_KEY", "http://openrouter.ai/api/v1"),
    ],
)
def test_a_hosted_preset_over_plain_http_does_not_get_its_key(provider, variable, url):
    """Regression: LLM_PROVIDER=openai OPENAI_BASE_URL=http://api.openai.com/v1 sent the key in clear text."""
    with pytest.raises(ConfigurationError, match="must start with https://") as caught:
        resolve_settings({"LLM_PROVIDER": provider, "OPENAI_BASE_URL": url, variable: "sk-secret"})
    assert "sk-secret" not in str(caught.value)
    assert url.replace("http://", "https://") in str(caught.value), "the message shows the https address to use"
    secure = url.replace("http:", "https:")
    https = resolve_settings({"LLM_PROVIDER": provider, "OPENAI_BASE_URL": secure, variable: "k"})
    assert https.api_key == "k"


def test_local_presets_still_work_over_http():
    settings = resolve_settings({"LLM_PROVIDER": "vllm", "LLM_MODEL": "m"})
    assert settings.base_url == "http://localhost:8000/v1" and settings.api_key == PLACEHOLDER_KEY


# --- issue 22, item 9: no password in the base URL --------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://bob:hunter2pass@127.0.0.1:1/v1",
        "https://bob:hunter2pass@api.openai.com/v1",
        "bob:hunter2pass@127.0.0.1:1/v1",  # no scheme: the scheme message must not show it either
        "http://bob:hunter2pass@127.0.0.1:99999/v1",  # nor the port message
    ],
)
def test_a_password_in_the_base_url_is_refused_and_never_shown(url):
    """Regression: userinfo was kept, printed by describe() and sent by the SDK as Basic auth."""
    env = {"LLM_PROVIDER": "custom", "OPENAI_BASE_URL": url, "LLM_MODEL": "m", "OPENAI_API_KEY": "sk-x"}
    with pytest.raises(ConfigurationError) as caught:
        resolve_settings(env)
    message = str(caught.value)
    assert "hunter2pass" not in message
    assert "bob:***@" in message


def test_userinfo_is_refused_with_a_pointer_to_llm_api_key():
    with pytest.raises(ConfigurationError, match=f"put the key in {CUSTOM_KEY_VARIABLE}") as caught:
        validate_base_url("http://sk-token-only@127.0.0.1:1/v1")
    assert "sk-token-only" not in str(caught.value) and "http://***@127.0.0.1:1/v1" in str(caught.value)


# --- issue 22, item 14: .env and URL edge cases ------------------------------------------------


def write_env(tmp_path, content: bytes):
    path = tmp_path / ".env"
    path.write_bytes(content)
    return path


def test_an_unterminated_quote_in_env_is_named_with_file_and_line(tmp_path):
    """Regression: python-dotenv skipped the line with a warning, LLM_PROVIDER stayed unset, embedded was used."""
    path = write_env(tmp_path, b'LLM_MODEL=m\nLLM_PROVIDER="openai\nOPENAI_API_KEY=sk-secret-1\n')
    assert "LLM_PROVIDER" not in dotenv_values(path), "what python-dotenv does on its own"
    with pytest.raises(ConfigurationError, match=r"\.env, line 2: .*closing quote") as caught:
        check_env_file(path)
    assert str(path) in str(caught.value) and "sk-secret-1" not in str(caught.value)


def test_text_after_a_closing_quote_is_named_too(tmp_path):
    with pytest.raises(ConfigurationError, match="line 1"):
        check_env_file(write_env(tmp_path, b"OPENAI_API_KEY='sk-a'b\n"))


def test_a_nul_byte_in_env_is_a_named_error_not_a_bare_value_error(tmp_path):
    """Regression: load_dotenv raised ValueError('embedded null byte') naming neither file nor line."""
    path = write_env(tmp_path, b"LLM_MODEL=m\r\nLLM_API_KEY=sk-\x00secret\r\n")
    with pytest.raises(ConfigurationError, match=r"line 2: holds a NUL byte") as caught:
        check_env_file(path)
    assert str(path) in str(caught.value) and "secret" not in str(caught.value)


def test_a_utf16_env_file_is_named(tmp_path):
    with pytest.raises(ConfigurationError, match="not UTF-8"):
        check_env_file(write_env(tmp_path, "LLM_MODEL=m\n".encode("utf-16")))


def test_env_features_that_work_pass_the_check_and_load_as_intended(tmp_path):
    content = (
        "\ufeff# a comment\r\n"
        "export LLM_PROVIDER=custom\r\n"
        "OPENAI_BASE_URL='http://localhost:8080/v1'\r\n"
        'LLM_MODEL="qwen # not a comment"\r\n'
        "HOST=localhost\r\n"
        "EXPANDED=http://${HOST}:9/v1\r\n"
        'MULTI="two\nlines"\r\n'
        "EMPTY=\r\n"
    ).encode("utf-8")
    path = write_env(tmp_path, content)
    check_env_file(path)
    values = dotenv_values(path, encoding="utf-8")
    assert values["LLM_PROVIDER"] == "custom"
    assert values["OPENAI_BASE_URL"] == "http://localhost:8080/v1"
    assert values["LLM_MODEL"] == "qwen # not a comment"
    assert values["EXPANDED"] == "http://localhost:9/v1"
    assert values["MULTI"] == "two\nlines" and values["EMPTY"] == ""
    check_env_text("")  # an empty file is fine


def test_a_query_string_in_the_base_url_becomes_default_query():
    """Regression: the SDK turned .../v1?api-version=... into .../v1/?api-version=...chat/completions."""
    settings = resolve_settings(
        {"OPENAI_BASE_URL": "https://example.openai.azure.com/openai/v1?api-version=2024-06-01", "LLM_MODEL": "m"}
    )
    assert settings.base_url == "https://example.openai.azure.com/openai/v1"
    assert dict(settings.default_query) == {"api-version": "2024-06-01"}
    with pytest.raises(TypeError):
        settings.default_query["api-version"] = "x"  # type: ignore[index]
    hash(settings)  # still a hashable frozen value
    assert "api-version" not in settings.describe()


def test_no_query_means_an_empty_default_query_and_a_repeated_parameter_is_named():
    assert dict(resolve_settings({"OPENAI_BASE_URL": "http://h:1/v1", "LLM_MODEL": "m"}).default_query) == {}
    with pytest.raises(ConfigurationError, match="api-version more than once"):
        resolve_settings({"OPENAI_BASE_URL": "http://h:1/v1?api-version=1&api-version=2", "LLM_MODEL": "m"})


@pytest.mark.parametrize(
    "url, expected",
    [
        ("http://localhost:8080/v1", "http://localhost:8080/v1"),
        ("http://localhost:8080/v1/", "http://localhost:8080/v1/"),  # the SDK handles the trailing slash
        ("http://10.0.0.5:8000/serving/openai/v1", "http://10.0.0.5:8000/serving/openai/v1"),
        ("http://[::1]:8080/v1", "http://[::1]:8080/v1"),
        ("http://[::1]:8080/v1?x=1", "http://[::1]:8080/v1"),
    ],
)
def test_base_urls_with_a_path_a_trailing_slash_or_ipv6_are_kept(url, expected):
    settings = resolve_settings({"OPENAI_BASE_URL": url, "LLM_MODEL": "m"})
    assert settings.base_url == expected


def test_an_ipv6_loopback_is_local():
    assert is_local_url("http://[::1]:8080/v1")


def test_default_query_reaches_the_server_through_the_sdk():
    """The contract for get_client: openai.OpenAI(base_url=..., default_query=...) sends the query on each call."""
    import openai

    from helpers.backend._http import httpx

    url = "http://127.0.0.1:1/openai/v1?api-version=2024-06-01"
    seen = []

    def handler(request):
        seen.append(str(request.url))
        return httpx.Response(200, json={"object": "list", "data": []})

    def client(base_url, **options):
        transport = httpx.MockTransport(handler)
        return openai.OpenAI(api_key="x", base_url=base_url, http_client=httpx.Client(transport=transport), **options)

    client(url).models.list()  # what the raw URL does
    settings = resolve_settings({"OPENAI_BASE_URL": url, "LLM_MODEL": "m"})
    client(settings.base_url, default_query=dict(settings.default_query)).models.list()
    assert seen[0] != "http://127.0.0.1:1/openai/v1/models?api-version=2024-06-01", seen[0]
    assert seen[1] == "http://127.0.0.1:1/openai/v1/models?api-version=2024-06-01"

"""Backend selection from environment variables and data/providers.csv: no model, no network."""

import pytest

from helpers.backend.config import (
    CUSTOM_KEY_VARIABLE,
    EMBEDDED_MODEL,
    PLACEHOLDER_KEY,
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

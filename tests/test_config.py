"""Backend selection from environment variables: no model, no network."""

import pytest

from helpers.backend.config import EMBEDDED_MODEL, PLACEHOLDER_KEY, resolve_settings
from helpers.errors import ConfigurationError, MissingAPIKeyError


def test_nothing_set_is_the_embedded_model():
    settings = resolve_settings({})
    assert settings.is_embedded
    assert settings.model == EMBEDDED_MODEL
    assert "embedded" in settings.describe() and "offline" in settings.describe()


def test_a_key_alone_does_not_leave_the_offline_default():
    # A key in the shell must not silently start billing: a provider is chosen explicitly.
    assert resolve_settings({"OPENAI_API_KEY": "sk-test"}).is_embedded


def test_openai_preset_reads_key_and_default_model():
    settings = resolve_settings({"LLM_PROVIDER": "openai", "OPENAI_API_KEY": "sk-test"})
    assert settings.base_url == "https://api.openai.com/v1"
    assert settings.api_key == "sk-test"
    assert settings.model == "gpt-4.1-mini"
    assert "sk-test" not in settings.describe()


def test_provider_specific_key_wins_over_generic_one():
    settings = resolve_settings(
        {"LLM_PROVIDER": "deepseek", "DEEPSEEK_API_KEY": "sk-deep", "OPENAI_API_KEY": "sk-openai"}
    )
    assert settings.api_key == "sk-deep"
    assert settings.base_url == "https://api.deepseek.com"


def test_hosted_provider_without_key_is_a_named_error():
    with pytest.raises(MissingAPIKeyError, match="DEEPSEEK_API_KEY or OPENAI_API_KEY"):
        resolve_settings({"LLM_PROVIDER": "deepseek"})


def test_local_server_needs_no_key_but_needs_a_model():
    with pytest.raises(ConfigurationError, match="LLM_MODEL"):
        resolve_settings({"LLM_PROVIDER": "ollama"})
    settings = resolve_settings({"LLM_PROVIDER": "ollama", "LLM_MODEL": "llama3.2"})
    assert settings.base_url == "http://localhost:11434/v1"
    assert settings.api_key == PLACEHOLDER_KEY


def test_base_url_alone_selects_custom_and_overrides_presets():
    settings = resolve_settings({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "LLM_MODEL": "m"})
    assert settings.provider == "custom"
    assert settings.base_url == "http://127.0.0.1:9/v1"
    lmstudio = resolve_settings({"LLM_PROVIDER": "lmstudio", "LLM_MODEL": "m", "OPENAI_BASE_URL": "http://h:1/v1"})
    assert lmstudio.base_url == "http://h:1/v1"


def test_unknown_provider_lists_the_choices():
    with pytest.raises(ConfigurationError, match="openrouter"):
        resolve_settings({"LLM_PROVIDER": "gemini-ish"})


def test_embedded_wins_when_forced():
    settings = resolve_settings({"LLM_PROVIDER": "EMBEDDED", "OPENAI_BASE_URL": "http://x/v1"})
    assert settings.is_embedded

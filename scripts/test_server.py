"""Run the notebooks against a separate llama.cpp server process: the class server, `python -m helpers.serve`.

    python scripts/test_server.py                              # every notebooks/[0-9][0-9]_*.ipynb
    python scripts/test_server.py notebooks/00_setup.ipynb -- -x   # some notebooks, extra pytest options
    python scripts/test_server.py --smoke                      # start, one request through helpers, stop

The embedded backend runs llama.cpp's server inside each kernel; this is the second backend CI checks:
the same engine as a separate process, as a class shares it. It starts `python -m helpers.serve` on the
same GGUF (same 4096-token context) on a free loopback port with a random API key, points the notebooks
at it the way a learner would (the `.env` lines the server prints: `OPENAI_BASE_URL`, `LLM_MODEL`,
`LLM_API_KEY`), runs them under `pytest --nbval-lax` (every cell runs and its asserts hold; outputs are
not compared), and stops the server afterwards, also when a notebook fails or the run is interrupted.
Counts and answer shares are exact there too: helpers detects a llama.cpp server. The exit code is
pytest's.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL_ALIAS = "SmolLM2-135M-Instruct"
N_CTX = 4096  # the embedded backend's context, so the notebooks' context lessons hold
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
# Provider settings a developer's shell may hold; the run must not inherit them.
PROVIDER_VARIABLES = (
    "LLM_PROVIDER",
    "LLM_MODEL",
    "LLM_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "DEEPSEEK_API_KEY",
    "OPENROUTER_API_KEY",
)


class ServerStartError(RuntimeError):
    """The class server did not come up; the message quotes the end of its log."""


@dataclass(frozen=True)
class RunningServer:
    """A started server: its process id, address and log file."""

    pid: int
    port: int
    log: Path
    api_key: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url.removesuffix('/v1')}/health", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _log_tail(log: Path, lines: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def llama_server(*, timeout: float = START_TIMEOUT) -> Iterator[RunningServer]:
    """Start the class server (`python -m helpers.serve`), wait until it answers, yield it, then stop it.

    The server is stopped by its process id on the way out, whatever happened inside the block.
    Raises `ServerStartError` (with the log's last lines) if it exits or stays silent for `timeout` s.
    """
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])
    api_key = secrets.token_urlsafe(16)
    command = [sys.executable, "-m", "helpers.serve", "--port", str(port), "--parallel", "1", "--ctx", str(N_CTX)]
    command += ["--api-key", api_key]
    with log.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT)
    server = RunningServer(pid=process.pid, port=port, log=log, api_key=api_key)
    try:
        deadline = time.monotonic() + timeout
        while not _answers(server.base_url):
            if process.poll() is not None:
                raise ServerStartError(f"helpers.serve exited with {process.returncode}:\n{_log_tail(log)}")
            if time.monotonic() > deadline:
                raise ServerStartError(f"helpers.serve did not answer within {timeout:.0f} s:\n{_log_tail(log)}")
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def notebook_environment(server: RunningServer) -> dict[str, str]:
    """This process's environment, with the provider settings a learner would write for this server."""
    env = {name: value for name, value in os.environ.items() if name not in PROVIDER_VARIABLES}
    env.update(
        {
            "LLM_PROVIDER": "custom",
            "OPENAI_BASE_URL": server.base_url,
            "LLM_MODEL": MODEL_ALIAS,
            "LLM_API_KEY": server.api_key,
        }
    )
    return env


def smoke(server: RunningServer) -> None:
    """One chat call through helpers.get_client against `server`; prints what usage reports."""
    from helpers import count_tokens, get_client, read_usage, resolve_settings

    settings = resolve_settings(notebook_environment(server))
    messages = [{"role": "user", "content": "hi"}]
    response = get_client(settings).chat.completions.create(model=settings.model, messages=messages, max_tokens=5)
    print(f"server pid={server.pid} port={server.port}: {read_usage(response).describe()}")
    print(f"count_tokens: {count_tokens(messages, settings)!r}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/[0-9][0-9]_*.ipynb")
    parser.add_argument("--smoke", action="store_true", help="one request through helpers instead of the notebooks")
    if "--" in argv:
        split = argv.index("--")
        argv, pytest_options = argv[:split], argv[split + 1 :]
    else:
        pytest_options = []
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

    # A plain `kill` (SIGTERM) should stop the server too, not orphan it: turn it into SystemExit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    started = time.monotonic()
    with llama_server() as server:
        print(
            f"helpers.serve pid {server.pid} at {server.base_url} ready in {time.monotonic() - started:.1f} s",
            flush=True,
        )
        if args.smoke:
            smoke(server)
            return 0
        command = [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            "--nbval-current-env",
            "-p",
            "no:cacheprovider",
            *map(str, notebooks),
            *pytest_options,
        ]
        result = subprocess.run(command, env=notebook_environment(server), cwd=ROOT, check=False)
    elapsed = time.monotonic() - started
    print(f"server stopped; {len(notebooks)} notebooks in {elapsed:.0f} s, pytest exit {result.returncode}")
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

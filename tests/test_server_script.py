"""scripts/test_server.py: llama.cpp's server (helpers.serve, in another process) starts,
answers through helpers, and always stops."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "test_server.py"
READY = re.compile(r"helpers\.serve pid (\d+) at http://127\.0\.0\.1:(\d+)/v1 ready")


def run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False
    )


def gone(pid: int, port: int, wait: float = 5.0) -> bool:
    """True once no process has `pid` and nothing listens on `port`."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) != 0:
                    return True
        time.sleep(0.1)
    return False


def test_smoke_run_answers_through_helpers_and_stops_the_server():
    result = run("--smoke")
    assert result.returncode == 0, result.stdout + result.stderr
    pid, port = map(int, READY.search(result.stdout).groups())
    # llama.cpp reports cached tokens but no reasoning tokens; counts are exact on any llama.cpp server.
    assert "prompt 31, completion 5, cached 0 (usage.prompt_tokens_details.cached_tokens)" in result.stdout
    assert "reasoning not reported" in result.stdout
    assert "count_tokens: 31 (exact" in result.stdout
    assert gone(pid, port)


def test_the_server_is_stopped_when_the_notebook_run_fails():
    result = run("notebooks/does_not_exist.ipynb")
    assert result.returncode != 0
    pid, port = map(int, READY.search(result.stdout).groups())
    assert "server stopped" in result.stdout
    assert gone(pid, port)


def test_the_server_is_stopped_when_the_run_is_terminated():
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "notebooks/00_setup.ipynb"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    try:
        line = process.stdout.readline()
        match = READY.search(line)
        assert match, line
        pid, port = map(int, match.groups())
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
    assert gone(pid, port)

"""`make lab` serves JupyterLab, as root too (containers and classroom images), and prints the address to open."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_make_lab_serves_jupyterlab_and_prints_its_address():
    port = free_port()
    command = [
        "make",
        "--no-print-directory",
        "serve-lab",
        f"PY={sys.executable}",
        f"ARGS=--port={port} --no-browser --ServerApp.port_retries=0",
    ]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    lines, url = [], None
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and url is None:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = re.search(rf"(http://127\.0\.0\.1:{port}/lab\?token=\w+)", line)
            url = match.group(1) if match else None
        output = "".join(lines)
        assert url, f"no address printed:\n{output}"
        assert "Open the http://127.0.0.1" in output
        if os.geteuid() == 0:
            assert "--allow-root" in output, "as root, JupyterLab needs --allow-root"
        token = url.split("token=")[1]
        for _ in range(40):  # the address is printed as the server binds: give it a moment
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=10)
                break
            except OSError:
                time.sleep(0.5)
        assert status.status == 200
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.skipif(os.geteuid() != 0, reason="the root case needs root")
def test_as_root_the_lab_command_carries_allow_root():
    dry = subprocess.run(["make", "-n", "serve-lab", f"PY={sys.executable}"], cwd=ROOT, capture_output=True, text=True)
    assert "--allow-root" in dry.stdout

"""examples/chat_loop.py runs as a script: scripted turns by default, typed turns with --interactive."""

import os
import re
import subprocess
import sys
from pathlib import Path

from helpers import count_tokens

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "chat_loop.py"
SYSTEM = {"role": "system", "content": "You are a concise travel assistant."}
TURN_LINE = re.compile(r"--- turn (\d+): prompt_tokens=(\d+) completion_tokens=(\d+) \(messages sent: (\d+)\)")


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "LLM_PROVIDER": "embedded"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )


def test_two_scripted_turns_print_growing_prompt_tokens():
    result = run("--turns", "2", "--max-tokens", "16")
    assert result.returncode == 0, result.stderr
    turns = [tuple(map(int, match)) for match in TURN_LINE.findall(result.stdout)]
    assert [t[0] for t in turns] == [1, 2]
    assert [t[3] for t in turns] == [2, 4]  # the whole history is sent each turn
    first_prompt = count_tokens([SYSTEM, {"role": "user", "content": "I'm planning a trip to Japan."}])
    assert turns[0][1] == int(first_prompt)
    assert turns[1][1] > turns[0][1] + turns[0][2]  # turn 2 resends turn 1 and its reply
    assert "user: What's the best season to visit?" in result.stdout
    assert f"2 turns, {turns[0][1] + turns[1][1]} prompt tokens sent in total" in result.stdout


def test_interactive_reads_turns_until_an_empty_line():
    result = run("--interactive", "--max-tokens", "8", stdin="I'm planning a trip to Japan.\n\nnever sent\n")
    assert result.returncode == 0, result.stderr
    assert len(TURN_LINE.findall(result.stdout)) == 1
    assert "1 turn, " in result.stdout


def test_help_and_bad_arguments():
    help_text = run("--help")
    assert help_text.returncode == 0 and "--interactive" in help_text.stdout and "--turns" in help_text.stdout
    bad = run("--turns", "0")
    assert bad.returncode == 2 and "--turns must be at least 1" in bad.stderr

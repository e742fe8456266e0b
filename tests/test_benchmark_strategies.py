"""benchmarks/strategies.py runs as a script with tiny settings and prints one row per strategy and design."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "strategies.py"
ROW = re.compile(
    r"^(raw|window|budget|summary: [\w-]+) +([\d,]+) +([\d,]+) +([\d.]+) +(\d+)/(\d+) \(x([\d.]+)\) +(\d+)%"
    r" +(\d+) +(\d+|-)  ([\d. -]+?) +(\d+)$",
    re.MULTILINE,
)


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LLM_PROVIDER": "embedded"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600, env=env,
                          cwd=ROOT)


def number(text: str) -> int:
    return int(text.replace(",", ""))


def test_tiny_benchmark_prints_costs_and_recall_three_ways():
    result = run("--turns", "4", "--max-tokens", "8", "--window-turns", "1", "--budget", "150", "--threshold", "4",
                 "--keep-turns", "1", "--warmup", "1", "--designs", "statements", "rewrite",
                 "--conversation", str(ROOT / "data" / "long_conversation.json"))
    assert result.returncode == 0, result.stderr
    rows = {match[0]: match for match in ROW.findall(result.stdout)}
    assert list(rows) == ["raw", "window", "budget", "summary: statements", "summary: rewrite"], result.stdout
    raw, window = rows["raw"], rows["window"]
    assert float(raw[3]) == 1.0 and number(raw[2]) == 0
    assert float(window[3]) < 1.0, "one turn kept costs less than the whole history"
    assert raw[8] == "4", "raw sends the four facts said in turns 1-4"
    assert number(rows["summary: statements"][2]) == 0, "copying the user's statements calls no model"
    assert number(rows["summary: rewrite"][2]) > 0
    for row in rows.values():
        assert len(row[10].split()) == 4 and all(0 <= float(v) <= 1 for v in row[10].split())
    assert "of replies repeat a 6-word run" in result.stdout
    assert "facts in the summary after each fold" in result.stdout


def test_bad_arguments_and_files_are_named(tmp_path):
    assert run("--threshold", "2", "--keep-turns", "2").returncode == 2
    bad = tmp_path / "chat.json"
    bad.write_text("[1, 2]")
    result = run("--skip-decoding", "--conversation", str(bad))
    assert result.returncode == 2 and str(bad) in result.stderr

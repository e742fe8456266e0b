"""benchmarks/strategies.py runs as a script with tiny settings and prints one row per strategy."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "strategies.py"
ROW = re.compile(
    r"^(raw|window|budget|summary) +([\d,]+) +([\d,]+) +([\d,]+) +([\d.]+) +(\d+)/(\d+) \(x([\d.]+)\) +(\d+)% +([\d.]+) +([\d.]+|-)  (.*)$",
    re.MULTILINE,
)


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LLM_PROVIDER": "embedded"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)


def number(text: str) -> int:
    return int(text.replace(",", ""))


def test_tiny_benchmark_prints_ratios_spreads_times_and_recall():
    result = run("--turns", "4", "--max-tokens", "8", "--keep-turns", "1", "--budget", "120", "--threshold", "2",
                 "--summary-keep-turns", "1", "--summary-max-tokens", "24", "--warmup", "1", "--quiz-max-tokens", "8")
    assert result.returncode == 0, result.stderr
    rows = {match[0]: match for match in ROW.findall(result.stdout)}
    assert list(rows) == ["raw", "window", "budget", "summary"], result.stdout
    raw, window, budget, summary = (rows[name] for name in ("raw", "window", "budget", "summary"))
    assert float(raw[4]) == 1.0 and number(raw[2]) == 0
    assert number(raw[3]) == number(raw[1])
    assert float(window[4]) < 1.0, "one turn kept costs less than the whole history"
    assert number(summary[2]) > 0 and number(summary[3]) == number(summary[1]) + number(summary[2])
    assert abs(float(summary[4]) - number(summary[3]) / number(raw[3])) < 0.01
    for row in rows.values():
        high, low = int(row[5]), int(row[6])
        assert high >= low > 0
        assert re.match(r"\d/4 \(", row[11]), row[11]
    assert int(budget[5]) <= 120
    assert "summarizer calls" in result.stdout and "facts in what was sent" in result.stdout


def test_no_quiz_and_bad_arguments():
    result = run("--turns", "2", "--max-tokens", "4", "--warmup", "0", "--no-quiz")
    assert result.returncode == 0, result.stderr
    assert all(re.search(rf"^{name} .* -  -$", result.stdout, re.MULTILINE) for name in ("raw", "window", "budget", "summary"))
    bad = run("--turns", "3", "--warmup", "3")
    assert bad.returncode == 2 and "--warmup must be" in bad.stderr
    assert run("--threshold", "3").returncode == 2

"""examples/trim_history.py: each strategy for a few turns, run through its main() on the embedded model."""

import importlib.util
import re
from pathlib import Path

import pytest

from helpers import count_tokens

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "trim_history.py"
TURN_LINE = re.compile(
    r"turn +(\d+): prompt_tokens= *(\d+) cached_tokens= *(\d+) completion_tokens= *(\d+) messages_sent= *(\d+)"
    r"(?: summarizer_tokens=(\d+))?"
)
TOTAL_LINE = re.compile(r"total: (\d+) turns, (\d+) prompt tokens sent, (\d+) summarizer tokens, (\d+) in all")


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("trim_history_example", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(example, capsys, *args):
    code = example.main(list(args))
    out = capsys.readouterr()
    turns = [tuple(int(g) if g else 0 for g in match) for match in TURN_LINE.findall(out.out)]
    total = TOTAL_LINE.search(out.out)
    return code, out, turns, tuple(map(int, total.groups())) if total else None


def test_raw_sends_the_whole_history(example, capsys):
    code, out, turns, total = run(example, capsys, "--strategy", "raw", "--turns", "3", "--max-tokens", "8")
    assert code == 0, out.err
    assert "Backend: embedded" in out.out and "strategy: raw, 3 turns" in out.out
    assert [t[0] for t in turns] == [1, 2, 3]
    assert [t[4] for t in turns] == [2, 4, 6]
    assert turns[1][1] > turns[0][1] and turns[2][1] > turns[1][1]
    data = example.load_conversation(example.DEFAULT_CONVERSATION)
    first = [data.system_message, {"role": "user", "content": data.turns[0]}]
    assert turns[0][1] == int(count_tokens(first))
    assert total == (3, sum(t[1] for t in turns), 0, sum(t[1] for t in turns))


def test_window_keeps_the_last_turns(example, capsys):
    code, out, turns, total = run(example, capsys, "--strategy", "window", "--turns", "4", "--keep-turns", "1",
                                  "--max-tokens", "8")
    assert code == 0, out.err
    assert [t[4] for t in turns] == [2, 2, 2, 2]  # the system message and the newest question, every turn


def test_budget_fits_every_turn_in_the_budget(example, capsys):
    code, out, turns, _ = run(example, capsys, "--strategy", "budget", "--turns", "4", "--budget", "110",
                              "--max-tokens", "8")
    assert code == 0, out.err
    assert all(t[1] <= 110 for t in turns)
    assert turns[-1][4] < 8, "older turns were dropped to fit"


def test_summary_folds_and_the_quiz_reports_recall(example, capsys):
    code, out, turns, total = run(example, capsys, "--strategy", "summary", "--turns", "3", "--keep-turns", "1",
                                  "--threshold", "2", "--max-tokens", "8", "--summarizer", "rewrite", "--quiz")
    assert code == 0, out.err
    folds = [t for t in turns if t[5]]
    assert folds, "a threshold of 2 messages folds from turn 2 on"
    assert all(t[4] <= 4 for t in turns), "system + summary + at most 2 verbatim messages"
    assert total[2] == sum(t[5] for t in turns) > 0
    assert total[3] == total[1] + total[2]
    assert "summary: " in out.out
    quiz_lines = [line for line in out.out.splitlines() if line.startswith("quiz ")]
    assert [line.split(":")[0] for line in quiz_lines] == ["quiz name", "quiz allergy", "quiz date", "quiz budget"]
    found = re.search(r"recall: (\d) of 4 facts named in the replies, (\d) sent", out.out)
    assert found and int(found.group(1)) == sum("reply names it=True" in line for line in quiz_lines)
    assert all(re.search(r"share=(0\.\d\d|1\.00)", line) for line in quiz_lines)


def test_the_default_summary_copies_the_users_statements(example, capsys):
    code, out, turns, total = run(example, capsys, "--strategy", "summary", "--turns", "5", "--keep-turns", "1",
                                  "--threshold", "2", "--max-tokens", "8")
    assert code == 0, out.err
    assert total[2] == 0, "copying statements calls no model"
    assert "summary: - Hi! My name is Maya" not in out.out and "- My name is Maya" not in out.out.split("summary:")[0]
    assert "I'm allergic to shellfish" in out.out.split("summary:")[-1]


def test_a_budget_too_small_for_the_newest_turn_is_a_named_error(example, capsys):
    code, out, turns, _ = run(example, capsys, "--strategy", "budget", "--turns", "1", "--budget", "10")
    assert code == 1 and turns == []
    assert "HistoryTooLongError" in out.err and "budget of 10" in out.err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--turns", "0"], "--turns must be between 1 and 28"),
        (["--turns", "29"], "--turns must be between 1 and 28"),
        (["--max-tokens", "0"], "--max-tokens must be at least 1"),
        (["--keep-turns", "0"], "--keep-turns must be at least 1"),
        (["--strategy", "summary", "--keep-turns", "3", "--threshold", "5"], "must be at least 2 * keep_turns (6)"),
        (["--strategy", "everything"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_with_a_message(example, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        example.main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_window_keep_turns_does_not_constrain_the_summary_threshold(example, capsys):
    # --keep-turns 5 with the default threshold of 8 is fine for a window (no summary buffer is built).
    code, out, turns, _ = run(example, capsys, "--strategy", "window", "--turns", "1", "--keep-turns", "5",
                              "--max-tokens", "4")
    assert code == 0, out.err
    assert len(turns) == 1


def test_help(example, capsys):
    with pytest.raises(SystemExit) as exit_info:
        example.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert all(option in text for option in ("--strategy", "--budget", "--threshold", "--quiz"))

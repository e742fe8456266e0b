"""scripts/course_map.py: section markers read from the real notebooks, and the three routes timed from them."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "course_map.py"
spec = importlib.util.spec_from_file_location("course_map", SCRIPT)
course_map = importlib.util.module_from_spec(spec)
sys.modules["course_map"] = course_map  # dataclasses resolve their module by name
spec.loader.exec_module(course_map)

# Notebooks whose markers are in place; the others report theirs as missing until they land.
MARKED = ("00_setup", "05_cross_session_memory", "06_memory_security")


def write_notebook(path: Path, cells: list[tuple[str, str]]) -> Path:
    """A minimal notebook file: ("markdown" | "code", source) per cell."""
    notebook = {
        "cells": [
            {
                "cell_type": kind,
                "metadata": {},
                "source": source,
                **({"outputs": [], "execution_count": None} if kind == "code" else {}),
            }
            for kind, source in cells
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(notebook), encoding="utf-8")
    return path


def ten_words(n: int = 1) -> str:
    return " ".join(["word"] * 10 * n)


@pytest.fixture
def toy_course(tmp_path: Path) -> Path:
    write_notebook(
        tmp_path / "00_first.ipynb",
        [
            ("markdown", f"# 00 · First\n\n{ten_words()}"),
            ("markdown", "## 1. Setup"),
            ("code", "import os"),  # code cell 0
            ("markdown", f"## 2. The loop · core\n\n{ten_words()}"),
            ("code", "x = 1"),  # code cell 1
            ("markdown", f"## 3. Costs · deep dive\n\n{ten_words(40)}"),
            ("code", "y = 2"),  # code cell 2
            ("markdown", f"## 4. More loop · core\n\n{ten_words()}"),
            ("code", "z = 3"),  # code cell 3
            ("markdown", "## 5. Unmarked section\n\nsome words"),
            ("code", "w = 4"),  # code cell 4
            ("markdown", "## Challenges\n\n**Challenge 1: a.** do it\n\n**Challenge 2: b.** do it"),
            ("code", "pass"),
            ("markdown", f"## Key points\n- {ten_words()}"),
        ],
    )
    write_notebook(
        tmp_path / "01_second.ipynb",
        [
            ("markdown", f"# 01 · Second\n\n**In one line.** {ten_words()}\n\n**Goal.** {ten_words(2)}"),
            ("markdown", "## Setup"),  # unnumbered, as a setup heading may be
            ("code", "import sys"),
            ("markdown", f"## 2. Database · deep dive\n\n{ten_words(30)}"),
            ("code", "db = 1"),
            ("markdown", "## Key points\n- done"),
        ],
    )
    return tmp_path


def test_toy_course_parts_markers_and_unmarked_headings(toy_course):
    first, second = course_map.read_course(toy_course)
    assert [(p.kind, p.title) for p in first.parts] == [
        ("intro", "introduction"),
        ("setup", "1. Setup"),
        ("core", "2. The loop · core"),
        ("deep dive", "3. Costs · deep dive"),
        ("core", "4. More loop · core"),
        ("deep dive", "5. Unmarked section"),
        ("challenges", "Challenges"),
        ("key points", "Key points"),
    ]
    assert first.unmarked == ["5. Unmarked section"] and first.has_core and first.one_line is None
    assert [p.code_cells for p in first.parts] == [[], [0], [1], [2], [3], [4], [5], []]
    assert first.parts[3].markdown_words == 400 and first.parts[6].challenges == 2
    assert not second.has_core and second.unmarked == [] and second.parts[1].kind == "setup"
    assert second.one_line.markdown_words == 13  # "In one line" + ten words


def test_routes_nest_and_time_reading_running_and_work(toy_course, tmp_path):
    course = course_map.read_course(toy_course)
    report = tmp_path / "durations.txt"
    report.write_text(
        "\n".join(
            [
                "============================== slowest durations ===============================",
                "6.00s call     notebooks/00_first.ipynb::Cell 2",  # a deep dive's cell, before the last core cell
                "1.50s setup    notebooks/00_first.ipynb::Cell 0",  # kernel start, added to the cell's call
                "0.50s call     notebooks/00_first.ipynb::Cell 0",
                "30.00s call     notebooks/00_first.ipynb::Cell 4",  # after the last core cell: not run in the class
                "99.00s call     notebooks/solutions/00_first.ipynb::Cell 1",  # solutions are not lessons
                "(3 durations < 0.005s hidden.  Use -vv to show these durations.)",
            ]
        ),
        encoding="utf-8",
    )
    durations = course_map.read_durations(report)
    assert durations == {("00_first", 2): 6.0, ("00_first", 0): 2.0, ("00_first", 4): 30.0}

    plans = course_map.routes(course, durations, wpm=100, challenge_minutes=10)
    lesson, workshop, full = (plans[name] for name in ("class", "workshop", "full"))
    first = lesson[0]
    assert [p.kind for p in first.parts] == ["intro", "setup", "core", "core", "key points"]
    assert first.reading_minutes == pytest.approx((12 + 10 + 10 + 10) / 100)  # intro, two core sections, key points
    assert first.run_seconds == 8.0  # cells 0-3 run (cell 2 too, since core cell 3 may need it); cell 4 does not
    assert [p.kind for p in lesson[1].parts] == ["one line"]  # the second notebook adds its sentence only

    def parts(stops):
        return {(stop.notebook, part.title) for stop in stops for part in stop.parts}

    assert parts(lesson) <= parts(workshop) <= parts(full) | {("01_second", "in one line")}
    assert sum(stop.work_minutes for stop in workshop) == 20  # the class notebook's two challenges
    assert sum(stop.minutes for stop in workshop) <= 120
    assert full[0].run_seconds == 38.0 and sum(stop.work_minutes for stop in full) == 20


def test_workshop_takes_deep_dives_only_while_they_fit(toy_course):
    course = course_map.read_course(toy_course)
    slow = course_map.routes(course, None, wpm=4, challenge_minutes=10)  # 400 words of "Costs" = 100 min
    titles = {part.title for stop in slow["workshop"] for part in stop.parts}
    assert "3. Costs · deep dive" not in titles and "5. Unmarked section" not in titles  # none after one too long
    assert "2. Database · deep dive" not in titles  # the second notebook is opened whole or not at all
    fast = course_map.routes(course, None, wpm=400, challenge_minutes=10)
    taught = {part.title for stop in fast["workshop"] for part in stop.parts}
    assert {"3. Costs · deep dive", "5. Unmarked section", "2. Database · deep dive", "Key points"} <= taught
    assert sum(stop.minutes for stop in slow["workshop"]) <= 120


def test_junit_report_gives_the_same_cells(tmp_path):
    report = tmp_path / "junit.xml"
    report.write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">'
        '<testcase classname="notebooks.00_setup.ipynb" name="Cell 0" time="3.970" />'
        '<testcase classname="notebooks.00_setup.ipynb" name="Cell 2" time="0.292" />'
        '<testcase classname="notebooks.solutions.00_solutions.ipynb" name="Cell 0" time="1.666" />'
        '<testcase classname="tests.test_history" name="test_window" time="0.1" />'
        "</testsuite></testsuites>",
        encoding="utf-8",
    )
    assert course_map.read_durations(report) == {("00_setup", 0): 3.97, ("00_setup", 2): 0.292}


@pytest.mark.parametrize("content", ["no durations here\n", "<testsuites><unclosed>"])
def test_unusable_reports_and_notebooks_are_named_errors(tmp_path, content):
    report = tmp_path / "report.txt"
    report.write_text(content, encoding="utf-8")
    with pytest.raises(course_map.CourseMapError, match="report.txt"):
        course_map.read_durations(report)
    broken = tmp_path / "nb" / "00_broken.ipynb"
    broken.parent.mkdir()
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(course_map.CourseMapError, match="00_broken.ipynb"):
        course_map.read_course(broken.parent)
    with pytest.raises(course_map.CourseMapError, match="no notebooks"):
        course_map.read_course(tmp_path)


def test_check_fails_on_a_missing_marker_and_names_it(toy_course, capsys):
    assert course_map.main(["--notebooks", str(toy_course)]) == 0
    assert course_map.main(["--notebooks", str(toy_course), "--check"]) == 1
    assert "00_first: ## 5. Unmarked section" in capsys.readouterr().out
    assert course_map.main(["--notebooks", str(toy_course / "missing")]) == 2


def test_the_real_notebooks():
    """Every lesson notebook is read; 00, 05 and 06 carry every marker; the class fits 45 minutes of reading."""
    course = course_map.read_course()
    names = [notebook.name for notebook in course]
    assert names == sorted(names) and len(names) >= 8
    by_name = {notebook.name: notebook for notebook in course}
    for name in MARKED:
        assert by_name[name].unmarked == [], f"{name} has headings without a marker: {by_name[name].unmarked}"
    assert by_name["00_setup"].has_core
    for name in ("05_cross_session_memory", "06_memory_security"):  # the one-line warnings
        assert not by_name[name].has_core and by_name[name].one_line.markdown_words <= 40
    plans = course_map.routes(course)
    assert sum(stop.minutes for stop in plans["class"]) <= 45
    assert sum(stop.minutes for stop in plans["workshop"]) <= 120

    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--markdown"], capture_output=True, text=True, cwd=ROOT, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    for route in ("### class:", "### workshop:", "### full:"):
        assert route in result.stdout
    assert "| 05_cross_session_memory | in one line |" in result.stdout

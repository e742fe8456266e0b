"""Three routes through the course, timed: a 45-minute class, a 2-hour workshop, the full self-paced course.

    python scripts/course_map.py                                   # reading time only (no run times yet)
    python scripts/course_map.py --durations artifacts/durations.txt   # plus measured run times
    python scripts/course_map.py --durations artifacts/durations.txt --markdown   # tables for the docs
    make course-map                                                # runs the notebooks, then the above

The convention it reads (CONTRIBUTING.md, docs/teaching.md): every `## N. Title` section heading of a
lesson notebook ends with ` · core` or ` · deep dive`. `## N. Setup...`, `## Challenge...` and
`## Key points` carry no marker. A notebook with no core section may still hold one core sentence: a
paragraph of its introduction that starts with `**In one line.**` (notebooks 05 and 06: the warnings on
cross-session memory and security).

Each notebook is split into parts: the introduction (before the first `##` heading), then each `##`
section with its `###` subsections. A part's time is
- reading: its markdown words at --wpm (200) words a minute; the words of its code are counted and
  shown, and --read-code adds them to the reading time;
- running: its code cells' run time, from a pytest durations report (`pytest --nbval ... --durations=0`)
  or a JUnit XML report (`--junitxml`). A route runs every code cell of a notebook up to the last part it
  teaches, because a later cell may use an earlier one's variables: skipped sections still run.
- challenges: the reading and running of the challenge section, plus --challenge-minutes (10) of work
  for each challenge (an allowance, not a measurement).

Routes:
- class (45 min): every notebook with a core section: its introduction, setup, core sections and key
  points; a notebook without one adds only its one-line sentence.
- workshop (120 min): the class, the challenges of the class's notebooks, then deep dives in course
  order while they fit: section by section in a notebook with core sections (stopping at the first that
  does not fit), and whole (introduction, setup, every section, key points) in a notebook without.
- full: every part of every notebook and every challenge.

A numbered heading without a marker is reported and treated as a deep dive, so it never inflates the
class. With --check the exit status is 1 when a heading lacks its marker or a route is over its budget.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"

CORE, DEEP_DIVE, SETUP, INTRO, CHALLENGES, KEY_POINTS, ONE_LINE = (
    "core",
    "deep dive",
    "setup",
    "intro",
    "challenges",
    "key points",
    "one line",
)
BUDGETS = {"class": 45.0, "workshop": 120.0, "full": None}  # minutes; the full course has no budget

SECTION = re.compile(r"^##\s+(?P<title>[^#].*?)\s*$")
NUMBERED = re.compile(r"^(?P<number>\d+)\.\s+(?P<title>.+?)(?:\s+·\s+(?P<marker>core|deep dive))?$")
ONE_LINE_LEAD = "**In one line.**"
WORD = re.compile(r"[A-Za-z0-9][\w'’-]*")
CHALLENGE_LABEL = re.compile(r"\*\*Challenge\s+\d+")
# "12.34s call     notebooks/00_setup.ipynb::Cell 3" (pytest --durations); setup and teardown lines too.
DURATION_LINE = re.compile(r"^\s*(?P<seconds>\d+(?:\.\d+)?)s\s+(?:setup|call|teardown)\s+(?P<item>\S+::Cell \d+)\s*$")
ITEM = re.compile(r"(?P<notebook>[^/\\:]+\.ipynb)::Cell (?P<cell>\d+)$")


class CourseMapError(ValueError):
    """A notebook or a durations report that cannot be read; the message names the file."""


@dataclass(eq=False)  # parts compare by identity: two parts with the same words are still two parts
class Part:
    """One part of a notebook: its introduction, or one `##` section with its subsections."""

    notebook: str
    kind: str
    title: str
    markdown_words: int = 0
    code_words: int = 0
    code_cells: list[int] = field(default_factory=list)  # indices among the notebook's code cells
    challenges: int = 0

    @property
    def name(self) -> str:
        """The title without its marker."""
        return re.sub(r"\s+·\s+(core|deep dive)$", "", self.title)


@dataclass
class Notebook:
    """A lesson notebook's parts, in order, and the headings that lack a marker."""

    name: str
    parts: list[Part]
    unmarked: list[str]
    one_line: Part | None = None

    @property
    def has_core(self) -> bool:
        return any(part.kind == CORE for part in self.parts)


def words(text: str) -> int:
    """Words a person reads: runs of letters and digits (markdown symbols and punctuation are not words)."""
    return len(WORD.findall(text))


def section_kind(title: str) -> tuple[str, str | None]:
    """The kind of a `##` heading's section, and the heading when it should carry a marker but has none."""
    numbered = NUMBERED.match(title)
    if numbered:
        if numbered["marker"]:
            return numbered["marker"], None
        if numbered["title"].lower().startswith("setup"):
            return SETUP, None
        return DEEP_DIVE, title
    lowered = title.lower()
    if lowered.startswith("setup"):
        return SETUP, None
    if lowered.startswith("challenge"):
        return CHALLENGES, None
    if lowered.startswith("key points"):
        return KEY_POINTS, None
    return DEEP_DIVE, title


def read_notebook(path: Path) -> Notebook:
    """Split one notebook into its parts; raises CourseMapError naming the file if it is not a notebook."""
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise CourseMapError(f"{path}: not a readable notebook ({error})") from error
    intro = Part(path.stem, INTRO, "introduction")
    parts, unmarked, one_line, code_index = [intro], [], None, 0
    for cell in cells:
        source = "".join(cell.get("source", []))
        if cell.get("cell_type") == "code":
            parts[-1].code_words += words(source)
            parts[-1].code_cells.append(code_index)
            code_index += 1
            continue
        if cell.get("cell_type") != "markdown":
            continue
        for line in source.splitlines():
            heading = SECTION.match(line)
            if heading:
                kind, missing = section_kind(heading["title"])
                if missing:
                    unmarked.append(missing)
                parts.append(Part(path.stem, kind, heading["title"]))
                continue
            parts[-1].markdown_words += words(line)
            if parts[-1].kind == CHALLENGES:
                parts[-1].challenges += len(CHALLENGE_LABEL.findall(line))
            if len(parts) == 1 and line.startswith(ONE_LINE_LEAD):
                one_line = Part(path.stem, ONE_LINE, "in one line", markdown_words=words(line))
    for part in parts:
        if part.kind == CHALLENGES and not part.challenges:
            part.challenges = 1  # a challenge section without numbered challenges holds one
    return Notebook(path.stem, parts, unmarked, one_line)


def read_course(folder: Path = NOTEBOOKS) -> list[Notebook]:
    """Every lesson notebook (`NN_*.ipynb`, solutions excluded), in course order."""
    paths = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise CourseMapError(f"{folder}: no notebooks named NN_*.ipynb")
    return [read_notebook(path) for path in paths]


def read_durations(path: Path) -> dict[tuple[str, int], float]:
    """Seconds per (notebook stem, code cell index), from `pytest --durations=0` output or a JUnit XML report.

    Setup, call and teardown add up (a notebook's first cell carries its kernel's start). Solutions
    notebooks are left out: their stems are the same as no lesson's. Cells faster than pytest's
    reporting threshold are absent and count as 0.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise CourseMapError(f"{path}: cannot read the durations report ({error.strerror})") from error
    found: dict[tuple[str, int], float] = {}

    def add(item: str, seconds: float) -> None:
        match = ITEM.search(item.replace("\\", "/"))
        if match and "solutions/" not in item.replace("\\", "/"):
            key = (match["notebook"][: -len(".ipynb")], int(match["cell"]))
            found[key] = found.get(key, 0.0) + seconds

    if text.lstrip().startswith("<"):
        try:
            root = ElementTree.fromstring(text)
        except ElementTree.ParseError as error:
            raise CourseMapError(f"{path}: not valid JUnit XML ({error})") from error
        for case in root.iter("testcase"):  # nbval: classname="notebooks.00_setup.ipynb" name="Cell 3"
            classname = case.get("classname", "")
            if classname.endswith(".ipynb"):
                path_of_notebook = classname[: -len(".ipynb")].replace(".", "/") + ".ipynb"
                add(f"{path_of_notebook}::{case.get('name', '')}", float(case.get("time") or 0))
    else:
        for line in text.splitlines():
            match = DURATION_LINE.match(line)
            if match:
                add(match["item"], float(match["seconds"]))
    if not found:
        raise CourseMapError(f"{path}: no notebook cell durations in it (run pytest --nbval ... --durations=0)")
    return found


@dataclass
class Stop:
    """The parts of one notebook that a route teaches, and the time they take."""

    notebook: str
    parts: list[Part]
    reading_minutes: float
    run_seconds: float | None
    work_minutes: float

    @property
    def minutes(self) -> float:
        return self.reading_minutes + (self.run_seconds or 0.0) / 60 + self.work_minutes


def stop_for(
    notebook: Notebook,
    chosen: list[Part],
    durations: dict[tuple[str, int], float] | None,
    wpm: float,
    read_code: bool,
    challenge_minutes: float,
) -> Stop:
    """Time `chosen` parts of `notebook`: their reading, the run of every code cell up to the last of them, the work."""
    reading = sum(part.markdown_words + (part.code_words if read_code else 0) for part in chosen) / wpm
    work = sum(part.challenges for part in chosen if part.kind == CHALLENGES) * challenge_minutes
    run = None
    if durations is not None:
        last = max((cell for part in chosen for cell in part.code_cells), default=-1)
        run = sum(durations.get((notebook.name, cell), 0.0) for cell in range(last + 1))
    return Stop(notebook.name, chosen, reading, run, work)


def _frame(notebook: Notebook) -> list[Part]:
    """What opening a notebook costs whatever it teaches: its introduction, setup and key points."""
    return [part for part in notebook.parts if part.kind in (INTRO, SETUP, KEY_POINTS)]


def routes(
    course: list[Notebook],
    durations: dict[tuple[str, int], float] | None = None,
    *,
    wpm: float = 200,
    read_code: bool = False,
    challenge_minutes: float = 10,
) -> dict[str, list[Stop]]:
    """The class, workshop and full routes: for each, the stops (one per notebook it opens), in course order."""
    timed = {"wpm": wpm, "read_code": read_code, "challenge_minutes": challenge_minutes}

    def plan(selection: dict[str, list[Part]]) -> list[Stop]:
        stops = []
        for notebook in course:
            chosen = [part for part in notebook.parts + [notebook.one_line] if part in selection.get(notebook.name, [])]
            if chosen:
                stops.append(stop_for(notebook, chosen, durations, **timed))
        return stops

    def total(stops: list[Stop]) -> float:
        return sum(stop.minutes for stop in stops)

    lesson = {}
    for notebook in course:
        if notebook.has_core:
            lesson[notebook.name] = [p for p in notebook.parts if p.kind in (INTRO, SETUP, CORE, KEY_POINTS)]
        elif notebook.one_line:
            lesson[notebook.name] = [notebook.one_line]
    workshop = {name: list(parts) for name, parts in lesson.items()}
    for notebook in course:
        if notebook.has_core:
            workshop[notebook.name] += [p for p in notebook.parts if p.kind == CHALLENGES]
    for notebook in course:  # deep dives in course order, while they fit
        deep_dives = [p for p in notebook.parts if p.kind == DEEP_DIVE]
        if notebook.has_core:  # section by section; the rest of the notebook waits for the full course
            for part in deep_dives:
                trial = {**workshop, notebook.name: workshop[notebook.name] + [part]}
                if total(plan(trial)) > BUDGETS["workshop"]:
                    break
                workshop = trial
        elif deep_dives:  # a notebook that is all depth is opened whole, or not at all
            trial = {**workshop, notebook.name: workshop.get(notebook.name, []) + _frame(notebook) + deep_dives}
            if total(plan(trial)) <= BUDGETS["workshop"]:
                workshop = trial
    full = {notebook.name: list(notebook.parts) for notebook in course}
    return {"class": plan(lesson), "workshop": plan(workshop), "full": plan(full)}


def _minutes(value: float) -> str:
    return f"{value:.0f} min" if value >= 10 else f"{value:.1f} min"


def report(course: list[Notebook], plans: dict[str, list[Stop]], *, markdown: bool = False) -> str:
    """The routes as text (or markdown tables): per notebook, what is taught and its reading, run and work time."""
    lines = []
    for route, stops in plans.items():
        budget = BUDGETS[route]
        total = sum(stop.minutes for stop in stops)
        measured = all(stop.run_seconds is not None for stop in stops)
        verdict = "" if budget is None else (f" (budget {budget:.0f} min: " + ("fits)" if total <= budget else "OVER)"))
        title = f"{route}: {_minutes(total)}{verdict}" + ("" if measured else ", run time not measured")
        lines.append(f"### {title}" if markdown else title)
        if markdown:
            lines += ["", "| notebook | sections | reading | run | challenge work |", "|---|---|---|---|---|"]
        for stop in stops:
            taught = [p.name for p in stop.parts if p.kind in (CORE, DEEP_DIVE, CHALLENGES, ONE_LINE)]
            run = "-" if stop.run_seconds is None else f"{stop.run_seconds:.0f} s"
            work = f"{stop.work_minutes:.0f} min" if stop.work_minutes else "-"
            if markdown:
                lines.append(
                    f"| {stop.notebook} | {'; '.join(taught) or '-'} | {_minutes(stop.reading_minutes)} "
                    f"| {run} | {work} |"
                )
            else:
                lines.append(
                    f"  {stop.notebook:<36} read {_minutes(stop.reading_minutes):>9}  run {run:>6}  "
                    f"work {work:>7}  {len(taught)} sections"
                )
        lines.append("")
    unmarked = [(notebook.name, heading) for notebook in course for heading in notebook.unmarked]
    if unmarked:
        lines.append(
            f"{len(unmarked)} section headings have no ' · core' / ' · deep dive' marker (counted as deep dives):"
        )
        lines += [f"  {name}: ## {heading}" for name, heading in unmarked]
    else:
        lines.append("Every numbered section heading carries its marker.")
    return "\n".join(lines)


def over_budget(plans: dict[str, list[Stop]]) -> list[str]:
    """The routes whose total time is over their budget."""
    return [
        route
        for route, stops in plans.items()
        if BUDGETS[route] is not None and sum(stop.minutes for stop in stops) > BUDGETS[route]
    ]


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--durations", type=Path, help="pytest --durations=0 output, or a --junitxml report")
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS, help="folder of NN_*.ipynb (default notebooks/)")
    parser.add_argument("--wpm", type=float, default=200, help="reading speed in words a minute (default 200)")
    parser.add_argument("--read-code", action="store_true", help="count the words of code cells as reading too")
    parser.add_argument(
        "--challenge-minutes", type=float, default=10, help="work allowed per challenge, in minutes (default 10)"
    )
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a heading lacks its marker or a route is over its budget"
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.wpm <= 0 or args.challenge_minutes < 0:
        parser.error("--wpm must be positive and --challenge-minutes not negative")
    try:
        course = read_course(args.notebooks)
        durations = read_durations(args.durations) if args.durations else None
    except CourseMapError as error:
        print(f"course_map: {error}", file=sys.stderr)
        return 2
    plans = routes(course, durations, wpm=args.wpm, read_code=args.read_code, challenge_minutes=args.challenge_minutes)
    print(report(course, plans, markdown=args.markdown))
    failed = over_budget(plans)
    if failed:
        print(f"Over budget: {', '.join(failed)}.")
    return 1 if args.check and (failed or any(notebook.unmarked for notebook in course)) else 0


if __name__ == "__main__":
    sys.exit(main())

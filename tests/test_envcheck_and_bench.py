"""The environment check and the benchmark script run and report real figures."""

import re
import signal
import subprocess
import sys

from helpers.envcheck import _version_tuple, check_environment, interpret_probe


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


def test_version_comparison_reads_numbers_not_text():
    assert _version_tuple("3.57.0") > _version_tuple("3.9")
    assert _version_tuple("0.3.36") >= _version_tuple("0.3.0")
    assert _version_tuple("2.0.0rc1") >= _version_tuple("2.0")


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

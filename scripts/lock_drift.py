"""Which installed packages have moved from the lock: `python scripts/lock_drift.py`.

    python scripts/lock_drift.py                        # requirements/lock.txt and requirements/model.txt
    python scripts/lock_drift.py --lock other-lock.txt  # another pin file (repeat --lock for several)

Prints one line per package whose installed version is not the one the lock pins for this platform (its
environment markers evaluated here, as pip would), in the form

    name lock -> installed

with `missing` for a locked package that is not installed and `unlocked` for an installed one that no
lock names (a new dependency), then exits 0 whatever it found: it informs, it does not judge. The weekly
drift workflow (.github/workflows/drift.yml) installs the newest releases pyproject.toml allows
(`make setup LOCK=`), runs `make test`, and prints this in its log and step summary: after a failure, the
packages listed are the suspects; after a pass, `make lock` moves the lock up to them.

Run it with the environment's own Python (`.venv/bin/python scripts/lock_drift.py`): it reads the
distributions that Python sees (importlib.metadata), and needs `packaging` (the dev extra has it) and the
installed project (`helpers.envcheck` reads requirement files the same way).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from helpers.envcheck import PROJECT, requirement_lines

ROOT = Path(__file__).resolve().parent.parent
LOCKS = (ROOT / "requirements" / "lock.txt", ROOT / "requirements" / "model.txt")
# Installed in every environment but locked by none: the installer's own packages, and this project.
NOT_LOCKED = frozenset({"pip", "setuptools", "wheel", PROJECT})


def locked(text: str, environment: Mapping[str, str] | None = None) -> dict[str, str]:
    """The exact pins of a requirements file (`name==version ; marker` lines, as `uv pip compile` writes)
    whose markers apply to `environment` (default: this interpreter), by normalized name.

    Comments, `# via` lines, options (`-c`, `-e`, ...) and lines that pin nothing exactly are skipped."""
    pins: dict[str, str] = {}
    for line in requirement_lines(text):
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.marker and not requirement.marker.evaluate({"extra": "", **(environment or {})}):
            continue
        exact = [spec.version for spec in requirement.specifier if spec.operator in ("==", "===")]
        if len(exact) == 1 and "*" not in exact[0]:
            pins[canonicalize_name(requirement.name)] = exact[0]
    return pins


def installed_versions() -> dict[str, str]:
    """Every distribution this Python sees, by normalized name (the first on sys.path, as imports find it)."""
    versions: dict[str, str] = {}
    for distribution in importlib.metadata.distributions():
        name = distribution.metadata["Name"]
        if name:
            versions.setdefault(canonicalize_name(name), distribution.version)
    return versions


def same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def drift(pins: Mapping[str, str], installed: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(name, locked, installed) for each package that differs, sorted by name: `missing` where a locked
    package is not installed, `unlocked` where an installed one is in no lock (NOT_LOCKED aside)."""
    moved = []
    for name in sorted(set(pins) | set(installed)):
        lock, found = pins.get(name, "unlocked"), installed.get(name, "missing")
        if name in pins and name in installed and same_version(lock, found):
            continue
        if name not in pins and name in NOT_LOCKED:
            continue
        moved.append((name, lock, found))
    return moved


def report(moved: Iterable[tuple[str, str, str]]) -> str:
    return "\n".join(f"{name} {lock} -> {found}" for name, lock, found in moved)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--lock", type=Path, action="append", help="a pin file (default: requirements/lock.txt and model.txt)"
    )
    args = parser.parse_args(None if argv is None else list(argv))
    locks = args.lock or list(LOCKS)
    pins: dict[str, str] = {}
    for path in locks:
        pins.update(locked(path.read_text(encoding="utf-8")))
    moved = drift(pins, installed_versions())
    names = ", ".join(path.name for path in locks)
    if moved:
        print(f"{len(moved)} of {len(pins)} packages differ from {names} (name lock -> installed):")
        print(report(moved))
    else:
        print(f"Every package is the version {names} pins ({len(pins)} packages).")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Execute notebooks top to bottom in a fresh kernel and save them with clean metadata.

    python scripts/run_notebooks.py                      # every notebook in notebooks/
    python scripts/run_notebooks.py notebooks/01_*.ipynb

Committed outputs come from this clean run, so nbval compares against them.
The embedded model is forced (LLM_PROVIDER=embedded), as in `make test`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


def clean_metadata(notebook: nbformat.NotebookNode) -> None:
    """Drop per-run noise (execution timings, widget state) so diffs show content."""
    notebook.metadata.pop("widgets", None)
    notebook.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)


def run(path: Path, timeout: int = 1800) -> None:
    notebook = nbformat.read(path, as_version=4)
    os.environ["LLM_PROVIDER"] = "embedded"
    client = NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    clean_metadata(notebook)
    nbformat.write(notebook, path)
    print(f"executed {path.relative_to(ROOT)}")


def main(argv: list[str]) -> None:
    paths = [Path(a).resolve() for a in argv] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    for path in paths:
        run(path)


if __name__ == "__main__":
    main(sys.argv[1:])

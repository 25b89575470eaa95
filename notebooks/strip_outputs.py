"""Strip outputs and execution counts from notebooks (notebooks are committed without them).

Usage::

    python notebooks/strip_outputs.py            # strip every notebook of notebooks/
    python notebooks/strip_outputs.py a.ipynb    # strip these files
    python notebooks/strip_outputs.py --check    # list unstripped notebooks, exit 1 if any

``tests/test_notebooks.py`` runs the check, so a notebook saved with its outputs fails the suite.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

NOTEBOOK_DIR = Path(__file__).resolve().parent
#: Notebook-level metadata written by Jupyter front ends that changes on every save.
VOLATILE_METADATA = ("widgets", "execution")


def notebooks(paths: list[Path] | None = None) -> list[Path]:
    """The given notebooks, or every ``*.ipynb`` of this folder (checkpoints excluded)."""
    if paths:
        return [Path(p) for p in paths]
    return sorted(p for p in NOTEBOOK_DIR.glob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def problems(nb: nbformat.NotebookNode) -> list[str]:
    """What is left to strip in a notebook: cells with outputs or execution counts."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            found.append(f"cell {index}: {len(cell['outputs'])} output(s)")
        if cell.get("execution_count") is not None:
            found.append(f"cell {index}: execution_count {cell['execution_count']}")
        if "execution" in cell.get("metadata", {}):
            found.append(f"cell {index}: execution timing metadata")
    found += [f"notebook metadata '{key}'" for key in VOLATILE_METADATA if key in nb.metadata]
    return found


def strip(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Remove outputs, execution counts and volatile metadata, in place; return the notebook."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.get("metadata", {}).pop("execution", None)
    for key in VOLATILE_METADATA:
        nb.metadata.pop(key, None)
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/)")
    parser.add_argument("--check", action="store_true",
                        help="only report unstripped notebooks; exit 1 if any")
    args = parser.parse_args(argv)
    dirty = 0
    for path in notebooks(args.paths):
        nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        found = problems(nb)
        if not found:
            continue
        dirty += 1
        if args.check:
            print(f"{path}: " + "; ".join(found))
        else:
            nbformat.write(strip(nb), path)
            print(f"stripped {path}")
    return 1 if args.check and dirty else 0


if __name__ == "__main__":
    sys.exit(main())

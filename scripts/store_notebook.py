"""Execute notebooks and store them small: outputs kept only in golden cells.

A golden cell carries the cell tag ``nbval-check-output`` (in its metadata, out of the learner's
sight; the older ``# NBVAL_CHECK_OUTPUT`` first line is read too, and ``--tag-golden`` moves it
into the tag); nbval (``pytest --nbval-lax``) compares its stored output with a fresh run. Every
other cell is stored without outputs or execution count.

    python scripts/store_notebook.py notebooks/03_scaling_factor.ipynb [...]
    python scripts/store_notebook.py --check notebooks/*.ipynb   # fail if a notebook is fat
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

GOLDEN = "# NBVAL_CHECK_OUTPUT"
GOLDEN_TAG = "nbval-check-output"
MAX_KB = 300


def is_golden(cell) -> bool:
    """Whether nbval checks this cell's output: the tag, or the older first-line comment."""
    if cell.cell_type != "code":
        return False
    return GOLDEN_TAG in cell.metadata.get("tags", []) or cell.source.lstrip().startswith(GOLDEN)


def tag_golden(nb) -> int:
    """Move every ``# NBVAL_CHECK_OUTPUT`` first line into the cell tag; returns how many."""
    moved = 0
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.lstrip().startswith(GOLDEN):
            first, _, rest = cell.source.lstrip().partition("\n")
            if first.strip() != GOLDEN:
                continue  # something else on the marker's line: leave it as it is
            cell.source = rest
            tags = cell.metadata.setdefault("tags", [])
            if GOLDEN_TAG not in tags:
                tags.append(GOLDEN_TAG)
            moved += 1
    return moved


def strip(nb) -> None:
    count = 0
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        if is_golden(cell):
            count += 1
            cell.execution_count = count
            cell.outputs = [
                o
                for o in cell.outputs
                if o.get("output_type") != "display_data" or "text/plain" in o.get("data", {})
            ]
            for o in cell.outputs:
                if o.get("output_type") == "execute_result":
                    o["execution_count"] = count
                o.get("data", {}).pop("image/png", None)
        else:
            cell.outputs = []
            cell.execution_count = None
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = {
        "display_name": "Python 3",
        "language": "python",
        "name": "python3",
    }


def execute(nb, path: Path, timeout: int) -> None:
    """Run every cell of ``nb`` (read from ``path``) in a fresh ``python3`` kernel started in
    ``path``'s folder, in place; the kernel inherits this process's environment."""
    NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("notebooks", nargs="+", type=Path)
    ap.add_argument("--check", action="store_true", help="only check sizes and golden cells")
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument(
        "--tag-golden",
        action="store_true",
        help="only move '# NBVAL_CHECK_OUTPUT' first lines into the cell tag (nothing is run)",
    )
    args = ap.parse_args()
    os.environ.setdefault("MPLBACKEND", "Agg")
    bad = 0
    for path in args.notebooks:
        nb = nbformat.read(path, as_version=4)
        if args.tag_golden:
            print(f"{path}: {tag_golden(nb)} marker(s) moved into the {GOLDEN_TAG!r} tag")
            nbformat.write(nb, path)
            continue
        if not args.check:
            start = time.time()
            execute(nb, path, args.timeout)
            print(f"{path}: executed in {time.time() - start:.0f} s")
            strip(nb)
            nbformat.write(nb, path)
        kb = path.stat().st_size / 1024
        golden = sum(is_golden(c) for c in nb.cells)
        print(f"{path}: {kb:.0f} KB, {golden} golden cell(s)")
        bad += kb > MAX_KB
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""Execute notebooks and store them small: outputs kept only in golden cells.

A golden cell starts with ``# NBVAL_CHECK_OUTPUT``; nbval (``pytest --nbval-lax``) compares its
stored output with a fresh run. Every other cell is stored without outputs or execution count.

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
MAX_KB = 300


def is_golden(cell) -> bool:
    return cell.cell_type == "code" and cell.source.lstrip().startswith(GOLDEN)


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
    args = ap.parse_args()
    os.environ.setdefault("MPLBACKEND", "Agg")
    bad = 0
    for path in args.notebooks:
        nb = nbformat.read(path, as_version=4)
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

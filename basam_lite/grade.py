"""Grade students' copies of the notebooks: run each one, collect every exercise checker's verdict.

Each notebook is executed cell by cell by nbclient (Jupyter's own executor) in a fresh kernel. A
cell that raises counts as not done for the exercises it holds, and the cells after it still run
(``allow_errors``). A cell that runs past ``--timeout`` seconds, or a notebook past
``--notebook-timeout``, stops that notebook: the report names the cell, and the exercises not
reached are not done. The exercises expected in a notebook are the ``nbNN.check_*(...)`` calls in
its source; the checkers report their verdicts through ``$BASAM_GRADE_LOG``
(:mod:`basam_lite.exercises`). The table, one row per notebook and exercise, is printed and, with
``--csv``, written for the class folder::

    python -m basam_lite grade class/*/03_scaling_factor.ipynb --csv grades.csv --timeout 300
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import UserError
from .exercises import GRADE_LOG

CHECK_CALL = re.compile(r"\b(nb\d\d[a-z]?)\.(check_\w+)\s*\(")
"""A checker call in a notebook's source: ``nb03.check_lambda_768(...)``."""

CORRECT, WRONG, NOT_DONE = "correct", "wrong", "not done"
COLUMNS = ("student", "exercise", "result", "cell", "detail")


@dataclass(frozen=True)
class Row:
    """One exercise of one student's notebook: its result and why."""

    student: str  # the notebook's path, as given
    exercise: str  # nbNN.check_name
    result: str  # CORRECT, WRONG or NOT_DONE
    cell: int | None  # 1-based index of the cell holding the call (None: not found in source)
    detail: str  # the checker's message, the error raised, or where the notebook stopped


def expected_exercises(nb: object) -> list[tuple[str, int]]:
    """``(nbNN.check_name, cell number)`` for every checker call in the code cells, in order.

    Comment lines are ignored; a checker called twice is listed once (its first cell).
    """
    found: dict[str, int] = {}
    for index, cell in enumerate(nb.cells):  # type: ignore[attr-defined]
        if cell.cell_type != "code":
            continue
        code = "\n".join(ln for ln in cell.source.splitlines() if not ln.lstrip().startswith("#"))
        for module, name in CHECK_CALL.findall(code):
            found.setdefault(f"{module}.{name}", index + 1)
    return list(found.items())


def _snippet(source: str) -> str:
    line = next((ln.strip() for ln in source.splitlines() if ln.strip()), "")
    return line if len(line) <= 40 else line[:37] + "..."


def _error(cell: object) -> str | None:
    """``Name: value`` of the first error output of an executed cell, or None."""
    for out in cell.get("outputs", []):  # type: ignore[attr-defined]
        if out.get("output_type") == "error":
            return f"{out.get('ename', 'Error')}: {out.get('evalue', '')}".rstrip(": ")
    return None


def grade_notebook(
    path: Path,
    timeout: float = 600.0,
    notebook_timeout: float = 3600.0,
    cwd: Path | None = None,
    kernel_name: str = "python3",
) -> list[Row]:
    """Execute one notebook and return one :class:`Row` per exercise it calls.

    ``timeout`` bounds each cell and ``notebook_timeout`` the whole run (kernel start excluded),
    in seconds; ``cwd`` is the working directory of the kernel (default: the notebook's folder).
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    try:
        nb = nbformat.read(path, as_version=4)
    except FileNotFoundError:
        raise UserError(f"{path}: no such notebook; give the path of a student's .ipynb") from None
    except Exception as e:
        why = type(e).__name__
        raise UserError(f"{path}: not a readable notebook ({why}); give an .ipynb file") from e
    expected = expected_exercises(nb)
    workdir = Path(cwd) if cwd is not None else path.resolve().parent
    if not workdir.is_dir():
        raise UserError(f"--cwd {workdir}: not a folder; give the folder the notebooks run in")

    verdicts: dict[str, tuple[bool, str, int]] = {}  # checker -> (correct, message, cell)
    errors: dict[int, str] = {}  # cell number -> error raised
    stopped: tuple[int, str] | None = None  # (cell number, why)

    fd, log_name = tempfile.mkstemp(prefix="basam-grade-", suffix=".jsonl")
    os.close(fd)
    log = Path(log_name)
    try:
        client = NotebookClient(
            nb,
            timeout=timeout,
            kernel_name=kernel_name,
            allow_errors=True,
            interrupt_on_timeout=False,
            resources={"metadata": {"path": str(workdir)}},
        )
        env = {**os.environ, GRADE_LOG: str(log), "MPLBACKEND": "Agg"}
        with client.setup_kernel(env=env):
            deadline = time.monotonic() + notebook_timeout
            read = 0
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                number = index + 1
                left = deadline - time.monotonic()
                if left <= 0:
                    stopped = (number, f"the notebook passed its {notebook_timeout:g} s limit")
                    break
                client.timeout = max(1, int(min(timeout, left) + 0.999))
                try:
                    client.execute_cell(cell, index)
                except CellTimeoutError:
                    if timeout <= left:
                        stopped = (number, f"it ran past the {timeout:g} s per-cell limit")
                    else:
                        stopped = (number, f"the notebook passed its {notebook_timeout:g} s limit")
                    break
                except DeadKernelError:
                    stopped = (number, "the kernel died")
                    break
                finally:
                    with log.open(encoding="utf-8") as f:
                        f.seek(read)
                        new = f.read()
                        read = f.tell()
                    for line in new.splitlines():
                        record = json.loads(line)
                        verdicts[record["checker"]] = (
                            bool(record["correct"]),
                            str(record.get("message", "")),
                            number,
                        )
                err = _error(cell)
                if err is not None:
                    errors[number] = err
    finally:
        log.unlink(missing_ok=True)

    student = str(path)
    cells = {name: cell for name, cell in expected}
    rows = []
    for name in [n for n, _ in expected] + [n for n in verdicts if n not in cells]:
        cell = cells.get(name)
        if name in verdicts:
            correct, message, ran_in = verdicts[name]
            rows.append(Row(student, name, CORRECT if correct else WRONG, cell or ran_in, message))
            continue
        if stopped is not None and cell is not None and cell >= stopped[0]:
            where = stopped[0]
            snippet = _snippet(nb.cells[where - 1].source)
            detail = f"stopped at cell {where} ({snippet!r}): {stopped[1]}"
        elif cell is not None and cell in errors:
            detail = f"cell {cell} raised {errors[cell]}"
        elif cell is not None:
            detail = f"cell {cell} ran but gave no verdict"
        else:
            detail = "no verdict"
        rows.append(Row(student, name, NOT_DONE, cell, detail))
    if not rows and stopped is not None:
        snippet = _snippet(nb.cells[stopped[0] - 1].source)
        rows.append(
            Row(
                student,
                "-",
                NOT_DONE,
                stopped[0],
                f"stopped at cell {stopped[0]} ({snippet!r}): {stopped[1]}",
            )
        )
    return rows


def format_table(rows: Sequence[Row]) -> str:
    """The rows as an aligned text table, with a per-student count of correct exercises."""
    table = [COLUMNS] + [
        (r.student, r.exercise, r.result, "" if r.cell is None else str(r.cell), r.detail)
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS) - 1)]
    lines = []
    for row in table:
        lines.append(
            "  ".join(v.ljust(w) for v, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        )
    students = dict.fromkeys(r.student for r in rows)
    for s in students:
        mine = [r for r in rows if r.student == s and r.exercise != "-"]
        ok = sum(r.result == CORRECT for r in mine)
        lines.append(f"{s}: {ok} of {len(mine)} correct")
    return "\n".join(lines)


def write_csv(rows: Sequence[Row], path: Path) -> None:
    """Write the rows (columns :data:`COLUMNS`) to ``path`` atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in asdict(r).items()})
    path = Path(path)
    if path.parent and not path.parent.is_dir():
        raise UserError(f"--csv {path}: folder {path.parent} does not exist; create it first")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    os.replace(tmp, path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "notebooks",
        nargs="+",
        type=Path,
        metavar="NOTEBOOK",
        help="students' copies of the notebooks (.ipynb)",
    )
    parser.add_argument(
        "--csv",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the table as CSV (one row per student and exercise)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="seconds a cell may run before its notebook is stopped (default 600)",
    )
    parser.add_argument(
        "--notebook-timeout",
        type=float,
        default=3600.0,
        metavar="S",
        help="seconds a whole notebook may run (default 3600)",
    )
    parser.add_argument(
        "--cwd",
        type=Path,
        default=None,
        metavar="DIR",
        help="working directory of the kernels (default: each notebook's folder)",
    )
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel name (default python3)")


def run(args: argparse.Namespace) -> int:
    if args.timeout <= 0 or args.notebook_timeout <= 0:
        raise UserError("--timeout and --notebook-timeout must be positive numbers of seconds")
    for path in args.notebooks:
        if not Path(path).is_file():
            raise UserError(f"{path}: no such notebook; give the path of a student's .ipynb")
    rows: list[Row] = []
    for path in args.notebooks:
        rows += grade_notebook(
            Path(path), args.timeout, args.notebook_timeout, args.cwd, args.kernel
        )
    print(format_table(rows))
    if args.csv is not None:
        write_csv(rows, args.csv)
        print(f"wrote {args.csv}")
    return 0

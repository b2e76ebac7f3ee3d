"""Grade students' copies of the notebooks: run each one, re-check every exercise's answer.

Each notebook is executed cell by cell by nbclient (Jupyter's own executor) in a fresh kernel. A
cell that raises counts as not done for the exercises it holds, and the cells after it still run
(``allow_errors``). A cell that runs past ``--timeout`` seconds, or a notebook past
``--notebook-timeout``, stops that notebook: the report names the cell, and the exercises not
reached are not done. The exercises expected in a notebook are the ``nbNN.check_*(...)`` calls in
its source. The table, one row per notebook and exercise, is printed and, with ``--csv``,
written for the class folder::

    python -m basam_lite grade class/*/03_scaling_factor.ipynb --csv grades.csv --timeout 300

Students' code is untrusted:

- every notebook runs in a fresh temporary copy of its working folder (``--cwd``, default its own
  folder, without the other notebooks being graded), under bubblewrap where it runs
  (:mod:`basam_lite.sandbox`: the rest of the disk read-only, the inputs hidden, no network, its
  processes ended with it); one line says what is isolated;
- the kernel reports **answers**, not verdicts (:mod:`basam_lite.exercises.answers`): the grader
  re-runs each checker in its own process on the answer it reads back, so writing "correct"
  into the channel gains nothing;
- every input is read and checked before any runs, inputs are de-duplicated by real path, the CSV
  may not be an input, and the rows graded so far are written when a later notebook fails.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import UserError
from .exercises.answers import GRADE_LOG, Unreplayable, recheck
from .sandbox import Isolation, become_subreaper, choose, descendants, end_leftovers

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


MAX_COPY_FILES = 20_000
MAX_COPY_BYTES = 2 * 1024**3
MAX_CHANNEL_BYTES = 256 * 1024**2
KERNEL_ENV = (
    "PATH",
    "PYTHONPATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "BASAM_NATIVE_BF16",
)
"""The grader's environment variables a kernel inherits (no tokens, no credentials)."""


@dataclass
class Submission:
    """One input notebook, read and checked before any notebook runs."""

    path: Path  # as given
    real: Path  # resolved
    nb: object | None = None  # the parsed notebook; None when it could not be read
    problem: str = ""  # why it cannot be graded
    also: list[Path] = field(default_factory=list)  # other spellings given for it


def read_submissions(paths: Sequence[Path]) -> list[Submission]:
    """Read every notebook once, de-duplicated by real path, before any runs.

    A path that does not exist is refused (a typo of the teacher's); a file that is not a
    readable notebook is kept with its ``problem`` (a student's broken hand-in) so it gets a row.
    """
    import nbformat

    subs: dict[Path, Submission] = {}
    for given in paths:
        given = Path(given)
        if not given.exists():
            raise UserError(f"{given}: no such notebook; give the path of a student's .ipynb")
        if given.is_dir():
            raise UserError(f"{given}: a folder; give the students' .ipynb files (class/*/*.ipynb)")
        real = given.resolve()
        if real in subs:
            subs[real].also.append(given)
            continue
        sub = Submission(given, real)
        try:
            with open(real, encoding="utf-8") as f:
                nb = nbformat.read(f, as_version=4)
            nbformat.validate(nb)
            sub.nb = nb
        except Exception as e:  # a student's file: any failure to parse is a row, not a crash
            sub.problem = f"not a readable notebook ({type(e).__name__})"
        subs[real] = sub
    return list(subs.values())


def _copy_size(folder: Path, skip: set[Path]) -> tuple[int, int]:
    files = size = 0
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
        for name in names:
            p = Path(root, name)
            if p.resolve() in skip:
                continue
            files += 1
            with contextlib.suppress(OSError):
                size += p.lstat().st_size
            if files > MAX_COPY_FILES or size > MAX_COPY_BYTES:
                return files, size
    return files, size


def check_workdir(folder: Path, skip: set[Path], option: str) -> None:
    """Refuse a working folder that cannot be copied once per notebook."""
    if not folder.is_dir():
        raise UserError(f"{option} {folder}: not a folder; give the folder the notebooks run in")
    files, size = _copy_size(folder, skip)
    if files > MAX_COPY_FILES or size > MAX_COPY_BYTES:
        raise UserError(
            f"{option} {folder}: holds over {MAX_COPY_FILES} files or {MAX_COPY_BYTES >> 30} GB, "
            f"and each notebook runs in a copy of it; give a smaller folder with --cwd"
        )


def stage(workdir: Path, skip: set[Path]) -> Path:
    """A fresh temporary folder: ``work/`` (a copy of ``workdir`` without ``skip``), ``home/``
    and ``channel/`` (the answers log and the kernel's sockets). Returns its root."""
    root = Path(tempfile.mkdtemp(prefix="basam-grade-"))

    def ignore(folder: str, names: list[str]) -> set[str]:
        return {n for n in names if Path(folder, n).resolve() in skip}

    shutil.copytree(workdir, root / "work", symlinks=True, ignore=ignore)
    (root / "home").mkdir()
    (root / "channel").mkdir()
    return root


def kernel_env(root: Path) -> dict[str, str]:
    """The kernel's environment: a few of the grader's variables, its own home, the channel."""
    env = {k: os.environ[k] for k in KERNEL_ENV if k in os.environ}
    home = str(root / "home")
    env.update(
        HOME=home,
        MPLCONFIGDIR=str(root / "home" / ".matplotlib"),
        TMPDIR="/tmp",
        MPLBACKEND="Agg",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env[GRADE_LOG] = str(root / "channel" / "answers.jsonl")
    return env


def _kernel_manager_class(isolation: Isolation, root: Path, hidden: Sequence[Path]) -> type:
    """A KernelManager class whose kernel runs inside ``isolation``, talking over Unix sockets
    in ``root/channel`` (the kernel may have no network). nbclient creates and ends it."""
    from jupyter_client import AsyncKernelManager  # nbclient's own default: it awaits the km

    class IsolatedKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: object) -> None:
            super().__init__(**kwargs)
            self.transport = "ipc"
            self.ip = str(root / "channel" / "kernel")
            self.connection_file = str(root / "channel" / "kernel.json")

        def format_kernel_cmd(self, extra_arguments=None):  # type: ignore[override]
            cmd = super().format_kernel_cmd(extra_arguments)
            # the grader's pid means nothing inside a new pid namespace: without this the
            # kernel's parent poller would take the grader for gone and exit (1: no poller;
            # the sandbox's --die-with-parent ends the kernel with the grader instead)
            setenv = {"JPY_PARENT_PID": "1"}
            return isolation.command(cmd, root, root / "work", hidden, setenv)

    return IsolatedKernelManager


class _Channel:
    """Reads the answers log the kernel appends to (at most :data:`MAX_CHANNEL_BYTES`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.read = 0
        self.bad = 0

    def new_records(self) -> list[dict]:
        try:
            size = self.path.stat().st_size
        except OSError:
            return []
        if size < self.read:  # rewritten by the notebook: read it again from the start
            self.read = 0
        if self.read >= MAX_CHANNEL_BYTES:
            return []
        with open(self.path, "rb") as f:
            f.seek(self.read)
            data = f.read(MAX_CHANNEL_BYTES - self.read)
        end = data.rfind(b"\n") + 1  # a record is complete once its newline is written
        self.read += end
        records = []
        for line in data[:end].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                self.bad += 1
                continue
            if isinstance(record, dict) and isinstance(record.get("checker"), str):
                records.append(record)
            else:
                self.bad += 1
        return records


def _judge(record: dict) -> tuple[str, str]:
    """``(result, detail)`` for one recorded answer, from the grader's own re-check."""
    try:
        v = recheck(record)
    except Unreplayable as e:
        return NOT_DONE, f"the grader could not re-check the answer: {e}"
    except Exception as e:  # the checker raised on this answer (as the cell did in the kernel)
        return NOT_DONE, f"the checker raised {type(e).__name__}: {e}"
    correct = bool(getattr(v, "correct", False))
    detail = str(getattr(v, "message", ""))
    said = record.get("kernel_said")
    if isinstance(said, bool) and said != correct:
        detail += (
            f" [the notebook's own checker said {'correct' if said else 'wrong'}: "
            "its kernel was changed; read this notebook]"
        )
    return (CORRECT if correct else WRONG), detail


def _printed_correct(cell: object) -> bool:
    for out in cell.get("outputs", []):  # type: ignore[attr-defined]
        if out.get("output_type") == "stream" and "Correct: " in str(out.get("text", "")):
            return True
    return False


def grade_notebook(
    path: Path,
    timeout: float = 600.0,
    notebook_timeout: float = 3600.0,
    cwd: Path | None = None,
    kernel_name: str = "python3",
    isolation: Isolation | None = None,
    nb: object | None = None,
    hidden: Sequence[Path] = (),
    student: str | None = None,
) -> list[Row]:
    """Execute one notebook in a fresh copy and return one :class:`Row` per exercise it calls.

    ``timeout`` bounds each cell and ``notebook_timeout`` the whole run (kernel start excluded),
    in seconds. The kernel's working folder is a temporary copy of ``cwd`` (default: the
    notebook's folder, without ``hidden`` files); ``isolation`` (default: :func:`choose`) says
    how it runs; ``hidden`` paths are invisible to it. ``nb`` is the notebook already read.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    path = Path(path)
    if nb is None:
        try:
            nb = nbformat.read(path, as_version=4)
        except FileNotFoundError:
            raise UserError(
                f"{path}: no such notebook; give the path of a student's .ipynb"
            ) from None
        except Exception as e:
            why = type(e).__name__
            raise UserError(f"{path}: not a readable notebook ({why}); give an .ipynb file") from e
    nb = nbformat.reads(nbformat.writes(nb), as_version=4)  # our own copy to execute
    isolation = isolation if isolation is not None else choose("auto")
    expected = expected_exercises(nb)
    source = Path(cwd) if cwd is not None else path.resolve().parent
    skip = {Path(h).resolve() for h in hidden} | {path.resolve()}
    if not source.is_dir():
        raise UserError(f"--cwd {source}: not a folder; give the folder the notebooks run in")

    verdicts: dict[str, tuple[str, str, int]] = {}  # checker -> (result, detail, cell)
    errors: dict[int, str] = {}  # cell number -> error raised
    printed: dict[int, bool] = {}  # cell number -> printed a "Correct:" line
    stopped: tuple[int, str] | None = None  # (cell number, why)

    root = stage(source, skip)
    before = descendants(os.getpid())
    if isolation.bwrap is None:
        become_subreaper()
    try:
        channel = _Channel(root / "channel" / "answers.jsonl")
        client = NotebookClient(
            nb,
            kernel_manager_class=_kernel_manager_class(isolation, root, sorted(skip)),
            timeout=timeout,
            kernel_name=kernel_name,
            allow_errors=True,
            interrupt_on_timeout=False,
            resources={"metadata": {"path": str(root / "work")}},
        )
        with client.setup_kernel(env=kernel_env(root)):
            deadline = time.monotonic() + notebook_timeout
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
                    for record in channel.new_records():
                        result, detail = _judge(record)
                        verdicts[record["checker"]] = (result, detail, number)
                err = _error(cell)
                if err is not None:
                    errors[number] = err
                printed[number] = _printed_correct(cell)
    finally:
        end_leftovers(before)
        shutil.rmtree(root, ignore_errors=True)

    who = student if student is not None else str(path)
    cells = {name: cell for name, cell in expected}
    rows = []
    for name in [n for n, _ in expected] + [n for n in verdicts if n not in cells]:
        cell = cells.get(name)
        if name in verdicts:
            result, message, ran_in = verdicts[name]
            rows.append(Row(who, name, result, cell or ran_in, message))
            continue
        if stopped is not None and cell is not None and cell >= stopped[0]:
            where = stopped[0]
            snippet = _snippet(nb.cells[where - 1].source)
            detail = f"stopped at cell {where} ({snippet!r}): {stopped[1]}"
        elif cell is not None and cell in errors:
            detail = f"cell {cell} raised {errors[cell]}"
        elif cell is not None and printed.get(cell):
            detail = (
                f"cell {cell} printed a 'Correct:' line but no answer reached the grader "
                "(a checker replaced in memory?): read this notebook"
            )
        elif cell is not None:
            detail = f"cell {cell} ran but gave no verdict"
        else:
            detail = "no verdict"
        rows.append(Row(who, name, NOT_DONE, cell, detail))
    if not rows and stopped is not None:
        snippet = _snippet(nb.cells[stopped[0] - 1].source)
        rows.append(
            Row(
                who,
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
    from .outputs import write_text_atomic

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in asdict(r).items()})
    path = Path(path)
    if path.parent and not path.parent.is_dir():
        raise UserError(f"--csv {path}: folder {path.parent} does not exist; create it first")
    write_text_atomic(path, buf.getvalue())


def check_csv(path: Path, inputs: Sequence[Path]) -> None:
    """Refuse a --csv that is an input, a notebook, or a file other than a grades table."""
    path = Path(path)
    real = path.resolve()
    if real in {Path(p).resolve() for p in inputs}:
        raise UserError(f"--csv {path}: that is one of the notebooks to grade; give a new .csv")
    if path.suffix.lower() == ".ipynb":
        raise UserError(f"--csv {path}: a notebook's name; give a .csv file for the grades")
    if not path.parent.is_dir():
        raise UserError(f"--csv {path}: folder {path.parent} does not exist; create it first")
    if path.is_dir():
        raise UserError(f"--csv {path}: a folder; give a .csv file for the grades")
    if path.exists():
        try:
            with open(path, encoding="utf-8") as f:
                first = f.readline().strip()
        except (OSError, UnicodeDecodeError):
            first = ""
        if first != ",".join(COLUMNS):
            raise UserError(
                f"--csv {path}: exists and is not a grades table this command wrote; "
                "give a new file (it is never replaced)"
            )


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
        help="also write the table as CSV (one row per student and exercise); an existing file "
        "is replaced only if it is a grades table",
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
        help="folder each kernel works in, copied afresh for every notebook (default: a copy of "
        "each notebook's folder, without the other notebooks)",
    )
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel name (default python3)")
    parser.add_argument(
        "--sandbox",
        choices=("auto", "bwrap", "none"),
        default="auto",
        help="how students' kernels are isolated: bubblewrap where it runs (auto, the default), "
        "bubblewrap or refuse (bwrap), or only a temporary copy and process clean-up (none)",
    )


def run(args: argparse.Namespace) -> int:
    import math

    for name in ("timeout", "notebook_timeout"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value > 0):
            raise UserError("--timeout and --notebook-timeout must be positive numbers of seconds")
    subs = read_submissions(args.notebooks)
    inputs = [s.real for s in subs]
    if args.csv is not None:
        check_csv(args.csv, [p for p in args.notebooks])
    skip = set(inputs) | ({Path(args.csv).resolve()} if args.csv is not None else set())
    if args.cwd is not None:
        check_workdir(Path(args.cwd), skip, "--cwd")
    else:
        for folder in dict.fromkeys(s.real.parent for s in subs if s.nb is not None):
            check_workdir(folder, skip, "the folder of")
    isolation = choose(args.sandbox)
    print(isolation.note, file=sys.stderr)
    for s in subs:
        for other in s.also:
            print(f"{other}: the same notebook as {s.path}; graded once", file=sys.stderr)

    rows: list[Row] = []
    try:
        for s in subs:
            if s.nb is None:
                print(f"{s.path}: {s.problem}; not graded", file=sys.stderr)
                rows.append(Row(str(s.path), "-", NOT_DONE, None, s.problem))
                continue
            rows += grade_notebook(
                s.path,
                args.timeout,
                args.notebook_timeout,
                args.cwd,
                args.kernel,
                isolation=isolation,
                nb=s.nb,
                hidden=sorted(skip),
                student=str(s.path),
            )
    except BaseException:
        if args.csv is not None and rows:
            write_csv(rows, args.csv)
            print(
                f"grading stopped; wrote the {len(rows)} rows graded so far to {args.csv}",
                file=sys.stderr,
            )
        raise
    print(format_table(rows))
    if args.csv is not None:
        write_csv(rows, args.csv)
        print(f"wrote {args.csv}")
    return 1 if any(s.nb is None for s in subs) else 0

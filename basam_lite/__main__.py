"""Command line: ``python -m basam_lite {sweep,study,train,bench,grade,weights} ...``.

Each subcommand lives in its own module, which provides ``add_arguments(parser)`` and
``run(args) -> int``; every listed module is imported (to register its arguments), and an
import error is raised, never hidden.

A mistake in the arguments or a refused request (:class:`basam_lite.errors.UserError`) prints
one line, ``error: ...`` saying what to do, and exits with status 2; a number argument that is
not finite (``nan``, ``inf``) is such a mistake, refused before any work. A file-system fault
(a read-only folder, no permission, a full disk or quota) prints one line naming the file and
exits with status 1; what was written before it stays (every result file is written
atomically, and a rerun resumes). Any other exception is a bug and keeps its traceback.
``--debug`` (anywhere on the line) shows the traceback always.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import math
import sys

from .errors import UserError

COMMANDS = {
    "sweep": ("basam_lite.sweep", "zero-shot resolution sweep: model x variant x size x data"),
    "study": ("basam_lite.study", "detail or length: both axes on many images, paired statistics"),
    "train": ("basam_lite.train", "train or fine-tune a tiny SAM on procedural scenes"),
    "bench": ("basam_lite.bench", "attention speed and memory, side by side"),
    "grade": ("basam_lite.grade", "run students' notebooks and tabulate every exercise verdict"),
    "weights": ("basam_lite.weights.cli", "real SAM checkpoints: list the cache, get one, verify"),
}

USAGE_ERROR = 2
"""Exit status of a user error (as argparse uses for bad arguments)."""
FAULT = 1
"""Exit status of a file-system fault (read-only, no permission, disk full)."""
FAULTS = {
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
}
"""errno -> what the one-line message says; the fix is the same: free space or write elsewhere."""


def refuse_non_finite(args: argparse.Namespace) -> None:
    """Refuse any float argument (or float in a list argument) that is nan or infinite."""
    for name, value in vars(args).items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                flag = "--" + name.replace("_", "-")
                raise UserError(f"{flag} {v}: not a finite number; give a number such as 0.5")


def fault_line(e: OSError) -> str | None:
    """The one line for a file-system fault, or None for any other OSError (a bug)."""
    why = FAULTS.get(e.errno or 0)
    if why is None:
        return None
    where = f": {e.filename}" if e.filename else ""
    return (
        f"{why}{where}; nothing written before it was lost: free space or choose a writable "
        "place (--out), then rerun the same command"
    )


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are UserErrors (one line, exit 2, via :func:`main`)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, object]]:
    parser = Parser(prog="python -m basam_lite", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show the traceback of any error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        modules[name] = module
        p = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(p)
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        parser, modules = build_parser()
        args = parser.parse_args(argv)
        refuse_non_finite(args)
        from .compiled_bias import enabled as compiled_bias_enabled

        compiled_bias_enabled()  # a bad BASAM_COMPILED_BIAS is refused before any work
        return int(modules[args.command].run(args) or 0)  # type: ignore[attr-defined]
    except OSError as e:
        line = fault_line(e)
        if debug or line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return FAULT
    except UserError as e:
        if debug:
            raise
        first, *rest = str(e).strip().splitlines() or [type(e).__name__]
        print(f"error: {first}", file=sys.stderr)
        for line in rest:  # a list of bad files, one per line, under the one-line summary
            print(f"  {line.strip()}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())

"""Command line: ``python -m basam_lite {sweep,study,train,bench,grade,weights} ...``.

Each subcommand lives in its own module, which provides ``add_arguments(parser)`` and
``run(args) -> int``; every listed module is imported (to register its arguments), and an
import error is raised, never hidden.

A mistake in the arguments or a refused request (:class:`basam_lite.errors.UserError`) prints
one line, ``error: ...`` saying what to do, and exits with status 2; any other exception is a
bug and keeps its traceback. ``--debug`` (anywhere on the line) shows the traceback always.
"""

from __future__ import annotations

import argparse
import importlib
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
        return int(modules[args.command].run(args) or 0)  # type: ignore[attr-defined]
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

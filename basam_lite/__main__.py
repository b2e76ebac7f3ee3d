"""Command line: ``python -m basam_lite {sweep,train,bench} ...``.

Each subcommand lives in its own module, which provides ``add_arguments(parser)`` and
``run(args) -> int``; every listed module is imported (to register its arguments), and an
import error is raised, never hidden.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "sweep": ("basam_lite.sweep", "zero-shot resolution sweep: model x variant x size x data"),
    "train": ("basam_lite.train", "train or fine-tune a tiny SAM on procedural scenes"),
    "bench": ("basam_lite.bench", "attention speed and memory, side by side"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m basam_lite", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        modules[name] = module
        p = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(p)
    args = parser.parse_args(argv)
    return int(modules[args.command].run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

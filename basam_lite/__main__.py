"""Command line: ``python -m basam_lite {demo,sweep,train,bench} ...``.

Each subcommand lives in its own module, which provides ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their subcommand runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "demo": ("basam_lite.demo", "segment one scene with a patched tiny SAM at three sizes"),
    "sweep": ("basam_lite.sweep", "zero-shot resolution sweep: model x variant x size x data"),
    "train": ("basam_lite.train", "train or fine-tune a tiny SAM on procedural scenes"),
    "bench": ("basam_lite.bench", "attention speed and memory, side by side"),
    "grade": ("basam_lite.grade", "run students' notebooks and tabulate every exercise verdict"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m basam_lite", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name != module_name:
                raise
            continue
        modules[name] = module
        p = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(p)
    args = parser.parse_args(argv)
    return int(modules[args.command].run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

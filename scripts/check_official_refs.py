"""Check notebook 08's references against a clone of the official BA-SAM repository.

Each entry of ``basam_lite.official.REFERENCES`` names a file, a line range and a commit, and a
token that must occur on those lines (and, for "never does X" claims, strings that must not).
This reads each file with ``git show COMMIT:PATH`` and reports every reference that fails.

    git clone https://github.com/zongzi13545329/BA-SAM /tmp/BA-SAM
    python scripts/check_official_refs.py /tmp/BA-SAM

Exit status 0 when every reference holds, 1 with each failure listed, 2 on bad usage (no such
clone, or a commit or file the clone does not have).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from basam_lite.official import MOBILE_REFERENCES, REFERENCES, check_against


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clone", type=Path, help="a git clone of the official repository")
    args = parser.parse_args(argv)
    if not (args.clone / ".git").exists():
        print(f"error: {args.clone} is not a git clone; clone the official repository first")
        return 2

    def read(commit: str, path: str) -> str:
        shown = subprocess.run(
            ["git", "-C", str(args.clone), "show", f"{commit}:{path}"],
            capture_output=True,
            text=True,
        )
        if shown.returncode != 0:
            raise SystemExit(f"error: {path} at {commit[:7]}: {shown.stderr.strip()}")
        return shown.stdout

    try:
        problems = check_against(read, REFERENCES + MOBILE_REFERENCES[3:])
    except SystemExit as err:
        print(err)
        return 2
    for line in problems:
        print(line)
    print("all references hold" if not problems else f"{len(problems)} reference(s) fail")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())

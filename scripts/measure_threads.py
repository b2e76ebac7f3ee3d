"""Compare thread policies, alone and beside one busy process: the measurement behind
:mod:`basam_lite.threads`.

Each policy runs in a fresh Python process (OpenMP reads its environment once, at start):

- ``library``: no thread setting; the library's own choice (``use_quiet_threads``);
- ``one``: ``OMP_NUM_THREADS=1``;
- ``two``: ``OMP_NUM_THREADS=2``;
- ``two-passive``: ``OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep instead
  of spinning).

Workloads: ``cell`` is notebook 01's section 2 (``quickstart.scene_table``: ``--scenes`` scenes
segmented at half, one and two times the base size, vanilla and paper, on the model
``sam_from_env`` gives), timed warm (one untimed run first) inside the process; ``main-job`` is
the README's main job cut to ``--limit`` images per axis (``python -m basam_lite sweep``, into a
temporary folder), timed as the whole process. The competitor is a second Python process spinning
on one core, started and stopped here by its own pid. Each line states the 1-minute load average
before the run; a shared machine's other work changes the numbers:

    python scripts/measure_threads.py --workload cell --scenes 4 --repeats 3
    python scripts/measure_threads.py --workload main-job --limit 1 --policies library two
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SPIN = "while True: pass"
POLICIES: dict[str, dict[str, str]] = {
    "library": {},
    "one": {"OMP_NUM_THREADS": "1"},
    "two": {"OMP_NUM_THREADS": "2"},
    "two-passive": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"},
}
THREAD_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "BASAM_THREADS", "MKL_NUM_THREADS")

CELL = """
import json, sys, time
import torch
import basam_lite as bl
from basam_lite import quickstart
from basam_lite.datasets import ProceduralScenes
from basam_lite.resolution import base_size
sam, _ = bl.sam_from_env()
base = base_size(sam.image_encoder)[0]
times = []
for _ in range(int(sys.argv[2]) + 1):
    start = time.perf_counter()
    quickstart.scene_table(sam, ProceduralScenes(int(sys.argv[1]), seed=0),
                           [base // 2, base, 2 * base], variants=["vanilla", "paper"])
    times.append(time.perf_counter() - start)
print(json.dumps({"threads": torch.get_num_threads(), "seconds": times[1:]}))
"""


def environment(policy: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_ENV}
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**env, **POLICIES[policy], "PYTHONPATH": path, "MPLBACKEND": "Agg"}


def time_cell(policy: str, scenes: int, repeats: int) -> list[float]:
    out = subprocess.run(
        [sys.executable, "-c", CELL, str(scenes), str(repeats)],
        env=environment(policy),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if out.returncode:
        raise SystemExit(f"error: the cell failed under {policy}: {out.stderr.strip()[-400:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def time_main_job(policy: str, limit: int, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as folder:
            command = [
                sys.executable,
                "-m",
                "basam_lite",
                "sweep",
                "--out",
                str(Path(folder) / "sweep.csv"),
                "--limit",
                str(limit),
                "--no-plot",
            ]
            start = time.perf_counter()
            out = subprocess.run(
                command,
                env=environment(policy),
                capture_output=True,
                text=True,
                cwd=ROOT,
                check=False,
            )
            times.append(time.perf_counter() - start)
        if out.returncode:
            raise SystemExit(
                f"error: the main job failed under {policy}: {out.stderr.strip()[-400:]}"
            )
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--workload", choices=("cell", "main-job"), default="cell")
    ap.add_argument("--policies", nargs="+", choices=tuple(POLICIES), default=list(POLICIES))
    ap.add_argument("--scenes", type=int, default=4, help="cell: scenes (6 segmentations each)")
    ap.add_argument("--limit", type=int, default=1, help="main-job: images per axis")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    if min(args.scenes, args.limit, args.repeats) < 1:
        print("error: --scenes, --limit and --repeats must be positive", file=sys.stderr)
        return 2
    medians: dict[tuple[str, bool], float] = {}
    for competing in (False, True):
        spinner = subprocess.Popen([sys.executable, "-c", SPIN]) if competing else None
        try:
            time.sleep(1.0 if competing else 0.0)
            for policy in args.policies:
                load = os.getloadavg()[0]
                if args.workload == "cell":
                    times = time_cell(policy, args.scenes, args.repeats)
                else:
                    times = time_main_job(policy, args.limit, args.repeats)
                medians[policy, competing] = statistics.median(times)
                print(
                    f"{args.workload} {'one busy process' if competing else 'alone':16s} "
                    f"{policy:11s}: median {statistics.median(times):7.2f} s, range "
                    f"{min(times):.2f}-{max(times):.2f} s over {len(times)} "
                    f"(1-min load before {load:.2f})",
                    flush=True,
                )
        finally:
            if spinner is not None:
                spinner.terminate()
                spinner.wait()
    print(
        "busy / idle per policy: "
        + ", ".join(f"{p} {medians[p, True] / medians[p, False]:.2f}" for p in args.policies)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time one notebook cell with 1 and with 2 torch threads, alone and beside one busy process.

The cell is notebook 01's section 2 (``quickstart.scene_table``: every scene segmented at half,
one and two times the base size, vanilla and paper) on the bundled tiny model. The competitor is
a second Python process spinning on one core; it is started and stopped here, by its own pid.
The machine's load average before and after each run is printed with it, since a shared
machine's other work changes the numbers:

    python scripts/measure_threads.py --scenes 6 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPIN = "while True: pass"


def run(threads: int, scenes: int) -> float:
    import torch

    import basam_lite as bl
    from basam_lite import quickstart
    from basam_lite.datasets import ProceduralScenes
    from basam_lite.resolution import base_size

    torch.set_num_threads(threads)
    sam, _ = bl.sam_from_env()
    torch.set_num_threads(threads)  # sam_from_env picks its own: this measurement overrides it
    base = base_size(sam.image_encoder)[0]
    start = time.perf_counter()
    quickstart.scene_table(
        sam,
        ProceduralScenes(scenes, seed=0),
        [base // 2, base, 2 * base],
        variants=["vanilla", "paper"],
    )
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scenes", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    from basam_lite.threads import quiet_threads, runnable_processes

    for competing in (False, True):
        spinner = subprocess.Popen([sys.executable, "-c", SPIN]) if competing else None
        try:
            time.sleep(1.0 if competing else 0.0)
            print(
                f"quiet_threads() picks {quiet_threads()} "
                f"({runnable_processes()} other runnable processes seen)"
            )
            for threads in (1, 2):
                for _ in range(args.repeats):
                    before = os.getloadavg()[0]
                    seconds = run(threads, args.scenes)
                    after = os.getloadavg()[0]
                    print(
                        f"{'one busy process beside it' if competing else 'alone':27s} "
                        f"threads={threads}: {seconds:6.1f} s for {args.scenes * 6} segmentations "
                        f"(1-min load {before:.2f} -> {after:.2f})",
                        flush=True,
                    )
        finally:
            if spinner is not None:
                spinner.terminate()
                spinner.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())

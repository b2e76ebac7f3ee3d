"""Time one encoder pass per input side of a real-size SAM (ViT-B by default; SAM 2.1 and
MobileSAM too), plain and with BA-SAM's ``paper`` preset, on random weights in the family's
released file layout, loaded through the notebooks' switch (``basam_lite.course_model``), the
way a downloaded checkpoint is. The cost of the course's budget rule (``basam_lite/course.py``) on a
CPU, measured without real weights (none reach this project's machines; same architecture, same
operations, same time).

    OMP_NUM_THREADS=1 python scripts/time_real_sam.py [--model vit_b] [--sides 256 512 1024]
    OMP_NUM_THREADS=1 python scripts/time_real_sam.py --model sam2.1_hiera_tiny
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

import basam_lite as bl
from basam_lite.course import course_model, write_random_checkpoint

MODELS = ["vit_b", "vit_l", "vit_h", *(f"sam2.1_hiera_{v}" for v in ("tiny", "small")), "mobilesam"]
"""The real-size models it times (random weights, each family's released file layout)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b", choices=MODELS)
    parser.add_argument("--sides", type=int, nargs="+", default=[256, 512, 1024])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_random_checkpoint(args.model, Path(tmp) / f"random_{args.model}.pt")
        start = time.perf_counter()
        sam = course_model(str(path), device="cpu").sam
        print(f"load: {time.perf_counter() - start:.1f} s; torch threads {torch.get_num_threads()}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    for side in args.sides:
        bl.set_input_size(sam, side)
        x = torch.zeros(1, 3, side, side)
        for variant, config in (("plain", None), ("paper", bl.BASAMConfig.paper())):
            if config is not None:
                bl.apply_basam(sam, config)
            with torch.no_grad():
                start = time.perf_counter()
                sam.image_encoder(x)
                print(f"{args.model} {side:5d} px {variant}: {time.perf_counter() - start:.1f} s")
            if config is not None:
                bl.remove_basam(sam)
        bl.restore_input_size(sam)
    print(f"load average before the passes: {load:.1f}")


if __name__ == "__main__":
    main()

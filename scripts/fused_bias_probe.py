"""Would one fused pass for the bias rows bring BA-SAM's paper preset down to the vanilla path?

On the chunked path (basam_lite.attention._chunked) the vanilla preset writes each chunk's bias
rows once (SAM's rel-pos broadcast add); the paper preset then reads and writes them a second
time (the mask's ``addcmul_`` with the strided distance view). This probe replaces that two-pass
build with one kernel compiled by ``torch.compile`` (inductor, CPU: ``out = rel_h + rel_w -
m_h * dist`` written once into the same buffer) and times attention only, on one ViT-B global
block's own q, k, v (seeded), interleaved against the eager paper and vanilla paths and the
bias-free SDPA floor. It checks the compiled result against the eager one. Needs a C++
compiler (inductor's CPU backend):

    python scripts/fused_bias_probe.py --grids 64 128

(2 threads; about 4 minutes idle, compilation included.)
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from basam_lite import attention as A
from basam_lite import bench
from basam_lite.encoders.sam1 import decomposed_rel_pos
from basam_lite.patch_state import block_patch
from basam_lite.scaling import attention_scale


def _fill(out: torch.Tensor, rh, rw, neg, dist) -> None:
    out.copy_(rh + rw + neg * dist)


FILL = torch.compile(_fill, dynamic=False)


def fused_reversed_query_bias(bias, first, last, dtype, out):
    """attention._reversed_query_bias without autograd, in one compiled pass."""
    if out is None or not bias.has_rel_pos:
        return EAGER(bias, first, last, dtype, out)
    n_rows, cols = bias.grid_hw
    dist = A._reversed_query_distances(bias.grid_hw, bias.metric, bias.slopes.device, first, last)
    neg = A._neg_slopes(bias, dtype, 6)
    rel_h, rel_w = bias.rel_pos_of(first, last)
    rh = A._flip_query_rows(rel_h, cols)
    rw = A._flip_query_rows(rel_w, cols)
    b, h = rh.shape[:2]
    L = last - first
    view = out.view(b, h, L, cols, n_rows, cols)
    FILL(
        view,
        rh.reshape(b, h, L, cols, n_rows, 1),
        rw.reshape(b, h, L, cols, 1, cols),
        neg,
        dist.to(dtype).unsqueeze(0).unsqueeze(0),
    )
    return out


EAGER = A._reversed_query_bias


def probe(grid: int) -> None:
    rounds = 7 if grid <= 64 else 3
    blk = bench.block_case("basam_paper")
    attn = blk.attn
    n = grid * grid
    with torch.no_grad():
        x = bench.block_input(grid)
        qkv = attn.qkv(blk.norm1(x)).reshape(1, n, 3, attn.num_heads, -1)
        q, k, v = (t.contiguous() for t in qkv.permute(2, 0, 3, 1, 4).unbind(0))
        rh, rw = decomposed_rel_pos(q, attn.rel_pos_h, attn.rel_pos_w, (grid, grid))
    slopes = block_patch(attn).slopes
    scale = attention_scale(n, 4096, "log_ratio") * 64**-0.5
    paper_bias = A.AttentionBias((grid, grid), rh, rw, slopes, "euclidean")
    vanilla_bias = A.AttentionBias((grid, grid), rh, rw)

    def paper_eager():
        A._reversed_query_bias = EAGER
        return A._chunked(q, k, v, scale, paper_bias, False)

    def paper_fused():
        A._reversed_query_bias = fused_reversed_query_bias
        try:
            return A._chunked(q, k, v, scale, paper_bias, False)
        finally:
            A._reversed_query_bias = EAGER

    cases = {
        "floor sdpa": lambda: F.scaled_dot_product_attention(q, k, v, scale=scale),
        "vanilla (eager)": lambda: A._chunked(q, k, v, scale, vanilla_bias, False),
        "paper (eager)": paper_eager,
        "paper (fused build)": paper_fused,
    }
    with torch.no_grad():
        t = time.perf_counter()
        got = paper_fused()  # compiles
        print(f"{grid}x{grid}: compile + first call {time.perf_counter() - t:.1f} s", flush=True)
        diff = (got - paper_eager()).abs().max().item()
        print(f"{grid}x{grid}: max |fused - eager| {diff:.2e}", flush=True)
        for fn in cases.values():
            fn()
        times: dict[str, list[float]] = {name: [] for name in cases}
        names = list(cases)
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                t = time.perf_counter()
                cases[name]()
                times[name].append(time.perf_counter() - t)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    for name, ts in times.items():
        print(
            f"{grid}x{grid} {name:20s} median {med[name]:.3f} s "
            f"({min(ts):.3f}-{max(ts):.3f})  / floor {med[name] / med['floor sdpa']:.3f}  "
            f"/ vanilla {med[name] / med['vanilla (eager)']:.3f}",
            flush=True,
        )
    with open("/proc/loadavg") as fh:
        print(f"load average: {fh.read().strip()}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--grids", type=int, nargs="+", default=[64, 128])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for grid in args.grids:
        probe(grid)


if __name__ == "__main__":
    main()

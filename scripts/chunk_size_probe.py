"""Would smaller bias chunks, ones that stay in the CPU's cache, close the gap to the floor?

The chunked path (basam_lite.attention._chunked) builds each query chunk's bias rows into one
buffer of at most ``CHUNK_BIAS_BYTES`` (256 MiB), all heads at once, and the fused kernel reads
them back from memory. This probe times, on one ViT-B global block's own q, k, v (paper preset,
seeded), the path as it is against head groups whose chunk is a few MiB (the same
``_chunked`` per group of heads, with the budget shrunk), checks that they agree, and prints
interleaved medians and their ratio to bias-free SDPA:

    python scripts/chunk_size_probe.py

(2 threads; about 3 minutes idle.)
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from basam_lite import attention as A
from basam_lite import bench
from basam_lite.encoders.sam1 import decomposed_rel_pos
from basam_lite.patch_state import block_patch
from basam_lite.scaling import attention_scale

MiB = 1 << 20


def setup(grid: int):
    blk = bench.block_case("basam_paper")
    x = bench.block_input(grid)
    attn = blk.attn
    n = grid * grid
    with torch.no_grad():
        qkv = attn.qkv(blk.norm1(x)).reshape(1, n, 3, attn.num_heads, -1)
        q, k, v = (t.contiguous() for t in qkv.permute(2, 0, 3, 1, 4).unbind(0))
        rh, rw = decomposed_rel_pos(q, attn.rel_pos_h, attn.rel_pos_w, (grid, grid))
    slopes = block_patch(attn).slopes
    scale = attention_scale(n, 4096, "log_ratio") * 64**-0.5
    return q, k, v, rh, rw, slopes, scale


def current(q, k, v, rh, rw, slopes, scale, grid):
    bias = A.AttentionBias((grid, grid), rh, rw, slopes, "euclidean")
    return A._chunked(q, k, v, scale, bias, False)


def grouped(g: int, chunk: int):
    def run(q, k, v, rh, rw, slopes, scale, grid):
        old = A.CHUNK_BIAS_BYTES
        A.CHUNK_BIAS_BYTES = chunk
        try:
            out = torch.empty_like(q)
            for h0 in range(0, q.shape[1], g):
                hs = slice(h0, h0 + g)
                b = A.AttentionBias((grid, grid), rh[:, hs], rw[:, hs], slopes[hs], "euclidean")
                out[:, hs] = A._chunked(q[:, hs], k[:, hs], v[:, hs], scale, b, False)
            return out
        finally:
            A.CHUNK_BIAS_BYTES = old

    return run


def floor(q, k, v, rh, rw, slopes, scale, grid):
    return F.scaled_dot_product_attention(q, k, v, scale=scale)


PLANS = (
    (
        64,
        7,
        {
            "current 256MiB": current,
            "g12 12MiB": grouped(12, 12 * MiB),
            "g2 16MiB": grouped(2, 16 * MiB),
            "g2 4MiB": grouped(2, 4 * MiB),
            "g4 8MiB": grouped(4, 8 * MiB),
        },
    ),
    (
        128,
        3,
        {
            "current 256MiB": current,
            "g2 16MiB": grouped(2, 16 * MiB),
            "g1 8MiB": grouped(1, 8 * MiB),
            "g4 32MiB": grouped(4, 32 * MiB),
        },
    ),
)


def main() -> None:
    torch.set_num_threads(2)
    for grid, rounds, plan in PLANS:
        args = setup(grid)
        configs = {"floor sdpa": floor, **plan}
        times: dict[str, list[float]] = {name: [] for name in configs}
        with torch.no_grad():
            ref = current(*args, grid)
            for name, fn in configs.items():  # warm, and check against the path as it is
                out = fn(*args, grid)
                if name != "floor sdpa":
                    diff = (out - ref).abs().max().item()
                    print(f"{grid} {name}: max|diff| {diff:.2e}", flush=True)
            names = list(configs)
            for r in range(rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    t = time.perf_counter()
                    configs[name](*args, grid)
                    times[name].append(time.perf_counter() - t)
        f = statistics.median(times["floor sdpa"])
        for name, ts in times.items():
            m = statistics.median(ts)
            print(
                f"{grid}x{grid} {name:16s} median {m:.3f} s  ({min(ts):.3f}-{max(ts):.3f})  "
                f"/ floor {m / f:.3f}",
                flush=True,
            )
        with open("/proc/loadavg") as fh:
            print(fh.read().strip(), flush=True)


if __name__ == "__main__":
    main()

"""Would FlexAttention close the gap to the bias-free floor on this CPU? A probe, not a path.

BA-SAM's global-block logits are ``lambda * q.k / sqrt(d) + R^h_i[row_j] + R^w_i[col_j] -
m_h * dist(i, j)``; the chunked path materialises the added terms and the fused kernel reads
them (docs/benchmark.md: most of the gap to the bias-free kernel at 128 x 128 tokens). PyTorch's
``flex_attention`` computes such a ``score_mod`` inside a compiled kernel instead. This script
compiles it for one ViT-B-shaped global block (12 heads of 64, random q, k, v and rel-pos terms,
seeded), checks it against the explicit softmax, and times it interleaved against plain SDPA
(no bias: the floor) and SDPA with the same bias prebuilt (what the chunked path approaches):

    python scripts/flex_attention_probe.py --grid 32 --threads 1 --repeats 5

It prints the compile time, the largest difference from the explicit softmax and the median
seconds and ratios; the load average is printed with them (times on a shared machine are
ratios, not absolutes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import flex_attention


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--grid", type=int, default=32, help="tokens per side (default 32)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    g, heads, d = args.grid, 12, 64
    n = g * g
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, heads, n, d, generator=gen) for _ in range(3))
    rel_h = 0.1 * torch.randn(1, heads, n, g, generator=gen)
    rel_w = 0.1 * torch.randn(1, heads, n, g, generator=gen)
    lam = 1.1  # a lambda above 1, as at a larger input
    slopes = torch.tensor([2.0 ** (-8 * (h + 1) / heads) for h in range(heads)])
    rows, cols = torch.arange(n) // g, torch.arange(n) % g

    def score_mod(score, b, h, i, j):
        dy = (i // g - j // g).float()
        dx = (i % g - j % g).float()
        bias = rel_h[b, h, i, j // g] + rel_w[b, h, i, j % g]
        return lam * score + bias - slopes[h] * torch.sqrt(dx * dx + dy * dy)

    dist = torch.cdist(torch.stack([rows, cols], 1).float(), torch.stack([rows, cols], 1).float())
    bias = rel_h[:, :, :, rows] + rel_w[:, :, :, cols] - slopes[None, :, None, None] * dist
    compiled = torch.compile(flex_attention, dynamic=False)
    t0 = time.perf_counter()
    out = compiled(q, k, v, score_mod=score_mod)
    compile_s = time.perf_counter() - t0
    scale = lam / d**0.5
    ref = torch.softmax(scale * q @ k.transpose(-1, -2) + bias, dim=-1) @ v
    cases = {
        "sdpa, no bias (floor)": lambda: F.scaled_dot_product_attention(q, k, v),
        "sdpa, bias prebuilt": lambda: F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, scale=scale
        ),
        "flex_attention, score_mod": lambda: compiled(q, k, v, score_mod=score_mod),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(args.repeats + 1):
        order = list(cases)[r % 3 :] + list(cases)[: r % 3]  # rotated, interleaved
        for name in order:
            t = time.perf_counter()
            cases[name]()
            if r:  # the first round warms up
                times[name].append(time.perf_counter() - t)
    floor = statistics.median(times["sdpa, no bias (floor)"])
    print(f"grid {g} x {g} ({n} tokens), {heads} heads of {d}, {args.threads} thread(s)")
    print(
        f"compile + first call: {compile_s:.1f} s; max |flex - explicit softmax|: "
        f"{(out - ref).abs().max().item():.1e}"
    )
    for name, ts in times.items():
        m = statistics.median(ts)
        print(
            f"{name:28s} median {m:.4f} s (min {min(ts):.4f}, max {max(ts):.4f}), "
            f"{m / floor:.2f}x the floor"
        )
    print("load average:", ", ".join(f"{x:.1f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()

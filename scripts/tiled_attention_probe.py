"""Can attention assembled from PyTorch pieces generate the bias in place and reach the floor?

The chunked path writes each chunk's bias rows to memory and PyTorch's fused CPU kernel reads
them back; the bias-free floor touches no such rows. This probe builds attention without any
stored bias: per head and per tile of query grid rows, ``S = q K^T`` (``torch.mm``), then one
kernel compiled by ``torch.compile`` that generates the paper preset's bias from the formula
while it takes the softmax (``softmax(scale S + R^h + R^w - m_h T)``), then ``O = P V``
(``torch.mm``); S and P are tile-sized (a few MiB, meant to stay in the CPU's cache). It times
that, whole and by part (the two products alone, the bias + softmax kernel alone), against the
floor and the library's chunked paths on one ViT-B global block's own q, k, v (seeded), checks
the outputs agree, and prints interleaved medians (2 threads):

    python scripts/tiled_attention_probe.py --grid 64 --tiles 4 16 64

Needs a C++ compiler (Inductor's CPU backend). Not part of the library.
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

MiB = 1 << 20


def _softmax_bias(p, s, scale, rel_h, rel_w, neg, dist) -> None:
    # P = softmax(scale S + R^h[.., r', 1] + R^w[.., 1, c'] - m_h T) over the keys (r', c')
    logits = (scale * s + rel_h + rel_w + neg * dist).flatten(-2)
    p.copy_(torch.softmax(logits, -1).view_as(p))


SOFTMAX_BIAS = torch.compile(_softmax_bias, dynamic=True, fullgraph=True)


def setup(grid: int):
    blk = bench.block_case("basam_paper")
    attn = blk.attn
    n = grid * grid
    with torch.no_grad():
        qkv = attn.qkv(blk.norm1(bench.block_input(grid))).reshape(1, n, 3, attn.num_heads, -1)
        q, k, v = (t.contiguous() for t in qkv.permute(2, 0, 3, 1, 4).unbind(0))
        rh, rw = decomposed_rel_pos(q, attn.rel_pos_h, attn.rel_pos_w, (grid, grid))
    scale = attention_scale(n, 4096, "log_ratio") * q.shape[-1] ** -0.5
    return q, k, v, rh, rw, block_patch(attn).slopes, scale


class Tiled:
    """Per head, per tile of query grid rows (reversed, so the distances are one strided view
    of the small table, as on the chunked path)."""

    def __init__(self, q, k, v, rh, rw, slopes, scale, grid: int, tile_bytes: int):
        self.q, self.k, self.v, self.rh, self.rw = q, k, v, rh, rw
        self.neg, self.scale, self.grid = -slopes, scale, grid
        n = grid * grid
        self.step = max(1, tile_bytes // (grid * n * 4))
        self.s_buf = torch.empty(self.step * grid * n)
        self.p_buf = torch.empty(self.step * grid * n)

    def tiles(self):
        rows = cols = self.grid
        n = rows * cols
        for first in range(0, rows, self.step):
            last = min(rows, first + self.step)
            length, sl = last - first, slice(first * cols, last * cols)
            dist = A._reversed_query_distances(
                (rows, cols), "euclidean", self.q.device, first, last
            )
            qc = A._flip_query_rows(self.q[0, :, sl], cols)
            rhc = A._flip_query_rows(self.rh[0, :, sl], cols).reshape(-1, length, cols, rows, 1)
            rwc = A._flip_query_rows(self.rw[0, :, sl], cols).reshape(-1, length, cols, 1, cols)
            s = self.s_buf[: length * cols * n].view(length * cols, n)
            p = self.p_buf[: length * cols * n].view(length * cols, n)
            yield sl, length, dist, qc, rhc, rwc, s, p

    def softmax(self, h, length, dist, rhc, rwc, s, p) -> None:
        shape = (length, self.grid, self.grid, self.grid)
        SOFTMAX_BIAS(p.view(shape), s.view(shape), self.scale, rhc[h], rwc[h], self.neg[h], dist)

    def __call__(self) -> torch.Tensor:
        out = torch.empty_like(self.q)
        kt = self.k[0].transpose(-2, -1)
        for sl, length, dist, qc, rhc, rwc, s, p in self.tiles():
            for h in range(qc.shape[0]):
                torch.mm(qc[h], kt[h], out=s)
                self.softmax(h, length, dist, rhc, rwc, s, p)
                out[0, h, sl] = A._flip_query_rows(torch.mm(p, self.v[0, h]), self.grid)
        return out

    def products_only(self) -> None:
        kt = self.k[0].transpose(-2, -1)
        for _, _, _, qc, _, _, s, p in self.tiles():
            for h in range(qc.shape[0]):
                torch.mm(qc[h], kt[h], out=s)
                torch.mm(p, self.v[0, h])

    def softmax_only(self) -> None:
        for _, length, dist, qc, rhc, rwc, s, p in self.tiles():
            for h in range(qc.shape[0]):
                self.softmax(h, length, dist, rhc, rwc, s, p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grid", type=int, default=64)
    ap.add_argument("--tiles", type=int, nargs="+", default=[4, 16, 64], help="tile MiB")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    grid = args.grid
    q, k, v, rh, rw, slopes, scale = setup(grid)
    paper = A.AttentionBias((grid, grid), rh, rw, slopes, "euclidean")
    vanilla = A.AttentionBias((grid, grid), rh, rw)
    cases = {
        "floor sdpa": lambda: F.scaled_dot_product_attention(q, k, v, scale=scale),
        "vanilla chunked": lambda: A._chunked(q, k, v, scale, vanilla, False),
        "paper chunked": lambda: A._chunked(q, k, v, scale, paper, False),
    }
    for mib in args.tiles:
        tiled = Tiled(q, k, v, rh, rw, slopes, scale, grid, mib * MiB)
        cases[f"tiled {mib} MiB"] = tiled
        cases[f"tiled {mib} MiB: two products only"] = tiled.products_only
        cases[f"tiled {mib} MiB: bias+softmax only"] = tiled.softmax_only
    with torch.no_grad():
        want = cases["paper chunked"]()
        for name, fn in cases.items():
            t0 = time.perf_counter()
            got = fn()
            if name.startswith("tiled") and name.endswith("MiB"):
                diff = (got - want).abs().max().item()
                print(
                    f"{grid}x{grid} {name}: first call {time.perf_counter() - t0:.1f} s, "
                    f"max |tiled - chunked| {diff:.1e}",
                    flush=True,
                )
        times: dict[str, list[float]] = {name: [] for name in cases}
        names = list(cases)
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                t0 = time.perf_counter()
                cases[name]()
                times[name].append(time.perf_counter() - t0)
    floor = statistics.median(times["floor sdpa"])
    for name, ts in times.items():
        m = statistics.median(ts)
        print(
            f"{grid}x{grid} {name:32s} median {m:.3f} s ({min(ts):.3f}-{max(ts):.3f})  "
            f"/ floor {m / floor:.3f}",
            flush=True,
        )
    with open("/proc/loadavg") as fh:
        print(f"load average: {fh.read().strip()}", flush=True)


if __name__ == "__main__":
    main()

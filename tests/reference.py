"""Independent references: SAM attention with BA-SAM written out with an explicit softmax.

Built from segment_anything's own `add_decomposed_rel_pos` and the formulas of
basam-method.md, never from basam_lite's attention code.
"""

from __future__ import annotations

import math

import torch
from segment_anything.modeling.image_encoder import add_decomposed_rel_pos
from torch import Tensor

import basam_lite as bl


def reference_mask(rows: int, cols: int, slopes: Tensor, metric: str) -> Tensor:
    """[H, N, N] from explicit loops over grid positions (in ``slopes``' dtype)."""
    pos = [(r, c) for r in range(rows) for c in range(cols)]
    n = len(pos)
    dist = torch.zeros(n, n, dtype=slopes.dtype)
    for i, (ri, ci) in enumerate(pos):
        for j, (rj, cj) in enumerate(pos):
            dr, dc = abs(ri - rj), abs(ci - cj)
            dist[i, j] = {
                "euclidean": math.hypot(dr, dc),
                "manhattan": dr + dc,
                "chebyshev": max(dr, dc),
                "flat": abs(i - j),
            }[metric]
    return -slopes[:, None, None] * dist[None]


def reference_attention(
    attn,
    x: Tensor,
    lam: float = 1.0,
    slopes: Tensor | None = None,
    metric: str = "euclidean",
    rel_coef: float | Tensor | None = None,
    return_probs: bool = False,
):
    """SAM's Attention.forward with lambda, an additive mask and a rel-pos coefficient."""
    b, h, w, _ = x.shape
    heads = attn.num_heads
    qkv = attn.qkv(x).reshape(b, h * w, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, b * heads, h * w, -1).unbind(0)
    logits = lam * (q * attn.scale) @ k.transpose(-2, -1)
    if attn.use_rel_pos:
        zero = torch.zeros_like(logits)
        rel = add_decomposed_rel_pos(zero, q, attn.rel_pos_h, attn.rel_pos_w, (h, w), (h, w))
        logits = logits + (rel if rel_coef is None else rel_coef * rel)
    if slopes is not None:
        mask = reference_mask(h, w, slopes, metric)  # [heads, N, N]
        logits = (logits.view(b, heads, h * w, h * w) + mask).view(b * heads, h * w, h * w)
    probs = logits.softmax(dim=-1)
    out = (probs @ v).view(b, heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
    out = attn.proj(out)
    return (out, probs.view(b, heads, h * w, h * w)) if return_probs else out


def expected_terms(
    config: bl.BASAMConfig, heads: int, num_keys: int, train_keys: int, active: bool = True
):
    """(lambda, slopes or None, rel coefficient or None) that `config` implies for one block."""
    lam = bl.attention_scale(num_keys, train_keys, config.scale) if active else 1.0
    slopes = None
    if active and config.bias == "alibi2d":
        slopes = config.gain * bl.alibi_slopes(heads)
    coef = config.rel_pos_coef_init if active and config.bias == "official_relpos" else None
    return lam, slopes, coef

"""Position-embedding tables over the token grid: how smooth one is, and resampling one to
another grid.

A learned absolute position embedding ``[1, rows, cols, C]`` is *smooth* when neighbouring
tokens get similar vectors, as in ViTs trained long on large data; an untrained (random) table
is noise. :func:`neighbour_correlation` puts a number on it, so a notebook can say which one a
checkpoint has instead of asserting it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import UserError


def neighbour_correlation(pos_embed: Tensor) -> float:
    """Mean over channels of the Pearson correlation between each table entry and its right and
    lower neighbours (both pairs pooled), for a ``[1, rows, cols, C]`` or ``[rows, cols, C]``
    table. About 0 for i.i.d. noise, near 1 for a table that varies smoothly over the grid;
    channels that are constant are left out."""
    t = pos_embed.detach().double()
    t = t[0] if t.dim() == 4 else t
    if t.dim() != 3 or t.shape[0] < 2 or t.shape[1] < 2:
        shape = tuple(pos_embed.shape)
        raise UserError(f"expected a [1, rows, cols, C] table with rows, cols >= 2, got {shape}")
    a = torch.cat([t[:, :-1].reshape(-1, t.shape[-1]), t[:-1, :].reshape(-1, t.shape[-1])])
    b = torch.cat([t[:, 1:].reshape(-1, t.shape[-1]), t[1:, :].reshape(-1, t.shape[-1])])
    a, b = a - a.mean(0), b - b.mean(0)
    denom = (a.square().sum(0) * b.square().sum(0)).sqrt()
    keep = denom > 0
    if not keep.any():
        raise UserError("every channel of the table is constant: its smoothness is undefined")
    return float(((a * b).sum(0)[keep] / denom[keep]).mean())


def shuffled(pos_embed: Tensor, seed: int = 0) -> Tensor:
    """The same table with its token positions permuted (seeded): the same values, no spatial
    structure. The natural "random" reference for :func:`neighbour_correlation`."""
    t = pos_embed.detach()
    rows, cols, c = t.shape[-3:]
    perm = torch.randperm(rows * cols, generator=torch.Generator().manual_seed(seed))
    return t.reshape(-1, rows * cols, c)[:, perm].reshape(t.shape)


def resample_pos_embed(pos_embed: Tensor, grid_hw: tuple[int, int]) -> Tensor:
    """``[1, gh, gw, C]`` -> ``[1, rows, cols, C]``, bicubic (identity at the same grid)."""
    if tuple(pos_embed.shape[1:3]) == tuple(grid_hw):
        return pos_embed
    pe = pos_embed.permute(0, 3, 1, 2)
    pe = F.interpolate(pe, size=grid_hw, mode="bicubic", align_corners=False)
    return pe.permute(0, 2, 3, 1)

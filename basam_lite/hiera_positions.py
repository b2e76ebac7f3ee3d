"""Hiera's position embedding at an input size: the two tables SAM 2 adds, taken apart.

SAM 2's Hiera trunk (``sam2.modeling.backbones.hieradet.Hiera._get_pos_embed``) adds to every
token of its first (stride-4) grid of ``rows x cols`` tokens

    pos(r, c) = bicubic(P_bg, (rows, cols))[r, c] + P_win[r mod w, c mod w]

with ``P_bg`` a small background table (7 x 7 in SAM 2.1 and the tiny SAM 2, ``[1, C, 7, 7]``)
and ``P_win`` a ``w x w`` window table (``w`` = the first stage's window, 8). At another input
size the background is **stretched** (its pattern keeps its place as a share of the image, as
SAM 1's interpolated table does) while the window table is **repeated** (its period stays ``w``
tokens, ``4 w`` px, at every size: more tiles, the same tile). :func:`hiera_positions` returns
the two parts as SAM 2 computes them, so a figure or a test can read each one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .encoders.sam2_geometry import check_sam2_size, patch_stride, trunk_of

__all__ = ["HieraPositions", "cosine_map", "hiera_positions", "position_table"]


@dataclass(frozen=True)
class HieraPositions:
    """The two parts of Hiera's position embedding at one input side.

    Attributes:
        side: the input side (px).
        background: ``[C, rows, cols]``: the background table resized bicubically to the grid.
        window: ``[C, rows, cols]``: the window table tiled over the grid.
        table_hw: the background table's own (rows, cols), e.g. (7, 7).
        window_side: the window table's side ``w`` (tokens).
        stride: px per token of this grid (4 in SAM 2).
    """

    side: int
    background: np.ndarray
    window: np.ndarray
    table_hw: tuple[int, int]
    window_side: int
    stride: int

    @property
    def total(self) -> np.ndarray:
        """``[C, rows, cols]``: what the trunk adds, ``background + window``."""
        return self.background + self.window

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, cols) of the stride-4 token grid."""
        return int(self.background.shape[1]), int(self.background.shape[2])


@torch.no_grad()
def hiera_positions(model: nn.Module, side: int) -> HieraPositions:
    """Hiera's two position tables at input ``side`` (a SAM2Base, ImageEncoder or Hiera).

    The sum of the two parts is exactly ``trunk._get_pos_embed`` (SAM 2's own code) at that
    grid; a side SAM 2 cannot run at is a :class:`~basam_lite.errors.UserError`."""
    trunk = trunk_of(model)
    side = check_sam2_size(model, side)
    stride = patch_stride(trunk)
    rows = cols = -(-side // stride)  # Conv2d(k=7, s=4, p=3): ceil(side / 4)
    table = trunk.pos_embed.float()  # [1, C, th, tw]
    win = trunk.pos_embed_window.float()  # [1, C, w, w]
    background = F.interpolate(table, size=(rows, cols), mode="bicubic")[0]
    w = int(win.shape[-1])
    window = win[0].tile(1, -(-rows // w), -(-cols // w))[:, :rows, :cols]
    return HieraPositions(
        side=int(side),
        background=background.numpy(),
        window=window.numpy(),
        table_hw=(int(table.shape[-2]), int(table.shape[-1])),
        window_side=w,
        stride=stride,
    )


def cosine_map(table: np.ndarray, token: tuple[int, int]) -> np.ndarray:
    """``[rows, cols]``: the cosine similarity of every token's vector in ``table [C, rows,
    cols]`` with the vector at ``token = (r, c)``: ``<p(i), p(t)> / (|p(i)| |p(t)|)``."""
    c, rows, cols = table.shape
    r0, c0 = token
    if not (0 <= r0 < rows and 0 <= c0 < cols):
        raise ValueError(f"token {token} is outside the {rows} x {cols} grid")
    flat = table.reshape(c, -1)
    ref = table[:, r0, c0]
    norms = np.linalg.norm(flat, axis=0) * np.linalg.norm(ref)
    return (ref @ flat / np.maximum(norms, 1e-12)).reshape(rows, cols)


def position_table(model: nn.Module, sides: tuple[int, ...] | list[int]) -> pd.DataFrame:
    """One row per input side: how each table meets the grid there.

    Columns: ``side``, ``grid`` (stride-4 tokens per side), ``background_table`` (its own
    size), ``tokens_per_background_cell`` (grid / table: the stretch), ``window_tiles`` (copies
    of the window table per side), ``window_period_px`` (``w x stride``, the same at every
    size), ``background_rms`` and ``window_rms`` (root mean square of each part's entries: which
    part dominates what the trunk adds)."""
    rows = []
    for side in sides:
        p = hiera_positions(model, side)
        n = p.grid[0]
        rows.append(
            {
                "side": p.side,
                "grid": n,
                "background_table": f"{p.table_hw[0]} x {p.table_hw[1]}",
                "tokens_per_background_cell": n / p.table_hw[0],
                "window_tiles": n / p.window_side,
                "window_period_px": p.window_side * p.stride,
                "background_rms": float(np.sqrt(np.mean(p.background**2))),
                "window_rms": float(np.sqrt(np.mean(p.window**2))),
            }
        )
    return pd.DataFrame(rows)

"""Attention maps out of MobileSAM's TinyViT windows.

Each TinyViT attention call is a batch of windows; a query's attention lives in its own window
only (zero elsewhere on the image). :func:`capture_mobile_attention` records, per block, the
softmax probabilities of every window, ``[images * windows, heads, w^2, w^2]``, computed from the
same q, k, scale and bias the forward uses; :meth:`WindowMaps.query_map` places one query's
probabilities on the stage grid.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..patch import BASAMConfig
from .mobilesam import attention_blocks, mobile_input_size, stage_grids, tiny_vit_of
from .mobilesam_attention import (
    apply_mobile_basam,
    mobile_patch_config,
    remove_mobile_basam,
    window_patch,
)


@dataclass
class WindowMaps:
    """The attention of one TinyViT block at the last forward.

    Attributes:
        block: index among the attention blocks (forward order).
        grid: the stage's (rows, cols) token grid.
        window: the window side w.
        probs: ``[images * windows, heads, w^2, w^2]`` softmax probabilities, windows in
            row-major order over the padded grid (as ``mobile_sam`` partitions them).
    """

    block: int
    grid: tuple[int, int]
    window: int
    probs: Tensor

    @property
    def windows_hw(self) -> tuple[int, int]:
        """Windows per column and per row of the (padded) stage grid."""
        w = self.window
        return -(-self.grid[0] // w), -(-self.grid[1] // w)

    @property
    def keys_per_row(self) -> int:
        return self.window * self.window

    def query_map(self, row: int, col: int, image: int = 0) -> Tensor:
        """``[heads, rows, cols]``: the attention of query token ``(row, col)`` of the stage grid
        over the grid (its window's keys; padded keys dropped; zero outside the window)."""
        rows, cols = self.grid
        if not (0 <= row < rows and 0 <= col < cols):
            raise ValueError(f"query ({row}, {col}) is outside the {rows}x{cols} grid")
        w = self.window
        nh, nw = self.windows_hw
        index = image * nh * nw + (row // w) * nw + (col // w)
        q = (row % w) * w + (col % w)
        heads = self.probs.shape[1]
        local = self.probs[index, :, q].reshape(heads, w, w)
        out = torch.zeros(heads, nh * w, nw * w, dtype=self.probs.dtype)
        r0, c0 = (row // w) * w, (col // w) * w
        out[:, r0 : r0 + w, c0 : c0 + w] = local
        return out[:, :rows, :cols]


@dataclass
class MobileCapture:
    """Maps recorded by :func:`capture_mobile_attention`, one per captured block."""

    maps: dict[int, WindowMaps] = field(default_factory=dict)


@contextmanager
def capture_mobile_attention(
    model: nn.Module, blocks: Sequence[int] | None = None
) -> Iterator[MobileCapture]:
    """Record the attention of ``blocks`` (indices among the attention blocks; None: all) at
    each forward inside the ``with``. An unpatched model is patched with ``vanilla`` meanwhile
    (the stock attention through the same path) and restored exactly afterwards."""
    enc = tiny_vit_of(model)
    all_blocks = attention_blocks(enc)
    chosen = list(range(len(all_blocks))) if blocks is None else list(blocks)
    bad = [b for b in chosen if not 0 <= b < len(all_blocks)]
    if bad:
        raise ValueError(f"no attention block {bad[0]}: this model has {len(all_blocks)}")
    temporary = mobile_patch_config(enc) is None
    if temporary:
        apply_mobile_basam(enc, BASAMConfig.vanilla())
    capture = MobileCapture()
    grids = stage_grids(enc, mobile_input_size(enc))
    stage_of = [i for i, layer in enumerate(enc.layers) for blk in layer.blocks if i > 0]

    def hook_for(index: int, grid: tuple[int, int], window: int):
        def hook(attn: nn.Module, q: Tensor, k: Tensor, scale: float, bias: Tensor) -> None:
            logits = scale * (q @ k.transpose(-2, -1)) + bias
            probs = logits.float().softmax(dim=-1).detach().cpu()
            capture.maps[index] = WindowMaps(index, grid, window, probs)

        return hook

    try:
        for i in chosen:
            blk = all_blocks[i]
            window_patch(blk.attn).capture_hook = hook_for(  # type: ignore[union-attr]
                i, grids[stage_of[i]], blk.window_size
            )
        yield capture
    finally:
        for blk in all_blocks:
            record = window_patch(blk.attn)
            if record is not None:
                record.capture_hook = None
        if temporary:
            remove_mobile_basam(enc)

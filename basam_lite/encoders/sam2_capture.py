"""Attention maps from SAM 2's Hiera blocks, recomputed from the q and k the patched forward
sees (the fused kernel never forms them).

For a block, the hook receives ``q [B', H, Q, d]``, ``k [B', H, N, d]`` (``B'`` = batch times
windows in a windowed block), the logit multiplier and the :class:`HieraMask` (or None), and
stores ``softmax(scale * q k^T + M)``: ``[B', H, Q, N]`` with ``Q`` the (pooled) query grid and
``N`` the key grid, windows in row-major order. A model that is not patched is patched with
``vanilla`` for the duration (identical outputs).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..patch import BASAMConfig
from ..patch_state import block_patch
from .sam2_attention import HieraMask, apply_basam_sam2, remove_basam_sam2, sam2_patch_config
from .sam2_geometry import trunk_of


def hiera_probs(q: Tensor, k: Tensor, scale: float, mask: HieraMask | None) -> Tensor:
    """``softmax(scale * q k^T + M)``: ``[B', H, Q, N]`` (explicit, for maps)."""
    logits = scale * (q @ k.transpose(-2, -1))
    if mask is not None:
        logits = logits + mask.rows(slice(None), q.dtype)
    return logits.softmax(dim=-1)


@dataclass
class Sam2AttentionCapture:
    """Maps collected by :func:`capture_sam2_attention`.

    Attributes:
        maps: {block: ``[B', H, Q, N]`` probabilities}.
        query_grids: {block: (rows, cols) of the queries in one softmax call}.
        key_grids: {block: (rows, cols) of the keys in one softmax call}.
        scales: {block: the logit multiplier lambda / sqrt(d) used}.
    """

    maps: dict[int, Tensor] = field(default_factory=dict)
    query_grids: dict[int, tuple[int, int]] = field(default_factory=dict)
    key_grids: dict[int, tuple[int, int]] = field(default_factory=dict)
    scales: dict[int, float] = field(default_factory=dict)


class _Hook:
    def __init__(self, capture: Sam2AttentionCapture, index: int) -> None:
        self.capture, self.index = capture, index

    def __call__(
        self, attn: nn.Module, q: Tensor, k: Tensor, scale: float, mask: HieraMask | None
    ) -> None:
        cap, i = self.capture, self.index
        n_q, n_k = q.shape[2], k.shape[2]
        if mask is not None:
            cap.query_grids[i], cap.key_grids[i] = mask.query_grid, mask.key_grid
        else:
            side_k, side_q = round(n_k**0.5), round(n_q**0.5)
            cap.query_grids[i], cap.key_grids[i] = (side_q, n_q // side_q), (side_k, n_k // side_k)
        cap.scales[i] = scale
        with torch.no_grad():
            cap.maps[i] = hiera_probs(q.detach(), k.detach(), scale, mask)


@contextmanager
def capture_sam2_attention(
    model: nn.Module, blocks: Sequence[int] | None = None
) -> Iterator[Sam2AttentionCapture]:
    """Collect the attention probabilities of ``blocks`` (all when None) during the forward
    passes inside the ``with`` block (the last forward's maps are kept)."""
    trunk = trunk_of(model)
    n_blocks = len(trunk.blocks)
    chosen = list(range(n_blocks)) if blocks is None else list(blocks)
    bad = [b for b in chosen if not isinstance(b, int) or not -n_blocks <= b < n_blocks]
    if bad:
        raise ValueError(f"blocks {bad} do not exist: the encoder has blocks 0..{n_blocks - 1}")
    chosen = [b % n_blocks for b in chosen]
    temporary = sam2_patch_config(model) is None
    if temporary:
        apply_basam_sam2(model, BASAMConfig.vanilla())
    capture = Sam2AttentionCapture()
    try:
        for b in chosen:
            block_patch(trunk.blocks[b].attn).capture_hook = _Hook(capture, b)  # type: ignore[union-attr]
        yield capture
    finally:
        for b in chosen:
            state = block_patch(trunk.blocks[b].attn)
            if state is not None:
                state.capture_hook = None
        if temporary:
            remove_basam_sam2(model)

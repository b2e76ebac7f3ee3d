"""Attention maps from any block at any resolution, even though the fused kernel never forms them.

:func:`capture_attention` hooks the patched attention forward, receives q, k, lambda and the
additive terms of the chosen blocks, and recomputes

.. math:: P = \\mathrm{softmax}(\\lambda\\, q_Q k^\\top / \\sqrt d + B_Q)

only for the requested query rows Q, so memory is O(``|Q|`` N). A model that is not patched is
patched with :meth:`BASAMConfig.vanilla` for the duration of the context (identical outputs).

Windowed blocks attend inside 2-D windows (zero-padded at the right/bottom edge; SAM lets the
padding tokens take part as keys). Their maps are per window:

- ``queries=None``: ``[B * num_windows, heads, ws*ws, ws*ws]``, windows in row-major order;
- given queries: ``[B, heads, Q, ws*ws]``, each row over the window holding that query, whose
  top-left token is in ``capture.window_origins[block]``.

:meth:`AttentionCapture.grid_maps` puts either kind on the image's token grid.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .attention import AttentionBias, attention_probs
from .config import BASAMConfig
from .encoders import adapter_for
from .errors import UserError
from .patch import apply_basam, is_patched, remove_basam
from .patch_state import block_patch

Queries = Sequence[int] | Sequence[tuple[int, int]] | None


@dataclass
class AttentionCapture:
    """What :func:`capture_attention` collected; filled in by the forward passes.

    Attributes:
        maps: {block index: attention probabilities} (shapes in the module docstring).
        grids: {block index: (rows, cols) token grid of the image at that block}.
        window_sizes: {block index: window size, 0 for global blocks}.
        window_origins: {block index: ``[Q, 2]`` (row, col) of each query's window origin}.
        scales: {block index: the logit multiplier lambda / sqrt(d) that was used}.
    """

    maps: dict[int, Tensor] = field(default_factory=dict)
    grids: dict[int, tuple[int, int]] = field(default_factory=dict)
    window_sizes: dict[int, int] = field(default_factory=dict)
    window_origins: dict[int, Tensor] = field(default_factory=dict)
    scales: dict[int, float] = field(default_factory=dict)
    query_positions: Tensor | None = None  # [Q, 2] (row, col) on the image grid, when given

    def grid_maps(self, block: int) -> Tensor:
        """Maps of ``block`` on the image's token grid: ``[B, heads, Q, rows, cols]``.

        For windowed blocks, keys outside the query's window (and padding) get 0.
        """
        rows, cols = self.grids[block]
        m = self.maps[block]
        ws = self.window_sizes[block]
        if ws == 0:
            return m.reshape(*m.shape[:3], rows, cols)
        if block not in self.window_origins:
            raise ValueError(
                "grid_maps of a windowed block needs explicit queries: pass queries=[(row, col)] "
                "to capture_attention"
            )
        b, h, q, _ = m.shape
        hp, wp = -(-rows // ws) * ws, -(-cols // ws) * ws
        out = m.new_zeros(b, h, q, hp, wp)
        win = m.reshape(b, h, q, ws, ws)
        for i, (r0, c0) in enumerate(self.window_origins[block].tolist()):
            out[:, :, i, r0 : r0 + ws, c0 : c0 + ws] = win[:, :, i]
        return out[..., :rows, :cols]


def _query_positions(queries: Queries, grid: tuple[int, int]) -> Tensor | None:
    """Queries as ``[Q, 2]`` (row, col) positions on ``grid``, checked."""
    if queries is None:
        return None
    items = list(queries)
    if not items:
        raise ValueError("queries is empty: pass None for all queries, or token indices/positions")
    rows, cols = grid
    if all(isinstance(q, int) for q in items):
        idx = torch.tensor(items)
        if idx.min() < 0 or idx.max() >= rows * cols:
            raise ValueError(
                f"query token index out of range for a {rows}x{cols} grid (0..{rows * cols - 1})"
            )
        return torch.stack([idx // cols, idx % cols], dim=1)
    if not all(
        isinstance(q, Sequence) and len(q) == 2 and all(isinstance(v, int) for v in q)
        for q in items
    ):
        raise UserError(
            "queries must be token indices or (row, col) integer positions on the first "
            f"attention block's {rows}x{cols} token grid, got {items[:3]}"
        )
    pos = torch.tensor([tuple(q) for q in items])
    if (
        pos[:, 0].min() < 0
        or pos[:, 0].max() >= rows
        or pos[:, 1].min() < 0
        or (pos[:, 1].max() >= cols)
    ):
        raise ValueError(f"query position outside the {rows}x{cols} token grid")
    return pos


class _BlockHook:
    """Receives q, k and the bias from one attention module and stores probabilities."""

    def __init__(
        self,
        capture: AttentionCapture,
        index: int,
        window: int,
        queries: Queries,
        first: dict[str, tuple[int, int]] | None = None,
    ):
        self.capture, self.index, self.window, self.queries = capture, index, window, queries
        self.image_grid: tuple[int, int] | None = None
        self.first = {} if first is None else first  # {"grid": block 0's image grid}

    def pre_block(self, grid: tuple[int, int]) -> None:
        self.image_grid = grid

    def __call__(self, attn: nn.Module, q: Tensor, k: Tensor, scale: float, bias: AttentionBias):
        assert self.image_grid is not None
        cap, i = self.capture, self.index
        cap.grids[i] = self.image_grid
        cap.window_sizes[i] = self.window
        cap.scales[i] = scale
        # Queries are given on the first block's grid; a block on a coarser grid (SAM 2's later
        # stages) takes the cell holding each of them: (r, c) * grid / first grid, floored.
        first = self.first.get("grid", self.image_grid)
        pos = _query_positions(self.queries, first)
        cap.query_positions = pos
        if pos is not None and first != self.image_grid:
            ratio = torch.tensor(self.image_grid) / torch.tensor(first)
            pos = (pos * ratio).floor().long()
        with torch.no_grad():
            if pos is None:
                cap.maps[i] = attention_probs(q.detach(), k.detach(), scale, bias)
                return
            if self.window == 0:
                index = (pos[:, 0] * self.image_grid[1] + pos[:, 1]).to(q.device)
                cap.maps[i] = attention_probs(q.detach(), k.detach(), scale, bias, index)
                return
            ws = self.window
            n_win_w = -(-self.image_grid[1] // ws)
            n_win = -(-self.image_grid[0] // ws) * n_win_w
            if q.shape[2] != ws * ws or q.shape[0] % n_win:
                raise UserError(
                    f"capture_attention: block {i} pools its queries inside its windows (SAM 2's "
                    "stage transitions); chosen queries cannot be placed there: capture it with "
                    "queries=None, or choose other blocks"
                )
            win_index = (pos[:, 0] // ws) * n_win_w + pos[:, 1] // ws
            in_win = (pos[:, 0] % ws) * ws + pos[:, 1] % ws
            batch = q.shape[0] // n_win
            rows = []
            for wi, ti in zip(win_index.tolist(), in_win.tolist(), strict=True):
                sel = torch.arange(batch, device=q.device) * n_win + wi
                index = torch.tensor([ti], device=q.device)
                sub_bias = dataclasses.replace(
                    bias,
                    rel_h=None if bias.rel_h is None else bias.rel_h[sel],
                    rel_w=None if bias.rel_w is None else bias.rel_w[sel],
                )
                rows.append(
                    attention_probs(q[sel].detach(), k[sel].detach(), scale, sub_bias, index)
                )
            cap.maps[i] = torch.cat(rows, dim=2)
            cap.window_origins[i] = (pos // ws) * ws


MAX_CAPTURE_GB = 8.0
"""Default limit of :func:`capture_attention`: the maps it would keep, estimated up front."""


def capture_bytes(
    heads_and_windows: Sequence[tuple[int, int]],
    batch: int,
    grid: tuple[int, int],
    n_queries: int | None,
) -> int:
    """Bytes of the float32 maps kept for blocks given as ``(heads, window)`` (0: global) on
    a token ``grid``: per block ``batch * heads * rows * keys * 4``, where a global block has
    ``keys = H * W`` and a windowed one ``ws * ws`` keys (its windows padded to whole ones), and
    ``rows`` is every token (``None``) or the ``n_queries`` asked for. The softmax holds one
    more map of the same size while it runs."""
    rows_tokens, cols_tokens = grid
    total = 0
    for heads, ws in heads_and_windows:
        if ws == 0:
            keys, rows = rows_tokens * cols_tokens, rows_tokens * cols_tokens
        else:
            keys = ws * ws
            padded = -(-rows_tokens // ws) * ws * -(-cols_tokens // ws) * ws
            rows = padded
        if n_queries is not None:
            rows = n_queries
        total += batch * heads * rows * keys * 4
    return total


@contextmanager
def capture_attention(
    model: nn.Module,
    blocks: Sequence[int] | None = None,
    queries: Queries = None,
    max_gb: float = MAX_CAPTURE_GB,
) -> Iterator[AttentionCapture]:
    """Collect attention probabilities of ``blocks`` (all when None) for ``queries`` (all when
    None; else token indices or (row, col) positions on the image's token grid, the first
    block's: a block on a coarser grid, as in SAM 2's later stages, takes the cell holding each
    query) during the forward passes run inside the ``with`` block. The last forward's maps are
    kept.

    Before the first block computes anything, the maps' size is estimated from each chosen
    block's own grid at the input size (:func:`capture_bytes`); above ``max_gb`` GB the forward
    is refused with a :class:`~basam_lite.errors.UserError` giving the estimate (fewer queries
    or blocks, a smaller image, or a larger ``max_gb``)."""
    adapter = adapter_for(model)
    encoder = adapter.encoder
    attention_blocks = adapter.attention_blocks()
    n_blocks = len(attention_blocks)
    chosen = list(range(n_blocks)) if blocks is None else list(blocks)
    bad = [b for b in chosen if not isinstance(b, int) or not -n_blocks <= b < n_blocks]
    if bad:
        raise ValueError(f"blocks {bad} do not exist: the encoder has blocks 0..{n_blocks - 1}")
    chosen = [b % n_blocks for b in chosen]
    temporary = not is_patched(encoder)
    if temporary:
        apply_basam(encoder, BASAMConfig.vanilla())
    capture = AttentionCapture()
    n_queries = None if queries is None else len(list(queries))

    def budget(module: nn.Module, args: tuple) -> None:
        pixels = args[0]  # [B, 3, H, W]: every family's encoder input
        batch, hw = int(pixels.shape[0]), (int(pixels.shape[-2]), int(pixels.shape[-1]))
        need, grid = 0, (0, 0)
        for b in chosen:
            block = attention_blocks[b]
            grid = adapter.block_grids(b, hw).key
            need += capture_bytes([(block.heads, block.window)], batch, grid, n_queries)
        if need > max_gb * 2**30:
            asked = "every query" if n_queries is None else f"{n_queries} queries"
            raise UserError(
                f"capture_attention: {asked} of {len(chosen)} block(s) at {hw[0]} x {hw[1]} px "
                f"(last block's token grid {grid[0]} x {grid[1]}) would keep about "
                f"{need / 2**30:.1f} GB of maps (limit {max_gb:g} GB): ask for fewer queries or "
                "blocks, a smaller image, or pass max_gb"
            )

    first: dict[str, tuple[int, int]] = {}
    handles = [
        encoder.register_forward_pre_hook(budget),
        adapter.watch_block_input(0, lambda grid: first.__setitem__("grid", grid)),
    ]
    try:
        for b in chosen:
            block = attention_blocks[b]
            hook = _BlockHook(capture, b, block.window, queries, first)
            handles.append(adapter.watch_block_input(b, hook.pre_block))
            block_patch(block.attn).capture_hook = hook  # type: ignore[union-attr]
        yield capture
    finally:
        for h in handles:
            h.remove()
        for b in chosen:
            state = block_patch(attention_blocks[b].attn)
            if state is not None:
                state.capture_hook = None
        if temporary:
            remove_basam(encoder)

r"""The one BA-SAM attention call every family's patched attention module makes.

A family's patched ``forward`` computes its own q, k, v (``[B, heads, N, d]``, windows folded
into B) and its own :class:`~basam_lite.encoders.base.PositionTerms`, then calls
:func:`basam_attend`, which adds what BA-SAM adds, from the block's
:class:`~basam_lite.patch_state.BlockPatch`:

.. math::
    \ell_{ij} = \lambda\, s\, q_i \cdot k_j + c\,(R^h_i[\mathrm{row}_j] + R^w_i[\mathrm{col}_j]
        + T_{ij}) - m_h\, u\, \mathrm{dist}(p_i, p_j)

with :math:`s` the family's own scale (``d^{-1/2}`` unless given), :math:`\lambda` the BA-SAM
scale for the number of keys per row, :math:`c` the official preset's learned coefficient (1
without it), :math:`m_h` the mask slopes times the gain and :math:`u` the mask's distance unit.
It runs on :func:`basam_lite.attention.attend` (fused kernel, chunked and folded paths) and feeds
the capture hook. Nothing here knows a family.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from ..attention import AttentionBias, attend
from ..masks import base_unit_scale
from ..patch_state import block_parameter, block_patch
from .base import Grid, PositionTerms


def basam_attend(
    attn: nn.Module,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    grid: Grid,
    key_grid: Grid | None = None,
    position: PositionTerms | None = None,
    base_scale: float | None = None,
) -> Tensor:
    """BA-SAM attention of a patched module: ``[B, heads, Nq, dv]``.

    Args:
        attn: the patched attention module (its record says lambda, the mask and the path).
        q: ``[B, heads, Nq, d]`` queries, not scaled.
        k: ``[B, heads, Nk, d]`` keys; v: ``[B, heads, Nk, dv]`` values.
        grid: the (rows, cols) query grid of this call (a window, or the image grid).
        key_grid: the key grid when it differs (query pooling); None: ``grid``.
        position: the family's own position terms (None: it has none).
        base_scale: the family's logit scale before lambda (None: ``d ** -0.5``).
    """
    state = block_patch(attn)
    assert state is not None, f"{type(attn).__name__} without its BlockPatch: use apply_basam"
    rows, cols = grid
    keys = (rows, cols) if key_grid is None else (int(key_grid[0]), int(key_grid[1]))
    family_scale = q.shape[-1] ** -0.5 if base_scale is None else base_scale
    scale = state.scale_for(keys[0] * keys[1], q.shape[-1]) * family_scale
    bias = AttentionBias(
        (rows, cols),
        metric=state.config.metric,
        key_grid_hw=None if keys == (rows, cols) else keys,
    )
    if position is not None:
        rel_h, rel_w, table = position.rel_h, position.rel_w, position.table
        rel_rows = position.rel_rows
        coef = block_parameter(attn, "rel_pos_coef")
        if coef is not None and position.coefficient:
            rel_h = None if rel_h is None else coef * rel_h
            rel_w = None if rel_w is None else coef * rel_w
            table = None if table is None else coef * table
            rel_rows = None if rel_rows is None else _times(coef, rel_rows)
        bias.rel_h, bias.rel_w, bias.table, bias.rel_rows = rel_h, rel_w, table, rel_rows
    if state.active and state.slopes is not None:
        gain = block_parameter(attn, "gain")
        slopes = state.slopes.to(q.device)
        bias.slopes = slopes * (gain if gain is not None else state.config.gain)
        if state.config.mask_units == "base" and state.is_global:
            bias.distance_scale = base_unit_scale(keys, state.base_grid)
    if state.capture_hook is not None:
        bias = bias.materialized()
        state.capture_hook(attn, q, k, scale, bias)
    return attend(q, k, v, scale, bias, path=state.config.path)


def _times(coef: Tensor, rel_rows: Callable[[int, int], tuple[Tensor, Tensor]]) -> Callable:
    """``rel_rows`` with both terms multiplied by the official preset's coefficient."""

    def rows(first: int, last: int) -> tuple[Tensor, Tensor]:
        rel_h, rel_w = rel_rows(first, last)
        return coef * rel_h, coef * rel_w

    return rows

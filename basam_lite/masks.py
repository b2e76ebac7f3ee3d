r"""The bias-mode attention mask: a 2-D ALiBi over the patch grid.

Each head :math:`h` penalises a query-key pair by its distance on the token grid,

.. math:: M_h(i, j) = -g \, m_h \, \mathrm{dist}(p_i, p_j),

with :math:`p_i = (\text{row}, \text{col})` of token :math:`i`, :math:`m_h` Press's ALiBi slope
for head :math:`h` and :math:`g` a gain. The mask is zero on the diagonal, non-positive, symmetric,
translation-invariant and monotone in distance, so each token prefers its neighbours and the
far-away interactions never seen at the training length weigh less.

Distances are in patches of the current grid (``units="patch"``, the paper's mask), so at twice
the input side the same slope reaches half as far across the image. ``units="base"`` (this
project's own variant, not the paper's) measures them in patches of the *base* grid, the grid the
model was trained at: every distance is multiplied by :func:`base_unit_scale` (base grid /
current grid), the position-interpolation analogue for the mask, so the mask covers the same
share of the image at every zoom.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, get_args

import torch
from torch import Tensor

from .scaling import check_choice

Metric = Literal["euclidean", "manhattan", "chebyshev", "flat"]
METRICS: tuple[str, ...] = get_args(Metric)
MaskUnits = Literal["patch", "base"]
MASK_UNITS: tuple[str, ...] = get_args(MaskUnits)


def alibi_slopes(num_heads: int) -> Tensor:
    r"""Press's ALiBi head slopes, exact for every head count. Returns ``Tensor[num_heads]``.

    For a power of two :math:`p` the slopes are the geometric sequence :math:`2^{-8k/p}`,
    :math:`k = 1..p`. Otherwise take the :math:`p = 2^{\lfloor \log_2 n \rfloor}` slopes, then the
    odd-indexed slopes of the :math:`2p` sequence (:math:`2^{-4(2j-1)/p}`) for the :math:`n - p`
    remaining heads. 12 heads: 1/2, ..., 1/256, then :math:`2^{-0.5}, 2^{-1.5}, 2^{-2.5}, 2^{-3.5}`.
    """
    if not isinstance(num_heads, int) or isinstance(num_heads, bool) or num_heads < 1:
        raise ValueError(f"num_heads must be a positive integer, got {num_heads!r}")
    p = 1 << (num_heads.bit_length() - 1)  # the largest power of two <= num_heads
    exponents = [-8.0 * k / p for k in range(1, p + 1)]
    exponents += [-4.0 * (2 * j - 1) / p for j in range(1, num_heads - p + 1)]
    return torch.tensor([2.0**e for e in exponents], dtype=torch.float64).float()


def _check_grid(grid_hw: Sequence[int]) -> tuple[int, int]:
    if (
        len(grid_hw) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in grid_hw)
        or min(grid_hw) < 1
    ):
        raise ValueError(f"grid_hw must be two positive integers (rows, cols), got {grid_hw!r}")
    return int(grid_hw[0]), int(grid_hw[1])


def grid_positions(grid_hw: Sequence[int], device: torch.device | None = None) -> Tensor:
    """(row, col) of every token in row-major order: ``Tensor[N, 2]`` (float32)."""
    rows, cols = _check_grid(grid_hw)
    r = torch.arange(rows, device=device, dtype=torch.float32)
    c = torch.arange(cols, device=device, dtype=torch.float32)
    return torch.cartesian_prod(r, c)


def pairwise_distance(query_pos: Tensor, key_pos: Tensor, metric: Metric, cols: int) -> Tensor:
    """Distances between (row, col) positions: ``[Q, 2] x [K, 2] -> [Q, K]``.

    ``cols`` is the grid width, needed by ``"flat"`` (the distance of flattened indices).
    """
    check_choice(metric, METRICS, "distance metric")
    if metric == "flat":
        qi = query_pos[:, 0] * cols + query_pos[:, 1]
        ki = key_pos[:, 0] * cols + key_pos[:, 1]
        return (qi[:, None] - ki[None, :]).abs()
    delta = (query_pos[:, None, :] - key_pos[None, :, :]).abs()
    if metric == "euclidean":
        return delta.pow(2).sum(-1).sqrt()
    if metric == "manhattan":
        return delta.sum(-1)
    return delta.amax(-1)


def grid_distances(grid_hw: Sequence[int], metric: Metric = "euclidean") -> Tensor:
    """Token-to-token distances on the (rows, cols) grid: ``Tensor[N, N]``, N = rows * cols."""
    pos = grid_positions(grid_hw)
    return pairwise_distance(pos, pos, metric, cols=grid_hw[1])


def resolve_slopes(num_heads: int, slopes: Sequence[float] | Tensor | None) -> Tensor:
    """``slopes`` as a float32 ``Tensor[num_heads]`` (ALiBi's when ``None``), checked."""
    if slopes is None:
        return alibi_slopes(num_heads)
    s = torch.as_tensor(slopes, dtype=torch.float32).flatten()
    if s.numel() != num_heads:
        raise ValueError(f"got {s.numel()} slopes for {num_heads} heads: give one slope per head")
    if not torch.isfinite(s).all() or (s < 0).any():
        raise ValueError("slopes must be finite and non-negative (the mask penalises distance)")
    return s


def base_unit_scale(grid_hw: Sequence[int], base_grid_hw: Sequence[int]) -> float:
    r"""The multiplier that turns distances in current-grid patches into base-grid patches.

    For a grid scaled by the same factor along both axes it is exactly
    :math:`s = \mathrm{base\_rows} / \mathrm{rows} = \mathrm{base\_cols} / \mathrm{cols}`
    (0.5 at twice the base side, 2 at half of it, 1 at the base grid). For a grid stretched
    differently along its two axes it is the geometric mean
    :math:`\sqrt{\mathrm{base\_rows}\,\mathrm{base\_cols} / (\mathrm{rows}\,\mathrm{cols})}`,
    so the mask's reach covers the same share of the image's area.
    """
    rows, cols = _check_grid(grid_hw)
    base_rows, base_cols = _check_grid(base_grid_hw)
    if base_rows * cols == base_cols * rows:
        return base_rows / rows
    return math.sqrt(base_rows * base_cols / (rows * cols))


def bias_mode_mask(
    grid_hw: Sequence[int],
    num_heads: int,
    metric: Metric = "euclidean",
    slopes: Sequence[float] | Tensor | None = None,
    gain: float = 1.0,
    distance_scale: float = 1.0,
) -> Tensor:
    r"""The additive mask :math:`M[0, h, i, j] = -g\, m_h\, s\, \mathrm{dist}(p_i, p_j)`.

    Args:
        grid_hw: token grid (rows, cols); tokens are numbered in row-major order.
        num_heads: number of attention heads.
        metric: ``"euclidean"``, ``"manhattan"``, ``"chebyshev"`` or ``"flat"`` (``|i - j|`` on the
            flattened index, the naive 1-D contrast that ignores image rows).
        slopes: per-head slopes :math:`m_h`; default ``alibi_slopes(num_heads)``.
        gain: :math:`g`, a global multiplier (0 disables the mask).
        distance_scale: :math:`s`, the distance unit in patches: 1 for the paper's mask (current
            grid patches), ``base_unit_scale(grid_hw, base_grid)`` for distances in base-grid
            patches.

    Returns:
        ``Tensor[1, num_heads, N, N]`` (float32), N = rows * cols.
    """
    check_choice(metric, METRICS, "distance metric")
    if not math.isfinite(gain) or gain < 0:
        raise ValueError(f"gain must be finite and >= 0, got {gain!r}")
    if not math.isfinite(distance_scale) or distance_scale <= 0:
        raise ValueError(f"distance_scale must be finite and > 0, got {distance_scale!r}")
    m = resolve_slopes(num_heads, slopes)
    dist = grid_distances(_check_grid(grid_hw), metric)
    if distance_scale != 1.0:
        dist = dist * distance_scale
    return (-gain * m[:, None, None] * dist[None]).unsqueeze(0)

"""Checkers for notebook 04 (the bias-mode mask)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from ..masks import alibi_slopes, bias_mode_mask, grid_distances
from . import Verdict, close, verdict
from .answers import instrument
from .mistakes import check_with_mistakes

SLOPE_CASES = (1, 2, 4, 6, 8, 12, 16, 3, 5, 24)
"""Head counts the slope checker tries: powers of two and not (6 is the tiny model, 12 ViT-B)."""


def _shortcut_slopes(n: int) -> list[float]:
    return [2.0 ** (-8 * (h + 1) / n) for h in range(n)]


def check_alibi_slopes(learner: Callable[[int], object]) -> Verdict:
    """A learner's ``slopes(num_heads)`` against :func:`basam_lite.alibi_slopes`, within 1e-7,
    for the head counts :data:`SLOPE_CASES`, in the library's order (not sorted)."""
    cases = [(n,) for n in SLOPE_CASES]

    def reference(n: int) -> torch.Tensor:
        return alibi_slopes(n).double()

    mistakes = [
        (
            "wrong order (sorted?): Press's order is the P power-of-two slopes, then the "
            "in-between ones",
            lambda n: alibi_slopes(n).sort(descending=True).values,
        ),
        (
            "wrong order (sorted or reversed?): Press's order is the P power-of-two slopes, "
            "then the in-between ones",
            lambda n: alibi_slopes(n).sort().values,
        ),
        (
            "that is the shortcut 2^(-8h/H) with H not a power of two: use P = 2^floor(log2 H) "
            "slopes 2^(-8h/P), then the odd-indexed slopes of 2P",
            _shortcut_slopes,
        ),
        (
            "off by one: h runs from 1 to H, so the first slope is 2^(-8/H), not 1",
            lambda n: [2.0 ** (-8 * h / n) for h in range(n)],
        ),
        ("wrong order: the slopes come out reversed", lambda n: alibi_slopes(n).flip(0)),
    ]
    return check_with_mistakes(
        learner,
        reference,
        cases,
        mistakes,
        rtol=1e-7,
        atol=1e-9,
        right="Press's slopes for every head count, powers of two or not.",
    )


MASK_CASES = (((3, 5), 2), ((4, 4), 3), ((2, 7), 4), ((5, 3), 1))
"""The (grid rows x cols, heads) pairs the mask checker tries; non-square grids catch swapped
axes."""


def check_euclidean_mask(learner: Callable[[tuple[int, int], torch.Tensor], object]) -> Verdict:
    """A learner's ``mask(grid_hw, slopes)`` -> ``[heads, N, N]`` against
    :func:`basam_lite.bias_mode_mask` (gain 1, Euclidean), within 1e-5."""
    cases = [(grid, alibi_slopes(heads)) for grid, heads in MASK_CASES]

    def reference(grid: tuple[int, int], slopes: torch.Tensor) -> torch.Tensor:
        return bias_mode_mask(grid, len(slopes), slopes=slopes)[0]

    def with_distance(metric: str, sign: float = -1.0):
        def fn(grid: tuple[int, int], slopes: torch.Tensor) -> torch.Tensor:
            return sign * slopes[:, None, None] * grid_distances(grid, metric)[None]  # type: ignore[arg-type]

        return fn

    def swapped(grid: tuple[int, int], slopes: torch.Tensor) -> torch.Tensor:
        rows, cols = grid
        r, c = np.divmod(np.arange(rows * cols), rows)  # numbered column by column
        pos = torch.tensor(np.stack([c, r], 1), dtype=torch.float64)
        return -slopes[:, None, None].double() * torch.cdist(pos, pos)[None]

    mistakes = [
        (
            "wrong sign: M is a penalty, -m_h * dist, never positive",
            with_distance("euclidean", 1.0),
        ),
        (
            "that is the flat distance |i - j| of the 1-D sequence: use (row, col) positions",
            with_distance("flat"),
        ),
        (
            "that is the Manhattan distance; the mask uses the Euclidean one",
            with_distance("manhattan"),
        ),
        ("rows and columns swapped: token i is at (i // cols, i % cols)", swapped),
    ]
    return check_with_mistakes(
        learner,
        reference,
        cases,
        mistakes,
        rtol=1e-5,
        atol=1e-5,
        right="M_h(i, j) = -m_h * ||p_i - p_j|| for every head, on every grid.",
    )


def check_mask_prediction(predicted: object, measured: float) -> Verdict:
    """A predicted mask value (3 decimals, within 0.0006) against ``measured``: M for head 0 of
    8 heads, Euclidean, gain 1, between tokens (0, 0) and (3, 4)."""
    value = _float(predicted)
    if value is None:
        return verdict(False, "", "set predicted_mask_value to a number before running.")
    if close(-value, measured, rel=0, abs_tol=6e-4):
        hint = "check the sign: the mask is a penalty added to the logits."
    elif close(value, -measured * 2, rel=0, abs_tol=6e-4) or close(
        value, measured * 2, rel=0, abs_tol=6e-4
    ):
        hint = "head 0 of 8 has slope 2^(-8/8) = 1/2, not 1."
    elif close(value, -0.5 * 7, rel=0, abs_tol=6e-4):
        hint = "7 = 3 + 4 is the Manhattan distance; the mask uses the Euclidean one."
    else:
        hint = (
            "the mask is a penalty proportional to the distance: which slope has head 0 of 8, and "
            "how far apart are (0, 0) and (3, 4)?"
        )
    return verdict(
        close(value, measured, rel=0, abs_tol=6e-4),
        "slope 1/2 times distance 5, as a penalty.",
        hint,
    )


def _float(answer: object) -> float | None:
    try:
        v = float(answer)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


instrument(globals())  # record answers for `python -m basam_lite grade`

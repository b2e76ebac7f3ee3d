"""Checkers for notebook 05b (detail or length: the zoom and extent axes)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..masks import base_unit_scale, bias_mode_mask
from . import Verdict, check_implementation, close, verdict


def reference_base_unit_mask(grid_hw: tuple[int, int], heads: int, base_grid: tuple[int, int]):
    """The library's base-unit mask: ``[1, heads, N, N]``."""
    return bias_mode_mask(grid_hw, heads, distance_scale=base_unit_scale(grid_hw, base_grid))


def _diagnose(got: np.ndarray, want: np.ndarray) -> str | None:
    if np.allclose(got, -want, atol=1e-6):
        return "the sign is flipped: the mask penalises distance, so it is <= 0"
    nonzero = np.abs(want) > 1e-9
    if nonzero.any():
        ratio = got[nonzero] / want[nonzero]
        if np.allclose(ratio, ratio.flat[0], rtol=1e-4):
            return (
                f"every entry is {ratio.flat[0]:.3g} times the expected one: check the distance "
                "multiplier (base grid / current grid, not the other way round)"
            )
    return None


def check_base_unit_mask(fn: Callable[[tuple[int, int], int, tuple[int, int]], object]) -> Verdict:
    """The learner's ``fn(grid_hw, heads, base_grid) -> [1, heads, N, N]`` base-unit mask."""
    cases = [((4, 4), 2, (4, 4)), ((8, 8), 3, (4, 4)), ((2, 2), 4, (4, 4)), ((6, 6), 12, (3, 3))]
    return check_implementation(
        fn,
        reference_base_unit_mask,
        cases,
        right="your mask equals the paper's at the base grid and shrinks its penalties as the "
        "grid grows, exactly as paper_base does.",
        diagnose=_diagnose,
    )


def check_target_token_ratios(extent_ratio: object, zoom_ratio: object) -> Verdict:
    """Predicted ratios of the target's area in tokens at twice the base side to the base size:
    on the extent axis and on the zoom axis."""
    ok = close(extent_ratio, 1.0, rel=1e-6) and close(zoom_ratio, 4.0, rel=0.05)
    return verdict(
        ok,
        "on the extent axis the target keeps its tokens (only the sequence grows); on the zoom "
        "axis it covers four times as many, which is the detail the decoder can use.",
        "think about what changes: the extent axis keeps the target's pixels and adds canvas; "
        "the zoom axis draws the whole scene with twice as many pixels per side.",
    )


__all__ = [
    "check_base_unit_mask",
    "check_target_token_ratios",
    "reference_base_unit_mask",
]

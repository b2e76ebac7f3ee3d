"""Checkers for notebook 05 (attention maps across resolutions)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd
import torch

from . import Verdict, close, verdict
from .mistakes import check_with_mistakes
from .predictions import check_prediction


def check_self_weight(answer: object) -> Verdict:
    """Weight a centre query gives itself on a 3 x 3 grid under the mask alone (slope 1;
    tolerance 0.1 % relative)."""
    expected = 1.0 / (1.0 + 4.0 * math.exp(-1.0) + 4.0 * math.exp(-math.sqrt(2.0)))
    manhattan = 1.0 / (1.0 + 4.0 * math.exp(-1.0) + 4.0 * math.exp(-2.0))
    hint = (
        "with q.k = 0 the logits are the mask alone: what is it for the query itself, for its "
        "edge neighbours and for its corner neighbours?"
    )
    if close(answer, manhattan, rel=1e-3):
        hint = "that uses Manhattan distance (2 to the corners); the mask is Euclidean (sqrt 2)."
    elif close(answer, 1 / 9, rel=1e-3):
        hint = "1/9 is uniform attention: the mask was left out of the logits."
    elif close(answer, expected, rel=1e-2):
        hint = "close: keep at least four significant digits (tolerance 0.1 %)."
    return verdict(
        close(answer, expected, rel=1e-3),
        "the mask alone already keeps about 29% of the weight on the query itself.",
        hint,
    )


def stretch_cases(seed: int = 0) -> list[tuple[torch.Tensor, int]]:
    """Inputs for :func:`check_stretch_map`: seeded maps ``[..., rows, cols]`` (square, not
    square, batched) summing to 1, and a stretch factor ``k``."""
    g = torch.Generator().manual_seed(seed)

    def rand_map(*shape: int) -> torch.Tensor:
        p = torch.rand(*shape, generator=g)
        return p / p.sum((-2, -1), keepdim=True)

    return [(rand_map(3, 3), 2), (rand_map(2, 5), 3), (rand_map(2, 4, 3), 2), (rand_map(4, 4), 1)]


def check_stretch_map(stretch: Callable[[torch.Tensor, int], object]) -> Verdict:
    """Implement it: ``stretch(p, k)`` for a map ``p [..., rows, cols]`` returns the map of an
    image ``k`` times larger per side if attention simply stretched with it, ``[..., k rows,
    k cols]``; compared with :func:`basam_lite.analysis.stretch_map` (rtol 1e-5, atol 1e-7)."""
    from .. import analysis

    mistakes = [
        (
            "each key's weight is copied to all k x k new keys without being shared: the map "
            "no longer sums to 1",
            lambda p, k: p.repeat_interleave(k, -2).repeat_interleave(k, -1),
        ),
        (
            "the weight is shared by k keys, but k x k keys replace each one",
            lambda p, k: p.repeat_interleave(k, -2).repeat_interleave(k, -1) / k,
        ),
        (
            "the whole map is tiled k x k times: each key's weight must go to its own k x k "
            "block, next to where the key was",
            lambda p, k: p.repeat(*([1] * (p.ndim - 2)), k, k) / (k * k),
        ),
    ]
    return check_with_mistakes(
        stretch,
        analysis.stretch_map,
        stretch_cases(),
        mistakes,
        rtol=1e-5,
        atol=1e-7,
        right="your stretched map matches basam_lite.analysis.stretch_map on every case.",
    )


FADING_OPTIONS = ("fades", "does not fade")
FADING_NATS = 0.1
"""How far ``ln N - H`` must fall below its base-size value for :func:`fading_outcome` to call
it fading beyond stretching."""


def fading_outcome(stats: pd.DataFrame, base: int, variant: str = "vanilla") -> tuple[str, float]:
    """Whether ``variant``'s maps fade beyond stretching from ``base`` to the largest side of
    ``stats`` (:func:`basam_lite.analysis.attention_statistics` rows, with ``below_uniform``):
    ``"fades"`` when the mean ``ln N - H`` falls by more than :data:`FADING_NATS`, and the
    change in nats."""
    part = stats[stats["variant"] == variant]
    by_side = part.groupby("side")["below_uniform"].mean()
    change = float(by_side.loc[by_side.index.max()] - by_side.loc[base])
    return (FADING_OPTIONS[0] if change < -FADING_NATS else FADING_OPTIONS[1]), change


def check_fading_prediction(prediction: object, stats: pd.DataFrame, base: int) -> Verdict:
    """Predict, then run: from the base size to the largest side, does plain SAM's attention
    fade beyond what stretching gives (``ln N - H`` falling by more than
    :data:`FADING_NATS`)? The verdict says which, never the measured value."""
    outcome, _ = fading_outcome(stats, base)
    why = (
        "the rows spread over the new keys more than a stretched map would."
        if outcome == FADING_OPTIONS[0]
        else "the rows are no closer to uniform than a stretched map would be: a rising H / ln N "
        "was the stretching itself."
    )
    return check_prediction(prediction, outcome, FADING_OPTIONS, why)


def mask_only_distance(grid: int, slope: float) -> float:
    """Mean attention distance (tokens) of the centre query under the mask alone (q.k = 0),
    one head of slope ``slope`` on a ``grid x grid`` token grid."""
    from .. import analysis
    from ..masks import bias_mode_mask

    mask = bias_mode_mask((grid, grid), 1, slopes=[slope])  # [1, 1, N, N]
    q = (grid // 2) * grid + grid // 2
    p = mask[0, 0, q].softmax(-1)[None, None, None]  # [1, 1, 1, N]
    pos = torch.tensor([[grid // 2, grid // 2]])
    return float(analysis.mean_attention_distance(p, (grid, grid), pos, patch=1))


DISTANCE_OPTIONS = ("about the same", "about 4x")


def distance_outcome(slope: float, small: int = 16, large: int = 64) -> tuple[str, float]:
    """Which of :data:`DISTANCE_OPTIONS` the mask-only distance does from ``small`` to
    ``large`` tokens a side, and the ratio."""
    ratio = mask_only_distance(large, slope) / mask_only_distance(small, slope)
    return (DISTANCE_OPTIONS[0] if ratio < 2.0 else DISTANCE_OPTIONS[1]), ratio


def check_distance_prediction(prediction: object, slope: float) -> Verdict:
    """Predict, then run: from a 16 x 16 to a 64 x 64 grid (4x the side), does the mask-only
    attention distance of a head with ``slope`` stay about the same or grow about 4x?"""
    outcome, _ = distance_outcome(slope)
    return check_prediction(
        prediction,
        outcome,
        DISTANCE_OPTIONS,
        "a steep head's reach is set by its slope, not by the grid; a shallow head's keeps "
        "growing with the grid. The next cell prints both distances.",
    )

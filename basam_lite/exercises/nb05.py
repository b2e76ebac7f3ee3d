"""Checkers for notebook 05 (attention maps across resolutions)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from . import Verdict, check_implementation, close, verdict
from .answers import instrument
from .predictions import check_prediction

VIT_H_HEADS = 16


def check_full_map_bytes(answer: object) -> Verdict:
    """Bytes of one global block's full fp32 attention probabilities, SAM ViT-H, 2048 px."""
    n = (2048 // 16) ** 2
    expected = VIT_H_HEADS * n * n * 4
    hint = (
        "the full map has heads x N x N numbers (ViT-H has 16 heads; N = tokens at 2048 px "
        "with 16 px patches), 4 bytes each in fp32. Answer in bytes, exactly."
    )
    if close(answer, expected / 4, rel=1e-9):
        hint = "that is the number of probabilities: each takes 4 bytes in fp32."
    elif close(answer, expected / 2**30, rel=1e-3) or close(answer, expected / 1e9, rel=1e-3):
        hint = "right size, wrong unit: answer in bytes, not GiB or GB."
    elif close(answer, 12 * n * n * 4, rel=1e-9):
        hint = "12 heads is ViT-B; ViT-H has 16."
    return verdict(
        close(answer, expected, rel=1e-9),
        "16 GiB for one block of one image: capture only the query rows you will show.",
        hint,
    )


def check_uniform_entropy(answer: object) -> Verdict:
    """Entropy (nats) of uniform attention in a global block of the tiny model at 512 px
    (tolerance: 0.01 % relative)."""
    expected = math.log((512 // 16) ** 2)
    hint = (
        "uniform attention over N keys gives each key 1/N; H = -sum p ln p. How many keys does "
        "a global block see at 512 px (16 px patches)?"
    )
    if close(answer, math.log2((512 // 16) ** 2), rel=1e-4):
        hint = "that is in bits (log2): the notebook measures entropy in nats (natural log)."
    elif close(answer, math.log(512 // 16), rel=1e-4):
        hint = "N is the number of keys, (512/16)^2, not the grid side 512/16."
    elif close(answer, expected, rel=1e-2):
        hint = "close: keep at least four significant digits (tolerance 0.01 %)."
    return verdict(
        close(answer, expected, rel=1e-4),
        "ln N: the ceiling every entropy curve of a global block approaches as attention fades.",
        hint,
    )


def check_self_weight(answer: object) -> Verdict:
    """Weight a centre query gives itself on a 3 x 3 grid under the mask alone (slope 1;
    tolerance 0.1 % relative)."""
    expected = 1.0 / (1.0 + 4.0 * math.exp(-1.0) + 4.0 * math.exp(-math.sqrt(2.0)))
    manhattan = 1.0 / (1.0 + 4.0 * math.exp(-1.0) + 4.0 * math.exp(-2.0))
    hint = (
        "with q.k = 0 the logits are M = -distance (Euclidean): 0 for the query itself, -1 for "
        "its 4 edge neighbours, -sqrt(2) for its 4 corner neighbours. Apply a softmax."
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


def entropy_cases(seed: int = 0) -> list[tuple[torch.Tensor]]:
    """Inputs for :func:`check_entropy`: softmax rows of several shapes, one with exact zeros
    (a windowed block's map is zero outside the window) and one one-hot row."""
    g = torch.Generator().manual_seed(seed)
    rows = (3 * torch.randn(2, 3, 50, generator=g)).softmax(-1)
    windowed = torch.zeros(4, 64)
    windowed[:, :16] = torch.randn(4, 16, generator=g).softmax(-1)
    onehot = torch.zeros(1, 10)
    onehot[0, 3] = 1.0
    return [(torch.randn(5, 16, generator=g).softmax(-1),), (rows,), (windowed,), (onehot,)]


def _diagnose_entropy(got: np.ndarray, want: np.ndarray) -> str | None:
    if np.isnan(got).any():
        return "NaN: 0 * ln 0 counts as 0; leave zero probabilities out of the sum"
    if np.allclose(got, -want, rtol=1e-4, atol=1e-6):
        return "wrong sign: H = -sum p ln p is >= 0"
    if np.allclose(got * math.log(2), want, rtol=1e-4, atol=1e-6):
        return "that is in bits (log2); use the natural log"
    if np.allclose(got * math.log(10), want, rtol=1e-4, atol=1e-6):
        return "that is log10; use the natural log"
    return None


def check_entropy(attention_entropy: Callable[[torch.Tensor], torch.Tensor]) -> Verdict:
    """Implement it: ``attention_entropy(p)`` for ``p [..., N]`` (rows summing to 1) returns
    ``[...]``, the entropy in nats of each row; compared with
    :func:`basam_lite.analysis.entropy` (rtol 1e-5, atol 1e-6)."""
    from .. import analysis

    def reference(p: torch.Tensor) -> torch.Tensor:
        return analysis.entropy(p)

    return check_implementation(
        attention_entropy,
        reference,
        entropy_cases(),
        rtol=1e-5,
        atol=1e-6,
        right="your entropy matches basam_lite.analysis.entropy on every case.",
        diagnose=_diagnose_entropy,
    )


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
    outcome, ratio = distance_outcome(slope)
    return check_prediction(
        prediction,
        outcome,
        DISTANCE_OPTIONS,
        f"with slope {slope:g} the distance goes from {mask_only_distance(16, slope):.2f} to "
        f"{mask_only_distance(64, slope):.2f} tokens ({ratio:.2f}x). A steep head's reach is set "
        "by its slope, not by the grid; a shallow head's keeps growing with the grid.",
    )


instrument(globals())  # record answers for `python -m basam_lite grade`

"""Checkers for notebook 02 (resolution is sequence length)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..analysis import token_table
from ..resolution import resample_pos_embed
from . import Verdict, close, verdict
from .answers import instrument
from .mistakes import check_with_mistakes

DENSE_CASES = ((256, 6), (512, 12), (768, 12), (1024, 16), (2048, 16), (1536, 12))
"""(side px, heads) the dense-memory checker tries (16 px patches)."""


def check_dense_gib(learner: Callable[[int, int], float]) -> Verdict:
    """A learner's ``dense_gib(side, heads)``: GiB of one dense fp32 ``[heads, N, N]`` attention
    tensor at ``side`` x ``side`` px with 16 px patches, against
    :func:`basam_lite.analysis.token_table`, within a relative 1e-6."""
    cases = list(DENSE_CASES)

    def reference(side: int, heads: int) -> float:
        return float(token_table([side], heads=heads)["dense_attention_GiB"].iloc[0])

    def n(side: int) -> int:
        return (side // 16) ** 2

    mistakes = [
        ("forgot the 4 bytes per fp32 number", lambda s, h: h * n(s) ** 2 / 2**30),
        ("that is in GB (1e9 bytes); 1 GiB = 2**30 bytes", lambda s, h: h * n(s) ** 2 * 4 / 1e9),
        ("N x N, not N: every query has a score for every key", lambda s, h: h * n(s) * 4 / 2**30),
        ("forgot the heads: one [N, N] matrix per head", lambda s, h: n(s) ** 2 * 4 / 2**30),
        ("N counts 16 px patches, not pixels", lambda s, h: h * (s * s) ** 2 * 4 / 2**30),
    ]
    return check_with_mistakes(
        learner,
        reference,
        cases,
        mistakes,
        rtol=1e-6,
        atol=0,
        right="heads x N^2 x 4 bytes: memory grows like side^4.",
    )


def resize_cases(seed: int = 0) -> list[tuple[torch.Tensor, tuple[int, int]]]:
    """Seeded random tables ``[1, g, g, C]`` and target grids, most of them not square."""
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(1, 4, 4, 3, generator=g), (6, 10)),
        (torch.randn(1, 8, 8, 5, generator=g), (16, 16)),
        (torch.randn(1, 6, 6, 2, generator=g), (3, 9)),
        (torch.randn(1, 5, 5, 4, generator=g), (12, 7)),
    ]


def check_resize(learner: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]) -> Verdict:
    """A learner's ``resize(pos_embed [1, g, g, C], (rows, cols)) -> [1, rows, cols, C]``
    against :func:`basam_lite.resolution.resample_pos_embed` (bicubic, corners not aligned),
    within 1e-5."""
    cases = resize_cases()
    pe, (rows, cols) = cases[0]
    try:
        shape = tuple(np.shape(learner(pe, (rows, cols))))
    except Exception:  # the learner's code: check_implementation reports the error
        shape = ()
    if shape == (1, cols, rows, pe.shape[-1]):
        return verdict(
            False,
            "",
            f"case 0: shape {shape}: rows and columns are swapped; "
            "F.interpolate takes size=(rows, cols).",
        )
    if shape == (1, pe.shape[-1], rows, cols):
        return verdict(
            False,
            "",
            f"case 0: shape {shape}: permute the channels back last, "
            "[1, C, rows, cols] -> [1, rows, cols, C].",
        )

    def interp(**kw):
        def fn(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
            return F.interpolate(t.permute(0, 3, 1, 2), size=size, **kw).permute(0, 2, 3, 1)

        return fn

    mistakes = [
        ("that is bilinear; the baseline is bicubic", interp(mode="bilinear", align_corners=False)),
        (
            "align_corners=True: use align_corners=False, as the baseline does",
            interp(mode="bicubic", align_corners=True),
        ),
        ("that is nearest-neighbour; the baseline is bicubic", interp(mode="nearest")),
        (
            "antialias=True: the baseline does not antialias",
            interp(mode="bicubic", align_corners=False, antialias=True),
        ),
    ]
    return check_with_mistakes(
        learner,
        resample_pos_embed,
        cases,
        mistakes,
        rtol=1e-5,
        atol=1e-5,
        right="bicubic resampling of every channel over the grid, as the baseline does.",
    )


def check_keys_prediction(
    predicted: object, measured: tuple[int, int], side: int, patch: int = 16
) -> Verdict:
    """A predicted ``(windowed keys, global keys)`` per softmax row at ``side`` px against
    ``measured`` (counted from captured attention maps)."""
    try:
        w, g = (float(v) for v in predicted)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return verdict(False, "", "give two numbers: (windowed keys, global keys).")
    mw, mg = measured
    if not close(w, mw, rel=0, abs_tol=0.5):
        hint = (
            "a windowed block's rows do not grow with the image: a query sees only its window."
            if w > mw
            else "a windowed block sees a whole window of keys (window side squared)."
        )
    elif close(g, (side // patch), rel=0, abs_tol=0.5):
        hint = "that is one side of the token grid; a global row has a key for every token."
    else:
        hint = f"a global block's row has one key per token: ({side} / {patch})^2."
    return verdict(
        close(w, mw, rel=0, abs_tol=0.5) and close(g, mg, rel=0, abs_tol=0.5),
        f"measured {mw} and {mg} keys: windows stay the same, global rows follow the image.",
        hint + f" Measured: {mw} (windowed), {mg} (global).",
    )


instrument(globals())  # record answers for `python -m basam_lite grade`

"""Checkers for notebook 01 (quick start)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..metrics import mask_iou
from . import Verdict, check_implementation, close, verdict


def check_tokens_prediction(predicted: object, measured: int, base_tokens: int = 256) -> Verdict:
    """A prediction of the tokens at four times the base side against ``measured``
    (:func:`basam_lite.quickstart.count_tokens`); ``base_tokens``: the tokens at the base size."""
    if predicted is None:
        return verdict(False, "", "set predicted_tokens to your prediction before running.")
    right = close(predicted, measured, rel=0, abs_tol=0.5)
    if close(predicted, 4 * base_tokens, rel=0, abs_tol=0.5):
        hint = "that is 4 x the base tokens: 4 x the side means 4 x the rows AND 4 x the columns."
    elif close(predicted, math.isqrt(measured), rel=0, abs_tol=0.5):
        hint = "that is the tokens along one side; the grid has rows x columns tokens."
    else:
        hint = "which token grid does the patch embedding make at that side? Count its tokens."
    return verdict(
        right,
        "4x the side: 4x the rows and 4x the columns, 16x the tokens, 256x the attention pairs.",
        hint,
    )


def check_scaled_box(answer: object) -> Verdict:
    """The box (32, 48, 96, 160), drawn on the scene at 256 px, moved to the scene at 512 px."""
    try:
        box = np.asarray(answer, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        box = np.array([])
    correct = box.shape == (4,) and np.allclose(box, (64, 96, 192, 320), atol=0.5)
    unchanged = box.shape == (4,) and np.allclose(box, (32, 48, 96, 160))
    hint = (
        "that is the box unchanged: prompts are in pixels, so they must follow the image's size."
        if unchanged
        else "give four numbers (x0, y0, x1, y1); every coordinate is in pixels of the image it "
        "was drawn on (Prompt(box=...).scaled(from_hw, to_hw) does it for you)."
    )
    return verdict(correct, "the box scales with the image: every coordinate doubles.", hint)


def iou_cases(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded pairs of boolean masks: random shapes and fill rates, and two empty masks."""
    rng = np.random.default_rng(seed)
    cases = []
    for shape, p, q in [
        ((8, 8), 0.5, 0.5),
        ((5, 7), 0.2, 0.6),
        ((16, 12), 0.7, 0.3),
        ((3, 9), 0.9, 0.1),
    ]:
        cases.append((rng.random(shape) < p, rng.random(shape) < q))
    cases.append((np.zeros((4, 4), bool), np.zeros((4, 4), bool)))
    return cases


def check_mask_iou(learner: Callable[[np.ndarray, np.ndarray], float]) -> Verdict:
    """A learner's ``iou(pred, gt)`` against :func:`basam_lite.metrics.mask_iou`, within 1e-6."""
    cases = iou_cases()
    alternatives = []  # (reference value, mistake's value, name) per case
    for pred, gt in cases:
        inter, union = np.count_nonzero(pred & gt), np.count_nonzero(pred | gt)
        want = mask_iou(pred, gt)
        sizes = np.count_nonzero(pred) + np.count_nonzero(gt)
        if sizes:
            alternatives.append(
                (want, 2 * inter / sizes, "that is the Dice score 2|A n B| / (|A| + |B|)")
            )
        if gt.any():
            alternatives.append(
                (
                    want,
                    inter / np.count_nonzero(gt),
                    "you divide by |gt| (recall), not by the union",
                )
            )
        if pred.any():
            alternatives.append(
                (
                    want,
                    inter / np.count_nonzero(pred),
                    "you divide by |pred| (precision), not by the union",
                )
            )
        if union:
            alternatives.append((want, 1 - inter / union, "that is 1 - IoU"))

    def diagnose(got: np.ndarray, want: np.ndarray) -> str | None:
        if not np.isfinite(got).all():
            return "two empty masks: define the IoU as 1 (they agree perfectly), not 0/0"
        for ref, mistake, why in alternatives:
            if np.isclose(want, ref, atol=1e-9) and np.isclose(got, mistake, atol=1e-6):
                return why
        return None

    return check_implementation(
        learner,
        mask_iou,
        cases,
        rtol=0,
        atol=1e-6,
        right="IoU = |pred AND gt| / |pred OR gt| on every case.",
        diagnose=diagnose,
    )


def _float(answer: object) -> float | None:
    try:
        return float(answer)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None

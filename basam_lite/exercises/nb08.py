"""Checkers for notebook 08 (auditing the official code)."""

from __future__ import annotations

import numpy as np

from . import Verdict, verdict
from .mistakes import check_number_function
from .predictions import check_prediction


def check_click(answer: object) -> Verdict:
    """The (x, y) to pass to SAM for the pixel at row 10, column 200."""
    try:
        xy = np.asarray(answer, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        xy = np.array([])
    correct = xy.shape == (2,) and np.allclose(xy, (200, 10))
    transposed = xy.shape == (2,) and np.allclose(xy, (10, 200))
    hint = (
        "that is (row, col): exactly the official code's transposed click."
        if transposed
        else "give two numbers, (x, y), where x runs along the columns and y along the rows."
    )
    return verdict(correct, "x is the column and y the row.", hint)


def legacy_cases(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(logits, gt) inputs for :func:`check_legacy_iou`: hesitant and confident logits, an
    empty prediction and an empty target."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:32, :32]
    gt = (yy - 14) ** 2 + (xx - 18) ** 2 < 9**2
    signed = np.where(gt, 1.0, -1.0) * (1 + np.hypot(yy - 14, xx - 18) % 3)
    cases = [
        (0.3 * signed + rng.normal(0, 0.3, gt.shape), gt),
        (2.0 * signed, gt),
        (rng.normal(0.4, 0.4, gt.shape), gt),
        (np.full(gt.shape, -5.0), np.zeros_like(gt)),  # empty prediction, empty target
        (rng.normal(0.0, 1.0, (16, 24)), rng.random((16, 24)) > 0.6),
    ]
    return cases


def _legacy_reference(logits: np.ndarray, gt: np.ndarray) -> float:
    from ..metrics import legacy_threshold_metrics

    return legacy_threshold_metrics(logits, gt)["legacy_iou"]


def _iou(pred: np.ndarray, gt: np.ndarray) -> float:
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def check_legacy_iou(legacy_iou) -> Verdict:
    """Implement it: ``legacy_iou(logits, gt)``, the official protocol's IoU: binarise the
    LOGITS at 0.1, 0.3, 0.5, 0.7 and 0.9, score each mask's IoU against ``gt`` (1.0 when both
    are empty), average. Compared with :func:`basam_lite.metrics.legacy_threshold_metrics`
    (rtol 1e-6, atol 1e-9)."""
    from scipy.special import expit

    ts = (0.1, 0.3, 0.5, 0.7, 0.9)

    def diagnose(args: tuple, got: np.ndarray, want: np.ndarray) -> str | None:
        logits, gt = args
        on_probs = np.mean([_iou(expit(logits) > t, gt) for t in ts])
        if np.isclose(got, on_probs):
            return "you thresholded probabilities; the official code thresholds the logits"
        if np.isclose(got, _iou(logits > 0.5, gt)):
            return "that is one threshold (0.5); average the IoU over all five"
        if not gt.any() and np.isnan(got):
            return "empty prediction and empty target: count it as IoU 1.0, not 0/0"
        return None

    return check_number_function(
        legacy_iou,
        _legacy_reference,
        legacy_cases(),
        diagnose,
        rtol=1e-6,
        atol=1e-9,
        right="your legacy IoU matches basam_lite.metrics.legacy_threshold_metrics.",
    )


POSITION_OPTIONS = ("yes", "no")


def check_position_prediction(prediction: object, iou_with: float, iou_without: float) -> Verdict:
    """Predict, then run: does removing the absolute position embedding change this scene's mask
    IoU by more than 0.05?"""
    change = iou_without - iou_with
    return check_prediction(
        prediction,
        "yes" if abs(change) > 0.05 else "no",
        POSITION_OPTIONS,
        "one scene at the base size says little either way: the defect matters where the "
        "model relies on absolute positions, which this cell cannot show by itself.",
    )

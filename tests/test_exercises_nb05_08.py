"""The "implement it" and "predict, then run" checkers of notebooks 05-08: each accepts a right
implementation (written from the formula, as in notebooks/solutions/) and rejects plausible wrong
ones with a hint that names the mistake."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from basam_lite.exercises import nb05, nb06, nb07, nb08
from basam_lite.exercises.predictions import check_prediction

# --- notebook 05 ------------------------------------------------------------------------------


def test_nb05_self_weight_diagnoses_manhattan(capsys) -> None:
    manhattan = 1 / (1 + 4 * math.exp(-1) + 4 * math.exp(-2))
    assert not nb05.check_self_weight(manhattan)
    assert "Manhattan" in capsys.readouterr().out


def test_nb05_distance_prediction() -> None:
    # steep head: its reach is set by the slope; shallow head: by the grid
    assert nb05.distance_outcome(0.5)[0] == "about the same"
    assert nb05.distance_outcome(1 / 64)[0] == "about 4x"
    assert nb05.check_distance_prediction("About the same", 0.5)
    assert not nb05.check_distance_prediction("about 4x", 0.5)
    assert not nb05.check_distance_prediction(None, 0.5)
    # the mask-only distance against a direct computation
    g = 8
    pos = np.stack(np.indices((g, g)), -1).reshape(-1, 2)
    d = np.hypot(*(pos - [g // 2, g // 2]).T)
    w = np.exp(-0.5 * d)
    assert nb05.mask_only_distance(g, 0.5) == pytest.approx((w * d).sum() / w.sum(), rel=1e-5)


def test_predictions_need_a_known_option(capsys) -> None:
    assert not check_prediction("maybe", "yes", ("yes", "no"), "x")
    assert "one of" in capsys.readouterr().out
    with pytest.raises(ValueError):
        check_prediction("yes", "perhaps", ("yes", "no"), "x")


# --- notebook 06: paired intervals ------------------------------------------------------------


def interval(a, b, z: float = 1.959963984540054, ddof: int = 1):
    d = np.asarray(a) - np.asarray(b)
    se = d.std(ddof=ddof) / math.sqrt(len(d))
    return [d.mean(), d.mean() - z * se, d.mean() + z * se]


def test_nb06_interval_accepts_the_formula() -> None:
    assert nb06.check_paired_interval(interval)
    assert nb06.check_paired_interval(lambda a, b: interval(a, b, z=1.96))  # within tolerance


@pytest.mark.parametrize(
    ("wrong", "why"),
    [
        (lambda a, b: interval(b, a), "wrong sign"),
        (lambda a, b: interval(a, b, ddof=0), "ddof=1"),
        (lambda a, b: interval(a, b, z=1.0), "1 standard error"),
        (
            lambda a, b: (lambda m, se: [m, m - 1.96 * se, m + 1.96 * se])(
                np.mean(np.asarray(a) - b),
                math.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b)),
            ),
            "per-image differences",
        ),
    ],
)
def test_nb06_interval_rejects_plausible_mistakes(wrong, why, capsys) -> None:
    assert not nb06.check_paired_interval(wrong)
    assert why in capsys.readouterr().out


def _table(shift: float, n: int = 24, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.4, 0.9, n)
    rows = []
    for variant, scores in (("vanilla", base), ("paper", base + shift + rng.normal(0, 0.02, n))):
        for i, x in enumerate(scores):
            rows.append(
                dict(
                    model="m",
                    prompt="box",
                    resolution=512,
                    image=f"s{i:02d}",
                    variant=variant,
                    iou=x,
                    status="ok",
                )
            )
    return pd.DataFrame(rows)


def test_nb06_se_prediction(capsys) -> None:
    table = _table(0.0, n=96)
    outcome, ratio = nb06.se_outcome(table, "paper")
    assert outcome == "twice" and 1.6 < ratio < 2.4
    assert nb06.check_se_prediction("twice", table)
    assert not nb06.check_se_prediction("four times", table)
    assert f"{ratio:.2f}" not in capsys.readouterr().out  # the next cell prints it, not the checker


# --- notebook 07: the learning-rate schedule --------------------------------------------------


def lr(step, steps, warmup, floor):
    if step < warmup:
        return (step + 1) / warmup
    t = min((step - warmup) / max(1, steps - warmup), 1.0)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))


def test_nb07_lr_factor_accepts_the_formula() -> None:
    assert nb07.check_lr_factor(lr)


@pytest.mark.parametrize(
    ("wrong", "why"),
    [
        (lambda s, n, w, f: s / w if s < w else lr(s, n, w, f), "off by one"),
        (lambda s, n, w, f: lr(s, n, w, 0.0) if s >= w else lr(s, n, w, f), "min_lr_ratio"),
        (
            lambda s, n, w, f: (
                f + (1 - f) * 0.5 * (1 + math.cos(math.pi * (s - w) / (n - w)))
                if s >= w
                else lr(s, n, w, f)
            ),
            "capped",
        ),
    ],
)
def test_nb07_lr_factor_rejects_plausible_mistakes(wrong, why, capsys) -> None:
    assert not nb07.check_lr_factor(wrong)
    assert why in capsys.readouterr().out


def test_nb07_finetune_prediction() -> None:
    evals = pd.DataFrame(
        {
            "stage": ["zero-shot", "fine-tuned", "zero-shot", "fine-tuned"],
            "preset": ["paper", "paper", "vanilla", "vanilla"],
            "size": [768] * 4,
            "iou_box": [0.70, 0.68, 0.72, 0.73],
        }
    )
    assert nb07.finetune_outcome(evals, "paper", 768)[0] == "lower"
    assert nb07.check_finetune_prediction("lower", evals)
    assert not nb07.check_finetune_prediction("higher", evals)
    assert nb07.check_finetune_prediction("higher", evals, preset="vanilla")


# --- notebook 08: the legacy IoU ----------------------------------------------------------------


def legacy_iou(logits, gt):
    scores = []
    for t in (0.1, 0.3, 0.5, 0.7, 0.9):
        pred = logits > t
        union = np.logical_or(pred, gt).sum()
        scores.append(1.0 if union == 0 else np.logical_and(pred, gt).sum() / union)
    return float(np.mean(scores))


def test_nb08_legacy_iou_accepts_the_formula() -> None:
    assert nb08.check_legacy_iou(legacy_iou)


@pytest.mark.parametrize(
    ("wrong", "why"),
    [
        (lambda x, g: legacy_iou(expit(x), g), "probabilities"),
        (
            lambda x, g: np.logical_and(x > 0.5, g).sum() / np.logical_or(x > 0.5, g).sum(),
            "one threshold",
        ),
        (lambda x, g: legacy_iou(x.T, g.T) if x.shape[0] == x.shape[1] else 0.0, "case"),
    ],
)
def test_nb08_legacy_iou_rejects_plausible_mistakes(wrong, why, capsys) -> None:
    assert not nb08.check_legacy_iou(wrong)
    assert why in capsys.readouterr().out


def test_nb08_position_prediction() -> None:
    assert nb08.check_position_prediction("no", 0.83, 0.832)
    assert not nb08.check_position_prediction("yes", 0.83, 0.832)
    assert nb08.check_position_prediction("yes", 0.83, 0.5)

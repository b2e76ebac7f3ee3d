"""Checkers for notebook 07 (train short, test long)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import Verdict, close, verdict
from .mistakes import check_number_function
from .predictions import check_prediction


def check_scenes_seen(answer: object, steps: int, batch_size: int) -> Verdict:
    """How many distinct training scenes a fine-tune of ``steps`` x ``batch_size`` sees."""
    return verdict(
        close(answer, steps * batch_size, rel=0, abs_tol=0.5),
        "a few hundred scenes: far too few to learn much, which is why the notebook hedges.",
        "every step renders a fresh batch of scenes (scene index = step x batch + b), none is "
        "repeated: how many steps, how many scenes per step?",
    )


def lr_cases() -> list[tuple[int, int, int, float]]:
    """(step, steps, warmup, min_lr_ratio) inputs for :func:`check_lr_factor`: warmup steps,
    its last step, the cosine part, the last step and beyond."""
    cases = []
    for steps, warmup, floor in ((24, 2, 0.02), (5000, 50, 0.02), (100, 10, 0.1), (30, 1, 0.0)):
        for step in sorted({0, 1, warmup - 1, warmup, steps // 2, steps - 1, steps, steps + 5}):
            if step >= 0:
                cases.append((step, steps, warmup, floor))
    return cases


def _lr_reference(step: int, steps: int, warmup: int, min_lr_ratio: float) -> float:
    from ..train import TrainConfig, lr_factor

    return lr_factor(step, TrainConfig(steps=steps, warmup=warmup, min_lr_ratio=min_lr_ratio))


def check_lr_factor(lr_factor) -> Verdict:
    """Implement it: ``lr_factor(step, steps, warmup, min_lr_ratio)``, the multiplier of the
    learning rate at ``step`` (0-based), compared with :func:`basam_lite.train.lr_factor`
    (rtol 1e-6, atol 1e-9): linear warmup to 1, then cosine down to ``min_lr_ratio``."""

    def diagnose(args: tuple, got: np.ndarray, want: np.ndarray) -> str | None:
        step, steps, warmup, _ = args
        if step < warmup:
            if np.isclose(got, step / warmup):
                return "off by one in the warmup: step 0 already trains, at 1/warmup"
            return "during warmup the factor rises linearly: (step + 1) / warmup"
        t = min((step - warmup) / max(1, steps - warmup), 1.0)
        if np.isclose(got, 0.5 * (1 + math.cos(math.pi * t))):
            return "the cosine must end at min_lr_ratio, not at 0"
        if np.isclose(got, 0.5 * (1 + math.cos(math.pi * (step - warmup) / steps))):
            return "the cosine runs over steps - warmup steps, starting after the warmup"
        if step >= steps:
            return "after the last step the factor stays at min_lr_ratio (t is capped at 1)"
        return None

    return check_number_function(
        lr_factor,
        _lr_reference,
        lr_cases(),
        diagnose,
        rtol=1e-6,
        atol=1e-9,
        right="your schedule matches basam_lite.train.lr_factor on every step.",
    )


FINETUNE_OPTIONS = ("higher", "lower")


def finetune_outcome(evals: pd.DataFrame, preset: str, size: int, column: str = "iou_box"):
    """Whether the fine-tuned model of ``preset`` scores higher or lower than the zero-shot one
    at ``size`` in ``evals`` (columns ``stage``, ``preset``, ``size``, ``column``), and both."""
    part = evals[(evals["preset"] == preset) & (evals["size"] == size)]
    by_stage = part.groupby("stage")[column].mean()
    tuned, zero = float(by_stage["fine-tuned"]), float(by_stage["zero-shot"])
    return ("higher" if tuned > zero else "lower"), tuned, zero


def check_finetune_prediction(
    prediction: object, evals: pd.DataFrame, preset: str = "paper", size: int = 768
) -> Verdict:
    """Predict, then run: is the fine-tuned ``preset`` model's mean box IoU at ``size`` higher or
    lower than the same preset applied zero-shot to the starting model?"""
    outcome, _, _ = finetune_outcome(evals, preset, size)
    return check_prediction(
        prediction,
        outcome,
        FINETUNE_OPTIONS,
        "a few dozen steps at a small learning rate from a model that finished its own schedule "
        "mostly add noise; section 4 prints both scores and says whether the difference is "
        "larger than the scenes' spread.",
    )

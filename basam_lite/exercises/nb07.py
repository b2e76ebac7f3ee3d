"""Checkers for notebook 07 (train short, test long)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from . import Verdict, close, verdict
from .answers import instrument
from .mistakes import check_number_function
from .predictions import check_prediction

IOU_AT_SIZES = (384, 512)
"""The sizes :func:`check_iou_at` tries: 1.5 and 2 times the tiny model's 256 px base."""
IOU_AT_SCENES = 2


def _iou_at_reference(model: object, size: int, n: int) -> float:
    """Test long, as section 3 does: the model set to ``size``, the first ``n`` held-out scenes
    rendered at ``size`` with the tight box, the mean IoU; the model returned to its size."""
    from ..evaluation import evaluation_table
    from ..resolution import input_size, set_input_size

    before = input_size(model)
    set_input_size(model, size)
    try:
        return float(evaluation_table(model, n=n, kinds=("box",), size=size)["iou_box"].mean())
    finally:
        set_input_size(model, before)


def _iou_at_mistakes(model: object, size: int, n: int) -> list[tuple[str, float]]:
    """What the typical slips compute (those that run at all), to name the one a learner made."""
    from ..evaluation import evaluation_table
    from ..resolution import input_size, set_input_size

    before = input_size(model)
    plain = evaluation_table(model, n=n, kinds=("box",), size=size)["iou_box"].mean()
    out = [
        (
            "the model still ran at its base size: it must be set to the test size first (the "
            "image is otherwise resized down to the base size, and lambda stays 1)",
            float(plain),
        )
    ]
    set_input_size(model, size)
    try:
        for why, kwargs in (
            (
                "the scenes were rendered at the base size: pass size= to evaluation_table too, "
                "or the model sees a small image padded to the larger input",
                {"kinds": ("box",)},
            ),
            (
                "that is the point prompt's IoU: the protocol prompts with the tight box",
                {"kinds": ("point",), "size": size},
            ),
        ):
            table = evaluation_table(model, n=n, **kwargs)  # type: ignore[arg-type]
            out.append((why, float(table.filter(like="iou_").iloc[:, 0].mean())))
    finally:
        set_input_size(model, before)
    return out


def check_iou_at(iou_at: Callable) -> Verdict:
    """Implement the test-long step: ``iou_at(model, size, n)``, the mean box IoU of ``model``
    on the first ``n`` held-out scenes rendered at ``size`` px
    (:func:`basam_lite.evaluation.evaluation_table`), leaving the model at the input size it had.
    Run against the library on a seeded random-weight tiny model with the paper preset (its
    lambda follows the size), at 1.5 and 2 times its base size, within 1e-6. (The grader, which
    replays the function's recorded return values, re-checks the values, not the model's size
    afterwards.)"""
    import torch

    from ..config import BASAMConfig
    from ..models import build_sam
    from ..patch import apply_basam
    from ..resolution import input_size, set_input_size

    torch.manual_seed(0)
    model = apply_basam(build_sam("tiny"), BASAMConfig.paper())
    start = input_size(model)
    answers = []
    for size in IOU_AT_SIZES:  # every call first, the same calls whatever the answers
        try:
            answers.append((iou_at(model, size, IOU_AT_SCENES), None, input_size(model)))
        except Exception as e:  # a learner's error becomes a hint, not a traceback
            answers.append((None, e, input_size(model)))
        set_input_size(model, start)
    for size, (got, error, left) in zip(IOU_AT_SIZES, answers, strict=True):
        if error is not None:
            hint = f"your function raised {type(error).__name__}: {str(error)[:160]}"
            if "size" in str(error).lower() or "shape" in str(error).lower():
                hint += " (the model runs at the size it was built for until it is set to another)"
            return verdict(False, "", hint)
        if left != start:
            return verdict(
                False,
                "",
                f"the model was left at {left[0]} px: return it to the size it had "
                "(restore_input_size, or set_input_size with what input_size gave), or every "
                "later cell runs at the wrong size",
            )
        want = _iou_at_reference(model, size, IOU_AT_SCENES)
        if not close(got, want, rel=0, abs_tol=1e-6):
            for why, value in _iou_at_mistakes(model, size, IOU_AT_SCENES):
                if close(got, value, rel=0, abs_tol=1e-6):
                    return verdict(False, "", why)
            return verdict(
                False,
                "",
                f"at {size} px your value is not the mean box IoU of the first n held-out "
                "scenes: compare each step with section 3's evaluation cell",
            )
    return verdict(
        True,
        "your evaluation is the library's at every size tried, and the model is left as found.",
        "",
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


instrument(globals())  # record answers for `python -m basam_lite grade`

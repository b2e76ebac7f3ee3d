"""Checkers for notebook 05c (SAM 2 and input size: the families and the temperature rules)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd

from ..scaling import yarn_temperature
from . import Verdict, check_implementation, verdict
from .answers import instrument
from .mistakes import diagnose_mistakes
from .nb03 import lambda_cases
from .predictions import check_prediction

FAMILY_OPTIONS = ("SAM 1", "SAM 2")
"""The answers of the predict-then-run exercise: which tiny family loses more."""


def family_of(model: str) -> str:
    """``"SAM 2"`` for a SAM 2 model name (``tiny-sam2-vanilla``, ``sam2-tiny``, ...), else
    ``"SAM 1"``."""
    return FAMILY_OPTIONS[1] if "sam2" in model else FAMILY_OPTIONS[0]


def check_yarn_factor(learner: Callable[[int, int], float]) -> Verdict:
    """A learner's ``yarn(n, n_train)`` against :func:`basam_lite.scaling.yarn_temperature`
    (the logit multiplier ``(0.1 ln s + 1)^2``, ``s = max(1, n / n_train)``), within 1e-6."""
    cases = lambda_cases()

    def reference(n: int, n_train: int) -> float:
        return yarn_temperature(n, n_train)

    mistakes = [
        (
            "not squared: YaRN's 0.1 ln s + 1 is sqrt(1/t), applied to q and to k, so the logits "
            "get its square",
            lambda n, t: 0.1 * math.log(max(1.0, n / t)) + 1.0,
        ),
        (
            "below the training length the rule is 1 (s = max(1, n / n_train)); yours shrinks "
            "the logits there",
            lambda n, t: (0.1 * math.log(n / t) + 1.0) ** 2,
        ),
        (
            "s is the ratio of sequence lengths (key counts), not of sides",
            lambda n, t: (0.1 * math.log(max(1.0, math.sqrt(n / t))) + 1.0) ** 2,
        ),
        (
            "that is log base 10: YaRN's ln is the natural logarithm",
            lambda n, t: (0.1 * math.log10(max(1.0, n / t)) + 1.0) ** 2,
        ),
    ]
    return check_implementation(
        learner,
        reference,
        cases,
        rtol=1e-6,
        atol=1e-9,
        right="(0.1 ln s + 1)^2 with s = max(1, n / n_train) on every case, as the library's yarn.",
        diagnose=diagnose_mistakes(cases, reference, mistakes),
    )


def loss_outcome(recovery: pd.DataFrame, axis: str = "extent") -> tuple[str, float]:
    """Which family of :data:`FAMILY_OPTIONS` loses more IoU with plain interpolation on
    ``axis`` (the ``loss`` column of :func:`basam_lite.family_live.recovery_table`), and the
    difference of the two losses (points in [0, 1], the larger minus the smaller)."""
    part = recovery[recovery["axis"] == axis].drop_duplicates("model")
    losses = {family_of(m): float(v) for m, v in zip(part["model"], part["loss"], strict=True)}
    if set(losses) != set(FAMILY_OPTIONS):
        raise ValueError(f"the table needs one model of each family on {axis}: got {list(losses)}")
    worse = max(FAMILY_OPTIONS, key=lambda f: losses[f])
    return worse, abs(losses[FAMILY_OPTIONS[0]] - losses[FAMILY_OPTIONS[1]])


def check_loss_prediction(prediction: object, recovery: pd.DataFrame) -> Verdict:
    """Predict, then run: on the extent axis, from the base size to twice it, which tiny family
    loses more IoU with plain interpolation, ``"SAM 1"`` or ``"SAM 2"``? The verdict says
    which, never the measured losses."""
    try:
        outcome, _ = loss_outcome(recovery)
    except ValueError:
        return verdict(
            False,
            "",
            "this run has no extent-axis loss for both families (below a model's base size a "
            "window cannot hold the target): run the notebook at the base size and above.",
        )
    why = (
        "a possible reason (this notebook does not isolate it): the tiny SAM 1's decoder reads "
        "only its 16 px tokens, every one of them through global blocks that now see more keys, "
        "while the tiny SAM 2's decoder also reads its stride-4 and stride-8 features, made by "
        "windowed blocks that see the same keys at every size."
        if outcome == FAMILY_OPTIONS[0]
        else "possible reasons (this notebook does not isolate them): the tiny SAM 2's global "
        "blocks see more keys, as the tiny SAM 1's do, and besides its background position "
        "table is stretched over a larger grid while its window table repeats."
    )
    return check_prediction(prediction, outcome, FAMILY_OPTIONS, why)


__all__ = [
    "FAMILY_OPTIONS",
    "check_loss_prediction",
    "check_yarn_factor",
    "family_of",
    "loss_outcome",
]


instrument(globals())  # record answers for `python -m basam_lite grade`

"""Checkers for notebook 03 (the scaling factor)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from ..analysis import entropy
from ..scaling import attention_scale
from . import Verdict, check_implementation, close, verdict
from .mistakes import check_with_mistakes, diagnose_mistakes


def lambda_cases(seed: int = 0) -> list[tuple[int, int]]:
    """Seeded ``(n, n_train)`` pairs: below, at and above the training length."""
    rng = np.random.default_rng(seed)
    cases = [(int(rng.integers(2, 5000)), int(rng.integers(16, 5000))) for _ in range(6)]
    return [*cases, (4096, 4096), (64, 256), (16384, 4096)]


def check_lambda(learner: Callable[[int, int], float]) -> Verdict:
    """A learner's ``lam(n, n_train)`` against ``attention_scale(n, n_train)``, within 1e-6."""
    cases = lambda_cases()

    def reference(n: int, n_train: int) -> float:
        return attention_scale(n, train_keys=n_train)

    mistakes = [
        ("upside down: ln n_train / ln n", lambda n, t: math.log(t) / math.log(n)),
        (
            "that is ln(n / n_train), a difference of logs, not their ratio",
            lambda n, t: math.log(n / t),
        ),
        ("that is n / n_train: lambda compares logarithms of the key counts", lambda n, t: n / t),
        ("that is the side ratio sqrt(n / n_train)", lambda n, t: math.sqrt(n / t)),
    ]
    return check_implementation(
        learner,
        reference,
        cases,
        rtol=1e-6,
        atol=1e-9,
        right="lambda(n) = ln n / ln n_train on every case.",
        diagnose=diagnose_mistakes(cases, reference, mistakes),
    )


def entropy_cases(seed: int = 0) -> list[tuple[torch.Tensor]]:
    """Seeded softmax rows ``[..., n]``: a square batch, a wide one, one with exact zeros
    (one-hot rows) and a 3-D one."""
    g = torch.Generator().manual_seed(seed)
    square = (2 * torch.randn(5, 5, generator=g)).softmax(-1)
    wide = (3 * torch.randn(3, 16, generator=g)).softmax(-1)
    zeros = torch.eye(4)[:3] * 0.5 + torch.eye(4)[1:] * 0.5  # rows with two 0.5s and two 0s
    batch = torch.randn(2, 4, 9, generator=g).softmax(-1)
    return [(square,), (wide,), (zeros,), (batch,)]


def check_entropy(learner: Callable[[torch.Tensor], object]) -> Verdict:
    """A learner's ``H(p)`` (entropy in nats of each row, last axis) against
    :func:`basam_lite.analysis.entropy`, within 1e-5 relative and 1e-6 absolute."""
    cases = entropy_cases()
    mistakes = [
        (
            "wrong sign: H = -sum p ln p is never negative",
            lambda p: (p * p.log().nan_to_num(neginf=0)).sum(-1),
        ),
        (
            "that is in bits (log2); the notebook uses nats (natural log)",
            lambda p: entropy(p) / math.log(2),
        ),
        (
            "you summed over the queries (axis -2), not the keys (the last axis)",
            lambda p: -(p * p.clamp_min(1e-30).log()).sum(-2),
        ),
        (
            "0 * ln 0 gave NaN: take 0 ln 0 = 0 (clamp p before the log, or mask the zeros)",
            lambda p: -(p * p.log()).sum(-1),
        ),
    ]
    return check_with_mistakes(
        learner,
        entropy,
        cases,
        mistakes,
        rtol=1e-5,
        atol=1e-6,
        right="H(p) = -sum_j p_j ln p_j over the keys, on every case.",
    )


def check_scale_prediction(prediction: object, stats: pd.DataFrame) -> Verdict:
    """A prediction, ``"sharper"`` or ``"softer"``, of what lambda does to the global blocks'
    rows above the base size, against ``stats`` from
    :func:`basam_lite.analysis.attention_statistics` with variants ``plain SAM`` and
    ``with lambda`` at one side (the mean normalised entropy decides: lower is sharper)."""
    h = stats.groupby("variant")["normalised_entropy"].mean()
    plain, scaled = float(h["plain SAM"]), float(h["with lambda"])
    truth = "sharper" if scaled < plain else "softer"
    answer = str(prediction).strip().lower() if prediction is not None else ""
    if answer not in ("sharper", "softer"):
        return verdict(False, "", 'answer "sharper" or "softer".')
    why = (
        "lambda > 1 scales the logits up"
        if truth == "sharper"
        else "although lambda > 1 scales the logits up: in this model other effects win"
    )
    return verdict(
        answer == truth,
        f"the rows got {truth}: {why}. The next cell prints the measurement.",
        f"the rows got {truth}, not what you predicted. Above the base size n > n_train, so "
        "lambda > 1: what does multiplying every content logit by more than 1 do to a softmax?",
    )


def check_official_2560(answer: object) -> Verdict:
    """The official code's lambda at 2560 px, to 3 decimals (within 0.0006)."""
    expected = math.log(2**2 * 4096) / math.log(4096)
    unfloored = math.log((2560 // 16) ** 2) / math.log(4096)  # L = 2.5, as the paper-like rule
    value = _float(answer)
    if value is not None and close(value, unfloored, rel=0, abs_tol=6e-4):
        hint = "that is the paper-like value: the official L = 2560 // 1024 is an integer division."
    elif value is not None and close(value, 2.0, rel=0, abs_tol=6e-4):
        hint = "2 is L itself; lambda is log_4096(L^2 * 4096)."
    else:
        hint = (
            "the official rule is log_4096(L^2 * 4096) with L = img_size // 1024 (integer "
            "division); compare with bl.attention_scale(..., mode='official')."
        )
    return verdict(
        value is not None and close(value, expected, rel=0, abs_tol=6e-4),
        "L = 2560 // 1024 is floored, so the official rule gives 2048 px's value.",
        hint,
    )


def check_tiny_lambda_512(answer: object) -> Verdict:
    """The paper-like lambda for the tiny model (built at 256 px) at 512 px, to 3 decimals."""
    expected = math.log(32 * 32) / math.log(16 * 16)
    value = _float(answer)
    if value is not None and close(value, math.log(32 * 32) / math.log(4096), rel=0, abs_tol=6e-4):
        hint = "you used SAM's n_train = 4096; the tiny model was trained with 256 tokens."
    elif value is not None and close(value, 2.0, rel=0, abs_tol=6e-4):
        hint = "2 is the side ratio; lambda is a ratio of the logarithms of token counts."
    else:
        hint = (
            "count the tokens of the tiny model at the size it was built for (256 px) and at "
            "512 px (16 px patches), then take the ratio of their logarithms."
        )
    return verdict(
        value is not None and close(value, expected, rel=0, abs_tol=6e-4),
        "n_train is the model's own training length: 256 tokens for the tiny model.",
        hint,
    )


def _float(answer: object) -> float | None:
    try:
        return float(answer)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None

"""Checkers for notebook 08 (auditing the official code)."""

from __future__ import annotations

import math

import numpy as np

from . import Verdict, close, verdict


def check_lambda_gap(answer: object) -> Verdict:
    """How much the official lambda undershoots the paper-like one at 1920 px."""
    expected = math.log(120 * 120) / math.log(4096) - 1.0
    return verdict(
        close(answer, expected, rel=1e-3),
        "almost the whole correction is lost: 1920 // 1024 = 1, as if the input were 1024 px.",
        "compute both with bl.attention_scale for the number of tokens at 1920 px "
        "(mode='log_ratio' and mode='official') and subtract official from log_ratio.",
    )


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


def check_threshold_probability(answer: object) -> Verdict:
    """The probability that the legacy threshold 0.9, applied to logits, stands for."""
    expected = 1.0 / (1.0 + math.exp(-0.9))
    return verdict(
        close(answer, expected, rel=1e-3),
        "a logit of 0.9 is a probability of about 0.71, not 0.9.",
        "the threshold is applied to logits: turn the logit into a probability with the "
        "sigmoid 1 / (1 + exp(-x)).",
    )

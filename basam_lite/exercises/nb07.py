"""Checkers for notebook 07 (train short, test long)."""

from __future__ import annotations

import math

import pandas as pd

from . import Verdict, close, verdict


def check_lambda_4x(answer: object) -> Verdict:
    """The paper preset's lambda in the tiny model's global blocks at 4x its base size."""
    expected = math.log((1024 // 16) ** 2) / math.log((256 // 16) ** 2)
    return verdict(
        close(answer, expected, rel=1e-4),
        "16 times the tokens of training, yet lambda grows only logarithmically.",
        "lambda = ln n / ln n_train; the tiny model's base size is 256 px, four times that is "
        "1024 px; count tokens with 16 px patches.",
    )


def check_scenes_seen(answer: object, steps: int, batch_size: int) -> Verdict:
    """How many distinct training scenes a fine-tune of ``steps`` x ``batch_size`` sees."""
    return verdict(
        close(answer, steps * batch_size, rel=0, abs_tol=0.5),
        "a few hundred scenes: far too few to learn much, which is why the notebook hedges.",
        "every step renders a fresh batch of scenes (scene index = step x batch + b), none is "
        "repeated: how many steps, how many scenes per step?",
    )


def largest_gain(table: pd.DataFrame) -> int:
    """The input size where the ``paper`` column exceeds the ``vanilla`` column the most."""
    gain = table["paper"] - table["vanilla"]
    return int(gain.idxmax())


def check_largest_gain(answer: object, table: pd.DataFrame) -> Verdict:
    """At which input size (rows of ``table``) fine-tuning with BA-SAM gains most over without."""
    expected = largest_gain(table)
    return verdict(
        close(answer, expected, rel=0, abs_tol=0.5),
        "the gain, if any, is measured here, on these held-out scenes and this short run only.",
        "subtract the 'vanilla' column from the 'paper' column and find the size (the row "
        "label, in px) where the difference is largest; it can be negative everywhere.",
    )

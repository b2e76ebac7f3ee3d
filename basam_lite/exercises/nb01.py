"""Checkers for notebook 01 (quick start)."""

from __future__ import annotations

import math

import numpy as np

from . import Verdict, close, verdict


def check_tokens_2x(answer: object) -> Verdict:
    """Tokens (keys per softmax row in a global block) of the tiny model at 512 px."""
    return verdict(
        close(answer, (512 // 16) ** 2, rel=0, abs_tol=0.5),
        "twice the side, four times the tokens: a global block's softmax rows get 4x longer.",
        "the tiny model uses 16 px patches; count the patches over the whole 512 x 512 image "
        "(rows times columns).",
    )


def check_lambda_half(answer: object) -> Verdict:
    """The paper preset's lambda in the tiny model's global blocks at 128 px."""
    expected = math.log((128 // 16) ** 2) / math.log((256 // 16) ** 2)
    return verdict(
        close(answer, expected, rel=1e-4),
        "below the base size lambda < 1: the logits are softened, not sharpened.",
        "lambda = ln n / ln n_train, with n the tokens at 128 px and n_train the tokens at the "
        "tiny model's base size (256 px), 16 px patches.",
    )


def check_scaled_box(answer: object) -> Verdict:
    """The box (32, 48, 96, 160), drawn on the scene at 256 px, moved to the scene at 512 px."""
    try:
        box = np.asarray(answer, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        box = np.array([])
    correct = box.shape == (4,) and np.allclose(box, (64, 96, 192, 320))
    unchanged = box.shape == (4,) and np.allclose(box, (32, 48, 96, 160))
    hint = (
        "that is the box unchanged: prompts are in pixels, so they must follow the image's size."
        if unchanged
        else "give four numbers (x0, y0, x1, y1); every coordinate is in pixels of the image it "
        "was drawn on (Prompt(box=...).scaled(from_hw, to_hw) does it for you)."
    )
    return verdict(correct, "the box scales with the image: every coordinate doubles.", hint)

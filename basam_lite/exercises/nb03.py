"""Checkers for notebook 03 (the scaling factor)."""

from __future__ import annotations

import math

from . import Verdict, close, verdict


def check_lambda_768(answer: object) -> Verdict:
    """The paper-like lambda for SAM (trained at 1024 px) run at 768 px."""
    expected = math.log(48 * 48) / math.log(64 * 64)
    return verdict(
        close(answer, expected, rel=1e-4),
        "fewer keys than at training, so lambda < 1 softens the logits slightly.",
        "lambda = ln n / ln n_train with n the number of tokens at 768 px and n_train at "
        "1024 px (16 px patches). Use natural logs, or any base: the ratio is the same.",
    )


def check_official_2560(answer: object) -> Verdict:
    """The official code's lambda at 2560 px."""
    expected = math.log(2**2 * 4096) / math.log(4096)
    return verdict(
        close(answer, expected, rel=1e-4),
        "L = 2560 // 1024 is floored, so the official rule gives 2048 px's value.",
        "the official rule is log_4096(L^2 * 4096) with L = img_size // 1024 (integer "
        "division); compare with bl.attention_scale(..., mode='official').",
    )


def check_tiny_lambda_512(answer: object) -> Verdict:
    """The paper-like lambda for the tiny model (built at 256 px) run at 512 px."""
    expected = math.log(32 * 32) / math.log(16 * 16)
    return verdict(
        close(answer, expected, rel=1e-4),
        "n_train is the model's own training length: 256 tokens for the tiny model.",
        "n_train is not 4096 here: count the tokens of the tiny model at the size it was "
        "built for (256 px), and the tokens at 512 px.",
    )

"""Checkers for notebook 04 (the bias-mode mask)."""

from __future__ import annotations

from . import Verdict, close, verdict


def check_smallest_slope(answer: object) -> Verdict:
    """The smallest ALiBi slope among 12 heads."""
    return verdict(
        close(answer, 2.0**-8, rel=1e-6),
        "the 8 power-of-two slopes end at 2^-8; the 4 extra heads sit between them.",
        "12 is not a power of two: the first 8 slopes are 2^(-8k/8), the last 4 interleave "
        "between them. Look at all of bl.alibi_slopes(12), not only the last one.",
    )


def check_mask_value(answer: object) -> Verdict:
    """M for head 0 of 8 heads, euclidean, between tokens (0, 0) and (3, 4), gain 1."""
    try:
        wrong_sign = close(-float(answer), -2.5, rel=1e-6)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        wrong_sign = False
    hint = (
        "check the sign: the mask is a penalty added to the logits."
        if wrong_sign
        else "M = -slope * distance: head 0's slope comes from bl.alibi_slopes(8), and the "
        "euclidean distance between (0, 0) and (3, 4) is a classic."
    )
    return verdict(close(answer, -2.5, rel=1e-6), "slope 1/2 times distance 5, as a penalty.", hint)


def check_flat_distance(answer: object) -> Verdict:
    """The "flat" distance between two vertically adjacent tokens of a 64 x 64 grid."""
    return verdict(
        close(answer, 64, rel=0, abs_tol=1e-6),
        "one row down is a whole row of tokens later in the flattened order.",
        "number the tokens row by row (i = row * cols + col): how far apart are (r, c) and "
        "(r + 1, c)?",
    )

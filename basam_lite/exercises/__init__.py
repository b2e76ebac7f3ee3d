"""Checkers for the notebooks' exercises: each answers right or wrong, with a hint.

One module per notebook (``nb02``, ``nb03``, ...). A checker takes the learner's answer, prints
a verdict and returns a :class:`Verdict` (truthy when right), so a notebook cell is one line:
``nb03.check_lambda(my_lambda)``. Solutions for teachers live in ``notebooks/solutions/``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .answers import GRADE_LOG

__all__ = ["GRADE_LOG", "Verdict", "check_implementation", "close", "verdict"]


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check."""

    correct: bool
    message: str

    def __bool__(self) -> bool:
        return self.correct

    def __repr__(self) -> str:
        return ("Correct: " if self.correct else "Not yet: ") + self.message


def verdict(correct: bool, right: str, hint: str) -> Verdict:
    """Print and return the verdict: ``right`` when correct, else the ``hint``."""
    v = Verdict(bool(correct), right if correct else hint)
    print(repr(v))
    return v


def close(answer: object, expected: float, rel: float = 1e-3, abs_tol: float = 1e-6) -> bool:
    """Whether a numeric answer is within tolerance of ``expected`` (False if not a number)."""
    try:
        value = float(answer)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return abs(value - expected) <= max(abs_tol, rel * abs(expected))


def check_implementation(
    learner: Callable[..., object],
    reference: Callable[..., object],
    cases: Sequence[tuple[object, ...]],
    rtol: float = 1e-5,
    atol: float = 1e-6,
    right: str = "matches the library on every case.",
    diagnose: Callable[[np.ndarray, np.ndarray], str | None] | None = None,
) -> Verdict:
    """Compare a learner's function with the library's on ``cases`` (argument tuples).

    Arrays and tensors are compared elementwise with ``np.allclose(rtol, atol)``. The verdict
    names the first case that differs, its first mismatching element, and, where ``diagnose``
    recognises a usual mistake from the two arrays (wrong sign, transposed axes, ...), says so.
    """
    for i, args in enumerate(cases):
        try:
            got = np.asarray(_numpy(learner(*args)), dtype=float)
        except Exception as e:  # the learner's code: any error is a verdict, not a crash
            return verdict(False, right, f"case {i} raised {type(e).__name__}: {e}")
        want = np.asarray(_numpy(reference(*args)), dtype=float)
        if got.shape != want.shape:
            return verdict(False, right, f"case {i}: shape {got.shape}, expected {want.shape}.")
        bad = ~np.isclose(got, want, rtol=rtol, atol=atol)
        if bad.any():
            where = tuple(int(j) for j in np.argwhere(bad)[0])
            hint = (
                f"case {i}: at index {where} you give {got[where]:.6g}, expected {want[where]:.6g}"
            )
            why = diagnose(got, want) if diagnose is not None else None
            return verdict(False, right, hint + (f" ({why})" if why else "") + ".")
    return verdict(True, right, "")


def _numpy(x: object) -> object:
    """A tensor as a numpy array (other values unchanged)."""
    detach = getattr(x, "detach", None)
    return detach().cpu().numpy() if callable(detach) else x

"""Checkers for the notebooks' exercises: each answers right or wrong, with a hint.

One module per notebook (``nb02``, ``nb03``, ...). A checker takes the learner's answer, prints
a verdict and returns a :class:`Verdict` (truthy when right), so a notebook cell is one line:
``nb03.check_lambda(my_lambda)``. Solutions for teachers live in ``notebooks/solutions/``.
"""

from __future__ import annotations

from dataclasses import dataclass


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

"""Checkers for the notebooks' exercises: each answers right or wrong, with a hint.

One module per notebook (``nb02``, ``nb03``, ...). A checker takes the learner's answer, prints
a verdict and returns a :class:`Verdict` (truthy when right), so a notebook cell is one line:
``nb03.check_lambda(my_lambda)``. Solutions for teachers live in ``notebooks/solutions/``.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


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
    _log_for_grading(v)
    return v


GRADE_LOG = "BASAM_GRADE_LOG"
"""Environment variable naming the file where ``python -m basam_lite grade`` collects verdicts."""


def _log_for_grading(v: Verdict) -> None:
    """Append ``{"checker": "nbNN.check_x", "correct": ...}`` to $BASAM_GRADE_LOG, when set."""
    path = os.environ.get(GRADE_LOG)
    if not path:
        return
    record = {"checker": _checker_name(), "correct": v.correct, "message": v.message}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _checker_name() -> str:
    """``nbNN.check_x``: the outermost ``check_*`` function of an exercise module on the stack.

    Frames of this module (``verdict``, ``check_implementation``) are skipped, so every checker
    is named without declaring anything; a verdict given outside a checker is named after its
    caller (``module.function``).
    """
    frame = inspect.currentframe()
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    if frame is None:
        return "unknown"
    first, name = frame, None
    while frame is not None and frame.f_globals.get("__name__", "").startswith(__name__ + "."):
        if frame.f_code.co_name.startswith("check"):
            name = f"{frame.f_globals['__name__'].rsplit('.', 1)[-1]}.{frame.f_code.co_name}"
        frame = frame.f_back
    if name is None:
        name = f"{first.f_globals.get('__name__', '?').rsplit('.', 1)[-1]}.{first.f_code.co_name}"
    return name


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

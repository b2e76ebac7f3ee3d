"""Recognise a learner's usual mistake in an "implement it" exercise.

:func:`diagnose_mistakes` builds the ``diagnose`` argument of
:func:`basam_lite.exercises.check_implementation` from a list of named wrong implementations: on
the failing case it names the mistake whose output equals the learner's.
:func:`check_with_mistakes` is that check in one call, and :func:`check_number_function` the
check of a function returning one number whose diagnosis needs the failing case's arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from . import Verdict, check_implementation


def diagnose_mistakes(
    cases: Sequence[tuple[object, ...]],
    reference: Callable[..., object],
    mistakes: Sequence[tuple[str, Callable[..., object]]],
    atol: float = 1e-6,
    rtol: float = 1e-5,
) -> Callable[[np.ndarray, np.ndarray], str | None]:
    """A ``diagnose(got, want)`` that returns the name of the first mistake reproducing ``got``.

    For every case the reference and each mistake are evaluated once, up front; the failing case
    is recognised by its reference output ``want``. A mistake that raises on a case is ignored.
    """
    table: list[tuple[np.ndarray, list[tuple[str, np.ndarray]]]] = []
    for args in cases:
        want = _array(reference(*args))
        outs = []
        for name, fn in mistakes:
            try:
                outs.append((name, _array(fn(*args))))
            except Exception:  # a mistake that cannot run on this case cannot be the answer
                continue
        table.append((want, outs))

    def diagnose(got: np.ndarray, want: np.ndarray) -> str | None:
        for ref, outs in table:
            if ref.shape != want.shape or not np.allclose(ref, want, rtol=rtol, atol=atol):
                continue
            for name, out in outs:
                if out.shape == got.shape and np.allclose(
                    out, got, rtol=rtol, atol=atol, equal_nan=True
                ):
                    return name
        return None

    return diagnose


def check_with_mistakes(
    learner: Callable[..., object],
    reference: Callable[..., object],
    cases: Sequence[tuple[object, ...]],
    mistakes: Sequence[tuple[str, Callable[..., object]]],
    *,
    rtol: float,
    atol: float,
    right: str,
) -> Verdict:
    """:func:`~basam_lite.exercises.check_implementation` of ``learner`` against ``reference``
    on ``cases``, naming the first of ``mistakes`` that reproduces a wrong answer; the same
    ``rtol`` and ``atol`` for the check and for recognising a mistake."""
    return check_implementation(
        learner,
        reference,
        cases,
        rtol=rtol,
        atol=atol,
        right=right,
        diagnose=diagnose_mistakes(cases, reference, mistakes, rtol=rtol, atol=atol),
    )


def check_number_function(
    learner: Callable[..., object],
    reference: Callable[..., object],
    cases: Sequence[tuple[object, ...]],
    diagnose: Callable[[tuple[object, ...], np.ndarray, np.ndarray], str | None],
    *,
    rtol: float,
    atol: float,
    right: str,
) -> Verdict:
    """:func:`~basam_lite.exercises.check_implementation` of a ``learner`` that returns one
    number (taken as ``float``), where ``diagnose(args, got, want)`` also sees the arguments of
    the failing case."""
    last: list[tuple[object, ...]] = []

    def recording(*args: object) -> object:
        last[:] = [args]
        return reference(*args)

    return check_implementation(
        lambda *args: float(learner(*args)),  # type: ignore[arg-type]
        recording,
        cases,
        rtol=rtol,
        atol=atol,
        right=right,
        diagnose=lambda got, want: diagnose(last[0], got, want),
    )


def _array(x: object) -> np.ndarray:
    detach = getattr(x, "detach", None)
    return np.asarray(detach().cpu().numpy() if callable(detach) else x, dtype=float)

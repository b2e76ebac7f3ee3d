"""Notebook 05c's YaRN checker: the formula written out passes, the usual mistakes get their
hint."""

from __future__ import annotations

import math

from basam_lite.exercises import nb05c


def yarn(n, n_train):
    s = max(1.0, n / n_train)
    return (0.1 * math.log(s) + 1.0) ** 2


def test_the_formula_written_out_passes(capsys) -> None:
    assert nb05c.check_yarn_factor(yarn)
    assert "Correct" in capsys.readouterr().out


def test_each_usual_mistake_is_named(capsys) -> None:
    cases = {
        "not squared": lambda n, t: 0.1 * math.log(max(1.0, n / t)) + 1.0,
        "below the training length": lambda n, t: (0.1 * math.log(n / t) + 1.0) ** 2,
        "ratio of sequence lengths": lambda n, t: (
            (0.1 * math.log(max(1.0, math.sqrt(n / t))) + 1.0) ** 2
        ),
        "log base 10": lambda n, t: (0.1 * math.log10(max(1.0, n / t)) + 1.0) ** 2,
    }
    for hint, wrong in cases.items():
        assert not nb05c.check_yarn_factor(wrong)
        assert hint in capsys.readouterr().out, hint


def test_a_failing_or_empty_answer_is_not_correct() -> None:
    assert not nb05c.check_yarn_factor(lambda n, t: None)
    assert not nb05c.check_yarn_factor(lambda n, t: 1 / 0)


def test_family_names() -> None:
    assert nb05c.family_of("tiny-sam2-vanilla") == "SAM 2"
    assert nb05c.family_of("sam2.1_hiera_tiny") == "SAM 2"
    assert nb05c.family_of("tiny-vanilla") == "SAM 1"

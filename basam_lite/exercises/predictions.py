""" "Predict, then run" exercises: the learner writes an expectation before a cell computes it.

The checker compares the prediction (one of a few stated options) with the outcome the notebook
has just computed and explains the outcome either way in words: ``explanation`` never carries the
measured value (the notebook's next cell shows it). A missing prediction is asked for again.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import Verdict, verdict


def check_prediction(
    prediction: object, outcome: str, options: Sequence[str], explanation: str
) -> Verdict:
    """Whether ``prediction`` (a string, case and spaces ignored) is ``outcome``, one of
    ``options``; ``explanation`` (why it comes out that way, in words, without the measured
    value) is printed with either verdict."""
    if outcome not in options:
        raise ValueError(f"outcome {outcome!r} is not one of the options {list(options)}")
    if prediction is None:
        return verdict(False, "", f"write your prediction first, one of {list(options)}.")
    said = str(prediction).strip().lower()
    if said not in [o.lower() for o in options]:
        return verdict(False, "", f"answer with one of {list(options)}, not {prediction!r}.")
    return verdict(
        said == outcome.lower(),
        f"as you predicted: {explanation}",
        f"you predicted {said!r}; it is {outcome!r}: {explanation} Why did you expect otherwise?",
    )

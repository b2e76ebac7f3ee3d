r"""The BA-SAM scaling factor :math:`\lambda`: keeping softmax sharp as the sequence grows.

Softmax over :math:`n` keys flattens as :math:`n` grows: its entropy rises like :math:`\log n`
and the largest weight fades. BA-SAM multiplies the usual logits by

.. math:: \lambda(n) = \frac{\ln n}{\ln n_\text{train}},

so that :math:`\mathrm{logits} = \lambda(n)\, q\cdot k / \sqrt{d} + M` keeps the magnitude it had
at the training length (:math:`\lambda = 1` there, :math:`> 1` for longer, :math:`< 1` for shorter
sequences). It is the normalised form of log-n attention scaling (Chiang & Cholak, ACL 2022).
"""

from __future__ import annotations

import math
from typing import Literal, get_args

ScaleMode = Literal["none", "log_ratio", "official"]
SCALE_MODES: tuple[str, ...] = get_args(ScaleMode)

SAM_TRAIN_KEYS = 4096  # 1024 px / 16 px patches = a 64 x 64 token grid


def check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    """Raise a ``ValueError`` that lists the valid ``choices`` when ``value`` is not one."""
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}: choose one of {', '.join(map(repr, choices))}")


def attention_scale(
    num_keys: int, train_keys: int = SAM_TRAIN_KEYS, mode: ScaleMode = "log_ratio"
) -> float:
    r"""The multiplier :math:`\lambda` applied to :math:`q\cdot k/\sqrt{d}` for a softmax over
    ``num_keys`` keys, for a model trained with ``train_keys`` keys per softmax row.

    Modes:
        ``"none"``: 1.0 (plain SAM).
        ``"log_ratio"``: :math:`\ln n / \ln n_\text{train}` (the paper's rule).
        ``"official"``: the official code's integer rule
        :math:`\log_{n_\text{train}}(L^2 n_\text{train})` with
        :math:`L = \lfloor\sqrt{n / n_\text{train}}\rfloor`. It floors (1536 px gives 1.0) and
        cannot run below the training length (:math:`L = 0`), where it raises ``ValueError``.
    """
    check_choice(mode, SCALE_MODES, "scale mode")
    if not isinstance(num_keys, int) or isinstance(num_keys, bool) or num_keys < 1:
        raise ValueError(f"num_keys must be a positive integer, got {num_keys!r}")
    if not isinstance(train_keys, int) or isinstance(train_keys, bool) or train_keys < 2:
        raise ValueError(
            f"train_keys must be an integer >= 2 (the keys per softmax row at training), "
            f"got {train_keys!r}"
        )
    if mode == "none":
        return 1.0
    if mode == "log_ratio":
        return math.log(num_keys) / math.log(train_keys)
    side_ratio = math.isqrt(num_keys // train_keys) if num_keys >= train_keys else 0
    # isqrt of the floored ratio equals floor(sqrt(num_keys / train_keys)) for integers.
    if side_ratio == 0:
        raise ValueError(
            f"the official BA-SAM scale cannot run with {num_keys} keys: its rule "
            f"log_{train_keys}(L^2 * {train_keys}) uses "
            f"L = floor(sqrt({num_keys}/{train_keys})) = 0, "
            f"and log(0) is a math domain error (the official code crashes when it builds a model "
            f"below its training size). Use mode='log_ratio' for inputs smaller than the "
            f"training resolution."
        )
    return math.log(side_ratio**2 * train_keys) / math.log(train_keys)

r"""Logit scale rules: keeping softmax sharp as the number of keys changes.

Softmax over :math:`n` keys flattens as :math:`n` grows: its entropy rises like :math:`\log n`
and the largest weight fades. BA-SAM multiplies the usual logits by

.. math:: \lambda(n) = \frac{\ln n}{\ln n_\text{train}},

so that :math:`\mathrm{logits} = \lambda(n)\, q\cdot k / \sqrt{d} + M` keeps the magnitude it had
at the training length (:math:`\lambda = 1` there, :math:`> 1` for longer, :math:`< 1` for shorter
sequences). It is the normalised form of log-n attention scaling (Chiang & Cholak, ACL 2022), and
it is exactly Scalable-Softmax (Nakanishi 2025, arXiv 2501.19399), which replaces
:math:`\mathrm{softmax}(z)` by :math:`z_i \mapsto n^{s z_i} / \sum_j n^{s z_j}
= \mathrm{softmax}(s \ln n \cdot z)_i` with a learned :math:`s`, once :math:`s` is fixed to
:math:`1 / \ln n_\text{train}` (the value that gives 1 at the training length;
``tests/test_scale_rules.py`` checks the identity).

Every rule here is such a multiplier of :math:`q\cdot k / \sqrt{d}` alone (never of an additive
term), a function of the keys per softmax row :math:`n`, the keys per row at training
:math:`n_\text{train}` and, for InfoScale, the per-head dimension :math:`d`. :data:`SCALE_RULES`
is the one registry (``BASAMConfig(scale=name)`` takes its names); each rule's function gives
its formula and source:

- ``none``: 1 (plain SAM).
- ``log_ratio``: BA-SAM's :math:`\lambda` (:func:`log_ratio`).
- ``official``: the official BA-SAM code's integer rule (:func:`official_rule`).
- ``yarn``: YaRN's attention temperature (:func:`yarn_temperature`).
- ``jin``: the entropy-aware factor of Jin et al., NeurIPS 2023 (:func:`jin_entropy_scale`).
- ``infoscale``: InfoScale of Li et al. 2025 (:func:`infoscale`).

Each is 1 at :math:`n = n_\text{train}` (the official rule is 1 on the whole band
:math:`n_\text{train} \le n < 4 n_\text{train}`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

ScaleMode = Literal["none", "log_ratio", "official", "yarn", "jin", "infoscale"]
SCALE_MODES: tuple[str, ...] = get_args(ScaleMode)

SAM_TRAIN_KEYS = 4096  # 1024 px / 16 px patches = a 64 x 64 token grid

YARN_SLOPE = 0.1
"""YaRN's recommended coefficient in :math:`\\sqrt{1/t} = 0.1 \\ln s + 1` (Peng et al. 2023,
Eq. 22: fitted on LLaMA 7B-65B, reported to carry over to Llama 2). Used as published; not tuned
here."""


def check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    """Raise a ``ValueError`` that lists the valid ``choices`` when ``value`` is not one."""
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}: choose one of {', '.join(map(repr, choices))}")


def no_scale(num_keys: int, train_keys: int, head_dim: int | None = None) -> float:
    """1.0 at every length: plain SAM."""
    return 1.0


def log_ratio(num_keys: int, train_keys: int, head_dim: int | None = None) -> float:
    r"""BA-SAM's scaling factor :math:`\lambda = \ln n / \ln n_\text{train}`.

    Source: BA-SAM (Song et al., CVPR 2024), the paper's rule. 1 at :math:`n_\text{train}`, below 1
    for fewer keys. Scalable-Softmax (arXiv 2501.19399) with its learned :math:`s` fixed to
    :math:`1/\ln n_\text{train}` is this rule exactly.
    """
    return math.log(num_keys) / math.log(train_keys)


def official_rule(num_keys: int, train_keys: int, head_dim: int | None = None) -> float:
    r"""The official BA-SAM code's integer rule :math:`\log_{n_\text{train}}(L^2 n_\text{train})`
    with :math:`L = \lfloor\sqrt{n / n_\text{train}}\rfloor`.

    It floors (1536 px gives 1.0) and cannot run below the training length (:math:`L = 0`),
    where it raises ``ValueError``.
    """
    # isqrt of the floored ratio equals floor(sqrt(num_keys / train_keys)) for integers.
    side_ratio = math.isqrt(num_keys // train_keys) if num_keys >= train_keys else 0
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


def yarn_temperature(num_keys: int, train_keys: int, head_dim: int | None = None) -> float:
    r"""YaRN's attention temperature: the logit multiplier :math:`1/t = (0.1 \ln s + 1)^2` with
    :math:`s = \max(1, n / n_\text{train})`.

    Source: Peng, Quesnelle, Fan & Shippole, "YaRN: Efficient Context Window Extension of Large
    Language Models" (arXiv 2309.00071), Sec. 3.4: attention weights
    :math:`\mathrm{softmax}(q^\top k / (t \sqrt{|D|}))` with :math:`\sqrt{1/t} = 0.1 \ln s + 1`
    (Eq. 22), :math:`s = L'/L` the ratio of the extended to the original context length
    (Eq. 11). The official code (github.com/jquesnelle/yarn, ``get_mscale``) multiplies q and k
    each by :math:`\sqrt{1/t}` and returns 1 for :math:`s \le 1`, as the paper's Dynamic Scaling
    uses :math:`s = \max(1, l'/L)`: so the rule is 1 at and below the training length.

    On a 2-D token grid, :math:`s` is the ratio of key counts (sequence lengths),
    :math:`n / n_\text{train}`, not of sides: the paper defines :math:`s` as a context-length
    ratio and fits the temperature against it as the correction for the softmax's entropy rise,
    which depends on how many keys a row normalises over. The side ratio is what YaRN's
    RoPE interpolation would stretch per axis; SAM has no RoPE, so only the temperature is
    taken, and its argument is the length the softmax sees.

    The constant 0.1 is the paper's recommended value (:data:`YARN_SLOPE`), fitted on LLaMA by
    lowest perplexity; it is not tuned here.
    """
    s = max(1.0, num_keys / train_keys)
    return (YARN_SLOPE * math.log(s) + 1.0) ** 2


def jin_entropy_scale(num_keys: int, train_keys: int, head_dim: int | None = None) -> float:
    r"""The entropy-aware scaling factor of Jin et al.: the logit multiplier
    :math:`\sqrt{\log_{n_\text{train}} n} = \sqrt{\ln n / \ln n_\text{train}}`.

    Source: Jin, Shen, Li & Xue, "Training-free Diffusion Model Adaptation for Variable-Sized
    Text-to-Image Synthesis" (NeurIPS 2023, arXiv 2306.08645): the attention's
    :math:`1/\sqrt{d}` is replaced by :math:`\sqrt{\log_T N / d}`, with :math:`T` and :math:`N` the
    token counts at training and at inference (the form the public implementations citing the
    paper use, e.g. Lumina-Next's "proportional attention"); relative to :math:`1/\sqrt{d}` that
    is this multiplier. It reduces to the usual :math:`1/\sqrt{d}` at :math:`N = T`
    (multiplier 1), is below 1 for fewer tokens, and is the square root of BA-SAM's
    :math:`\lambda`. No free constant.
    """
    return math.sqrt(math.log(num_keys) / math.log(train_keys))


def infoscale(num_keys: int, train_keys: int, head_dim: int | None = None) -> float:
    r"""InfoScale: the logit multiplier
    :math:`\sqrt{(1 - n^{-2/d}) / (1 - n_\text{train}^{-2/d})}`, :math:`d` the q·k dimension
    per head.

    Source: Li, Kong, Xu, Su, Huang, Zhang & Zhou, "Information Entropy Invariance: Enhancing
    Length Extrapolation in Attention Mechanisms" (arXiv 2501.08570), the training-free scaled
    temperature for dot-product attention, applied on top of :math:`1/\sqrt{d}`; the formula as
    the authors' own implementation computes it (github.com/HT-NEKO/Information-Entropy-Invariance,
    ``model/my_gau_alpha_eval/layer.py``, normalisation ``"InfoScale"``). 1 at the training
    length, below 1 for fewer keys; no free constant (:math:`d` is the model's). Its companion
    CosScale is a scale for cosine (normalised q, k) attention and is set at training; SAM's
    attention is dot-product, so CosScale is not a test-time rule here.
    """
    if head_dim is None:
        raise ValueError(
            "the infoscale rule needs head_dim (the q.k dimension per head): "
            "attention_scale(n, n_train, 'infoscale', head_dim=d)"
        )
    exponent = -2.0 / head_dim
    return math.sqrt((1.0 - num_keys**exponent) / (1.0 - train_keys**exponent))


@dataclass(frozen=True)
class ScaleRule:
    """One logit scale rule.

    Attributes:
        name: the ``BASAMConfig(scale=...)`` value.
        rule: ``(num_keys, train_keys, head_dim) -> multiplier`` of :math:`q\\cdot k/\\sqrt{d}`.
        source: the paper it comes from.
        needs_head_dim: the rule depends on the per-head dimension.
    """

    name: str
    rule: Callable[[int, int, int | None], float]
    source: str
    needs_head_dim: bool = False


SCALE_RULES: dict[str, ScaleRule] = {
    r.name: r
    for r in (
        ScaleRule("none", no_scale, "plain SAM"),
        ScaleRule("log_ratio", log_ratio, "BA-SAM (Song et al., CVPR 2024)"),
        ScaleRule("official", official_rule, "the official BA-SAM code"),
        ScaleRule("yarn", yarn_temperature, "YaRN (Peng et al. 2023, arXiv 2309.00071)"),
        ScaleRule("jin", jin_entropy_scale, "Jin et al., NeurIPS 2023 (arXiv 2306.08645)"),
        ScaleRule("infoscale", infoscale, "InfoScale (Li et al. 2025, arXiv 2501.08570)", True),
    )
}
"""Every scale rule by name, in :data:`SCALE_MODES` order."""


def _check_count(value: object, minimum: int, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{what}, got {value!r}")


def attention_scale(
    num_keys: int,
    train_keys: int = SAM_TRAIN_KEYS,
    mode: ScaleMode = "log_ratio",
    head_dim: int | None = None,
) -> float:
    r"""The multiplier applied to :math:`q\cdot k/\sqrt{d}` for a softmax over ``num_keys`` keys,
    for a model trained with ``train_keys`` keys per softmax row, by the rule ``mode`` (a name in
    :data:`SCALE_RULES`; ``head_dim`` is the per-head q·k dimension, used by ``infoscale`` and
    ignored by the others).

    Raises ``ValueError`` on an unknown mode, a count that is not a positive integer, fewer than
    2 training keys, ``infoscale`` without ``head_dim``, and the official rule below the
    training length.
    """
    check_choice(mode, SCALE_MODES, "scale mode")
    _check_count(num_keys, 1, "num_keys must be a positive integer")
    _check_count(
        train_keys, 2, "train_keys must be an integer >= 2 (the keys per softmax row at training)"
    )
    if head_dim is not None:
        _check_count(head_dim, 1, "head_dim must be a positive integer (the q.k dimension)")
    return SCALE_RULES[mode].rule(num_keys, train_keys, head_dim)

"""The variants: the one list of the ways this project runs a SAM at an input size.

A variant is what a results table's ``variant`` column names: a :class:`BASAMConfig` preset
applied at input size S, or a transform of the input. The tuple :data:`VARIANTS` is the list
(the sweep runs it, plots and tables follow its order); :func:`variant_at` is the one way to put a
model in a variant's state and back.

- ``vanilla``: the stock SAM at size S (position embedding interpolated, nothing patched).
- ``scale``, ``bias``, ``paper``, ``official``: the :class:`BASAMConfig` presets of those names
  at size S (``official`` refuses sizes below the base size).
- ``paper_base`` (this project's own, not the paper's): ``paper`` with the mask's distances in
  base-grid patches (``BASAMConfig.paper_base``), so the mask covers the same share of the image
  at every size.
- ``resize``: the stock SAM at its base size; the caller resizes the image (the information
  available at S, brought to the size the model was built for: what a user would do).

:data:`TEMPERATURE_VARIANTS` adds, one entry per rule, the test-time temperature rules of the
length-extrapolation literature that fit a SAM block without training (``yarn``, ``jin``,
``infoscale``: :mod:`basam_lite.scaling` gives each formula and source). Each is the rule alone
on q.k in the global blocks, where ``scale`` puts lambda. They are selectable by
name (:func:`get_variant`, :func:`variant_at`) but are not in :data:`VARIANTS`, the main job's
list, so the sweep's default rows and the committed results stay as they are.
Scalable-Softmax has no entry: with its learned ``s`` fixed to give 1 at the base size it is
``scale`` (:func:`basam_lite.scaling.log_ratio`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from torch import nn

from .errors import UserError
from .patch import BASAMConfig, apply_basam, detach_patch, reattach_patch
from .resolution import base_size, input_size, set_input_size
from .scaling import ScaleMode

Transform = Literal["none", "resize_to_base"]


@dataclass(frozen=True)
class Variant:
    """One way to run a model at an input size.

    Attributes:
        name: the value in tables' ``variant`` column.
        label: legend and table label.
        config: the BA-SAM preset applied at the input size; None applies no patch (the stock
            model: ``vanilla`` at the size, ``resize`` at the base size).
        transform: ``"none"`` (the model runs at the size) or ``"resize_to_base"`` (the model
            runs at its base size; the caller resizes the image).
        own: this project's variant, not one of the paper's.
        note: one line on what it is.
    """

    name: str
    label: str
    config: BASAMConfig | None
    transform: Transform = "none"
    own: bool = False
    note: str = ""


VARIANTS: tuple[Variant, ...] = (
    Variant(
        "vanilla",
        "vanilla (interpolated positions)",
        None,
        note="the stock SAM at the size: position embedding resampled, attention unchanged",
    ),
    Variant(
        "scale",
        "scale (lambda only)",
        BASAMConfig.preset("scale"),
        note="the scaling factor lambda = ln n / ln n_train in the global blocks",
    ),
    Variant(
        "bias",
        "bias (2-D ALiBi only)",
        BASAMConfig.preset("bias"),
        note="the euclidean 2-D ALiBi mask in the global blocks",
    ),
    Variant(
        "paper",
        "paper (scale + bias)",
        BASAMConfig.preset("paper"),
        note="the paper's reading: lambda and the 2-D ALiBi mask in the global blocks",
    ),
    Variant(
        "paper_base",
        "paper, base-grid mask (this project's)",
        BASAMConfig.preset("paper_base"),
        own=True,
        note="this project's variant: paper with the mask's distances in base-grid patches, so "
        "it covers the same share of the image at every size",
    ),
    Variant(
        "official",
        "official code",
        BASAMConfig.preset("official"),
        note="the official code: integer scale, learnable rel-pos coefficient, no positions",
    ),
    Variant(
        "resize",
        "resize to base",
        None,
        transform="resize_to_base",
        own=True,
        note="the image resized to the model's base size, the stock model run there",
    ),
)
"""The main job's variants (the sweep's default rows), in plot and table order."""


def _rule(name: ScaleMode, label: str, note: str) -> Variant:
    """A temperature-rule variant: the scale mode ``name`` alone in the global blocks."""
    return Variant(name, label, BASAMConfig(scale=name, name=name), note=note)


TEMPERATURE_VARIANTS: tuple[Variant, ...] = (
    _rule(
        "yarn",
        "YaRN temperature",
        "YaRN's attention temperature (0.1 ln s + 1)^2, s = max(1, n / n_train), in the global "
        "blocks (Peng et al. 2023)",
    ),
    _rule(
        "jin",
        "Jin et al. entropy scale",
        "sqrt(ln n / ln n_train) in the global blocks (Jin et al., NeurIPS 2023)",
    ),
    _rule(
        "infoscale",
        "InfoScale",
        "sqrt((1 - n^(-2/d)) / (1 - n_train^(-2/d))) in the global blocks (Li et al. 2025)",
    ),
)
"""The test-time temperature rules beside lambda (issue 28), selectable by name; not in the
main job's default list."""


def variant_names() -> tuple[str, ...]:
    """The names of :data:`VARIANTS` (the main job's list), in order."""
    return tuple(v.name for v in VARIANTS)


def known_variant_names() -> tuple[str, ...]:
    """Every name :func:`get_variant` takes: :data:`VARIANTS`, then
    :data:`TEMPERATURE_VARIANTS`."""
    return tuple(v.name for v in (*VARIANTS, *TEMPERATURE_VARIANTS))


def get_variant(name: str) -> Variant:
    """The variant called ``name`` (the main list or a temperature rule); a
    :class:`~basam_lite.errors.UserError` naming the known variants otherwise."""
    for v in (*VARIANTS, *TEMPERATURE_VARIANTS):
        if v.name == name:
            return v
    raise UserError(f"unknown variant {name!r}: choose one of {', '.join(known_variant_names())}")


def as_variant(variant: str | Variant | BASAMConfig) -> Variant:
    """A variant from its name, itself, or a config (a variant named after the config)."""
    if isinstance(variant, Variant):
        return variant
    if isinstance(variant, BASAMConfig):
        return Variant(variant.name, variant.name, variant)
    if isinstance(variant, str):
        return get_variant(variant)
    raise TypeError(
        f"variant must be a variant name, a Variant or a BASAMConfig, got {type(variant).__name__}"
    )


@contextmanager
def variant_at(
    sam: nn.Module, variant: str | Variant | BASAMConfig, size: int | tuple[int, int]
) -> Iterator[nn.Module]:
    """``sam`` running ``variant`` at input ``size`` inside the ``with`` block; afterwards its
    previous patch (learned parameters included) and input size are back exactly.

    A config is applied as it is (at ``size``). Raises ``ValueError`` where the variant cannot
    run at ``size`` (``official`` below the base size), with the model already restored.
    """
    v = as_variant(variant)
    previous_size = input_size(sam)
    previous_patch = detach_patch(sam)
    try:
        if v.transform == "resize_to_base":
            set_input_size(sam, base_size(sam))
        else:
            set_input_size(sam, size)
        if v.config is not None:
            apply_basam(sam, v.config)
        yield sam
    finally:
        detach_patch(sam)
        set_input_size(sam, previous_size)
        reattach_patch(sam, previous_patch)

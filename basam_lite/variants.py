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
"""Every variant, in plot and table order."""


def variant_names() -> tuple[str, ...]:
    """The names of :data:`VARIANTS`, in order."""
    return tuple(v.name for v in VARIANTS)


def get_variant(name: str) -> Variant:
    """The variant called ``name``; a :class:`~basam_lite.errors.UserError` naming the known
    variants otherwise."""
    for v in VARIANTS:
        if v.name == name:
            return v
    raise UserError(f"unknown variant {name!r}: choose one of {', '.join(variant_names())}")


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

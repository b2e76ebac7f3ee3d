"""The SAM family behind one interface: the registry of family adapters and the dispatch.

:func:`adapter_for` turns what a user holds (a model, its image encoder, its predictor) into the
:class:`~basam_lite.encoders.base.EncoderAdapter` of its family. A family's adapter module is
imported only when a target's class comes from that family's package, so an optional family
(``sam2``, ``transformers``, ``mobile_sam``) is never needed for the bundled default.

A new family is one entry in :data:`FAMILIES` (and one extra in ``pyproject.toml``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from ..errors import UserError
from .base import (
    AttentionBlock,
    BlockGrids,
    EncoderAdapter,
    Grid,
    PositionTerms,
    Predictor,
)


@dataclass(frozen=True)
class Family:
    """One member of the SAM family as the registry knows it.

    Attributes:
        name: the registry key (``EncoderAdapter.family``).
        packages: top-level import names whose classes the adapter takes (a target is offered
            to the adapter when a class in its MRO comes from one of them).
        adapter: ``"module:Class"`` of the adapter, imported on first use.
        extra: the ``pip install basam-lite[extra]`` that brings the family's package (None:
            a core dependency).
        title: the family in words, for messages and tables.
    """

    name: str
    packages: tuple[str, ...]
    adapter: str
    extra: str | None
    title: str


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "segment_anything",
            ("segment_anything",),
            "basam_lite.encoders.sam1:SegmentAnythingAdapter",
            None,
            "segment_anything SAM (ViT-B/L/H, SAM-HQ's encoder, MedSAM)",
        ),
        Family("sam2", ("sam2",), "basam_lite.encoders.sam2:Sam2Adapter", "sam2", "SAM 2 (Hiera)"),
        Family(
            "hf",
            ("transformers",),
            "basam_lite.encoders.hf:HFSamAdapter",
            "hf",
            "Hugging Face transformers SamModel (SAM ViT-B/L/H)",
        ),
        Family(
            "mobilesam",
            ("mobile_sam",),
            "basam_lite.encoders.mobilesam:MobileSamAdapter",
            "mobilesam",
            "MobileSAM (TinyViT, the mobile_sam package)",
        ),
    )
}


def family(name: str) -> Family:
    """The registered family ``name`` (UserError naming the registered ones otherwise)."""
    if name not in FAMILIES:
        raise UserError(f"unknown model family {name!r}: choose one of {', '.join(FAMILIES)}")
    return FAMILIES[name]


def require(name: str) -> None:
    """Import the packages of family ``name``, or a UserError naming the extra to install."""
    fam = family(name)
    # The adapter's module imports its family's packages its own way (mobile_sam: with timm's
    # registry restored), so it is imported rather than the bare packages.
    try:
        importlib.import_module(fam.adapter.partition(":")[0])
        for package in fam.packages:  # already imported by the adapter: a lookup, unless gone
            importlib.import_module(package)
    except ImportError as e:
        hint = f"pip install 'basam-lite[{fam.extra}]'" if fam.extra else "reinstall basam-lite"
        needs = " and ".join(repr(p) for p in fam.packages)
        raise UserError(
            f"the {fam.title} family needs the package {needs}, which cannot be imported "
            f"({e}): {hint}"
        ) from None


def adapter_class(name: str) -> type[EncoderAdapter]:
    """The adapter class of family ``name`` (its module imported now)."""
    require(name)
    module, _, cls = family(name).adapter.partition(":")
    return getattr(importlib.import_module(module), cls)


def _roots(target: object) -> set[str]:
    return {c.__module__.partition(".")[0] for c in type(target).__mro__}


def adapter_for(target: object) -> EncoderAdapter:
    """The adapter of ``target``'s family, bound to it (a model, an image encoder, a family's
    predictor, or an adapter, returned as is). TypeError for anything no family takes."""
    if isinstance(target, EncoderAdapter):
        return target
    roots = _roots(target)
    for fam in FAMILIES.values():
        if roots & set(fam.packages):
            cls = adapter_class(fam.name)
            if cls.accepts(target):
                return cls(target)
    raise TypeError(
        f"expected a SAM-family model, image encoder or predictor, got {type(target).__name__}; "
        f"supported families: {', '.join(f.title for f in FAMILIES.values())} "
        f"(build one with basam_lite.build_sam(...))"
    )


def global_blocks(model: object) -> list[int]:
    """Indexes of the global-attention blocks of a model, encoder or predictor of any family:
    the blocks whose keys per row grow with the input size. The project's one answer to "which
    blocks are global"."""
    return adapter_for(model).global_blocks()


__all__ = [
    "FAMILIES",
    "AttentionBlock",
    "BlockGrids",
    "EncoderAdapter",
    "Family",
    "Grid",
    "PositionTerms",
    "Predictor",
    "adapter_class",
    "adapter_for",
    "family",
    "global_blocks",
    "require",
]

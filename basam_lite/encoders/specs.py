"""The one registry of model specs: each named model's family and architecture facts, read off
the model itself (built on the meta device: no weights, no memory), never typed again.

Use :func:`model_spec` for a named model (``"vit_b"``, ``"tiny"``, ...) and :func:`spec_of` for a
model in hand. A new model is one entry in :data:`MODELS`.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UserError
from . import adapter_class, adapter_for


@dataclass(frozen=True)
class ModelSpec:
    """What the project needs to know about a model, read off it.

    Attributes:
        name: the model's name (``"custom"`` for :func:`spec_of` without one).
        family: its family's registry key.
        base_hw: (height, width) in px it was built and trained for.
        patch_size: px per token of its first token grid.
        heads: attention heads of each block, in forward order.
        dims: channel width of each block.
        windows: window side of each block in key tokens (0: global).
        global_blocks: indexes of the global blocks.
        base_keys: keys per softmax row of each block at ``base_hw``.
        checkpoint_format: how its checkpoints are stored (the adapter's words).
        size_rule: the input sizes its family can run at, in words.
    """

    name: str
    family: str
    base_hw: tuple[int, int]
    patch_size: int
    heads: tuple[int, ...]
    dims: tuple[int, ...]
    windows: tuple[int, ...]
    global_blocks: tuple[int, ...]
    base_keys: tuple[int, ...]
    checkpoint_format: str
    size_rule: str

    @property
    def base_side(self) -> int:
        """The longer side of the base size in px (1024 for SAM)."""
        return max(self.base_hw)

    @property
    def base_grid(self) -> tuple[int, int]:
        """The first token grid at the base size."""
        return self.base_hw[0] // self.patch_size, self.base_hw[1] // self.patch_size

    @property
    def depth(self) -> int:
        """Number of attention blocks."""
        return len(self.heads)

    def global_heads(self) -> int:
        """Heads of the (first) global block, else of the last block."""
        return self.heads[self.global_blocks[0] if self.global_blocks else -1]

    def global_dim(self) -> int:
        """Width of the (first) global block, else of the last block."""
        return self.dims[self.global_blocks[0] if self.global_blocks else -1]


@dataclass(frozen=True)
class ModelEntry:
    """A named model.

    Attributes:
        name: what :func:`basam_lite.build_sam` and ``sweep --model`` take.
        family: its family's registry key.
        build: ``"module:function"``: ``function(name)`` builds the architecture with random
            weights (also called on the meta device by :func:`model_spec`).
        load: ``"module:function"``: ``function(name, checkpoint)`` -> the model in eval mode
            with the weights of a local ``checkpoint`` file (read safely, never unpickled),
            or None where the family has no loader yet (then only random weights). The
            ``segment_anything`` models load through :func:`basam_lite.build_sam` itself.
        arch: the architecture name ``build`` and ``load`` receive (default: ``name``), for a
            model that is one architecture with its own weights.
        bundled: its weights ship with the package (``data/checkpoints/NAME.pt``, with a model
            card beside it; written by ``python -m basam_lite train ... --write-bundled``).
    """

    name: str
    family: str
    build: str
    load: str | None = None
    arch: str | None = None
    bundled: bool = False

    @property
    def architecture(self) -> str:
        """The name the builder and the loader receive."""
        return self.arch or self.name


_SAM2 = "basam_lite.encoders.sam2_models"
_SAM2_SIZES = ("tiny", "small", "base_plus", "large")
_SAM1_RANDOM = "basam_lite.encoders.sam1_build:build_random"
_BUNDLED_VARIANTS = ("vanilla", "basam")
"""The bundled tiny checkpoints of each family: trained plain, and trained with BA-SAM active."""

MODELS: dict[str, ModelEntry] = {
    e.name: e
    for e in (
        *(
            ModelEntry(name, "segment_anything", "basam_lite.encoders.sam1_build:build_random")
            for name in ("vit_b", "vit_l", "vit_h", "tiny")
        ),
        *(
            ModelEntry(f"tiny-{v}", "segment_anything", _SAM1_RANDOM, arch="tiny", bundled=True)
            for v in _BUNDLED_VARIANTS
        ),
        *(
            ModelEntry(name, "sam2", f"{_SAM2}:build_random", f"{_SAM2}:build_sam2")
            for name in ("sam2-tiny", *(f"sam2.1_hiera_{v}" for v in _SAM2_SIZES))
        ),
        *(
            ModelEntry(
                f"tiny-sam2-{v}",
                "sam2",
                f"{_SAM2}:build_random",
                f"{_SAM2}:build_sam2",
                arch="sam2-tiny",
                bundled=True,
            )
            for v in _BUNDLED_VARIANTS
        ),
        *(
            ModelEntry(
                f"hf-{a}",
                "hf",
                "basam_lite.encoders.hf:build_random",
                "basam_lite.encoders.hf:build",
            )
            for a in ("tiny", "vit_b", "vit_l", "vit_h")
        ),
        *(
            ModelEntry(
                name,
                "mobilesam",
                "basam_lite.encoders.mobilesam_build:build_random",
                "basam_lite.encoders.mobilesam_build:load_checkpoint",
            )
            for name in ("mobilesam", "mobilesam-tiny")
        ),
    )
}


def bundled_names() -> tuple[str, ...]:
    """The models whose weights ship with the package, in registry order."""
    return tuple(n for n, e in MODELS.items() if e.bundled)


def _function(path: str):
    module, _, function = path.partition(":")
    return getattr(importlib.import_module(module), function)


def load_model(name: str, checkpoint: str | None = None, seed: int = 0) -> nn.Module:
    """A registered model in eval mode: the weights of ``checkpoint`` (a local file) through the
    family's loader, or random weights (seeded, ``seed``) without one."""
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")
    entry = MODELS[name]
    adapter_class(entry.family)  # a missing optional package: one line naming the extra
    if checkpoint is not None:
        if entry.load is None:
            raise UserError(f"{name} has no checkpoint loader yet: leave the checkpoint out")
        return _function(entry.load)(entry.architecture, checkpoint).eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _function(entry.build)(entry.architecture).eval()


def spec_of(model: object, name: str = "custom") -> ModelSpec:
    """The spec of a model, encoder or predictor in hand (any registered family)."""
    adapter = adapter_for(model)
    blocks = adapter.attention_blocks()
    base = adapter.base_size()
    return ModelSpec(
        name=name,
        family=adapter.family,
        base_hw=tuple(base),  # type: ignore[arg-type]
        patch_size=adapter.patch_size(),
        heads=tuple(b.heads for b in blocks),
        dims=tuple(b.dim for b in blocks),
        windows=tuple(b.window for b in blocks),
        global_blocks=tuple(b.index for b in blocks if b.is_global),
        base_keys=tuple(adapter.block_grids(b.index, base).keys_per_row for b in blocks),
        checkpoint_format=adapter.checkpoint_format,
        size_rule=adapter.size_rule(),
    )


@functools.cache
def _meta_model(name: str) -> nn.Module:
    """A weightless (meta-device) build of the registered model ``name`` (cached)."""
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")
    entry = MODELS[name]
    adapter_class(entry.family)  # a missing optional package: one line naming the extra
    with torch.device("meta"):
        return _function(entry.build)(entry.architecture)


@functools.cache
def meta_model(name: str) -> nn.Module:
    """A weightless (meta-device) build of the registered model ``name``, cached: for reading
    its structure and parameter count, never for running it."""
    return _meta_model(name)


def model_spec(name: str) -> ModelSpec:
    """The spec of the registered model ``name``, read off a weightless (meta-device) build."""
    return spec_of(_meta_model(name), name)


def check_model_size(name: str, size: object) -> tuple[int, int]:
    """``size`` as the (height, width) the registered model ``name`` runs at, or its family's
    one-line :class:`~basam_lite.errors.UserError` (checked on a weightless build)."""
    return adapter_for(_meta_model(name)).check_size(size)

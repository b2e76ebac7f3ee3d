"""apply_basam and remove_basam: BA-SAM swapped into the image encoder of any SAM-family model.

Patching gives every attention module of the encoder its family's patched subclass (the
adapter's :meth:`~basam_lite.encoders.EncoderAdapter.attention_class`, one fused-kernel path for
all variants through :func:`basam_lite.encoders.attend.basam_attend`) and a record
(:mod:`basam_lite.patch_state`), and keeps every weight. Which blocks get the scale and the mask
is the config's ``blocks``; the others run the same fused path with the family's plain attention.
Zero-shot presets add no parameter and no state_dict key. Nothing here knows a family.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .attention import AttentionPath
from .config import BIAS_MODES, BLOCK_CHOICES, BASAMConfig, BiasMode, Blocks
from .encoders import EncoderAdapter, adapter_for
from .masks import resolve_slopes
from .patch_state import (
    BlockPatch,
    attach_block,
    block_patch,
    detach_block,
    encoder_patch,
    reattach_block,
    set_block_parameter,
)
from .resolution import check_scale_at, set_encoder_config

__all__ = [
    "BIAS_MODES",
    "BLOCK_CHOICES",
    "BASAMConfig",
    "BiasMode",
    "Blocks",
    "DetachedPatch",
    "apply_basam",
    "detach_patch",
    "image_encoder_of",
    "is_patched",
    "patch_config",
    "reattach_patch",
    "remove_basam",
    "set_attention_path",
]


def image_encoder_of(model: object) -> nn.Module:
    """The image encoder of a model, encoder or predictor of any family (TypeError otherwise)."""
    return adapter_for(model).encoder


def is_patched(model: object) -> bool:
    """Whether :func:`apply_basam` is active on ``model``."""
    return patch_config(model) is not None


def patch_config(model: object) -> BASAMConfig | None:
    """The config :func:`apply_basam` applied to ``model`` (None when it is not patched)."""
    record = encoder_patch(image_encoder_of(model))
    return None if record is None else record.config


def apply_basam(model: nn.Module, config: BASAMConfig | None = None) -> nn.Module:
    """Patch a model or image encoder of any registered family in place with ``config``
    (default: paper preset) and return it. Applying again replaces the previous patch."""
    config = BASAMConfig.paper() if config is None else config
    if not isinstance(config, BASAMConfig):
        raise TypeError(f"config must be a BASAMConfig, got {type(config).__name__}")
    adapter = adapter_for(model)
    if is_patched(adapter):
        remove_basam(adapter)
    base = adapter.base_size()
    # Fail now, not at the first forward, when the model is already set below its base size.
    check_scale_at(adapter, config, adapter.input_size())
    for block in adapter.attention_blocks():
        attn = block.attn
        grids = adapter.block_grids(block.index, base)
        active = config.blocks == "all" or block.is_global
        train_keys = grids.keys_per_row
        if block.is_global:
            train_keys = config.train_keys or train_keys
        device = next(attn.parameters()).device
        slopes = None
        if config.bias == "alibi2d":
            slopes = resolve_slopes(block.heads, config.slopes)
        record = BlockPatch(
            config, block.is_global, active, train_keys, slopes, base_grid=tuple(grids.key)
        )
        if active and config.learnable_gain:
            gain = nn.Parameter(torch.tensor(float(config.gain), device=device))
            set_block_parameter(attn, "gain", gain)
        tables = adapter.position_tables(block)
        if active and config.bias == "official_relpos" and tables:
            coef = torch.tensor(float(config.rel_pos_coef_init), device=device)
            set_block_parameter(attn, "rel_pos_coef", nn.Parameter(coef))
        if config.drop_rel_pos and tables:
            record.saved_position = {name: t.detach().clone() for name, t in tables.items()}
            with torch.no_grad():
                for t in tables.values():
                    t.zero_()
        attach_block(attn, record, adapter.attention_class(block))
    set_encoder_config(adapter, config)
    return model


def set_attention_path(model: nn.Module, path: AttentionPath) -> nn.Module:
    """Switch a patched model's attention path (:mod:`basam_lite.attention`) in place, keeping
    the rest of its patch, learned gains and coefficients included; returns the model."""
    adapter = adapter_for(model)
    if not is_patched(adapter):
        raise ValueError(
            "the model has no BA-SAM patch to switch; apply one with "
            "apply_basam(model, config.with_(path=...))"
        )
    config = patch_config(adapter).with_(path=path)  # type: ignore[union-attr]
    for block in adapter.attention_blocks():
        block_patch(block.attn).config = config  # type: ignore[union-attr]
    set_encoder_config(adapter, config)
    return model


@dataclass(frozen=True)
class DetachedPatch:
    """A patch taken off a model by :func:`detach_patch`, to put back with
    :func:`reattach_patch`: each block's record and parameters (the same objects) and the
    position tables it ran with."""

    config: BASAMConfig
    blocks: tuple[tuple[BlockPatch, dict[str, nn.Parameter], dict[str, Tensor] | None], ...]


def _unpatch_block(
    adapter: EncoderAdapter, block: object
) -> tuple[BlockPatch, dict[str, nn.Parameter], dict[str, Tensor] | None] | None:
    """Unpatch one attention block; returns its record, parameters and patched position
    tables."""
    attn = block.attn  # type: ignore[attr-defined]
    record, params = detach_block(attn)
    if record is None:
        return None
    patched_tables = None
    if record.saved_position is not None:
        tables = adapter.position_tables(block)  # type: ignore[arg-type]
        patched_tables = {name: t.detach().clone() for name, t in tables.items()}
        with torch.no_grad():
            for name, t in tables.items():
                t.copy_(record.saved_position[name])
    return record, params, patched_tables


def detach_patch(model: nn.Module) -> DetachedPatch | None:
    """Remove the patch of ``model`` (as :func:`remove_basam`) and return it; None when the
    model has none."""
    adapter = adapter_for(model)
    config = patch_config(adapter)
    if config is None:
        return None
    blocks = tuple(_unpatch_block(adapter, block) for block in adapter.attention_blocks())
    set_encoder_config(adapter, None)
    return DetachedPatch(config, blocks)  # type: ignore[arg-type]


def reattach_patch(model: nn.Module, detached: DetachedPatch | None) -> nn.Module:
    """Put back a patch from :func:`detach_patch` exactly, same parameter objects included
    (None: leave ``model`` as it is)."""
    if detached is None:
        return model
    adapter = adapter_for(model)
    if is_patched(adapter):
        remove_basam(adapter)
    for block, (record, params, patched_tables) in zip(
        adapter.attention_blocks(), detached.blocks, strict=True
    ):
        if patched_tables is not None:
            tables = adapter.position_tables(block)
            record.saved_position = {name: t.detach().clone() for name, t in tables.items()}
            with torch.no_grad():
                for name, t in tables.items():
                    t.copy_(patched_tables[name])
        reattach_block(block.attn, record, params, adapter.attention_class(block))
    set_encoder_config(adapter, detached.config)
    return model


def remove_basam(model: nn.Module) -> nn.Module:
    """Undo :func:`apply_basam` exactly: original classes, position tables and parameters."""
    adapter = adapter_for(model)
    if not is_patched(adapter):
        return model
    for block in adapter.attention_blocks():
        _unpatch_block(adapter, block)
    set_encoder_config(adapter, None)
    return model

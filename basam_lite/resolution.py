"""Running a SAM-family model at any input size: position embeddings, prompt encoder,
pre/post-processing, through the family's adapter (:mod:`basam_lite.encoders`).

A model is built for one input (SAM: 1024 px square, a 64 x 64 token grid). :func:`set_input_size`
moves a model (and a predictor on it) to another size the family allows (:meth:`EncoderAdapter.
check_size`; ``segment_anything``: any multiple of 16 px, square or not): the family resamples
its position embeddings (SAM 1: the absolute table, bicubically at every forward, the parameter
never modified, so returning to the base size is exact and fine-tuning at another size trains the
original table), the prompt encoder's grids follow, and pre/post-processing pad and crop to the
new size.

Padding policy: sizes the family cannot run at are refused in one line naming the nearest valid
sizes, because a silent crop or pad would shift every prompt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .embedding import resample_pos_embed
from .encoders import EncoderAdapter, adapter_for
from .patch_state import drop_encoder_record_if_unneeded, encoder_patch, encoder_record
from .sizes import Size, parse_size

if TYPE_CHECKING:
    from .config import BASAMConfig

__all__ = [
    "Size",
    "base_grid",
    "base_size",
    "check_scale_at",
    "encoder_grid",
    "encoder_input_size",
    "input_size",
    "parse_size",
    "patch_size",
    "resample_pos_embed",
    "restore_input_size",
    "set_encoder_config",
    "set_input_size",
]


def patch_size(model: object) -> int:
    """Pixels per token of the first token grid of a model or encoder of any family."""
    return adapter_for(model).patch_size()


def base_size(model: object) -> tuple[int, int]:
    """The (height, width) the encoder was built for."""
    return adapter_for(model).base_size()


def base_grid(model: object) -> tuple[int, int]:
    """The first token grid at the base size (SAM 1: the grid it was built and trained for)."""
    adapter = adapter_for(model)
    (h, w), p = adapter.base_size(), adapter.patch_size()
    return h // p, w // p


def encoder_input_size(model: object) -> tuple[int, int]:
    """The (height, width) the model or encoder currently runs at."""
    return adapter_for(model).input_size()


def encoder_grid(model: object) -> tuple[int, int]:
    """The first token grid the model or encoder currently runs at."""
    adapter = adapter_for(model)
    (h, w), p = adapter.input_size(), adapter.patch_size()
    return h // p, w // p


def input_size(model: object) -> tuple[int, int]:
    """The (height, width) ``model`` currently runs at."""
    return adapter_for(model).input_size()


def check_scale_at(adapter: EncoderAdapter, config: BASAMConfig, hw: tuple[int, int]) -> None:
    """Refuse now, not at the first forward, an ``"official"`` scale at a size where a global
    block would see fewer keys than at training (the official rule is undefined there)."""
    if config.scale != "official":
        return
    from .scaling import attention_scale

    base = adapter.base_size()
    for index in adapter.global_blocks():
        train_keys = config.train_keys or adapter.block_grids(index, base).keys_per_row
        attention_scale(adapter.block_grids(index, hw).keys_per_row, train_keys, "official")


def set_encoder_config(model: object, config: BASAMConfig | None) -> None:
    """Record the BA-SAM config the encoder runs with (None: unpatched); used by
    :func:`basam_lite.apply_basam` and :func:`basam_lite.remove_basam`."""
    adapter = adapter_for(model)
    encoder = adapter.encoder
    if config is None and encoder_patch(encoder) is None:
        return
    encoder_record(encoder, adapter.base_size(), adapter.encoder_class()).config = config
    drop_encoder_record_if_unneeded(encoder)


def set_input_size(target: object, size: Size) -> object:
    """Make a model (or a family's predictor on it) run at ``size``: an int or (height, width)
    the family allows (a UserError in one line otherwise).

    Returns ``target``. Calling it with the size the model already runs at changes nothing;
    returning to the base size restores the stock behaviour exactly.
    """
    adapter = adapter_for(target)
    if adapter.model is None:
        raise TypeError(
            f"set_input_size takes a whole model or its predictor (the prompt encoder and "
            f"pre/post-processing follow the size), got the image encoder "
            f"{type(target).__name__}"
        )
    hw = adapter.check_size(size)
    if hw != adapter.input_size():
        record = encoder_patch(adapter.encoder)
        config = None if record is None else record.config
        if config is not None:
            check_scale_at(adapter, config, hw)
        adapter.resize(hw)
    if adapter.predictor is not None:
        adapter.refresh_predictor()
    return target


def restore_input_size(model: object) -> object:
    """Return ``model`` to the size it was built for."""
    set_input_size(model, adapter_for(model).base_size())
    return model

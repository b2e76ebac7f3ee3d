"""Running a SAM at any input size: position embedding, prompt encoder, pre/post-processing.

SAM is built for one square input (1024 px, a 64 x 64 token grid). :func:`set_input_size` moves
a ``Sam`` (and a predictor on it) to another size, square or not: the absolute position
embedding is resampled bicubically from the checkpoint's grid at every forward (the parameter is
never modified, so returning to the base size is exact and fine-tuning at another size trains
the original table), the prompt encoder's grids follow, and pre/post-processing pad and crop to
the new size. SAM's rel-pos tables are already interpolated by ``segment_anything`` itself.

Padding policy: sizes must be multiples of the patch size (16 px); anything else is refused with
the nearest valid sizes, because a silent crop or pad would shift every prompt.
"""

from __future__ import annotations

import numbers
import types
from collections.abc import Sequence

import numpy as np
import torch.nn.functional as F
from segment_anything.modeling import ImageEncoderViT, Sam
from torch import Tensor

from .errors import UserError

Size = int | Sequence[int]


def patch_size(encoder: ImageEncoderViT) -> int:
    return int(encoder.patch_embed.proj.stride[0])


def base_size(encoder: ImageEncoderViT) -> tuple[int, int]:
    """The (height, width) the encoder was built for, recorded on first use."""
    if getattr(encoder, "basam_base_hw", None) is None:
        if encoder.pos_embed is not None:
            p = patch_size(encoder)
            encoder.basam_base_hw = (encoder.pos_embed.shape[1] * p, encoder.pos_embed.shape[2] * p)
        else:
            encoder.basam_base_hw = (encoder.img_size, encoder.img_size)
    return encoder.basam_base_hw


def base_grid(encoder: ImageEncoderViT) -> tuple[int, int]:
    """The token grid the encoder was built (and trained) for."""
    h, w = base_size(encoder)
    p = patch_size(encoder)
    return h // p, w // p


def input_size(sam: Sam) -> tuple[int, int]:
    """The (height, width) ``sam`` currently runs at."""
    enc = sam.image_encoder
    hw = getattr(enc, "basam_input_hw", None)
    return tuple(hw) if hw is not None else base_size(enc)  # type: ignore[return-value]


def _pixels(value: object, size: object) -> int:
    """One side in pixels: a Python or numpy integer; floats and bools are refused."""
    if isinstance(value, (bool, np.bool_)):
        raise UserError(f"input size {size!r} contains a bool: give whole pixels as integers")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        example = f" such as {round(value)}" if np.isfinite(value) else ""
        raise UserError(
            f"input size {size!r} contains the float {value!r}: give whole pixels as integers"
            f"{example}, not floats (int(...) or round(...) first)"
        )
    raise UserError(f"size must be an int or (height, width) of ints, got {size!r}")


def parse_size(size: Size, patch: int = 16) -> tuple[int, int]:
    """``size`` (an int or (height, width); Python or numpy integers) as a checked pair of
    multiples of ``patch``. Floats, bools and anything else are refused with a UserError."""
    if isinstance(size, np.ndarray) and size.ndim == 0:
        size = size.item()
    if isinstance(size, (numbers.Number, np.bool_)):
        side = _pixels(size, size)
        hw: tuple[int, ...] = (side, side)
    elif isinstance(size, (str, bytes)) or not isinstance(size, (Sequence, np.ndarray)):
        raise UserError(f"size must be an int or (height, width) of ints, got {size!r}")
    else:
        if len(size) != 2:
            raise UserError(f"size must be an int or (height, width) of ints, got {size!r}")
        hw = tuple(_pixels(s, size) for s in size)
    for s in hw:
        if s < patch:
            raise UserError(f"input size {s} is smaller than one {patch} px patch")
        if s % patch:
            lo, hi = s // patch * patch, (s // patch + 1) * patch
            raise UserError(
                f"input size {s} is not a multiple of the patch size {patch}: use {lo} or {hi} "
                f"(basam_lite refuses to pad or crop silently, since that would shift prompts)"
            )
    return int(hw[0]), int(hw[1])


def resample_pos_embed(pos_embed: Tensor, grid_hw: tuple[int, int]) -> Tensor:
    """``[1, gh, gw, C]`` -> ``[1, rows, cols, C]``, bicubic (identity at the same grid)."""
    if tuple(pos_embed.shape[1:3]) == tuple(grid_hw):
        return pos_embed
    pe = pos_embed.permute(0, 3, 1, 2)
    pe = F.interpolate(pe, size=grid_hw, mode="bicubic", align_corners=False)
    return pe.permute(0, 2, 3, 1)


def dynamic_encoder_forward(self: ImageEncoderViT, x: Tensor) -> Tensor:
    """``ImageEncoderViT.forward`` for any input size that is a multiple of the patch size."""
    p = patch_size(self)
    h, w = x.shape[-2:]
    if h % p or w % p:
        raise ValueError(
            f"image encoder input {h}x{w} is not a multiple of the patch size {p}: pad or resize "
            f"it first (basam_lite.set_input_size and Sam.preprocess do this for you)"
        )
    x = self.patch_embed(x)
    if self.pos_embed is not None and getattr(self, "basam_use_abs_pos", True):
        x = x + resample_pos_embed(self.pos_embed, (x.shape[1], x.shape[2]))
    for blk in self.blocks:
        x = blk(x)
    return self.neck(x.permute(0, 3, 1, 2))


def install_dynamic_encoder(encoder: ImageEncoderViT) -> None:
    base_size(encoder)
    encoder.forward = types.MethodType(dynamic_encoder_forward, encoder)


def uninstall_dynamic_encoder(encoder: ImageEncoderViT) -> None:
    """Restore the stock forward unless BA-SAM or a non-base input size still needs ours."""
    patched = getattr(encoder, "basam_config", None) is not None
    resized = getattr(encoder, "basam_input_hw", None) is not None
    if not patched and not resized:
        encoder.__dict__.pop("forward", None)


def _preprocess(self: Sam, x: Tensor) -> Tensor:
    """Normalise and pad (bottom/right) to the current input size."""
    h, w = input_size(self)
    if x.shape[-2] > h or x.shape[-1] > w:
        raise ValueError(
            f"image of {x.shape[-2]}x{x.shape[-1]} does not fit the model's input size {h}x{w}: "
            f"resize it first (a predictor built with basam_lite.BASAMPredictor does)"
        )
    x = (x - self.pixel_mean) / self.pixel_std
    return F.pad(x, (0, w - x.shape[-1], 0, h - x.shape[-2]))


def _postprocess_masks(
    self: Sam, masks: Tensor, input_size_hw: tuple[int, ...], original_size: tuple[int, ...]
) -> Tensor:
    """Upscale low-resolution masks to the padded input, crop the padding, resize to original."""
    h, w = input_size(self)
    masks = F.interpolate(masks, (h, w), mode="bilinear", align_corners=False)
    masks = masks[..., : input_size_hw[0], : input_size_hw[1]]
    return F.interpolate(masks, tuple(original_size), mode="bilinear", align_corners=False)


def set_input_size(target: object, size: Size) -> object:
    """Make a ``Sam`` (or a ``SamPredictor``) run at ``size``: an int or (height, width).

    Returns ``target``. Calling it with the size the model already runs at changes nothing;
    returning to the base size restores the stock behaviour exactly.
    """
    from segment_anything import SamPredictor  # local: keeps this module light

    predictor = target if isinstance(target, SamPredictor) else None
    sam = predictor.model if predictor is not None else target
    if not isinstance(sam, Sam):
        raise TypeError(
            f"set_input_size takes a segment_anything Sam or SamPredictor, got "
            f"{type(target).__name__}"
        )
    enc = sam.image_encoder
    p = patch_size(enc)
    hw = parse_size(size, p)
    base = base_size(enc)
    if hw != input_size(sam):
        config = getattr(enc, "basam_config", None)
        if config is not None and config.scale == "official":
            from .scaling import attention_scale

            train_keys = config.train_keys or (base[0] // p) * (base[1] // p)
            attention_scale((hw[0] // p) * (hw[1] // p), train_keys, "official")
        pe = sam.prompt_encoder
        pe.image_embedding_size = (hw[0] // p, hw[1] // p)
        pe.input_image_size = hw
        pe.mask_input_size = (4 * hw[0] // p, 4 * hw[1] // p)
        enc.img_size = max(hw)
        if hw == base:
            enc.basam_input_hw = None
            sam.__dict__.pop("preprocess", None)
            sam.__dict__.pop("postprocess_masks", None)
            uninstall_dynamic_encoder(enc)
        else:
            enc.basam_input_hw = hw
            sam.preprocess = types.MethodType(_preprocess, sam)
            sam.postprocess_masks = types.MethodType(_postprocess_masks, sam)
            install_dynamic_encoder(enc)
    if predictor is not None:
        from .predictor import refresh_predictor

        refresh_predictor(predictor)
    return target


def restore_input_size(sam: Sam) -> Sam:
    """Return ``sam`` to the size it was built for."""
    set_input_size(sam, base_size(sam.image_encoder))
    return sam

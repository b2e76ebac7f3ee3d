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
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from segment_anything import SamPredictor
from segment_anything.modeling import ImageEncoderViT, Sam
from segment_anything.utils.transforms import ResizeLongestSide
from torch import Tensor

from .errors import UserError
from .patch_state import EncoderPatch, attach_encoder, detach_encoder, encoder_patch, swap_class

if TYPE_CHECKING:
    from .patch import BASAMConfig

Size = int | Sequence[int]


def patch_size(encoder: ImageEncoderViT) -> int:
    return int(encoder.patch_embed.proj.stride[0])


def base_size(encoder: ImageEncoderViT) -> tuple[int, int]:
    """The (height, width) the encoder was built for."""
    record = encoder_patch(encoder)
    if record is not None:
        return record.base_hw
    if encoder.pos_embed is not None:
        p = patch_size(encoder)
        return (int(encoder.pos_embed.shape[1]) * p, int(encoder.pos_embed.shape[2]) * p)
    return (encoder.img_size, encoder.img_size)


def base_grid(encoder: ImageEncoderViT) -> tuple[int, int]:
    """The token grid the encoder was built (and trained) for."""
    h, w = base_size(encoder)
    p = patch_size(encoder)
    return h // p, w // p


def encoder_input_size(encoder: ImageEncoderViT) -> tuple[int, int]:
    """The (height, width) ``encoder`` currently runs at."""
    record = encoder_patch(encoder)
    if record is not None and record.input_hw is not None:
        return record.input_hw
    return base_size(encoder)


def encoder_grid(encoder: ImageEncoderViT) -> tuple[int, int]:
    """The token grid ``encoder`` currently runs at."""
    h, w = encoder_input_size(encoder)
    p = patch_size(encoder)
    return h // p, w // p


def input_size(sam: Sam) -> tuple[int, int]:
    """The (height, width) ``sam`` currently runs at."""
    return encoder_input_size(sam.image_encoder)


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


class SizedEncoder(ImageEncoderViT):
    """``ImageEncoderViT`` for any input size that is a multiple of the patch size: the absolute
    position embedding is resampled to the token grid (and left out when the BA-SAM config says
    so). An encoder has this class while it is patched or away from its base size."""

    def forward(self, x: Tensor) -> Tensor:
        p = patch_size(self)
        h, w = x.shape[-2:]
        if h % p or w % p:
            raise ValueError(
                f"image encoder input {h}x{w} is not a multiple of the patch size {p}: pad or "
                f"resize it first (basam_lite.set_input_size and Sam.preprocess do this for you)"
            )
        record = encoder_patch(self)
        x = self.patch_embed(x)
        if self.pos_embed is not None and (record is None or record.use_abs_pos):
            x = x + resample_pos_embed(self.pos_embed, (x.shape[1], x.shape[2]))
        for blk in self.blocks:
            x = blk(x)
        return self.neck(x.permute(0, 3, 1, 2))


def _encoder_record(encoder: ImageEncoderViT) -> EncoderPatch:
    """The encoder's record, made (and the encoder given :class:`SizedEncoder`) when missing."""
    record = encoder_patch(encoder)
    if record is None:
        record = EncoderPatch(base_size(encoder), type(encoder))
        attach_encoder(encoder, record, SizedEncoder)
    return record


def _drop_record_if_unneeded(encoder: ImageEncoderViT) -> None:
    """Give the encoder its stock class back unless BA-SAM or a non-base size still needs ours."""
    record = encoder_patch(encoder)
    if record is not None and not record.needed:
        detach_encoder(encoder)


def set_encoder_config(encoder: ImageEncoderViT, config: BASAMConfig | None) -> None:
    """Record the BA-SAM config ``encoder`` runs with (None: unpatched); used by
    :func:`basam_lite.apply_basam` and :func:`basam_lite.remove_basam`."""
    if config is None and encoder_patch(encoder) is None:
        return
    _encoder_record(encoder).config = config
    _drop_record_if_unneeded(encoder)


class SizedSam(Sam):
    """``Sam`` whose pre- and post-processing follow the input size of its encoder (a ``Sam``
    has this class while it runs away from its base size)."""

    def preprocess(self, x: Tensor) -> Tensor:
        """Normalise and pad (bottom/right) to the current input size."""
        h, w = input_size(self)
        if x.shape[-2] > h or x.shape[-1] > w:
            raise ValueError(
                f"image of {x.shape[-2]}x{x.shape[-1]} does not fit the model's input size "
                f"{h}x{w}: resize it first (a predictor built with basam_lite.BASAMPredictor does)"
            )
        x = (x - self.pixel_mean) / self.pixel_std
        return F.pad(x, (0, w - x.shape[-1], 0, h - x.shape[-2]))

    def postprocess_masks(
        self, masks: Tensor, input_size_hw: tuple[int, ...], original_size: tuple[int, ...]
    ) -> Tensor:
        """Upscale low-resolution masks to the padded input, crop the padding, resize to
        the original size."""
        h, w = input_size(self)
        masks = F.interpolate(masks, (h, w), mode="bilinear", align_corners=False)
        masks = masks[..., : input_size_hw[0], : input_size_hw[1]]
        return F.interpolate(masks, tuple(original_size), mode="bilinear", align_corners=False)


def set_input_size(target: object, size: Size) -> object:
    """Make a ``Sam`` (or a ``SamPredictor``) run at ``size``: an int or (height, width).

    Returns ``target``. Calling it with the size the model already runs at changes nothing;
    returning to the base size restores the stock behaviour exactly.
    """
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
        record = encoder_patch(enc)
        config = None if record is None else record.config
        if config is not None and config.scale == "official":
            from .scaling import attention_scale

            train_keys = config.train_keys or (base[0] // p) * (base[1] // p)
            attention_scale((hw[0] // p) * (hw[1] // p), train_keys, "official")
        if type(sam) not in (Sam, SizedSam):
            raise TypeError(
                f"set_input_size supports segment_anything's Sam, not the subclass "
                f"{type(sam).__name__}"
            )
        pe = sam.prompt_encoder
        pe.image_embedding_size = (hw[0] // p, hw[1] // p)
        pe.input_image_size = hw
        pe.mask_input_size = (4 * hw[0] // p, 4 * hw[1] // p)
        if hw == base:
            if record is not None:
                record.input_hw = None
            swap_class(sam, Sam)
            _drop_record_if_unneeded(enc)
        else:
            _encoder_record(enc).input_hw = hw  # records the base size before img_size moves
            swap_class(sam, SizedSam)
        enc.img_size = max(hw)
    if predictor is not None:
        refresh_predictor(predictor)
    return target


def restore_input_size(sam: Sam) -> Sam:
    """Return ``sam`` to the size it was built for."""
    set_input_size(sam, base_size(sam.image_encoder))
    return sam


# ---------------------------------------------------------------- predictors


class FitResize(ResizeLongestSide):
    """Resize so the image fits inside a (height, width) input, keeping its aspect ratio.

    For a square input this is exactly SAM's ``ResizeLongestSide``.
    """

    def __init__(self, target_hw: tuple[int, int]) -> None:
        super().__init__(max(target_hw))
        self.target_hw = tuple(target_hw)

    def fit_shape(self, oldh: int, oldw: int) -> tuple[int, int]:
        th, tw = self.target_hw
        scale = min(th / oldh, tw / oldw)
        return min(th, int(oldh * scale + 0.5)), min(tw, int(oldw * scale + 0.5))

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        h, w = self.fit_shape(*image.shape[:2])
        return np.array(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))

    def apply_coords(self, coords: np.ndarray, original_size: tuple[int, ...]) -> np.ndarray:
        oh, ow = original_size
        h, w = self.fit_shape(oh, ow)
        coords = np.array(coords, dtype=float, copy=True)
        coords[..., 0] *= w / ow
        coords[..., 1] *= h / oh
        return coords

    def apply_coords_torch(
        self, coords: torch.Tensor, original_size: tuple[int, ...]
    ) -> torch.Tensor:
        oh, ow = original_size
        h, w = self.fit_shape(oh, ow)
        coords = coords.clone().float()
        coords[..., 0] *= w / ow
        coords[..., 1] *= h / oh
        return coords


def transform_for(sam: Sam) -> ResizeLongestSide:
    """SAM's own transform for a square input size, :class:`FitResize` otherwise."""
    h, w = input_size(sam)
    return ResizeLongestSide(h) if h == w else FitResize((h, w))


def refresh_predictor(predictor: SamPredictor) -> None:
    """Bring a predictor in line with its model's current input size (drops the set image).

    A stock ``SamPredictor`` only takes square sizes; a predictor class that rebuilds its
    transform on every image (``follows_input_size = True``, e.g. ``BASAMPredictor``) takes any.
    """
    h, w = input_size(predictor.model)
    if h != w and not getattr(type(predictor), "follows_input_size", False):
        raise ValueError(
            f"a stock SamPredictor cannot run at the non-square size {h}x{w}: use "
            f"basam_lite.BASAMPredictor(sam) instead"
        )
    predictor.transform = transform_for(predictor.model)
    predictor.reset_image()

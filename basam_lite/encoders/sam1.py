r"""The ``segment_anything`` family: SAM ViT-B/L/H and checkpoints of the same architecture
(SAM-HQ's encoder, MedSAM), and this project's tiny model.

``ImageEncoderViT``: a 16 px patch embedding, an absolute position embedding over the base grid
(64 x 64 at 1024 px), then blocks of windowed (14 x 14) or global attention, each with SAM's
decomposed relative-position terms (MViTv2). The patched modules:

- :class:`BASAMAttention` (``Attention``): q, k, v and SAM's rel-pos terms, then
  :func:`~basam_lite.encoders.attend.basam_attend`;
- :class:`SizedEncoder` (``ImageEncoderViT``): any multiple of 16 px, the absolute position
  embedding resampled bicubically at every forward (the parameter is never modified), left out
  when the config says ``use_abs_pos=False``; without autograd at large sizes the blocks' MLPs
  run on slices of the tokens (:mod:`~basam_lite.encoders.chunked_mlp`);
- :class:`SizedSam` (``Sam``): pre/post-processing padded and cropped to the current size;
- :class:`BASAMPredictor` (``SamPredictor``): its transform follows the input size.

SAM's rel-pos tables are interpolated by ``segment_anything``'s own ``get_rel_pos``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from segment_anything import SamPredictor
from segment_anything.modeling import ImageEncoderViT, Sam
from segment_anything.modeling.image_encoder import Attention, get_rel_pos
from segment_anything.utils.transforms import ResizeLongestSide
from torch import Tensor, nn

from ..patch_state import encoder_patch
from ..sizes import fit_image, fit_shape
from .attend import basam_attend
from .base import AttentionBlock, EncoderAdapter, Grid, Predictor
from .chunked_mlp import chunked_mlps
from .sam_like import (
    SamDecoding,
    SizedPredictorMixin,
    sized_postprocess_masks,
    sized_preprocess,
)
from .vit_like import (
    PlainViTAdapter,
    add_abs_pos,
    interpolated_tables,
    rel_pos_position,
    rel_pos_terms,
)


def decomposed_rel_pos(
    q: Tensor, rel_pos_h: Tensor, rel_pos_w: Tensor, grid_hw: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    r"""SAM's decomposed relative-position terms (MViTv2) for queries ``q [B, H, N, d]``.

    Returns ``rel_h [B, H, N, rows]`` and ``rel_w [B, H, N, cols]`` with
    :math:`R^h_i[r] = q_i \cdot P_h[\mathrm{row}_i - r]` (tables interpolated by SAM's own
    ``get_rel_pos`` when the grid differs from the one they were trained on). SAM adds
    ``rel_h[i, row_j] + rel_w[i, col_j]`` to the logit of pair (i, j); q is not scaled here.
    """
    tables = interpolated_tables(rel_pos_h, rel_pos_w, grid_hw, get_rel_pos)
    return rel_pos_terms(q, *tables, grid_hw)


class BASAMAttention(Attention):
    """``segment_anything``'s ``Attention`` with BA-SAM: ``[B, rows, cols, C]`` in and out, on
    :func:`~basam_lite.encoders.attend.basam_attend` with SAM's rel-pos terms.

    :func:`basam_lite.apply_basam` gives a module this class; :func:`basam_lite.remove_basam`
    gives its own back.
    """

    def forward(self, x: Tensor) -> Tensor:
        b, rows, cols, _ = x.shape
        n = rows * cols
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, heads, N, head_dim]
        position = None
        if self.use_rel_pos:
            tables = interpolated_tables(self.rel_pos_h, self.rel_pos_w, (rows, cols), get_rel_pos)
            position = rel_pos_position(q, *tables, (rows, cols))
        out = basam_attend(self, q, k, v, (rows, cols), position=position)
        # Free q, k, v (views of qkv) and the rel-pos terms before the output's copy and
        # projection: at 128 x 128 tokens they hold 350 MB that the projection does not need.
        del qkv, q, k, v, position
        return self.proj(out.transpose(1, 2).reshape(b, rows, cols, -1))


def _patch_size(encoder: ImageEncoderViT) -> int:
    return int(encoder.patch_embed.proj.stride[0])


class SizedEncoder(ImageEncoderViT):
    """``ImageEncoderViT`` for any input size that is a multiple of the patch size: the absolute
    position embedding is resampled to the token grid (and left out when the BA-SAM config says
    so). An encoder has this class while it is patched or away from its base size."""

    def forward(self, x: Tensor) -> Tensor:
        p = _patch_size(self)
        h, w = x.shape[-2:]
        if h % p or w % p:
            raise ValueError(
                f"image encoder input {h}x{w} is not a multiple of the patch size {p}: pad or "
                f"resize it first (basam_lite.set_input_size and Sam.preprocess do this for you)"
            )
        x = add_abs_pos(self, self.patch_embed(x))  # [B, rows, cols, C]
        with chunked_mlps(self.blocks, x.shape[0] * x.shape[1] * x.shape[2]):
            for blk in self.blocks:
                x = blk(x)
        return self.neck(x.permute(0, 3, 1, 2))


def _input_size(sam: Sam) -> Grid:
    return SegmentAnythingAdapter(sam).input_size()


class SizedSam(Sam):
    """``Sam`` whose pre- and post-processing follow the input size of its encoder (a ``Sam``
    has this class while it runs away from its base size)."""

    def preprocess(self, x: Tensor) -> Tensor:
        """Normalise and pad (bottom/right) to the current input size."""
        hint = " (a predictor built with basam_lite.BASAMPredictor does)"
        return sized_preprocess(x, self.pixel_mean, self.pixel_std, _input_size(self), hint)

    def postprocess_masks(
        self, masks: Tensor, input_size: tuple[int, ...], original_size: tuple[int, ...]
    ) -> Tensor:
        """Upscale low-resolution masks to the padded input, crop the padding, resize to
        the original size. The arguments keep ``Sam.postprocess_masks``'s names: ``Sam.forward``
        passes them by keyword."""
        return sized_postprocess_masks(masks, _input_size(self), input_size, original_size)


class FitResize(ResizeLongestSide):
    """Resize so the image fits inside a (height, width) input, keeping its aspect ratio.

    For a square input this is exactly SAM's ``ResizeLongestSide``.
    """

    def __init__(self, target_hw: tuple[int, int]) -> None:
        super().__init__(max(target_hw))
        self.target_hw = tuple(target_hw)

    def fit_shape(self, oldh: int, oldw: int) -> tuple[int, int]:
        return fit_shape((oldh, oldw), self.target_hw)

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        return fit_image(image, self.target_hw)

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
    h, w = _input_size(sam)
    return ResizeLongestSide(h) if h == w else FitResize((h, w))


def refresh_predictor(predictor: SamPredictor) -> None:
    """Bring a predictor in line with its model's current input size (drops the set image).

    A stock ``SamPredictor`` only takes square sizes; a predictor class that rebuilds its
    transform on every image (``follows_input_size = True``, e.g. ``BASAMPredictor``) takes any.
    """
    h, w = _input_size(predictor.model)
    if h != w and not getattr(type(predictor), "follows_input_size", False):
        raise ValueError(
            f"a stock SamPredictor cannot run at the non-square size {h}x{w}: use "
            f"basam_lite.BASAMPredictor(sam) instead"
        )
    predictor.transform = transform_for(predictor.model)
    predictor.reset_image()


class BASAMPredictor(SizedPredictorMixin, SamPredictor):
    """``SamPredictor`` that follows ``set_input_size`` (square or not) and converts images.

    Its transform is rebuilt from the model's current input size on every ``set_image``, so a
    predictor made before :func:`basam_lite.set_input_size` stays correct.
    """

    def model_input_hw(self) -> Grid:
        return _input_size(self.model)

    def fresh_transform(self) -> ResizeLongestSide:
        return transform_for(self.model)


class SegmentAnythingAdapter(SamDecoding, PlainViTAdapter, EncoderAdapter):
    """``segment_anything``'s ``Sam``, ``ImageEncoderViT`` or ``SamPredictor``."""

    family = "segment_anything"
    checkpoint_format = "segment_anything Sam state_dict (.pth, torch.save)"
    blocks_attr = "blocks"
    heads_attr = "num_heads"

    @classmethod
    def accepts(cls, target: object) -> bool:
        return isinstance(target, (Sam, ImageEncoderViT, SamPredictor))

    @classmethod
    def unwrap(cls, target: object) -> tuple[nn.Module | None, nn.Module, Any | None]:
        if isinstance(target, SamPredictor):
            return target.model, target.model.image_encoder, target
        if isinstance(target, Sam):
            return target, target.image_encoder, None
        if isinstance(target, ImageEncoderViT):
            return None, target, None
        raise TypeError(
            f"expected a segment_anything Sam, ImageEncoderViT or SamPredictor, got "
            f"{type(target).__name__}"
        )

    # ------------------------------------------------------------ facts

    def patch_size(self) -> int:
        return _patch_size(self.encoder)

    def base_size(self) -> Grid:
        enc = self.encoder
        record = encoder_patch(enc)
        if record is not None:
            return record.base_hw
        if enc.pos_embed is not None:
            p = self.patch_size()
            return (int(enc.pos_embed.shape[1]) * p, int(enc.pos_embed.shape[2]) * p)
        return (enc.img_size, enc.img_size)

    # ------------------------------------------------------------ patching

    def attention_class(self, block: AttentionBlock) -> type[nn.Module]:
        return BASAMAttention

    def encoder_class(self) -> type[nn.Module]:
        return SizedEncoder

    # ------------------------------------------------------------ input size

    def resize(self, hw: Grid) -> None:
        sam, enc = self.model, self.encoder
        assert sam is not None, "resize needs the whole Sam"
        if type(sam) not in (Sam, SizedSam):
            raise TypeError(
                f"set_input_size supports segment_anything's Sam, not the subclass "
                f"{type(sam).__name__}"
            )
        p = self.patch_size()
        pe = sam.prompt_encoder
        pe.image_embedding_size = (hw[0] // p, hw[1] // p)
        pe.input_image_size = hw
        pe.mask_input_size = (4 * hw[0] // p, 4 * hw[1] // p)
        self.follow_size(sam, hw, Sam, SizedSam, SizedEncoder)  # records the base size first
        enc.img_size = max(hw)

    def refresh_predictor(self) -> None:
        if self.predictor is not None:
            refresh_predictor(self.predictor)

    # ------------------------------------------------------------ running

    def preprocess(self, images: Tensor) -> Tensor:
        assert self.model is not None, "preprocess needs the whole Sam"
        return self.model.preprocess(images)

    def encode(self, pixels: Tensor) -> Tensor:
        return self.encoder(pixels)

    def first_grid(self, pixels: Tensor) -> Grid:
        with torch.no_grad():
            tokens = self.encoder.patch_embed(pixels)  # [B, rows, cols, C]
        return int(tokens.shape[1]), int(tokens.shape[2])

    def make_predictor(self) -> Predictor:
        assert self.model is not None, "a predictor needs the whole Sam"
        return BASAMPredictor(self.model)

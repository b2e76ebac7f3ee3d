"""The MobileSAM family (``mobile_sam``, TinyViT encoder) behind the encoder interface.

What MobileSAM is, how it is built and loaded: :mod:`.mobilesam_build`; what BA-SAM means in
windows only and the official code's rule: :mod:`.mobilesam_official`. The patched modules:

- :class:`BASAMTinyAttention` (TinyViT's ``Attention``): LayerNorm, q, k, v and TinyViT's own
  bias table (the live table in training, the cached ``ab`` in eval, as ``mobile_sam``), then
  :func:`~basam_lite.encoders.attend.basam_attend`; under the official scale the family's logit
  scale is ``key_dim**-0.5 * log_1444(s^2 * 1444)`` (the official rule uses the image side, so
  the input size is noted on each attention module by :meth:`MobileSamAdapter.resize`);
- :class:`SizedTinyViT` (``TinyViT``): the output view follows the input size
  (``mobile_sam`` hard-codes 64 x 64);
- :class:`SizedMobileSam` (``Sam``): pre/post-processing padded and cropped to the current size;
- :class:`MobilePredictor` (``mobile_sam``'s ``SamPredictor``): its transform follows the size.

Importing this module imports ``mobile_sam`` through :func:`.mobilesam_import.mobile_sam_module`
(timm's registry restored, its warnings contained).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..config import BASAMConfig
from ..errors import UserError
from ..patch_state import (
    block_patch,
    drop_encoder_record_if_unneeded,
    encoder_patch,
    encoder_record,
    swap_class,
)
from ..sizes import Size, parse_size
from .attend import basam_attend
from .base import AttentionBlock, BlockGrids, EncoderAdapter, Grid, PositionTerms, Predictor
from .mobilesam_build import (
    BASE_SIDE,
    STRIDE,
    STRIDE_ONE_WIDTHS,
    build_mobilesam,
    build_random,
    stage_grids,
    tiny_vit_blocks,
)
from .mobilesam_import import mobile_sam_module
from .mobilesam_official import official_mobile_scale
from .sam1 import FitResize
from .sam_like import (
    SamDecoding,
    SizedPredictorMixin,
    sized_postprocess_masks,
    sized_preprocess,
)

_ms = mobile_sam_module()
_Sam = _ms.modeling.Sam
_TinyViT = _ms.modeling.TinyViT
_Attention = _ms.modeling.tiny_vit_sam.Attention
_SamPredictor = _ms.SamPredictor
_ResizeLongestSide = _ms.utils.transforms.ResizeLongestSide

__all__ = [
    "BASAMTinyAttention",
    "MobilePredictor",
    "MobileSamAdapter",
    "SizedMobileSam",
    "SizedTinyViT",
    "build_mobilesam",
    "build_random",
]

_INPUT_HW = "basam_input_hw"  # on each TinyViT attention module while away from the base size


def bias_table(attn: nn.Module) -> Tensor:
    """TinyViT's own per-head bias of one window, ``[heads, N, N]``: the live table in training
    mode, the cached ``ab`` in eval mode (as ``mobile_sam``'s forward)."""
    if not attn.training and "ab" in attn._buffers:
        return attn.ab
    return attn.attention_biases[:, attn.attention_bias_idxs]


def family_scale(attn: nn.Module) -> float:
    r"""The family's logit scale before BA-SAM's lambda: ``key_dim**-0.5``, times the official
    rule :math:`\log_{1444}(s^2 \cdot 1444)` when the block runs the official scale. (lambda
    itself is 1 in every window: keys per row equal the training keys.)"""
    scale = attn.key_dim**-0.5
    state = block_patch(attn)
    if state is not None and state.active and state.config.scale == "official":
        hw = attn.__dict__.get(_INPUT_HW, (BASE_SIDE, BASE_SIDE))
        scale *= official_mobile_scale(hw)
    return scale


class BASAMTinyAttention(_Attention):
    """``mobile_sam``'s TinyViT ``Attention`` with BA-SAM: ``[windows, w^2, C]`` in and out."""

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        w = math.isqrt(n)
        x = self.norm(x)
        qkv = self.qkv(x).view(b, n, self.num_heads, -1)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.d], dim=3)
        q, k, v = (t.permute(0, 2, 1, 3) for t in (q, k, v))  # [windows, heads, N, d]
        # the official coefficient multiplies the table in training only (official code)
        position = PositionTerms(table=bias_table(self)[None], coefficient=self.training)
        out = basam_attend(self, q, k, v, (w, w), position=position, base_scale=family_scale(self))
        return self.proj(out.transpose(1, 2).reshape(b, n, self.dh))


def _input_hw(encoder: nn.Module) -> Grid:
    record = encoder_patch(encoder)
    if record is not None and record.input_hw is not None:
        return record.input_hw
    return MobileSamAdapter(encoder).base_size()


class SizedTinyViT(_TinyViT):
    """TinyViT whose output view follows its input size (``mobile_sam``'s ``forward_features``
    views the last stage as 64 x 64 tokens)."""

    def forward_features(self, x: Tensor) -> Tensor:
        hw = _input_hw(self)
        if tuple(x.shape[-2:]) != tuple(hw):
            raise ValueError(
                f"TinyViT set to {hw[0]}x{hw[1]} px got a {x.shape[-2]}x{x.shape[-1]} input: use "
                "basam_lite.set_input_size (Sam.preprocess pads to the size)"
            )
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        b, _, c = x.shape
        x = x.view(b, hw[0] // STRIDE, hw[1] // STRIDE, c).permute(0, 3, 1, 2)
        return self.neck(x)


class SizedMobileSam(_Sam):
    """MobileSAM ``Sam`` padding to, and cropping from, its encoder's current (height, width)."""

    def preprocess(self, x: Tensor) -> Tensor:
        hw = _input_hw(self.image_encoder)
        hint = " (basam_lite.predictor_for(model) does)"
        return sized_preprocess(x, self.pixel_mean, self.pixel_std, hw, hint)

    def postprocess_masks(
        self, masks: Tensor, input_size: tuple[int, ...], original_size: tuple[int, ...]
    ) -> Tensor:
        return sized_postprocess_masks(
            masks, _input_hw(self.image_encoder), input_size, original_size
        )


def transform_for(sam: nn.Module) -> Any:
    """``mobile_sam``'s ``ResizeLongestSide`` for a square size, a fit-inside resize otherwise."""
    h, w = _input_hw(sam.image_encoder)
    return _ResizeLongestSide(h) if h == w else FitResize((h, w))


class MobilePredictor(SizedPredictorMixin, _SamPredictor):
    """``mobile_sam``'s ``SamPredictor`` following the model's input size (square or not), with
    images converted and prompts checked (one-line errors)."""

    def model_input_hw(self) -> Grid:
        return _input_hw(self.model.image_encoder)

    def fresh_transform(self) -> Any:
        return transform_for(self.model)


class MobileSamAdapter(SamDecoding, EncoderAdapter):
    """``mobile_sam``'s ``Sam`` with a TinyViT encoder, the TinyViT, or a ``SamPredictor`` on it.

    Sizes: multiples of 16 px (the stem and two stride-2 merges give stage grids side/4, /8,
    /16; windows pad). ``patch_size()`` is the stem's stride, 4 (the first token grid); the
    attention blocks run at 1/8 (stage 1) and 1/16 (stages 2 and 3, the decoder's grid).
    """

    family = "mobilesam"
    checkpoint_format = "mobile_sam Sam state_dict (mobile_sam.pt, torch.save)"

    @classmethod
    def accepts(cls, target: object) -> bool:
        if isinstance(target, _SamPredictor):
            target = target.model
        if isinstance(target, _Sam):
            target = target.image_encoder
        return isinstance(target, _TinyViT)

    @classmethod
    def unwrap(cls, target: object) -> tuple[nn.Module | None, nn.Module, Any | None]:
        if isinstance(target, _SamPredictor):
            return target.model, target.model.image_encoder, target
        if isinstance(target, _Sam):
            return target, target.image_encoder, None
        if isinstance(target, _TinyViT):
            return None, target, None
        raise TypeError(
            f"expected a MobileSAM Sam, TinyViT or SamPredictor, got {type(target).__name__}"
        )

    # ------------------------------------------------------------ facts

    def _stage_of_blocks(self) -> list[int]:
        return [i for i, layer in enumerate(self.encoder.layers) if i > 0 for _ in layer.blocks]

    def attention_blocks(self) -> list[AttentionBlock]:
        return [
            AttentionBlock(i, blk, blk.attn, int(blk.attn.num_heads), int(blk.dim), blk.window_size)
            for i, blk in enumerate(tiny_vit_blocks(self.encoder))
        ]

    def patch_size(self) -> int:
        return int(
            self.encoder.patch_embed.seq[0].c.stride[0]
            * self.encoder.patch_embed.seq[2].c.stride[0]
        )

    def base_size(self) -> Grid:
        record = encoder_patch(self.encoder)
        if record is not None:
            return record.base_hw
        side = self.encoder.img_size
        return (side, side) if isinstance(side, int) else (int(side[0]), int(side[1]))

    def input_size(self) -> Grid:
        return _input_hw(self.encoder)

    def block_grids(self, index: int, input_hw: Grid) -> BlockGrids:
        grid = stage_grids(self.encoder, input_hw)[self._stage_of_blocks()[index]]
        window = int(tiny_vit_blocks(self.encoder)[index].window_size)
        return BlockGrids(grid, grid, window, window)

    def block_input_grid(self, index: int, args: tuple) -> Grid:
        """TinyViT blocks take ``[B, rows * cols, C]``: the grid is their ``input_resolution``."""
        grid = tiny_vit_blocks(self.encoder)[index].input_resolution
        return int(grid[0]), int(grid[1])

    def check_size(self, size: Size) -> Grid:
        hw = parse_size(size, STRIDE)
        last = stage_grids(self.encoder, hw)[-1]
        if (last[0] * STRIDE, last[1] * STRIDE) != hw:
            raise UserError(
                f"this TinyViT's last stage runs at {last[0]}x{last[1]} tokens for {hw[0]}x"
                f"{hw[1]} px, not at 1/{STRIDE}: only MobileSAM's layout (last width "
                f"{'/'.join(map(str, STRIDE_ONE_WIDTHS))}) is supported"
            )
        return hw

    def size_rule(self) -> str:
        return f"any height and width that are multiples of {STRIDE} px"

    def check_config_at(self, config: BASAMConfig, hw: Grid) -> None:
        """The official scale uses the image side: refused below 1024 px (one line)."""
        if config.scale == "official" and config.blocks == "all":
            official_mobile_scale(hw)

    # ------------------------------------------------------------ patching

    drops_position_tables = False  # the official code keeps TinyViT's loaded bias table

    def attention_class(self, block: AttentionBlock) -> type[nn.Module]:
        return BASAMTinyAttention

    def position_tables(self, block: AttentionBlock) -> dict[str, nn.Parameter]:
        return {"attention_biases": block.attn.attention_biases}

    def encoder_class(self) -> type[nn.Module]:
        return SizedTinyViT

    # ------------------------------------------------------------ input size

    def _set_resolutions(self, hw: Grid) -> None:
        enc = self.encoder
        grids = stage_grids(enc, hw)
        enc.patch_embed.patches_resolution = grids[0]
        enc.patch_embed.num_patches = grids[0][0] * grids[0][1]
        enc.patches_resolution = grids[0]
        for layer, grid in zip(enc.layers, grids, strict=True):
            layer.input_resolution = grid
            for blk in layer.blocks:
                if hasattr(blk, "input_resolution"):
                    blk.input_resolution = grid
            if layer.downsample is not None:
                layer.downsample.input_resolution = grid

    def resize(self, hw: Grid) -> None:
        sam, enc = self.model, self.encoder
        assert sam is not None, "resize needs the whole Sam"
        if type(sam) not in (_Sam, SizedMobileSam):
            raise TypeError(
                f"set_input_size supports mobile_sam's Sam, not the subclass {type(sam).__name__}"
            )
        base = self.base_size()
        grid = (hw[0] // STRIDE, hw[1] // STRIDE)
        pe = sam.prompt_encoder
        pe.image_embedding_size = grid
        pe.input_image_size = hw
        pe.mask_input_size = (4 * grid[0], 4 * grid[1])
        attns = [b.attn for b in tiny_vit_blocks(enc)]
        if hw == base:
            record = encoder_patch(enc)
            if record is not None:
                record.input_hw = None
            swap_class(sam, _Sam)
            drop_encoder_record_if_unneeded(enc)
            for attn in attns:
                attn.__dict__.pop(_INPUT_HW, None)
        else:
            encoder_record(enc, base, SizedTinyViT).input_hw = hw  # base noted before img_size
            swap_class(sam, SizedMobileSam)
            for attn in attns:
                attn.__dict__[_INPUT_HW] = hw
        self._set_resolutions(hw)
        enc.img_size = base[0] if hw == base else max(hw)

    def refresh_predictor(self) -> None:
        p = self.predictor
        if p is None:
            return
        h, w = self.input_size()
        if h != w and not getattr(type(p), "follows_input_size", False):
            raise UserError(
                f"mobile_sam's own SamPredictor cannot run at the non-square size {h}x{w}: use "
                "basam_lite.predictor_for(model)"
            )
        p.transform = transform_for(p.model)
        p.reset_image()

    # ------------------------------------------------------------ running

    def preprocess(self, images: Tensor) -> Tensor:
        assert self.model is not None, "preprocess needs the whole Sam"
        return self.model.preprocess(images)

    def encode(self, pixels: Tensor) -> Tensor:
        return self.encoder(pixels)

    def first_grid(self, pixels: Tensor) -> Grid:
        """The stem's token grid of ``pixels [B, 3, H, W]`` (two stride-2 convolutions: a
        quarter of each side), measured by running it."""
        with torch.no_grad():
            out = self.encoder.patch_embed(pixels)
        return int(out.shape[-2]), int(out.shape[-1])

    def make_predictor(self) -> Predictor:
        assert self.model is not None, "a predictor needs the whole Sam"
        return MobilePredictor(self.model)

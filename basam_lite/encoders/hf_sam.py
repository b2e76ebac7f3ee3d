r"""BA-SAM on Hugging Face ``transformers``' ``SamModel``: any input size, every preset.

What changes, and how it is undone exactly:

- **Attention.** Every ``SamVisionAttention`` (and its SDPA subclass, ``SamVisionSdpaAttention``)
  is given the subclass :class:`HFBASAMAttention`, which computes

  .. math:: o_i = \sum_j \mathrm{softmax}_j\Big(\lambda \frac{q_i \cdot k_j}{\sqrt d}
      + R^h_i[\mathrm{row}_j] + R^w_i[\mathrm{col}_j] + M_h(i, j)\Big) v_j

  on :func:`basam_lite.attention.attend` (the project's fused-kernel paths), with HF's own
  rel-pos tables interpolated by the module's own ``get_rel_pos`` (linear, as SAM). Global blocks
  are the layers whose ``window_size`` is 0 (``config.vision_config.global_attn_indexes``).
- **Input size.** ``SamPatchEmbeddings`` refuses any size but ``config.image_size``, and the
  encoder adds its ``pos_embed`` of the configured grid. Away from the base size the
  ``SamVisionEncoder`` gets the subclass :class:`SizedSamVisionEncoder`: the absolute position
  embedding is resampled bicubically to the token grid at every forward (the parameter is never
  modified), windowed layers pad as SAM does, global layers' rel-pos tables are interpolated by
  HF itself. The prompt encoder's ``image_embedding_size`` and ``input_image_size`` follow the
  size, and so does the image-wide positional embedding of the mask decoder.
- **Processor.** :func:`processor_for_size` gives a ``SamProcessor`` whose resize
  (``size["longest_edge"]``), padding (``pad_size``), mask sizes and prompt rescaling follow the
  size, so ``post_process_masks`` crops and upsamples correctly.

Sizes: squares whose side is a multiple of the patch size (16 px), at least one patch. HF's
processor resizes the longest side and pads to a square, and its prompt encoder normalises
points by one side: a non-square size is refused in one line. The config is never changed, so
``save_pretrained`` / ``from_pretrained`` and ``state_dict`` round trips keep the checkpoint's
own size.
"""

from __future__ import annotations

import copy
import types
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ..attention import AttentionBias, attend
from ..errors import UserError
from ..masks import base_unit_scale, resolve_slopes
from ..patch_state import (
    BlockPatch,
    EncoderPatch,
    attach_block,
    attach_encoder,
    block_parameter,
    block_patch,
    detach_block,
    detach_encoder,
    encoder_patch,
    set_block_parameter,
)
from ..resolution import parse_size, resample_pos_embed
from ..scaling import attention_scale
from .hf_weights import require_transformers

require_transformers()

from transformers import SamModel  # noqa: E402
from transformers.models.sam.modeling_sam import (  # noqa: E402
    SamVisionAttention,
    SamVisionEncoder,
    SamVisionEncoderOutput,
)
from transformers.utils.generic import merge_with_config_defaults  # noqa: E402
from transformers.utils.output_capturing import capture_outputs  # noqa: E402

if TYPE_CHECKING:
    from ..patch import BASAMConfig

Size = int | tuple[int, int]


# ---------------------------------------------------------------- model facts


def vision_encoder_of(model: nn.Module) -> SamVisionEncoder:
    """The ``SamVisionEncoder`` of a ``SamModel`` (or the encoder itself)."""
    if isinstance(model, SamModel):
        return model.vision_encoder
    if isinstance(model, SamVisionEncoder):
        return model
    raise TypeError(
        f"expected a transformers SamModel or SamVisionEncoder, got {type(model).__name__}"
    )


def patch_size(encoder: SamVisionEncoder) -> int:
    return int(encoder.patch_embed.projection.stride[0])


def base_size(encoder: SamVisionEncoder) -> tuple[int, int]:
    """The (height, width) the encoder was built for (``config.image_size``)."""
    h, w = encoder.patch_embed.image_size
    return int(h), int(w)


def base_grid(encoder: SamVisionEncoder) -> tuple[int, int]:
    p = patch_size(encoder)
    h, w = base_size(encoder)
    return h // p, w // p


def input_size(model: nn.Module) -> tuple[int, int]:
    """The (height, width) the model currently runs at."""
    encoder = vision_encoder_of(model)
    record = encoder_patch(encoder)
    if record is not None and record.input_hw is not None:
        return record.input_hw
    return base_size(encoder)


def is_global(layer: nn.Module) -> bool:
    """A global-attention layer (``window_size == 0``: the layers of ``global_attn_indexes``)."""
    return int(layer.window_size) == 0


def attention_modules(model: nn.Module) -> list[SamVisionAttention]:
    return [layer.attn for layer in vision_encoder_of(model).layers]


# ---------------------------------------------------------------- any input size


class SizedSamVisionEncoder(SamVisionEncoder):
    """``SamVisionEncoder`` at any input size that is a multiple of the patch size: the
    absolute position embedding is resampled bicubically to the token grid (and left out when
    the BA-SAM config says so). HF's output recording (``output_hidden_states``) is kept."""

    @merge_with_config_defaults
    @capture_outputs(tie_last_hidden_states=False)
    def forward(self, pixel_values: Tensor | None = None, **kwargs) -> SamVisionEncoderOutput:
        if pixel_values is None:
            raise ValueError("You have to specify pixel_values")
        p = patch_size(self)
        h, w = pixel_values.shape[-2:]
        if pixel_values.shape[1] != self.patch_embed.num_channels or h % p or w % p:
            raise ValueError(
                f"vision encoder input {tuple(pixel_values.shape)} needs "
                f"{self.patch_embed.num_channels} channels and sides that are multiples of {p}: "
                f"use the processor from basam_lite's processor_for_size"
            )
        x = self.patch_embed.projection(pixel_values).permute(0, 2, 3, 1)  # [B, rows, cols, C]
        record = encoder_patch(self)
        if self.pos_embed is not None and (record is None or record.use_abs_pos):
            x = x + resample_pos_embed(self.pos_embed, (x.shape[1], x.shape[2]))
        for layer in self.layers:
            x = layer(x)
        return SamVisionEncoderOutput(last_hidden_state=self.neck(x))


def _image_wide_positional_embeddings(self: SamModel) -> Tensor:
    """``SamModel.get_image_wide_positional_embeddings`` on the prompt encoder's current grid
    (HF reads the config's square grid): ``[1, C, rows, cols]``, pixel centres in [0, 1]."""
    rows, cols = self.prompt_encoder.image_embedding_size
    pe = self.shared_image_embedding.positional_embedding
    y = (torch.arange(rows, device=pe.device, dtype=pe.dtype) + 0.5) / rows
    x = (torch.arange(cols, device=pe.device, dtype=pe.dtype) + 0.5) / cols
    grid = torch.stack(torch.meshgrid(x, y, indexing="xy"), dim=-1)  # [rows, cols, (x, y)]
    return self.shared_image_embedding(grid).permute(2, 0, 1).unsqueeze(0)


_PE_METHOD = "get_image_wide_positional_embeddings"


def _encoder_record(encoder: SamVisionEncoder) -> EncoderPatch:
    record = encoder_patch(encoder)
    if record is None:
        record = EncoderPatch(base_size(encoder), type(encoder))
        attach_encoder(encoder, record, SizedSamVisionEncoder)
    return record


def _drop_record_if_unneeded(encoder: SamVisionEncoder) -> None:
    record = encoder_patch(encoder)
    if record is not None and not record.needed:
        detach_encoder(encoder)


def check_size(model: nn.Module, size: Size) -> tuple[int, int]:
    """``size`` checked for this model: a square multiple of the patch size, else one line."""
    encoder = vision_encoder_of(model)
    hw = parse_size(size, patch_size(encoder))
    if hw[0] != hw[1]:
        raise UserError(
            f"the Hugging Face SamModel runs square sizes only (its processor resizes the longest "
            f"side and pads to a square), got {hw[0]}x{hw[1]}: use {max(hw)}"
        )
    return hw


def set_input_size(model: SamModel, size: Size) -> SamModel:
    """Make a ``SamModel`` run at ``size`` (an int or a square (height, width)); returns it.

    Returning to the base size restores HF's own classes and attributes exactly.
    """
    if not isinstance(model, SamModel):
        raise TypeError(f"set_input_size takes a transformers SamModel, got {type(model).__name__}")
    hw = check_size(model, size)
    encoder = model.vision_encoder
    p = patch_size(encoder)
    if hw == input_size(model):
        return model
    record = encoder_patch(encoder)
    config = None if record is None else record.config
    if config is not None and config.scale == "official":
        base = base_grid(encoder)
        train = config.train_keys or base[0] * base[1]
        attention_scale((hw[0] // p) * (hw[1] // p), train, "official")
    pe = model.prompt_encoder
    pe.image_embedding_size = (hw[0] // p, hw[1] // p)
    pe.input_image_size = hw[0]
    if hw == base_size(encoder):
        if record is not None:
            record.input_hw = None
        model.__dict__.pop(_PE_METHOD, None)
        _drop_record_if_unneeded(encoder)
    else:
        _encoder_record(encoder).input_hw = hw
        setattr(model, _PE_METHOD, types.MethodType(_image_wide_positional_embeddings, model))
    return model


def processor_for_size(processor, size: Size):  # (SamProcessor, Size) -> SamProcessor
    """A copy of a ``SamProcessor`` whose pre- and post-processing fit a square ``size``:
    images resized so the longest side is ``size`` and padded to ``size x size``; prompts
    rescaled to that frame; mask inputs and ``post_process_masks`` at the same size (low-res
    masks at a quarter of it)."""
    hw = parse_size(size, 1)
    if hw[0] != hw[1]:
        raise UserError(
            f"the Hugging Face SamProcessor pads to a square, got {hw[0]}x{hw[1]}: use {max(hw)}"
        )
    side = hw[0]
    out = copy.deepcopy(processor)
    ip = out.image_processor
    ip.size = type(ip.size)(longest_edge=side)  # a SizeDict in transformers 5
    ip.pad_size = type(ip.pad_size)(height=side, width=side)
    ip.mask_size = type(ip.mask_size)(longest_edge=side // 4)
    ip.mask_pad_size = type(ip.mask_pad_size)(height=side // 4, width=side // 4)
    out.target_size = side
    return out


# ---------------------------------------------------------------- BA-SAM attention


def hf_decomposed_rel_pos(
    attn: SamVisionAttention, q: Tensor, grid_hw: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    r"""HF's decomposed rel-pos terms for ``q [B, H, N, d]`` on a (rows, cols) grid, split:
    ``rel_h [B, H, N, rows]``, ``rel_w [B, H, N, cols]`` with
    :math:`R^h_i[r] = q_i \cdot P_h[\mathrm{row}_i - r]` and the tables from the module's own
    ``get_rel_pos`` (HF adds ``rel_h[i, row_j] + rel_w[i, col_j]`` to the logits)."""
    rows, cols = grid_hw
    b, h, n, d = q.shape
    table_h = attn.get_rel_pos(rows, rows, attn.rel_pos_h)  # [rows (query), rows (key), d]
    table_w = attn.get_rel_pos(cols, cols, attn.rel_pos_w)
    grid = q.reshape(b, h, rows, cols, d)
    rel_h = torch.einsum("bhrcd,rkd->bhrck", grid, table_h).reshape(b, h, n, rows)
    rel_w = torch.einsum("bhrcd,ckd->bhrck", grid, table_w).reshape(b, h, n, cols)
    return rel_h, rel_w


class HFBASAMAttention(SamVisionAttention):
    """``SamVisionAttention`` with BA-SAM: ``[B, rows, cols, C]`` in, ``(out, None)`` out (HF's
    layer unpacks a pair), on :func:`basam_lite.attention.attend` with the block's settings
    from its :class:`~basam_lite.patch_state.BlockPatch`."""

    def forward(self, hidden_states: Tensor, output_attentions=None) -> tuple[Tensor, None]:
        state = block_patch(self)
        assert state is not None, "HFBASAMAttention without its BlockPatch: use apply_basam"
        b, rows, cols, _ = hidden_states.shape
        n = rows * cols
        heads = self.num_attention_heads
        qkv = self.qkv(hidden_states).reshape(b, n, 3, heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, heads, N, head_dim]
        scale = state.scale_for(n) * q.shape[-1] ** -0.5  # lambda / sqrt(d)
        bias = AttentionBias((rows, cols), metric=state.config.metric)
        if self.use_rel_pos:
            rel_h, rel_w = hf_decomposed_rel_pos(self, q, (rows, cols))
            coef = block_parameter(self, "rel_pos_coef")
            if coef is not None:
                rel_h, rel_w = coef * rel_h, coef * rel_w
            bias.rel_h, bias.rel_w = rel_h, rel_w
        if state.active and state.slopes is not None:
            gain = block_parameter(self, "gain")
            slopes = state.slopes.to(q.device)
            bias.slopes = slopes * (gain if gain is not None else state.config.gain)
            if state.config.mask_units == "base" and state.is_global:
                bias.distance_scale = base_unit_scale((rows, cols), state.base_grid)
        if state.capture_hook is not None:
            state.capture_hook(self, q, k, scale, bias)
        out = attend(q, k, v, scale, bias, path=state.config.path)
        return self.proj(out.transpose(1, 2).reshape(b, rows, cols, -1)), None


def patch_config(model: nn.Module) -> BASAMConfig | None:
    record = encoder_patch(vision_encoder_of(model))
    return None if record is None else record.config


def apply_basam(model: nn.Module, config: BASAMConfig | None = None) -> nn.Module:
    """Patch a ``SamModel`` (or its ``SamVisionEncoder``) in place; returns it."""
    from ..patch import BASAMConfig

    config = BASAMConfig.paper() if config is None else config
    encoder = vision_encoder_of(model)
    if patch_config(encoder) is not None:
        remove_basam(encoder)
    grid = base_grid(encoder)
    if config.scale == "official":
        hw = encoder_patch(encoder).input_hw if encoder_patch(encoder) else None
        rows, cols = (hw[0] // patch_size(encoder), hw[1] // patch_size(encoder)) if hw else grid
        attention_scale(rows * cols, config.train_keys or grid[0] * grid[1], "official")
    for layer in encoder.layers:
        attn = layer.attn
        glob = is_global(layer)
        active = config.blocks == "all" or glob
        train_keys = (config.train_keys or grid[0] * grid[1]) if glob else layer.window_size**2
        device = attn.qkv.weight.device
        slopes = None
        if config.bias == "alibi2d":
            slopes = resolve_slopes(attn.num_attention_heads, config.slopes)
        record = BlockPatch(config, glob, active, train_keys, slopes, base_grid=tuple(grid))
        if active and config.learnable_gain:
            gain = torch.tensor(float(config.gain), device=device)
            set_block_parameter(attn, "gain", nn.Parameter(gain))
        if active and config.bias == "official_relpos" and attn.use_rel_pos:
            coef = torch.tensor(float(config.rel_pos_coef_init), device=device)
            set_block_parameter(attn, "rel_pos_coef", nn.Parameter(coef))
        if config.drop_rel_pos and attn.use_rel_pos:
            record.saved_rel_pos = (
                attn.rel_pos_h.detach().clone(),
                attn.rel_pos_w.detach().clone(),
            )
            with torch.no_grad():
                attn.rel_pos_h.zero_()
                attn.rel_pos_w.zero_()
        attach_block(attn, record, HFBASAMAttention)
    _encoder_record(encoder).config = config
    return model


def remove_basam(model: nn.Module) -> nn.Module:
    """Undo :func:`apply_basam` exactly: HF's classes, rel-pos tables and parameters."""
    encoder = vision_encoder_of(model)
    if patch_config(encoder) is None:
        return model
    for layer in encoder.layers:
        attn = layer.attn
        record, _ = detach_block(attn)
        if record is not None and record.saved_rel_pos is not None:
            with torch.no_grad():
                attn.rel_pos_h.copy_(record.saved_rel_pos[0])
                attn.rel_pos_w.copy_(record.saved_rel_pos[1])
    record = encoder_patch(encoder)
    assert record is not None
    record.config = None
    _drop_record_if_unneeded(encoder)
    return model

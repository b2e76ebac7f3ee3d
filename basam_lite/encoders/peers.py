r"""SAM's ViT image encoder in other libraries, holding the same weights at a given input side.

What a user would pick to run SAM's encoder at another size, each built at that size and loaded
with *one* state dict, so that a benchmark times the same computation:

- ``timm``: ``samvit_base_patch16`` (``timm.create_model``, built with ``img_size=side``; the
  architecture's numbers read off the ``Sam``, so a tiny ``Sam`` gives a tiny timm model), loaded
  through timm's own SAM checkpoint filter ``checkpoint_filter_fn``;
- ``hf``: Hugging Face's ``SamVisionModel`` with ``attn_implementation="sdpa"``. Its patch
  embedding refuses any input but ``config.image_size`` (``Input image size ... doesn't match
  model``), so it is built with ``image_size=side``; weights renamed by
  :func:`basam_lite.encoders.hf_weights.sam_to_hf_state`.

The weights at ``side`` (:func:`sized_encoder_state`): the absolute position embedding resampled
to the token grid as this project's ``SizedEncoder`` does at every forward (bicubic,
:func:`basam_lite.embedding.resample_pos_embed`), and each global block's rel-pos tables
interpolated to :math:`2 g - 1` entries (:math:`g` tokens a side) as ``segment_anything``'s
``get_rel_pos`` does at every forward (linear, ``align_corners=False``). Window blocks keep theirs.
So the peers compute what ``build_sam(...)`` after ``set_input_size(sam, side)`` computes with
SAM's attention, to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from torch import Tensor, nn

from ..embedding import resample_pos_embed
from .hf_weights import hf_config_from_sam, require_transformers, sam_to_hf_state

PREFIX = "image_encoder."


def _global_indexes(sam: Sam) -> list[int]:
    return [i for i, b in enumerate(sam.image_encoder.blocks) if b.window_size == 0]


def sized_encoder_state(sam: Sam, side: int) -> dict[str, Tensor]:
    """The image encoder's state dict (``image_encoder.*`` names) for a ``side`` x ``side`` input.

    ``pos_embed [1, g0, g0, C] -> [1, g, g, C]`` (bicubic), global blocks'
    ``rel_pos_h/w [2 g0 - 1, d] -> [2 g - 1, d]`` (linear), with ``g = side / patch``.
    """
    enc = sam.image_encoder
    patch = int(enc.patch_embed.proj.stride[0])
    if side % patch:
        raise ValueError(f"side {side} is not a multiple of the patch size {patch}")
    grid = side // patch
    state = {PREFIX + k: v.detach().clone() for k, v in enc.state_dict().items()}
    if enc.pos_embed is not None:
        state[PREFIX + "pos_embed"] = resample_pos_embed(enc.pos_embed.detach(), (grid, grid))
    for i in _global_indexes(sam):
        for axis in ("h", "w"):
            key = f"{PREFIX}blocks.{i}.attn.rel_pos_{axis}"
            if key in state:
                state[key] = resize_rel_pos(state[key], 2 * grid - 1)
    return state


def resize_rel_pos(table: Tensor, length: int) -> Tensor:
    """``[L, d] -> [length, d]``: each channel linearly interpolated along the offsets (SAM's
    ``get_rel_pos``: ``F.interpolate(mode="linear")``, half-pixel centres)."""
    if table.shape[0] == length:
        return table
    out = F.interpolate(table.T[None], size=length, mode="linear")  # [1, d, L] -> [1, d, length]
    return out[0].T.contiguous()


# ---------------------------------------------------------------- timm


def timm_architecture(sam: Sam) -> dict[str, object]:
    """``samvit_base_patch16`` keyword arguments that give ``sam``'s encoder architecture."""
    enc = sam.image_encoder
    blocks = list(enc.blocks)
    windows = {int(b.window_size) for b in blocks if b.window_size > 0}
    dim = int(enc.patch_embed.proj.out_channels)
    return {
        "patch_size": int(enc.patch_embed.proj.stride[0]),
        "embed_dim": dim,
        "depth": len(blocks),
        "num_heads": int(blocks[0].attn.num_heads),
        "mlp_ratio": blocks[0].mlp.lin1.out_features / dim,
        "qkv_bias": blocks[0].attn.qkv.bias is not None,
        "norm_layer": partial(nn.LayerNorm, eps=blocks[0].norm1.eps),
        "use_abs_pos": enc.pos_embed is not None,
        "use_rel_pos": bool(blocks[0].attn.use_rel_pos),
        "window_size": windows.pop() if windows else 14,
        "global_attn_indexes": tuple(_global_indexes(sam)),
        "neck_chans": int(enc.neck[0].out_channels),
    }


def build_timm_encoder(sam: Sam, side: int) -> Callable[[Tensor], Tensor]:
    """timm's ``samvit_base_patch16`` built at ``img_size=side`` holding ``sam``'s encoder
    weights at that side (:func:`sized_encoder_state` through timm's ``checkpoint_filter_fn``);
    returns ``x [B, 3, side, side] -> [B, neck, side / p, side / p]`` (``forward_features``)."""
    import timm
    from timm.models.vision_transformer_sam import checkpoint_filter_fn

    with torch.random.fork_rng(devices=[]):  # timm initialises weights that are then replaced
        model = timm.create_model(
            "samvit_base_patch16",
            pretrained=False,
            img_size=side,
            num_classes=0,
            global_pool="",
            **timm_architecture(sam),
        )
    state = checkpoint_filter_fn(sized_encoder_state(sam, side), model)
    model.load_state_dict(state, strict=True)
    model.eval()
    return model.forward_features


# ---------------------------------------------------------------- Hugging Face


def build_hf_encoder(
    sam: Sam, side: int, attn_implementation: str = "sdpa"
) -> Callable[[Tensor], Tensor]:
    """Hugging Face's ``SamVisionModel`` built with ``image_size=side`` holding ``sam``'s encoder
    weights at that side; returns ``x [B, 3, side, side] -> [B, neck, side / p, side / p]``."""
    require_transformers()
    from transformers import SamVisionModel

    config = hf_config_from_sam(sam, attn_implementation).vision_config
    config.image_size = side
    config._attn_implementation = attn_implementation
    with torch.random.fork_rng(devices=[]):
        model = SamVisionModel(config)
    state = sam_to_hf_state(sized_encoder_state(sam, side))
    model.load_state_dict(state, strict=True)
    model.eval()

    def forward(x: Tensor) -> Tensor:
        return model(pixel_values=x).last_hidden_state

    forward.model = model  # type: ignore[attr-defined]
    return forward


def hf_refusal(sam: Sam, side: int) -> str | None:
    """What a stock ``SamVisionModel`` built at ``sam``'s own input size says to a
    ``side`` x ``side`` image (None when it accepts it): the reason peers build it at ``side``."""
    require_transformers()
    from transformers import SamVisionModel

    config = hf_config_from_sam(sam).vision_config
    with torch.random.fork_rng(devices=[]):
        model = SamVisionModel(config).eval()
    x = torch.zeros(1, 3, side, side)
    try:
        with torch.no_grad():
            model.vision_encoder.patch_embed(x)
    except ValueError as e:
        return str(e).strip().splitlines()[0]
    return None

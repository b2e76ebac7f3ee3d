"""Hugging Face ``SamModel``: a small random-weight configuration and ``segment_anything`` weights
in its layout.

:func:`tiny_hf_config` is the project's tiny CPU model (:data:`basam_lite.models.TINY`: 256 px,
16 px patches, embed dim 192, 6 blocks, 6 heads, windows of 4, global blocks 2 and 5, prompt
dim 128, a 2-layer mask decoder) as a ``transformers`` ``SamConfig``.
:func:`sam_to_hf_state` renames a ``segment_anything`` ``Sam`` state dict into ``SamModel``'s
names (the tensors themselves are unchanged), so :func:`build_tiny_hf_sam` holds exactly the
weights of ``build_sam("tiny")``: the two libraries' forwards can be compared directly.

Needs the optional ``transformers`` dependency (``pip install 'basam-lite[hf]'``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor

from ..errors import UserError
from ..models import TINY, TinySpec, build_tiny_sam

HF_EXTRA_HINT = "pip install 'basam-lite[hf]'"


def require_transformers() -> None:
    """Raise one clear :class:`~basam_lite.errors.UserError` when ``transformers`` is missing."""
    try:
        import transformers  # noqa: F401
    except ImportError as e:
        raise UserError(
            f"the Hugging Face SamModel family needs the optional dependency transformers: "
            f"{HF_EXTRA_HINT} ({e})"
        ) from None


def tiny_hf_config(spec: TinySpec = TINY, attn_implementation: str = "sdpa"):  # -> SamConfig
    """``spec`` as a ``SamConfig`` (the same architecture as ``build_tiny_sam(spec)``).

    ``attn_implementation``: ``"sdpa"`` (``SamVisionSdpaAttention``, HF's default) or
    ``"eager"`` (``SamVisionAttention``, which can return attention weights).
    """
    require_transformers()
    from transformers import SamConfig

    config = SamConfig(
        vision_config={
            "hidden_size": spec.embed_dim,
            "num_hidden_layers": spec.depth,
            "num_attention_heads": spec.num_heads,
            "image_size": spec.img_size,
            "patch_size": spec.patch_size,
            "window_size": spec.window_size,
            "global_attn_indexes": list(spec.global_attn_indexes),
            "output_channels": spec.prompt_dim,
            "num_pos_feats": spec.prompt_dim // 2,
            "mlp_dim": 4 * spec.embed_dim,
        },
        prompt_encoder_config={
            "hidden_size": spec.prompt_dim,
            "image_size": spec.img_size,
            "patch_size": spec.patch_size,
        },
        mask_decoder_config={
            "hidden_size": spec.prompt_dim,
            "mlp_dim": spec.decoder_mlp_dim,
            "num_hidden_layers": spec.decoder_depth,
            "num_attention_heads": spec.decoder_heads,
            "iou_head_hidden_dim": spec.prompt_dim,
        },
    )
    config._attn_implementation = attn_implementation
    return config


# segment_anything name -> SamModel name, first match wins (re.sub on the whole key).
_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^image_encoder\.patch_embed\.proj\.", "vision_encoder.patch_embed.projection."),
    (r"^image_encoder\.blocks\.(\d+)\.norm(\d)\.", r"vision_encoder.layers.\1.layer_norm\2."),
    (r"^image_encoder\.blocks\.(\d+)\.", r"vision_encoder.layers.\1."),
    (r"^image_encoder\.neck\.0\.", "vision_encoder.neck.conv1."),
    (r"^image_encoder\.neck\.1\.", "vision_encoder.neck.layer_norm1."),
    (r"^image_encoder\.neck\.2\.", "vision_encoder.neck.conv2."),
    (r"^image_encoder\.neck\.3\.", "vision_encoder.neck.layer_norm2."),
    (r"^image_encoder\.", "vision_encoder."),
    (r"^prompt_encoder\.point_embeddings\.", "prompt_encoder.point_embed."),
    (r"^prompt_encoder\.mask_downscaling\.0\.", "prompt_encoder.mask_embed.conv1."),
    (r"^prompt_encoder\.mask_downscaling\.1\.", "prompt_encoder.mask_embed.layer_norm1."),
    (r"^prompt_encoder\.mask_downscaling\.3\.", "prompt_encoder.mask_embed.conv2."),
    (r"^prompt_encoder\.mask_downscaling\.4\.", "prompt_encoder.mask_embed.layer_norm2."),
    (r"^prompt_encoder\.mask_downscaling\.6\.", "prompt_encoder.mask_embed.conv3."),
    (r"^(mask_decoder\.transformer\.layers\.\d+)\.norm(\d)\.", r"\1.layer_norm\2."),
    (
        r"^mask_decoder\.transformer\.norm_final_attn\.",
        "mask_decoder.transformer.layer_norm_final_attn.",
    ),
    (r"^mask_decoder\.output_upscaling\.0\.", "mask_decoder.upscale_conv1."),
    (r"^mask_decoder\.output_upscaling\.1\.", "mask_decoder.upscale_layer_norm."),
    (r"^mask_decoder\.output_upscaling\.3\.", "mask_decoder.upscale_conv2."),
)
# SAM's 3-layer MLP heads: layers.0 / 1 / 2 -> proj_in / layers.0 / proj_out.
_MLP_HEAD = re.compile(
    r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head))\.layers\.(\d)\."
)
_MLP_NAMES = {"0": "proj_in.", "1": "layers.0.", "2": "proj_out."}
_GAUSSIAN = "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
_HF_GAUSSIANS = (
    "shared_image_embedding.positional_embedding",
    "prompt_encoder.shared_embedding.positional_embedding",
)


def hf_key(key: str) -> str:
    """The ``SamModel`` name of one ``segment_anything`` state-dict key (not the shared
    positional Gaussian matrix, which :func:`sam_to_hf_state` writes under two names)."""
    m = _MLP_HEAD.match(key)
    if m:
        depth = m.group(2)
        if depth not in _MLP_NAMES:
            raise UserError(f"{key}: SamModel's MLP heads have 3 layers, this one has more")
        return f"{m.group(1)}.{_MLP_NAMES[depth]}{key[m.end() :]}"
    for pattern, repl in _RENAMES:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return key


def sam_to_hf_state(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A ``segment_anything`` ``Sam`` state dict under ``SamModel``'s names (same tensors).

    SAM's positional Gaussian matrix goes to both of HF's tied copies
    (``shared_image_embedding`` and ``prompt_encoder.shared_embedding``).
    """
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key == _GAUSSIAN:
            for name in _HF_GAUSSIANS:
                out[name] = value
        else:
            out[hf_key(key)] = value
    return out


def build_tiny_hf_sam(seed: int = 0, attn_implementation: str = "sdpa"):  # -> SamModel
    """The tiny random model (:data:`basam_lite.models.TINY`) as a ``SamModel`` in eval mode,
    holding exactly the weights of ``build_sam("tiny")`` for the same ``seed``."""
    require_transformers()
    from transformers import SamModel

    source = build_tiny_sam(seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SamModel(tiny_hf_config(attn_implementation=attn_implementation))
    state = sam_to_hf_state(source.state_dict())
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:  # a renaming rule out of date with transformers
        raise RuntimeError(
            f"segment_anything -> SamModel conversion left missing {missing[:3]} and unexpected "
            f"{unexpected[:3]} keys"
        )
    return model.eval()

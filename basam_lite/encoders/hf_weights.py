"""Hugging Face ``SamModel``: a small random-weight configuration and ``segment_anything`` weights
in its layout.

:func:`hf_config_from_sam` reads a ``SamConfig`` off a ``segment_anything`` ``Sam`` and
:func:`sam_to_hf_state` renames its state dict into ``SamModel``'s names (the tensors are
unchanged): :func:`sam_to_hf` turns any SAM 1 (an official checkpoint included) into a
``SamModel``. :func:`build_tiny_hf_sam` is the project's tiny CPU model
(:data:`basam_lite.models.TINY`: 256 px, 16 px patches, embed dim 192, 6 blocks, 6 heads,
windows of 4, global blocks 2 and 5, prompt dim 128, a 2-layer mask decoder) as a
``SamModel`` holding exactly the weights of ``build_sam("tiny")``, so the two libraries'
forwards can be compared directly. :func:`load_hf_sam` loads a real ``SamModel`` from a
folder or a Hugging Face id.

Needs the optional ``transformers`` dependency (``pip install 'basam-lite[hf]'``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from segment_anything.modeling import Sam
from torch import Tensor

from ..errors import UserError
from .sam1_build import build_tiny_sam

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


def hf_config_from_sam(sam: Sam, attn_implementation: str = "sdpa"):  # -> SamConfig
    """The ``SamConfig`` of a ``segment_anything`` ``Sam``'s architecture, read off its modules
    (ViT-B/L/H, the tiny model, or any other size of the same design).

    ``attn_implementation``: ``"sdpa"`` (``SamVisionSdpaAttention``, HF's default) or
    ``"eager"`` (``SamVisionAttention``, which can return attention weights).
    """
    require_transformers()
    from transformers import SamConfig

    enc, pe, dec = sam.image_encoder, sam.prompt_encoder, sam.mask_decoder
    blocks = list(enc.blocks)
    windows = {int(b.window_size) for b in blocks if b.window_size > 0}
    if len(windows) > 1:
        raise UserError(f"SamModel has one window size for all layers, this Sam has {windows}")
    patch = int(enc.patch_embed.proj.stride[0])
    img = int(enc.img_size)
    two_way = dec.transformer
    config = SamConfig(
        vision_config={
            "hidden_size": int(enc.patch_embed.proj.out_channels),
            "num_hidden_layers": len(blocks),
            "num_attention_heads": int(blocks[0].attn.num_heads),
            "image_size": img,
            "patch_size": patch,
            "window_size": windows.pop() if windows else 14,
            "global_attn_indexes": [i for i, b in enumerate(blocks) if b.window_size == 0],
            "output_channels": int(enc.neck[0].out_channels),
            "num_pos_feats": int(pe.pe_layer.positional_encoding_gaussian_matrix.shape[1]),
            "mlp_dim": int(blocks[0].mlp.lin1.out_features),
            "use_abs_pos": enc.pos_embed is not None,
            "use_rel_pos": bool(blocks[0].attn.use_rel_pos),
            "qkv_bias": blocks[0].attn.qkv.bias is not None,
        },
        prompt_encoder_config={
            "hidden_size": int(pe.embed_dim),
            "image_size": img,
            "patch_size": patch,
            "mask_input_channels": int(pe.mask_downscaling[3].out_channels),
        },
        mask_decoder_config={
            "hidden_size": int(dec.transformer_dim),
            "mlp_dim": int(two_way.layers[0].mlp.lin1.out_features),
            "num_hidden_layers": int(two_way.depth),
            "num_attention_heads": int(two_way.num_heads),
            "attention_downsample_rate": int(
                two_way.embedding_dim // two_way.final_attn_token_to_image.internal_dim
            ),
            "num_multimask_outputs": int(dec.num_multimask_outputs),
            "iou_head_depth": int(dec.iou_prediction_head.num_layers),
            "iou_head_hidden_dim": int(dec.iou_prediction_head.layers[0].out_features),
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


def sam_to_hf(sam: Sam, attn_implementation: str = "sdpa"):  # -> SamModel
    """A ``SamModel`` in eval mode holding exactly the weights of a ``segment_anything``
    ``Sam`` (for example ``build_sam("vit_b", checkpoint)``)."""
    require_transformers()
    from transformers import SamModel

    with torch.random.fork_rng(devices=[]):  # HF initialises weights that are then replaced
        model = SamModel(hf_config_from_sam(sam, attn_implementation))
    state = sam_to_hf_state(sam.state_dict())
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:  # a renaming rule out of date with transformers
        raise RuntimeError(
            f"segment_anything -> SamModel conversion left missing {missing[:3]} and unexpected "
            f"{unexpected[:3]} keys"
        )
    return model.eval()


def build_tiny_hf_sam(seed: int = 0, attn_implementation: str = "sdpa"):  # -> SamModel
    """The tiny random model (:data:`basam_lite.models.TINY`) as a ``SamModel`` in eval mode,
    holding exactly the weights of ``build_sam("tiny")`` for the same ``seed``."""
    return sam_to_hf(build_tiny_sam(seed=seed), attn_implementation)


def load_hf_sam(source: str | os.PathLike, attn_implementation: str = "sdpa"):  # -> SamModel
    """A real ``SamModel`` in eval mode from a local folder (``save_pretrained``'s layout:
    ``config.json`` and safetensors weights) or a registered Hugging Face id such as
    ``facebook/sam-vit-base`` (cached, downloaded and verified by :func:`basam_lite.weights.fetch`
    on first use; nothing is downloaded by ``transformers`` itself)."""
    require_transformers()
    from transformers import SamModel

    from .. import weights

    if isinstance(source, str) and source in weights.REGISTRY:
        item = weights.entry(source)
        if item.family != "hf" or item.model != "SamModel":
            raise UserError(f"{source} is a {item.family} checkpoint, not a Hugging Face SamModel")
        path = weights.fetch(source)
    else:
        path = Path(source).expanduser()
        if not path.is_dir():
            known = ", ".join(
                n for n in weights.names("hf") if weights.entry(n).model == "SamModel"
            )
            raise UserError(
                f"{source} is not a folder saved by SamModel.save_pretrained nor a registered "
                f"Hugging Face SamModel ({known})"
            )
    if not (path / "config.json").is_file():
        raise UserError(f"{path} has no config.json: give a folder saved by save_pretrained")
    try:
        model = SamModel.from_pretrained(
            str(path), attn_implementation=attn_implementation, local_files_only=True
        )
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"could not load SamModel from {path}: {first}") from None
    return model.eval()

"""Building ``segment_anything`` models: the official ViT-B/L/H architectures and this
project's tiny CPU configuration (random weights; :func:`basam_lite.build_sam` loads weights)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from segment_anything.build_sam import sam_model_registry
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)
from torch import nn

OFFICIAL = ("vit_b", "vit_l", "vit_h")
TINY_ARCHITECTURES = ("tiny", "tiny-vanilla", "tiny-basam")
"""Names of models with the tiny architecture (random, or the trained tiny checkpoints)."""


@dataclass(frozen=True)
class TinySpec:
    """A small SAM of ``segment_anything``'s own classes, fast enough for a 2-core CPU.

    Same patch size (16) and window/global pattern as ViT-B (every third block global), so the
    token grid grows with resolution exactly as in real SAM: 16 x 16 tokens at 256 px.
    """

    img_size: int = 256
    patch_size: int = 16  # SAM's, as in every official model; 8 only in scripts/recipe_study.py
    embed_dim: int = 192
    depth: int = 6
    num_heads: int = 6
    global_attn_indexes: tuple[int, ...] = (2, 5)
    window_size: int = 4
    prompt_dim: int = 128
    decoder_depth: int = 2
    decoder_mlp_dim: int = 512
    decoder_heads: int = 4

    @property
    def grid(self) -> int:
        """Tokens per side at ``img_size`` (16 at 256 px)."""
        return self.img_size // self.patch_size

    def parameter_count(self) -> int:
        """Number of parameters of a model of this spec (builds one on the CPU)."""
        return sum(p.numel() for p in build_tiny_sam(self).parameters())


TINY = TinySpec()


def build_tiny_sam(spec: TinySpec = TINY, seed: int = 0) -> Sam:
    """A randomly initialised (seeded) tiny SAM in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = Sam(
            image_encoder=ImageEncoderViT(
                img_size=spec.img_size,
                patch_size=spec.patch_size,
                embed_dim=spec.embed_dim,
                depth=spec.depth,
                num_heads=spec.num_heads,
                mlp_ratio=4,
                norm_layer=partial(nn.LayerNorm, eps=1e-6),
                qkv_bias=True,
                use_rel_pos=True,
                global_attn_indexes=spec.global_attn_indexes,
                window_size=spec.window_size,
                out_chans=spec.prompt_dim,
            ),
            prompt_encoder=PromptEncoder(
                embed_dim=spec.prompt_dim,
                image_embedding_size=(spec.grid, spec.grid),
                input_image_size=(spec.img_size, spec.img_size),
                mask_in_chans=16,
            ),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(
                    depth=spec.decoder_depth,
                    embedding_dim=spec.prompt_dim,
                    mlp_dim=spec.decoder_mlp_dim,
                    num_heads=spec.decoder_heads,
                ),
                transformer_dim=spec.prompt_dim,
                iou_head_depth=3,
                iou_head_hidden_dim=spec.prompt_dim,
            ),
        )
        # SAM leaves pos_embed at zero (it is learned); a small random table makes the
        # untrained tiny model's resolution behaviour non-trivial.
        nn.init.trunc_normal_(sam.image_encoder.pos_embed, std=0.02)
    return sam.eval()


def build_official(name: str) -> Sam:
    """An official ViT (``vit_b``, ``vit_l``, ``vit_h``) exactly as ``segment_anything`` builds
    it, random weights (segment_anything's own, unseeded, initialisation)."""
    return sam_model_registry[name](checkpoint=None)


def build_random(name: str) -> Sam:
    """A model of the architecture ``name`` (an official ViT or a tiny name) with random weights,
    for :mod:`basam_lite.encoders.specs` (which builds it on the meta device)."""
    if name in OFFICIAL:
        return build_official(name)
    if name in TINY_ARCHITECTURES:
        return build_tiny_sam()
    raise ValueError(f"no segment_anything architecture named {name!r}")


def global_block_encoder(
    name: str = "vit_b", use_rel_pos: bool = True, seed: int = 0
) -> ImageEncoderViT:
    """A one-block ``ImageEncoderViT`` whose block is a global block of the model ``name`` (its
    width, heads, MLP ratio, base size and patch size read off a meta-device build), so that
    :func:`basam_lite.apply_basam` can patch it. Rel-pos tables random (SAM initialises them at
    zero; a trained SAM's are not), weights seeded."""
    with torch.device("meta"):
        ref = build_random(name).image_encoder
    first_global = next(b for b in ref.blocks if b.window_size == 0)
    dim = first_global.attn.qkv.in_features
    windows = [b.window_size for b in ref.blocks if b.window_size]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        enc = ImageEncoderViT(
            img_size=ref.img_size,
            patch_size=int(ref.patch_embed.proj.stride[0]),
            embed_dim=dim,
            depth=1,
            num_heads=first_global.attn.num_heads,
            mlp_ratio=first_global.mlp.lin1.out_features / dim,
            out_chans=ref.neck[0].out_channels,
            qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            use_rel_pos=use_rel_pos,
            window_size=max(windows) if windows else 0,
            global_attn_indexes=(0,),
        )
        if use_rel_pos:
            with torch.no_grad():
                enc.blocks[0].attn.rel_pos_h.normal_(0, 0.02)
                enc.blocks[0].attn.rel_pos_w.normal_(0, 0.02)
    return enc.eval()

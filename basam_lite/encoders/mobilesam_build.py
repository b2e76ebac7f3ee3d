"""MobileSAM (TinyViT image encoder) from the ``mobile_sam`` package: specs, build, load.

MobileSAM is SAM with ViT-H's encoder replaced by a TinyViT-5M distilled from it (Zhang et al.
2023, arXiv 2306.14289); the prompt encoder and mask decoder are SAM's. Its encoder:

- a convolutional stem (two stride-2 3x3 convolutions: 1024 px -> 256 x 256 tokens) and a stage
  of MBConv blocks;
- three stages of :class:`TinyViTBlock` with *windowed attention only* (windows 7, 14, 7 in the
  official config; the ``window_sizes`` list has a fourth entry, 7, for stage 0, which is
  convolutional and has no attention), separated by stride-2 patch merging except before the
  last stage: ``PatchMerging`` picks stride 1 when its output width is 320, 448 or 576, so the
  last stage runs at 1/16 of the input side, the grid of SAM's decoder;
- each attention window adds a LeViT-style learned bias per head, indexed by the offset
  ``(|dx|, |dy|)`` between query and key inside the window (``attention_biases`` ``[heads,
  offsets]``, gathered by ``attention_bias_idxs`` ``[w^2, w^2]``). It depends on the window,
  never on the image: the same table serves every input size.

What fixes MobileSAM at 1024 px, and what the adapter's ``resize`` (:mod:`.mobilesam`,
through :func:`basam_lite.set_input_size`) changes:

- ``TinyViT.forward_features`` views the last stage's tokens as ``64 x 64`` (hard-coded);
- each layer, block and merge keeps the ``input_resolution`` computed when it was built;
- the prompt encoder's grids and ``Sam.preprocess``/``postprocess_masks`` follow
  ``image_encoder.img_size`` or the sizes set at build.

Allowed sizes (the real constraint): each side a multiple of 16 px, at least 16. The stem and
the two stride-2 merges need the side divisible by 16 for every stage grid (side/4, side/8,
side/16) to be exact; windows are padded (bottom/right) by the blocks themselves, so no other
constraint exists. Non-square sizes work (each stage keeps its (rows, cols)).

The unpatched family forward at another size is what ``mobile_sam``'s own classes compute when
built with ``TinyViT(img_size=size)``, except for the one hard-coded ``64 x 64`` view: the tests
run that model's own stem, layers and neck with the view at the size's grid.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from .mobilesam_import import mobile_sam_module

#: The side MobileSAM was trained at, and the stride of its output grid (the decoder's grid;
#: the stem's stride, the adapter's ``patch_size()``, is 4).
BASE_SIDE = 1024
STRIDE = 16
#: Widths for which MobileSAM's PatchMerging uses stride 1 (its last merge).
STRIDE_ONE_WIDTHS = (320, 448, 576)


@dataclass(frozen=True)
class TinyViTSpec:
    """A MobileSAM TinyViT configuration (every field is a ``TinyViT`` constructor argument).

    The last width must be one of :data:`STRIDE_ONE_WIDTHS`: ``mobile_sam``'s ``PatchMerging``
    chooses its stride from the output width, and only those give the 1/16 output grid.
    """

    name: str
    embed_dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    num_heads: tuple[int, int, int, int]
    window_sizes: tuple[int, int, int, int] = (7, 7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    note: str = ""

    def __post_init__(self) -> None:
        if self.embed_dims[-1] not in STRIDE_ONE_WIDTHS:
            raise ValueError(
                f"the last TinyViT width must be one of {STRIDE_ONE_WIDTHS} (mobile_sam's "
                f"PatchMerging uses stride 1 only for those), got {self.embed_dims[-1]}"
            )
        for dim, heads in zip(self.embed_dims[1:], self.num_heads[1:], strict=True):
            if dim % heads:
                raise ValueError(f"width {dim} is not divisible by {heads} heads")


#: The official MobileSAM encoder (``mobile_sam.build_sam_vit_t``): TinyViT-5M, 6.1 M parameters.
MOBILESAM = TinyViTSpec(
    "mobilesam",
    embed_dims=(64, 128, 160, 320),
    depths=(2, 2, 6, 2),
    num_heads=(2, 4, 5, 10),
    note="the official MobileSAM encoder (TinyViT-5M), the layout of mobile_sam.pt",
)
#: A small TinyViT for tests on a CPU: one block per stage, narrow early stages, MLP ratio 1,
#: the official windows and last width (320, needed for the 1/16 grid); 1.8 M parameters, about
#: a tenth of the official encoder's time at 1024 px (0.24 s vs 2.4 s here, one thread).
MOBILESAM_TINY = TinyViTSpec(
    "mobilesam-tiny",
    embed_dims=(16, 32, 32, 320),
    depths=(1, 1, 1, 1),
    num_heads=(1, 2, 2, 5),
    mlp_ratio=1.0,
    mbconv_expand_ratio=1.0,
    note="random-weight test model: the official windows, one block per stage",
)
SPECS: dict[str, TinyViTSpec] = {s.name: s for s in (MOBILESAM, MOBILESAM_TINY)}


def get_spec(name: str) -> TinyViTSpec:
    if name not in SPECS:
        raise UserError(f"unknown MobileSAM model {name!r}: choose one of {', '.join(SPECS)}")
    return SPECS[name]


def _modeling() -> Any:
    return mobile_sam_module().modeling


def tiny_vit_of(model: nn.Module) -> nn.Module:
    """The TinyViT encoder of a MobileSAM ``Sam`` (or the encoder itself); TypeError otherwise."""
    modeling = _modeling()
    if isinstance(model, modeling.TinyViT):
        return model
    if isinstance(model, modeling.Sam) and isinstance(model.image_encoder, modeling.TinyViT):
        return model.image_encoder
    raise TypeError(f"expected a MobileSAM Sam or TinyViT, got {type(model).__name__}")


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """Every TinyViT attention module, in forward order (stages 1-3; stage 0 is convolutional)."""
    enc = tiny_vit_of(model)
    return [blk.attn for layer in enc.layers[1:] for blk in layer.blocks]


def tiny_vit_blocks(model: nn.Module) -> list[nn.Module]:
    """Every ``TinyViTBlock`` (the modules holding ``window_size`` and ``input_resolution``)."""
    enc = tiny_vit_of(model)
    return [blk for layer in enc.layers[1:] for blk in layer.blocks]


def build_mobilesam(
    name: str = "mobilesam",
    checkpoint: str | os.PathLike | None = None,
    seed: int = 0,
    *,
    pretrained: bool = False,
) -> nn.Module:
    """A MobileSAM ``Sam`` in eval mode, from ``mobile_sam``'s own classes.

    Args:
        name: a key of :data:`SPECS` (``"mobilesam"``: the official architecture).
        checkpoint: a local ``mobile_sam.pt`` (a state dict of the whole ``Sam``, read with
            ``torch.load(weights_only=True)``); None keeps random weights.
        seed: seed of the random weights. The attention bias tables, zeros at ``mobile_sam``'s
            init, are drawn from N(0, 1) so that a random model exercises them.
        pretrained: ``"mobilesam"`` only: the official ``mobile_sam.pt`` from the weights cache
            (:func:`basam_lite.weights.fetch`: downloaded and verified on first use; with
            ``BASAM_OFFLINE=1`` a missing file is one line saying where to put it).

    The bias table TinyViT uses in eval mode is a cache (``ab``) taken when ``eval()`` is
    called; ``mobile_sam.build_sam_vit_t`` calls ``eval()`` *before* loading the checkpoint, so
    its model keeps the zero tables until ``eval()`` is called again. This builder calls it after
    loading.
    """
    spec = get_spec(name)
    if pretrained:
        if name != MOBILESAM.name or checkpoint is not None:
            raise UserError(
                f"pretrained=True loads the official mobile_sam.pt into {MOBILESAM.name!r} "
                f"(not {name!r}), and replaces checkpoint=: give one of them"
            )
        from ..weights import fetch

        checkpoint = fetch("mobile_sam")
    state = None
    if checkpoint is not None:
        from ..models import existing_file, read_checkpoint

        path = existing_file(checkpoint)
        state = read_checkpoint(path)
        if "image_encoder.patch_embed.seq.0.c.weight" not in state:
            raise UserError(
                f"{path} is a SAM state_dict but not MobileSAM's: it has no TinyViT stem "
                "('image_encoder.patch_embed.seq.0.c.weight'); load it with basam_lite.build_sam"
            )
    m = _modeling()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = m.TinyViT(
            img_size=BASE_SIDE,
            in_chans=3,
            num_classes=1000,
            embed_dims=list(spec.embed_dims),
            depths=list(spec.depths),
            num_heads=list(spec.num_heads),
            window_sizes=list(spec.window_sizes),
            mlp_ratio=spec.mlp_ratio,
            drop_rate=0.0,
            drop_path_rate=0.0,
            use_checkpoint=False,
            mbconv_expand_ratio=spec.mbconv_expand_ratio,
            local_conv_size=3,
            layer_lr_decay=0.8,
        )
        grid = BASE_SIDE // STRIDE
        sam = m.Sam(
            image_encoder=encoder,
            prompt_encoder=m.PromptEncoder(
                embed_dim=256,
                image_embedding_size=(grid, grid),
                input_image_size=(BASE_SIDE, BASE_SIDE),
                mask_in_chans=16,
            ),
            mask_decoder=m.MaskDecoder(
                num_multimask_outputs=3,
                transformer=m.TwoWayTransformer(
                    depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8
                ),
                transformer_dim=256,
                iou_head_depth=3,
                iou_head_hidden_dim=256,
            ),
            pixel_mean=[123.675, 116.28, 103.53],
            pixel_std=[58.395, 57.12, 57.375],
        )
        with torch.no_grad():
            for attn in attention_modules(sam):
                attn.attention_biases.normal_()
    if state is not None:
        from ..models import load_weights

        load_weights(sam, state, str(checkpoint), name)
    return sam.eval()  # refreshes each window's cached bias table ('ab') from the weights


def build_random(name: str) -> nn.Module:
    """The spec registry's builder: :func:`build_mobilesam` with random weights. ``mobile_sam``'s
    constructor reads tensors (``.item()`` on its drop-path schedule), so it is built on the CPU
    even inside a ``torch.device("meta")`` block (the official model: 10 M parameters)."""
    with torch.device("cpu"):
        return build_mobilesam(name)


def load_checkpoint(name: str, checkpoint: str | os.PathLike) -> nn.Module:
    """The spec registry's loader: ``name``'s architecture with the weights of a local
    ``mobile_sam.pt`` (read with ``weights_only=True``), in eval mode."""
    return build_mobilesam(name, checkpoint)


def stage_grids(encoder: nn.Module, hw: tuple[int, int]) -> list[tuple[int, int]]:
    """The token grid of each TinyViT layer for an input of ``hw`` pixels, read off the modules:
    the stem's two stride-2 convolutions, then each merge's stride (3x3 conv, padding 1:
    ``ceil(n / stride)``)."""
    grid = (hw[0], hw[1])
    for mod in encoder.patch_embed.seq:
        if hasattr(mod, "c"):
            s = mod.c.stride[0]
            grid = (-(-grid[0] // s), -(-grid[1] // s))
    grids = []
    for layer in encoder.layers:
        grids.append(grid)
        if layer.downsample is not None:
            s = layer.downsample.conv2.c.stride[0]
            grid = (-(-grid[0] // s), -(-grid[1] // s))
    return grids

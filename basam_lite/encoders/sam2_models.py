"""SAM 2 models through the official ``sam2`` package: a tiny random-weight SAM 2 built from the
family's own classes, the official SAM 2.1 architectures, and their checkpoints from a path.

``sam2`` is an optional dependency (``pip install 'basam-lite[sam2]'``, installed with
``SAM2_BUILD_CUDA=0`` where no CUDA toolkit is wanted: the extension only speeds up a mask
post-processing step this project does not use). Nothing here downloads weights: the official
``sam2.1_hiera_{tiny,small,base_plus,large}.pt`` files (a dict whose ``"model"`` entry is the
state dict) are read from a local path with ``torch.load(weights_only=True)``.

The tiny SAM 2 (:data:`TINY_SAM2`) keeps every structural trait of SAM 2 that matters for input
size, scaled to a 256 px base (the tiny SAM 1's): a stride-4 7x7-kernel patch embedding, four
Hiera stages joined by 2x2 query pooling (strides 4, 8, 16, 32), windowed attention with two
global blocks in the stride-16 stage (as in every SAM 2.1 model, whose global blocks all sit in
stage 3), a 7x7 background position embedding resized bicubically to the grid plus an 8x8 window
embedding tiled over it, an FPN neck with top-down fusion on the two coarsest levels, and
SAM2Base's prompt encoder and mask decoder with the high-resolution skip features. Head width
is 32 in every stage (heads 1, 2, 4, 8), as in the tiny SAM 1 (192 / 6). The memory modules of
the video model are left out (``None``): the image path never calls them.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import ModuleType

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import UserError
from ..models import existing_file, load_weights, read_checkpoint

SAM2_EXTRA = "sam2"
INSTALL_HINT = (
    "SAM 2 needs the optional extra: pip install 'basam-lite[sam2]' "
    "(set SAM2_BUILD_CUDA=0 to skip its CUDA extension)"
)

# The official SAM 2.1 models: name -> the sam2 package's Hydra config.
OFFICIAL_SAM2: dict[str, str] = {
    "sam2.1_hiera_tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}
TINY_SAM2_NAME = "sam2-tiny"
SAM2_NAMES: tuple[str, ...] = (TINY_SAM2_NAME, *OFFICIAL_SAM2)
# Hiera (embed_dim, blocks) of each architecture: what a checkpoint's shapes say it is.
_SHAPES = {
    (96, 12): "sam2.1_hiera_tiny",
    (96, 16): "sam2.1_hiera_small",
    (112, 24): "sam2.1_hiera_base_plus",
    (144, 48): "sam2.1_hiera_large",
    (32, 9): TINY_SAM2_NAME,
}

# What build_sam2 adds by default (apply_postprocessing=True): the mask decoder falls back to
# the most stable of its multimask outputs when the single mask is unstable.
_DECODER_EXTRA_ARGS = {
    "dynamic_multimask_via_stability": True,
    "dynamic_multimask_stability_delta": 0.05,
    "dynamic_multimask_stability_thresh": 0.98,
}


def import_sam2(module: str = "sam2") -> ModuleType:
    """``import module`` from the ``sam2`` package; a missing package is one
    :class:`~basam_lite.errors.UserError` line naming the extra."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is not None and (e.name == "sam2" or e.name.startswith(("sam2.", "hydra"))):
            raise UserError(f"{INSTALL_HINT} ({e.name} is not installed)") from None
        if e.name in ("iopath", "omegaconf"):
            raise UserError(f"{INSTALL_HINT} ({e.name} is not installed)") from None
        raise


@dataclass(frozen=True)
class TinySam2Spec:
    """A small SAM 2 of the ``sam2`` package's own classes, fast enough for a 2-core CPU.

    At 256 px the stage grids are 64, 32, 16 and 8 tokens per side; the global blocks (4 and 6)
    see the 16 x 16 stride-16 grid, 256 keys, as the tiny SAM 1's global blocks do.

    Attributes:
        img_size: base input side (SAM2Base.image_size).
        embed_dim: stage-1 width (doubles at each stage: 32, 64, 128, 256).
        num_heads: stage-1 heads (doubles at each stage: 1, 2, 4, 8).
        stages: blocks per stage (9 blocks; query pooling in blocks 1, 3 and 7).
        global_att_blocks: blocks with global attention (``window_size == 0``).
        window_spec: window side per stage (a stage's first block keeps the previous stage's
            window, halved by the query pooling, as Hiera does).
        pos_embed_bkg: the background position embedding's grid (resized to the token grid).
        d_model: the FPN neck's width, also the prompt encoder's and mask decoder's.
    """

    img_size: int = 256
    embed_dim: int = 32
    num_heads: int = 1
    stages: tuple[int, ...] = (1, 2, 4, 2)
    global_att_blocks: tuple[int, ...] = (4, 6)
    window_spec: tuple[int, ...] = (8, 4, 4, 2)
    pos_embed_bkg: tuple[int, int] = (7, 7)
    d_model: int = 128
    stability_fallback: bool = False
    """SAM 2's eval-mode fallback from the single mask to the most stable multimask output.
    Off: the tiny model is trained on single masks only (``train`` decodes mask token 0, as
    for the tiny SAM 1), so its multimask outputs are untrained and the fallback would pick
    them (measured at step 2200 of the vanilla run, 16 held-out scenes at 256 px: box IoU
    0.22 with it, 0.43 without)."""

    def __post_init__(self) -> None:
        ends = [sum(self.stages[: i + 1]) - 1 for i in range(len(self.stages))]
        pooled = [e + 1 for e in ends[:-1]]
        both = sorted(set(pooled) & set(self.global_att_blocks))
        if both:
            raise ValueError(
                f"blocks {both} pool their queries (first block of a stage) and cannot be global: "
                "SAM 2's MultiScaleBlock divides by the window size there"
            )

    def describe(self) -> str:
        """One line: the configuration, for docs and model cards."""
        return (
            f"Hiera embed_dim {self.embed_dim}, heads {self.num_heads} (x2 per stage), stages "
            f"{list(self.stages)}, global blocks {list(self.global_att_blocks)}, windows "
            f"{list(self.window_spec)}, position background {list(self.pos_embed_bkg)}, FPN "
            f"width {self.d_model}, base size {self.img_size} px"
            + ("" if self.stability_fallback else ", no multimask stability fallback")
        )


TINY_SAM2 = TinySam2Spec()


def _sam2_base(
    image_encoder: nn.Module, image_size: int, stability_fallback: bool = True
) -> nn.Module:
    """SAM2Base for images: the SAM 2.1 configs' settings of the prompt encoder, mask decoder
    and no-memory embedding, without the memory modules (the image path never calls them);
    ``stability_fallback=False`` turns the decoder's eval-mode multimask fallback off."""
    sam2_base = import_sam2("sam2.modeling.sam2_base")
    return sam2_base.SAM2Base(
        image_encoder,
        memory_attention=None,
        memory_encoder=None,
        image_size=image_size,
        use_high_res_features_in_sam=True,
        multimask_output_in_sam=True,
        iou_prediction_use_sigmoid=True,
        pred_obj_scores=True,
        pred_obj_scores_mlp=True,
        use_multimask_token_for_obj_ptr=True,
        directly_add_no_mem_embed=True,
        sam_mask_decoder_extra_args={
            **_DECODER_EXTRA_ARGS,
            "dynamic_multimask_via_stability": stability_fallback,
        },
    )


def build_tiny_sam2(spec: TinySam2Spec = TINY_SAM2, seed: int | None = 0) -> nn.Module:
    """A randomly initialised tiny SAM 2 (``SAM2Base``) in eval mode: seeded with ``seed``, or
    drawn from the caller's random state with ``seed=None`` (what
    :func:`~basam_lite.encoders.specs.load_model` seeds)."""
    hieradet = import_sam2("sam2.modeling.backbones.hieradet")
    image_encoder = import_sam2("sam2.modeling.backbones.image_encoder")
    position = import_sam2("sam2.modeling.position_encoding")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        trunk = hieradet.Hiera(
            embed_dim=spec.embed_dim,
            num_heads=spec.num_heads,
            stages=spec.stages,
            global_att_blocks=spec.global_att_blocks,
            window_spec=spec.window_spec,
            window_pos_embed_bkg_spatial_size=spec.pos_embed_bkg,
        )
        neck = image_encoder.FpnNeck(
            position_encoding=position.PositionEmbeddingSine(
                num_pos_feats=spec.d_model, normalize=True, temperature=10000
            ),
            d_model=spec.d_model,
            backbone_channel_list=trunk.channel_list,
            fpn_top_down_levels=[2, 3],
            fpn_interp_model="nearest",
        )
        encoder = image_encoder.ImageEncoder(trunk=trunk, neck=neck, scalp=1)
        model = _sam2_base(encoder, spec.img_size, spec.stability_fallback)
        # Hiera's position embeddings start at zero (they are learned); small random tables make
        # the untrained model's behaviour at other sizes non-trivial, as for the tiny SAM 1.
        nn.init.trunc_normal_(trunk.pos_embed, std=0.02)
        nn.init.trunc_normal_(trunk.pos_embed_window, std=0.02)
    return model.eval()


def build_official_sam2(name: str) -> nn.Module:
    """An official SAM 2.1 architecture with random weights, built from the ``sam2`` package's
    own Hydra config exactly as ``sam2.build_sam.build_sam2`` builds it (post-processing
    defaults included), on the CPU, in eval mode."""
    if name not in OFFICIAL_SAM2:
        raise UserError(f"unknown SAM 2 model {name!r}: choose one of {', '.join(SAM2_NAMES)}")
    import_sam2("sam2")  # registers the package's configs with Hydra
    hydra = import_sam2("hydra")
    hydra_utils = import_sam2("hydra.utils")
    omegaconf = import_sam2("omegaconf")
    overrides = [
        f"++model.sam_mask_decoder_extra_args.{k}={v}" for k, v in _DECODER_EXTRA_ARGS.items()
    ]
    cfg = hydra.compose(config_name=OFFICIAL_SAM2[name], overrides=overrides)
    omegaconf.OmegaConf.resolve(cfg)
    return hydra_utils.instantiate(cfg.model, _recursive_=True).eval()


def sam2_checkpoint_name(state: dict[str, torch.Tensor]) -> str | None:
    """The architecture a SAM 2 state dict has (by Hiera's width and depth), or None."""
    w = state.get("image_encoder.trunk.patch_embed.proj.weight")
    prefix = "image_encoder.trunk.blocks."
    depth = len({k[len(prefix) :].split(".")[0] for k in state if k.startswith(prefix)})
    return None if w is None else _SHAPES.get((int(w.shape[0]), depth))


def build_sam2(
    name: str, checkpoint: str | os.PathLike | None = None, *, pretrained: bool = False
) -> nn.Module:
    """A SAM 2 (``SAM2Base``) in eval mode.

    Args:
        name: ``"sam2-tiny"`` (:data:`TINY_SAM2`, random weights, seed 0) or an official SAM 2.1
            architecture: ``"sam2.1_hiera_tiny"``, ``"_small"``, ``"_base_plus"``, ``"_large"``
            (the names of the released checkpoint files).
        checkpoint: local path to a checkpoint of that architecture (the official
            ``sam2.1_hiera_*.pt`` layout: ``{"model": state_dict}``); without it the weights are
            random. Read with ``weights_only=True``.
        pretrained: official SAM 2.1 models only: Meta's released checkpoint from the weights
            cache (:func:`basam_lite.weights.fetch`: downloaded and verified on first use).
    """
    if name not in SAM2_NAMES:
        raise UserError(f"unknown SAM 2 model {name!r}: choose one of {', '.join(SAM2_NAMES)}")
    if pretrained:
        if name not in OFFICIAL_SAM2:
            raise UserError(
                f"pretrained=True is for {', '.join(OFFICIAL_SAM2)}; {name!r} is random"
            )
        if checkpoint is not None:
            raise UserError("give checkpoint= (a local file) or pretrained=True, not both")
        from ..weights import fetch

        checkpoint = fetch(name)
    state = None
    if checkpoint is not None:  # read (safely) and checked before any model is built
        path = existing_file(checkpoint)
        state = read_checkpoint(path)
        if not any(k.startswith("image_encoder.trunk.") for k in state):
            raise UserError(
                f"{path} is a SAM state_dict but not a SAM 2 one (no 'image_encoder.trunk.*' "
                f"keys): load it as a SAM 1 model"
            )
        found = sam2_checkpoint_name(state)
        if found is not None and found != name:
            raise UserError(
                f"{path.name} holds a {found} checkpoint but the model asked for is {name!r}: "
                f"use build_sam2({found!r}, ...)"
            )
    model = build_tiny_sam2() if name == TINY_SAM2_NAME else build_official_sam2(name)
    if state is not None:
        load_weights(model, state, str(path), name)
    return model.eval()


class _LinspaceOnCpu(TorchFunctionMode):
    """``torch.linspace`` on the CPU: Hiera's constructor reads its stochastic-depth rates with
    ``.item()``, which a meta tensor cannot give."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = dict(kwargs or {})
        if func is torch.linspace:
            kwargs["device"] = "cpu"
        return func(*args, **kwargs)


def build_random(name: str) -> nn.Module:
    """A random-weight model of the named architecture: the spec registry's builder, which calls
    it under ``torch.device("meta")`` (no weights allocated)."""
    with _LinspaceOnCpu():
        if name == TINY_SAM2_NAME:  # seeded by the caller (load_model's seed)
            return build_tiny_sam2(seed=None)
        return build_sam2(name)

"""BASAMConfig, apply_basam and remove_basam: BA-SAM swapped into a SAM image encoder.

Patching gives every ``Attention`` module of the encoder the subclass :class:`BASAMAttention`
(one fused-kernel path for all variants) and a record (:mod:`basam_lite.patch_state`), and keeps
every weight.
Which blocks get the scale and the mask is the config's ``blocks``; the others run the same fused
path with plain SAM attention. Zero-shot presets add no parameter and no state_dict key.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Literal, get_args

import torch
from segment_anything.modeling import ImageEncoderViT, Sam
from segment_anything.modeling.image_encoder import Attention
from torch import Tensor, nn

from .attention import ATTENTION_PATHS, AttentionBias, AttentionPath, attend, decomposed_rel_pos
from .masks import MASK_UNITS, METRICS, MaskUnits, Metric, base_unit_scale, resolve_slopes
from .patch_state import (
    BlockPatch,
    attach_block,
    block_parameter,
    block_patch,
    detach_block,
    encoder_patch,
    reattach_block,
    set_block_parameter,
)
from .resolution import base_grid, encoder_grid, set_encoder_config
from .scaling import SCALE_MODES, ScaleMode, attention_scale, check_choice

BiasMode = Literal["none", "alibi2d", "official_relpos"]
BIAS_MODES: tuple[str, ...] = get_args(BiasMode)
Blocks = Literal["global", "all"]
BLOCK_CHOICES: tuple[str, ...] = get_args(Blocks)


@dataclass(frozen=True)
class BASAMConfig:
    """What BA-SAM changes in the image encoder.

    Attributes:
        scale: the logit multiplier lambda: ``"none"``, ``"log_ratio"`` (ln n / ln n_train) or
            ``"official"`` (the official code's integer rule; raises below the training size).
        bias: the additive mask: ``"none"``, ``"alibi2d"`` (2-D ALiBi over the patch grid) or
            ``"official_relpos"`` (a learnable scalar per block times SAM's rel-pos term).
        metric: distance of the ``alibi2d`` mask.
        blocks: ``"global"`` (the global-attention blocks, where sequence length changes) or
            ``"all"``. Windowed blocks always see window_size**2 keys, so their lambda is 1.
        gain: multiplier of the ``alibi2d`` mask.
        train_keys: keys per softmax row at training for global blocks; None infers it from the
            model's original grid (4096 for SAM at 1024 px).
        slopes: per-head mask slopes; None uses Press's ALiBi slopes.
        learnable_gain: make ``gain`` a parameter (adds ``attn.basam_gain`` per patched block).
        rel_pos_coef_init: initial value of the official learnable coefficient.
        use_abs_pos: keep SAM's absolute position embedding (the official code drops it).
        drop_rel_pos: zero SAM's rel-pos tables, as the official code does when it loads SAM
            weights (restored by :func:`remove_basam`).
        path: attention path (see :mod:`basam_lite.attention`); ``"auto"`` picks by size.
        mask_units: the unit of the ``alibi2d`` mask's distances in the global blocks:
            ``"patch"`` (patches of the current grid, the paper's mask) or ``"base"`` (patches
            of the base grid, :func:`basam_lite.masks.base_unit_scale`; this project's own
            variant). Windowed blocks see a fixed window at every size: their mask stays in
            patches.
    """

    scale: ScaleMode = "none"
    bias: BiasMode = "none"
    metric: Metric = "euclidean"
    blocks: Blocks = "global"
    gain: float = 1.0
    train_keys: int | None = None
    slopes: tuple[float, ...] | None = None
    learnable_gain: bool = False
    rel_pos_coef_init: float = 0.1
    use_abs_pos: bool = True
    drop_rel_pos: bool = False
    path: AttentionPath = "auto"
    mask_units: MaskUnits = "patch"
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        check_choice(self.scale, SCALE_MODES, "scale mode")
        check_choice(self.bias, BIAS_MODES, "bias mode")
        check_choice(self.metric, METRICS, "distance metric")
        check_choice(self.blocks, BLOCK_CHOICES, "blocks choice")
        check_choice(self.path, ATTENTION_PATHS, "attention path")
        check_choice(self.mask_units, MASK_UNITS, "mask distance unit")
        if self.mask_units != "patch" and self.bias != "alibi2d":
            raise ValueError(
                f"mask_units={self.mask_units!r} sets the unit of the alibi2d mask's distances: "
                "use it with bias='alibi2d'"
            )
        if not math.isfinite(self.gain) or self.gain < 0:
            raise ValueError(f"gain must be finite and >= 0, got {self.gain!r}")
        if self.train_keys is not None and (
            not isinstance(self.train_keys, int) or self.train_keys < 2
        ):
            raise ValueError(f"train_keys must be None or an integer >= 2, got {self.train_keys!r}")
        if self.learnable_gain and self.bias != "alibi2d":
            raise ValueError("learnable_gain needs bias='alibi2d' (the gain multiplies that mask)")

    @classmethod
    def vanilla(cls) -> BASAMConfig:
        """Plain SAM attention (through the fused path): outputs equal the unpatched model's."""
        return cls(name="vanilla")

    @classmethod
    def scale_only(cls) -> BASAMConfig:
        """The scaling factor alone (log_ratio) in the global blocks."""
        return cls(scale="log_ratio", name="scale")

    @classmethod
    def bias_only(cls) -> BASAMConfig:
        """The 2-D ALiBi mask alone in the global blocks."""
        return cls(bias="alibi2d", name="bias")

    @classmethod
    def paper(cls) -> BASAMConfig:
        """The paper-like reading: log_ratio scale and a euclidean 2-D ALiBi in global blocks."""
        return cls(scale="log_ratio", bias="alibi2d", name="paper")

    @classmethod
    def paper_base(cls) -> BASAMConfig:
        """This project's variant, not the paper's: ``paper`` with the mask's distances in
        patches of the base grid (``mask_units="base"``), so it covers the same share of the
        image at every input size (the position-interpolation analogue for the mask)."""
        return cls(scale="log_ratio", bias="alibi2d", mask_units="base", name="paper_base")

    @classmethod
    def official(cls) -> BASAMConfig:
        """The official code's behaviour: integer scale (global blocks), learnable coefficient
        times rel-pos in every block, no absolute position embedding, rel-pos tables zeroed."""
        return cls(
            scale="official",
            bias="official_relpos",
            blocks="all",
            use_abs_pos=False,
            drop_rel_pos=True,
            name="official",
        )

    @classmethod
    def preset(cls, name: str) -> BASAMConfig:
        """A preset by name: vanilla, scale, bias, paper, paper_base or official."""
        presets = {
            "vanilla": cls.vanilla,
            "scale": cls.scale_only,
            "bias": cls.bias_only,
            "paper": cls.paper,
            "paper_base": cls.paper_base,
            "official": cls.official,
        }
        check_choice(name, tuple(presets), "BA-SAM preset")
        return presets[name]()

    def with_(self, **changes: object) -> BASAMConfig:
        """A copy with some fields changed (validated)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class BASAMAttention(Attention):
    """``segment_anything``'s ``Attention`` with BA-SAM: ``[B, rows, cols, C]`` in and out, on
    :func:`basam_lite.attention.attend` (one fused-kernel path for every config), with the
    block's settings from its :class:`~basam_lite.patch_state.BlockPatch`.

    :func:`apply_basam` gives a module this class; :func:`remove_basam` gives its own back.
    """

    def forward(self, x: Tensor) -> Tensor:
        state = block_patch(self)
        assert state is not None, "BASAMAttention without its BlockPatch: use apply_basam"
        b, rows, cols, _ = x.shape
        n = rows * cols
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, heads, N, head_dim]
        scale = state.scale_for(n) * q.shape[-1] ** -0.5
        bias = AttentionBias((rows, cols), metric=state.config.metric)
        if self.use_rel_pos:
            rel_h, rel_w = decomposed_rel_pos(q, self.rel_pos_h, self.rel_pos_w, (rows, cols))
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
        return self.proj(out.transpose(1, 2).reshape(b, rows, cols, -1))


def image_encoder_of(model: nn.Module) -> ImageEncoderViT:
    """The ``ImageEncoderViT`` of a ``Sam`` (or the encoder itself)."""
    if isinstance(model, Sam):
        return model.image_encoder
    if isinstance(model, ImageEncoderViT):
        return model
    raise TypeError(
        f"expected a segment_anything Sam or ImageEncoderViT, got {type(model).__name__}; "
        f"build one with basam_lite.build_sam(...)"
    )


def is_patched(model: nn.Module) -> bool:
    """Whether :func:`apply_basam` is active on ``model``."""
    return patch_config(model) is not None


def patch_config(model: nn.Module) -> BASAMConfig | None:
    """The config :func:`apply_basam` applied to ``model`` (None when it is not patched)."""
    record = encoder_patch(image_encoder_of(model))
    return None if record is None else record.config


def apply_basam(model: nn.Module, config: BASAMConfig | None = None) -> nn.Module:
    """Patch a ``Sam`` or ``ImageEncoderViT`` in place with ``config`` (default: paper preset)
    and return it. Applying again replaces the previous patch."""
    config = BASAMConfig.paper() if config is None else config
    if not isinstance(config, BASAMConfig):
        raise TypeError(f"config must be a BASAMConfig, got {type(config).__name__}")
    encoder = image_encoder_of(model)
    if is_patched(encoder):
        remove_basam(encoder)
    grid = base_grid(encoder)
    if config.scale == "official":
        # Fail now, not at the first forward, when the model is already set below its base size.
        rows, cols = encoder_grid(encoder)
        attention_scale(rows * cols, config.train_keys or grid[0] * grid[1], "official")
    for block in encoder.blocks:
        attn: Attention = block.attn
        is_global = block.window_size == 0
        active = config.blocks == "all" or is_global
        train_keys = (config.train_keys or grid[0] * grid[1]) if is_global else block.window_size**2
        param = attn.qkv.weight
        slopes = None
        if config.bias == "alibi2d":
            slopes = resolve_slopes(attn.num_heads, config.slopes)
        record = BlockPatch(config, is_global, active, train_keys, slopes, base_grid=tuple(grid))
        if active and config.learnable_gain:
            gain = nn.Parameter(torch.tensor(float(config.gain), device=param.device))
            set_block_parameter(attn, "gain", gain)
        if active and config.bias == "official_relpos" and attn.use_rel_pos:
            coef = torch.tensor(float(config.rel_pos_coef_init), device=param.device)
            set_block_parameter(attn, "rel_pos_coef", nn.Parameter(coef))
        if config.drop_rel_pos and attn.use_rel_pos:
            record.saved_rel_pos = (
                attn.rel_pos_h.detach().clone(),
                attn.rel_pos_w.detach().clone(),
            )
            with torch.no_grad():
                attn.rel_pos_h.zero_()
                attn.rel_pos_w.zero_()
        attach_block(attn, record, BASAMAttention)
    set_encoder_config(encoder, config)
    return model


def set_attention_path(model: nn.Module, path: AttentionPath) -> nn.Module:
    """Switch a patched model's attention path (:mod:`basam_lite.attention`) in place, keeping
    the rest of its patch, learned gains and coefficients included; returns the model."""
    encoder = image_encoder_of(model)
    if not is_patched(encoder):
        raise ValueError(
            "the model has no BA-SAM patch to switch; apply one with "
            "apply_basam(model, config.with_(path=...))"
        )
    config = patch_config(encoder).with_(path=path)  # type: ignore[union-attr]
    for block in encoder.blocks:
        block_patch(block.attn).config = config  # type: ignore[union-attr]
    set_encoder_config(encoder, config)
    return model


@dataclass(frozen=True)
class DetachedPatch:
    """A patch taken off a model by :func:`detach_patch`, to put back with
    :func:`reattach_patch`: each block's record and parameters (the same objects) and the
    rel-pos tables it ran with."""

    config: BASAMConfig
    blocks: tuple[tuple[BlockPatch, dict[str, nn.Parameter], tuple[Tensor, Tensor] | None], ...]


def _unpatch_block(attn: nn.Module) -> tuple[BlockPatch, dict[str, nn.Parameter], object] | None:
    """Unpatch one attention module; returns its record, parameters and patched rel-pos tables."""
    record, params = detach_block(attn)
    if record is None:
        return None
    patched_tables = None
    if record.saved_rel_pos is not None:
        patched_tables = (attn.rel_pos_h.detach().clone(), attn.rel_pos_w.detach().clone())
        with torch.no_grad():
            attn.rel_pos_h.copy_(record.saved_rel_pos[0])
            attn.rel_pos_w.copy_(record.saved_rel_pos[1])
    return record, params, patched_tables


def detach_patch(model: nn.Module) -> DetachedPatch | None:
    """Remove the patch of ``model`` (as :func:`remove_basam`) and return it; None when the
    model has none."""
    encoder = image_encoder_of(model)
    config = patch_config(encoder)
    if config is None:
        return None
    blocks = tuple(_unpatch_block(block.attn) for block in encoder.blocks)
    set_encoder_config(encoder, None)
    return DetachedPatch(config, blocks)  # type: ignore[arg-type]


def reattach_patch(model: nn.Module, detached: DetachedPatch | None) -> nn.Module:
    """Put back a patch from :func:`detach_patch` exactly, same parameter objects included
    (None: leave ``model`` as it is)."""
    if detached is None:
        return model
    encoder = image_encoder_of(model)
    if is_patched(encoder):
        remove_basam(encoder)
    for block, (record, params, patched_tables) in zip(
        encoder.blocks, detached.blocks, strict=True
    ):
        attn = block.attn
        if patched_tables is not None:
            record.saved_rel_pos = (
                attn.rel_pos_h.detach().clone(),
                attn.rel_pos_w.detach().clone(),
            )
            with torch.no_grad():
                attn.rel_pos_h.copy_(patched_tables[0])
                attn.rel_pos_w.copy_(patched_tables[1])
        reattach_block(attn, record, params, BASAMAttention)
    set_encoder_config(encoder, detached.config)
    return model


def remove_basam(model: nn.Module) -> nn.Module:
    """Undo :func:`apply_basam` exactly: original classes, rel-pos tables and parameters."""
    encoder = image_encoder_of(model)
    if not is_patched(encoder):
        return model
    for block in encoder.blocks:
        _unpatch_block(block.attn)
    set_encoder_config(encoder, None)
    return model

"""BASAMConfig, apply_basam and remove_basam: BA-SAM swapped into a SAM image encoder.

Patching replaces the ``forward`` of every ``Attention`` module of the encoder by
:func:`basam_attention_forward` (one fused-kernel path for all variants) and keeps every weight.
Which blocks get the scale and the mask is the config's ``blocks``; the others run the same fused
path with plain SAM attention. Zero-shot presets add no parameter and no state_dict key.
"""

from __future__ import annotations

import math
import types
from dataclasses import asdict, dataclass, field, replace
from typing import Literal, get_args

import torch
from segment_anything.modeling import ImageEncoderViT, Sam
from segment_anything.modeling.image_encoder import Attention
from torch import Tensor, nn

from .attention import ATTENTION_PATHS, AttentionBias, AttentionPath, attend, decomposed_rel_pos
from .masks import METRICS, Metric, resolve_slopes
from .resolution import base_grid, install_dynamic_encoder, uninstall_dynamic_encoder
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
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        check_choice(self.scale, SCALE_MODES, "scale mode")
        check_choice(self.bias, BIAS_MODES, "bias mode")
        check_choice(self.metric, METRICS, "distance metric")
        check_choice(self.blocks, BLOCK_CHOICES, "blocks choice")
        check_choice(self.path, ATTENTION_PATHS, "attention path")
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
        """A preset by name: vanilla, scale, bias, paper or official."""
        presets = {
            "vanilla": cls.vanilla,
            "scale": cls.scale_only,
            "bias": cls.bias_only,
            "paper": cls.paper,
            "official": cls.official,
        }
        check_choice(name, tuple(presets), "BA-SAM preset")
        return presets[name]()

    def with_(self, **changes: object) -> BASAMConfig:
        """A copy with some fields changed (validated)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class BlockState:
    """Per-attention-module BA-SAM settings, kept outside the state_dict."""

    config: BASAMConfig
    is_global: bool
    active: bool  # does this block get BA-SAM (scale and bias)?
    train_keys: int
    slopes: Tensor | None
    capture_hook: object = None  # set by capture_attention

    def scale_for(self, num_keys: int) -> float:
        if not self.active:
            return 1.0
        return attention_scale(num_keys, self.train_keys, self.config.scale)


def basam_attention_forward(self: Attention, x: Tensor) -> Tensor:
    """Replacement for ``segment_anything``'s ``Attention.forward``: ``[B, rows, cols, C]`` in
    and out, on :func:`basam_lite.attention.attend`."""
    state: BlockState = self.basam_state
    b, rows, cols, _ = x.shape
    n = rows * cols
    qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # each [B, heads, N, head_dim]
    scale = state.scale_for(n) * q.shape[-1] ** -0.5
    bias = AttentionBias((rows, cols), metric=state.config.metric)
    if self.use_rel_pos:
        rel_h, rel_w = decomposed_rel_pos(q, self.rel_pos_h, self.rel_pos_w, (rows, cols))
        coef = getattr(self, "basam_rel_pos_coef", None)
        if coef is not None:
            rel_h, rel_w = coef * rel_h, coef * rel_w
        bias.rel_h, bias.rel_w = rel_h, rel_w
    if state.active and state.slopes is not None:
        gain = getattr(self, "basam_gain", None)
        slopes = state.slopes.to(q.device)
        bias.slopes = slopes * (gain if gain is not None else state.config.gain)
    if state.capture_hook is not None:
        state.capture_hook(self, q, k, scale, bias)  # type: ignore[operator]
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
    return getattr(image_encoder_of(model), "basam_config", None) is not None


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
        current = getattr(encoder, "basam_input_hw", None)
        if current is not None:
            patch = encoder.patch_embed.proj.stride[0]
            keys = (current[0] // patch) * (current[1] // patch)
            attention_scale(keys, config.train_keys or grid[0] * grid[1], "official")
    for block in encoder.blocks:
        attn: Attention = block.attn
        is_global = block.window_size == 0
        active = config.blocks == "all" or is_global
        train_keys = (config.train_keys or grid[0] * grid[1]) if is_global else block.window_size**2
        param = attn.qkv.weight
        slopes = None
        if config.bias == "alibi2d":
            slopes = resolve_slopes(attn.num_heads, config.slopes)
        attn.basam_state = BlockState(config, is_global, active, train_keys, slopes)
        if active and config.learnable_gain:
            attn.basam_gain = nn.Parameter(torch.tensor(float(config.gain), device=param.device))
        if active and config.bias == "official_relpos" and attn.use_rel_pos:
            attn.basam_rel_pos_coef = nn.Parameter(
                torch.tensor(float(config.rel_pos_coef_init), device=param.device)
            )
        if config.drop_rel_pos and attn.use_rel_pos:
            attn.basam_saved_rel_pos = (
                attn.rel_pos_h.detach().clone(),
                attn.rel_pos_w.detach().clone(),
            )
            with torch.no_grad():
                attn.rel_pos_h.zero_()
                attn.rel_pos_w.zero_()
        attn.forward = types.MethodType(basam_attention_forward, attn)
    encoder.basam_config = config
    encoder.basam_use_abs_pos = config.use_abs_pos
    install_dynamic_encoder(encoder)
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
    config = encoder.basam_config.with_(path=path)
    for block in encoder.blocks:
        block.attn.basam_state.config = config
    encoder.basam_config = config
    return model


@dataclass(frozen=True)
class DetachedPatch:
    """A patch taken off a model by :func:`detach_patch`: its config and the values of its
    parameters and rel-pos tables, for :func:`reattach_patch`."""

    config: BASAMConfig
    values: dict[str, Tensor]


def detach_patch(model: nn.Module) -> DetachedPatch | None:
    """Remove the patch of ``model`` (as :func:`remove_basam`) and return it; None when the
    model has none."""
    encoder = image_encoder_of(model)
    if not is_patched(encoder):
        return None
    values = {
        k: v.detach().clone()
        for k, v in encoder.state_dict().items()
        if "basam_" in k or "rel_pos" in k
    }
    detached = DetachedPatch(encoder.basam_config, values)
    remove_basam(encoder)
    return detached


def reattach_patch(model: nn.Module, detached: DetachedPatch | None) -> nn.Module:
    """Put back a patch from :func:`detach_patch` (None: leave ``model`` unpatched)."""
    if detached is None:
        return model
    encoder = image_encoder_of(model)
    apply_basam(encoder, detached.config)
    current = encoder.state_dict()
    with torch.no_grad():
        for k, v in detached.values.items():
            current[k].copy_(v)
    return model


def remove_basam(model: nn.Module) -> nn.Module:
    """Undo :func:`apply_basam` exactly: original forwards, rel-pos tables and parameters."""
    encoder = image_encoder_of(model)
    if not is_patched(encoder):
        return model
    for block in encoder.blocks:
        attn = block.attn
        saved = attn.__dict__.pop("basam_saved_rel_pos", None)
        if saved is not None:
            with torch.no_grad():
                attn.rel_pos_h.copy_(saved[0])
                attn.rel_pos_w.copy_(saved[1])
        for name in ("basam_gain", "basam_rel_pos_coef"):
            if name in attn._parameters:
                del attn._parameters[name]
        attn.__dict__.pop("forward", None)
        attn.__dict__.pop("basam_state", None)
    encoder.basam_config = None
    encoder.basam_use_abs_pos = True
    uninstall_dynamic_encoder(encoder)
    return model

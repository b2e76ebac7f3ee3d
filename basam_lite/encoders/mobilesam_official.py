r"""BA-SAM in MobileSAM's TinyViT window attention, and what BA-SAM's premise means there.

Every TinyViT attention call is one window of :math:`w \times w` tokens (:math:`N = w^2`; the
blocks pad the stage grid to whole windows, padded tokens included as keys as in
``mobile_sam``). Per head :math:`h`, for queries :math:`q_i` and keys :math:`k_j` of the window
(key width :math:`d`),

.. math::
    o_i = \sum_j \mathrm{softmax}_j\Big(\lambda\,\frac{q_i\cdot k_j}{\sqrt d}
        + c\, T_h[\,|\Delta r_{ij}|, |\Delta c_{ij}|\,] - g\, m_h\, \mathrm{dist}(p_i, p_j)\Big)
        \, v_j

with :math:`T_h` TinyViT's own learned bias table (``attention_biases[h, attention_bias_idxs]``),
:math:`c` the official code's coefficient (1 otherwise), :math:`m_h` Press's ALiBi slopes over
the window grid and :math:`g` the gain.

**No row sees more keys as the image grows.** Every softmax row has :math:`w^2` keys at every
input size (49 or 196), exactly as at 1024 px. Under the project's rule
:math:`\lambda = \ln n / \ln n_\text{train}` with :math:`n = n_\text{train} = w^2`,
:math:`\lambda = 1` in every window at every size: the ``scale`` preset *is* the stock model on
MobileSAM. What changes with the input size is the number of windows (the tokens a window holds
are a smaller share of a larger image) and how much of the image the convolutions (stem, MBConv,
the 3x3 ``local_conv`` of every block, the merges) see: their receptive field is fixed in
pixels, so it covers less of a larger image. BA-SAM's length-extrapolation argument does not
reach either. MobileSAM has no global block, so the presets that act on global blocks only
(``scale``, ``bias``, ``paper``, ``paper_base``: ``blocks="global"``) leave it unchanged; use
``config.with_(blocks="all")`` to put the mask (and a lambda, which stays 1) in every window.
``mask_units="base"`` is the same as ``"patch"`` here (windows have one size at every input
size), and ``use_abs_pos``/``drop_rel_pos`` have nothing to act on (no absolute embedding, no
rel-pos tables; the official code keeps TinyViT's bias table).

**The official preset** (``BASAMConfig.official()``, ``blocks="all"``) is the official code's
MobileSAM behaviour (:data:`MOBILE_REFERENCES`): every window scales its logits by

.. math:: \lambda_\text{off} = \log_{1444}(s^2 \cdot 1444), \qquad
    s = \lfloor \text{image side} / 1024 \rfloor,

where 1444 is, by the official comment, the batch dimension of the attention input the
authors saw: 4 x 361, the stage-1 windows (19 x 19 of 7 x 7 tokens) of four 1024 px images, not
a softmax length; :math:`s` is an integer fixed at build
(1536 px gives 1, below 1024 px the official model cannot be built: ``log(0)``). For non-square
sizes :math:`s = \lfloor\sqrt{HW}/1024\rfloor` (``isqrt`` of the floored pixel ratio), which is
the side rule for squares. In training mode the bias table is multiplied by a learnable
coefficient per block (initialised to 0.1); in eval mode the official code adds the cached table
without it, and so does this preset.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UserError
from ..masks import grid_distances, resolve_slopes
from ..official import OfficialRef, ref
from ..patch import BASAMConfig
from ..patch_state import block_parameter, set_block_parameter
from .mobilesam import (
    BASE_SIDE,
    attention_blocks,
    mobile_input_size,
    tiny_vit_of,
)

#: The official code's constant: its comment calls it the batch dimension of the attention input.
OFFICIAL_BASE = 1444

_T = "mobile_sam/modeling/tiny_vit_sam.py"
_B = "mobile_sam/build_sam.py"
_D = "dabc86ee9387a13f86cc1f9955187cd32f68153c"

#: Where each claim about the official MobileSAM path can be checked (``OfficialRef``: file,
#: 1-based lines, commit, a token on those lines; no line is copied). The first three are the
#: project's notebook-08 references; the others are this family's.
MOBILE_REFERENCES: tuple[OfficialRef, ...] = (
    ref("mobile-1444"),
    ref("mobile-bias-train-only"),
    ref("mobile-ab-unscaled"),
    OfficialRef(
        "mobile-coefficient-init",
        "each TinyViT attention module adds one learnable coefficient, initialised to 0.1",
        _T,
        _D,
        (255, 255),
        "torch.tensor([0.1])",
    ),
    OfficialRef(
        "mobile-length-scale",
        "the side ratio passed to every attention layer is img_size // 1024, an integer",
        _T,
        _D,
        (521, 521),
        "img_size // 1024",
    ),
    OfficialRef(
        "mobile-fixed-views",
        "forward_features views the last stage as 32, 64, 128 or 256 tokens a side for 512, "
        "1024, 2048 or 4096 px and prints a message for any other size",
        _T,
        _D,
        (621, 630),
        "Wrong Resolution",
    ),
    OfficialRef(
        "mobile-eval-before-load",
        "build_sam_vit_t calls eval() before loading the checkpoint (strict=False), so the "
        "cached eval-mode bias tables are the zero tables of the fresh model until eval() runs "
        "again",
        _B,
        _D,
        (91, 95),
        "strict = False",
    ),
)


def official_mobile_scale(input_hw: tuple[int, int]) -> float:
    r""":math:`\log_{1444}(s^2 \cdot 1444)` with :math:`s = \lfloor\sqrt{HW}/1024\rfloor`
    (the side ratio for squares). :class:`UserError` below 1024 px, where :math:`s = 0` and the
    official code cannot build the model."""
    s = math.isqrt((input_hw[0] * input_hw[1]) // (BASE_SIDE * BASE_SIDE))
    if s == 0:
        raise UserError(
            f"the official MobileSAM scale cannot run at {input_hw[0]}x{input_hw[1]} px: its rule "
            f"log_{OFFICIAL_BASE}(s^2 * {OFFICIAL_BASE}) uses s = side // {BASE_SIDE} = 0 "
            "(log(0): the official code cannot build the model below 1024 px); use another preset"
        )
    return math.log(s * s * OFFICIAL_BASE) / math.log(OFFICIAL_BASE)


def window_scale(config: BASAMConfig, window: int, input_hw: tuple[int, int]) -> float:
    r"""lambda of an active window block: 1 for ``"none"``; :math:`\ln n/\ln n_\text{train}`
    with :math:`n = n_\text{train} = w^2` (exactly 1) for ``"log_ratio"``; the official rule."""
    if config.scale == "official":
        return official_mobile_scale(input_hw)
    if config.scale == "log_ratio":
        n = window * window
        return math.log(n) / math.log(n)
    return 1.0


@dataclass
class WindowPatch:
    """BA-SAM's settings of one TinyViT attention module (outside the state_dict).

    Attributes:
        config: the patch's config.
        active: whether the block gets the scale and the mask (``blocks="all"``; MobileSAM has
            no global block).
        window: the window side ``w`` (``N = w^2`` tokens per softmax row).
        slopes: ``[heads]`` ALiBi slopes (None: no mask).
        scale: lambda at the current input size (:func:`refresh_scales`).
        original: the module's class before patching.
        capture_hook: called with ``(attn, q, k, scale, bias)`` each forward, ``bias``
            ``[1, heads, N, N]`` (set by :func:`capture_mobile_attention`).
    """

    config: BASAMConfig
    active: bool
    window: int
    slopes: Tensor | None
    scale: float = 1.0
    original: type[nn.Module] = nn.Module
    capture_hook: Callable[..., None] | None = field(default=None, compare=False)


_RECORD = "basam_window"
_CONFIG = "basam_mobile_config"


def window_patch(attn: nn.Module) -> WindowPatch | None:
    return attn.__dict__.get(_RECORD)


def bias_table(attn: nn.Module) -> Tensor:
    """TinyViT's own per-head bias for one window, ``[heads, N, N]``: the live table in training
    mode, the cached ``ab`` in eval mode (as ``mobile_sam``'s forward)."""
    if not attn.training and "ab" in attn._buffers:
        return attn.ab
    return attn.attention_biases[:, attn.attention_bias_idxs]


def window_bias(attn: nn.Module, record: WindowPatch, device: torch.device) -> Tensor:
    """Everything added to the scaled logits of one window, ``[1, heads, N, N]``."""
    table = bias_table(attn)
    coef = block_parameter(attn, "rel_pos_coef")
    if coef is not None and attn.training:  # the official code: coefficient in training only
        table = coef * table
    if record.active and record.slopes is not None:
        gain = block_parameter(attn, "gain")
        g = gain if gain is not None else record.config.gain
        dist = grid_distances((record.window, record.window), record.config.metric).to(device)
        table = table - (g * record.slopes.to(device))[:, None, None] * dist
    return table[None]


def _patched_class() -> type[nn.Module]:
    cached = globals().get("BASAMTinyAttention")
    if cached is not None:
        return cached
    from .mobilesam_import import mobile_sam_module

    base = mobile_sam_module().modeling.tiny_vit_sam.Attention

    class BASAMTinyAttention(base):  # type: ignore[misc, valid-type]
        """``mobile_sam``'s TinyViT ``Attention`` with BA-SAM (``[windows, N, C]`` in and out),
        on PyTorch's fused kernel with the bias as ``attn_mask``."""

        def forward(self, x: Tensor) -> Tensor:
            record = window_patch(self)
            assert record is not None, "BASAMTinyAttention without its record: use the patch"
            b, n, _ = x.shape
            x = self.norm(x)
            q, k, v = (
                self.qkv(x)
                .view(b, n, self.num_heads, -1)
                .split([self.key_dim, self.key_dim, self.d], dim=3)
            )
            q, k, v = (t.permute(0, 2, 1, 3) for t in (q, k, v))  # [windows, heads, N, d]
            lam = record.scale if record.active else 1.0
            scale = lam * self.key_dim**-0.5  # logits = lambda q.k / sqrt(d) + bias
            bias = window_bias(self, record, x.device).to(q.dtype)
            if record.capture_hook is not None:
                record.capture_hook(self, q, k, scale, bias)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
            return self.proj(out.transpose(1, 2).reshape(b, n, self.dh))

    BASAMTinyAttention.__module__ = __name__
    BASAMTinyAttention.__qualname__ = "BASAMTinyAttention"
    globals()["BASAMTinyAttention"] = BASAMTinyAttention
    return BASAMTinyAttention


def __getattr__(name: str) -> Any:
    if name == "BASAMTinyAttention":
        return _patched_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def mobile_patch_config(model: nn.Module) -> BASAMConfig | None:
    """The config applied to a MobileSAM (None when unpatched)."""
    return tiny_vit_of(model).__dict__.get(_CONFIG)


def refresh_scales(model: nn.Module) -> None:
    """Recompute every patched window's lambda for the model's current input size."""
    enc = tiny_vit_of(model)
    hw = mobile_input_size(enc)
    for blk in attention_blocks(enc):
        record = window_patch(blk.attn)
        if record is not None:
            record.scale = window_scale(record.config, blk.window_size, hw)


def remove_mobile_basam(model: nn.Module) -> nn.Module:
    """Undo :func:`apply_mobile_basam` exactly: original classes, no added parameter."""
    enc = tiny_vit_of(model)
    for blk in attention_blocks(enc):
        attn = blk.attn
        record = attn.__dict__.pop(_RECORD, None)
        for name in ("basam_gain", "basam_rel_pos_coef"):
            attn._parameters.pop(name, None)
        if record is not None:
            attn.__class__ = record.original
    enc.__dict__.pop(_CONFIG, None)
    return model


def apply_mobile_basam(model: nn.Module, config: BASAMConfig | None = None) -> nn.Module:
    """Patch a MobileSAM ``Sam`` (or TinyViT) in place with ``config`` (default: ``paper``);
    returns it. Applying again replaces the previous patch. Zero-shot presets add no parameter;
    ``official`` adds one coefficient per block (``attn.basam_rel_pos_coef``), ``learnable_gain``
    one gain (``attn.basam_gain``)."""
    config = BASAMConfig.paper() if config is None else config
    if not isinstance(config, BASAMConfig):
        raise TypeError(f"config must be a BASAMConfig, got {type(config).__name__}")
    enc = tiny_vit_of(model)
    hw = mobile_input_size(enc)
    active = config.blocks == "all"  # no TinyViT block is global
    if active:
        window_scale(config, 7, hw)  # refuse now (official below 1024 px), not at forward
    remove_mobile_basam(enc)
    cls = _patched_class()
    for blk in attention_blocks(enc):
        attn = blk.attn
        device = attn.qkv.weight.device
        slopes = None
        if active and config.bias == "alibi2d":
            slopes = resolve_slopes(attn.num_heads, config.slopes)
        record = WindowPatch(config, active, blk.window_size, slopes, original=type(attn))
        record.scale = window_scale(config, blk.window_size, hw) if active else 1.0
        if active and config.learnable_gain:
            gain = torch.tensor(float(config.gain), device=device)
            set_block_parameter(attn, "gain", nn.Parameter(gain))
        if active and config.bias == "official_relpos":
            coef = torch.tensor(float(config.rel_pos_coef_init), device=device)
            set_block_parameter(attn, "rel_pos_coef", nn.Parameter(coef))
        attn.__dict__[_RECORD] = record
        attn.__class__ = cls
    enc.__dict__[_CONFIG] = config
    return model

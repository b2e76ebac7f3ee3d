"""BASAMConfig: what BA-SAM changes in an image encoder (a frozen, validated dataclass).

A module of its own, at the bottom of the patching layer: :mod:`basam_lite.patch`,
:mod:`basam_lite.patch_state`, :mod:`basam_lite.resolution` and every family adapter import it,
and it imports none of them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Literal, get_args

from .attention import ATTENTION_PATHS, AttentionPath
from .masks import MASK_UNITS, METRICS, MaskUnits, Metric
from .scaling import SCALE_MODES, ScaleMode, check_choice

BiasMode = Literal["none", "alibi2d", "official_relpos"]
BIAS_MODES: tuple[str, ...] = get_args(BiasMode)
Blocks = Literal["global", "all"]
BLOCK_CHOICES: tuple[str, ...] = get_args(Blocks)


@dataclass(frozen=True)
class BASAMConfig:
    """What BA-SAM changes in the image encoder.

    Attributes:
        scale: the logit multiplier lambda: ``"none"``, ``"log_ratio"`` (ln n / ln n_train),
            ``"official"`` (the official code's integer rule; raises below the training size),
            or a test-time temperature rule beside it (``"yarn"``, ``"jin"``, ``"infoscale"``:
            :mod:`basam_lite.scaling`).
        bias: the additive mask: ``"none"``, ``"alibi2d"`` (2-D ALiBi over the patch grid) or
            ``"official_relpos"`` (a learnable scalar per block times the family's own
            position terms: SAM's rel-pos term).
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
        drop_rel_pos: zero the family's own position tables (SAM's rel-pos tables; the
            adapter's ``position_tables``), as the official code does when it loads SAM weights
            (restored by :func:`~basam_lite.remove_basam`).
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

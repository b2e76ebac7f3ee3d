"""TrainConfig: one training run's settings (a validated dataclass), in a module of its own so
that :mod:`basam_lite.train` and :mod:`basam_lite.model_card` both import it and neither imports
the other back."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import UserError
from .models import TINY, TinySpec
from .precision import PRECISIONS, Precision, resolve_precision


@dataclass
class TrainConfig:
    """One training run. ``preset``: a BASAMConfig preset name active while training
    (``"vanilla"`` trains plain SAM attention). ``init``: model name or checkpoint path to
    fine-tune from (None: random init, seed ``seed``). ``model``: the registered architecture
    trained from scratch (:data:`basam_lite.encoders.specs.MODELS`; ``"tiny"`` is the tiny
    SAM 1 of ``spec``, ``"sam2-tiny"`` the tiny SAM 2)."""

    name: str = "tiny-vanilla"
    model: str = "tiny"
    preset: str = "vanilla"
    init: str | None = None
    steps: int = 5000
    batch_size: int = 8
    lr: float = 5e-4  # 1e-3 and 2.5e-4 both learned slower (scripts/recipe_study.py)
    min_lr_ratio: float = 0.02
    weight_decay: float = 0.01
    warmup: int = 50
    grad_clip: float = 1.0
    iou_loss_weight: float = 1.0
    pos_weight_max: float = 1.0  # > 1: BCE weight of object pixels, background/object ratio
    box_jitter: float = 0.03  # max box edge shift, as a fraction of the box side
    masks_per_image: int = 3  # prompts per scene: its target plus other visible objects
    min_object_area: float = 0.01  # smallest visible area (image fraction) used as a target
    # Three prompts per scene on objects of >= 1% (not five down to 0.2%): faster steps and
    # higher box IoU after 1000 and 2000 steps (scripts/recipe_study.py).
    size: int = 256
    seed: int = 0
    threads: int = 2
    preset_from: int = 0  # step at which the preset is applied; before it: plain attention
    mix: str = "standard"  # scene mix of the training stream (SceneMix.named)
    # The image encoder under bf16 autocast ("bf16") or in float32 ("fp32"); "auto" picks bf16
    # only where the CPU does bf16 natively (basam_lite.precision), and a run records the pick.
    precision: Precision = "auto"
    decoder_batched: bool = True  # one decoder pass for all of a step's prompts (--time-steps)
    spec: TinySpec = TINY  # architecture of a model trained from scratch (init=None)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "masks_per_image", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise UserError(f"TrainConfig.warmup must be an integer >= 0, got {self.warmup!r}")
        from .encoders.specs import MODELS  # the one registry of named models

        if self.model not in MODELS:
            raise UserError(
                f"TrainConfig.model must be a registered model ({', '.join(MODELS)}), got "
                f"{self.model!r}"
            )
        if self.precision not in PRECISIONS:
            raise UserError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )

    @property
    def encoder_bf16(self) -> bool:
        """Whether the image encoder runs under bf16 autocast (``precision`` resolved)."""
        return resolve_precision(self.precision)[0] == "bf16"

    def describe(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def completed(cls, saved: dict[str, object]) -> dict[str, object]:
        """A saved config dict, ``spec`` included, with the fields added since it was written
        set to what runs of that time did (:data:`BEFORE_FIELD_EXISTED`) or to their defaults.
        A run saved before ``precision`` existed recorded ``encoder_bf16`` instead."""
        saved = dict(saved)
        if "encoder_bf16" in saved:
            saved.setdefault("precision", "bf16" if saved.pop("encoder_bf16") else "fp32")
        spec = {**asdict(TinySpec()), **saved.get("spec", {})}  # type: ignore[dict-item]
        return {**cls().describe(), **BEFORE_FIELD_EXISTED, **saved, "spec": spec}


BEFORE_FIELD_EXISTED: dict[str, object] = {"decoder_batched": False, "precision": "bf16"}
"""TrainConfig fields whose default differs from what runs saved before the field existed did
(they decoded prompt by prompt, with the encoder under bf16 autocast), so that resuming such a
run is refused, not silently changed."""

"""The state a patched or resized SAM carries: one typed record per attention block and one per
image encoder, and the only code that reads or writes it.

:func:`basam_lite.apply_basam` and :func:`basam_lite.set_input_size` change a module's behaviour
by giving it a small subclass (``module.__class__ = ...``: each family adapter's patched
attention and sized encoder, e.g. ``segment_anything``'s ``BASAMAttention``, ``SizedEncoder``
and ``SizedSam`` in :mod:`basam_lite.encoders.sam1`) and a record here. Nothing else is stored
on the module but the parameters a config adds (``basam_gain``, ``basam_rel_pos_coef``: names
that are part of the state_dict, hence of saved checkpoints). Subclasses and records are plain
module-level classes and dataclasses, so a patched model survives ``copy.deepcopy``, ``pickle``
and ``torch.save``.

Other modules use the functions below, never the attribute names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from torch import Tensor, nn

if TYPE_CHECKING:
    from .config import BASAMConfig

BlockParameter = Literal["gain", "rel_pos_coef"]
BLOCK_PARAMETERS: tuple[BlockParameter, ...] = ("gain", "rel_pos_coef")
_PARAMETER_NAMES = {"gain": "basam_gain", "rel_pos_coef": "basam_rel_pos_coef"}
_BLOCK = "basam_block"
_ENCODER = "basam_encoder"


@dataclass
class BlockPatch:
    """BA-SAM's settings of one attention module (outside the state_dict).

    Attributes:
        config: the patch's config.
        is_global: a global-attention block (its adapter's ``AttentionBlock.is_global``).
        active: whether the block gets the scale and the mask.
        train_keys: keys per softmax row at training (the lambda's denominator).
        slopes: per-head mask slopes ``[heads]`` (None: no ``alibi2d`` mask).
        original: the module's class before patching (restored by :func:`detach_block`).
        base_grid: the block's key grid at the encoder's base size (the unit of a
            ``mask_units="base"`` mask).
        saved_position: the family's position tables by name (SAM's rel-pos tables
            ``rel_pos_h [2h-1, d]``, ``rel_pos_w [2w-1, d]``) when the config zeroed them (put
            back by :func:`basam_lite.remove_basam`).
        capture_hook: called with ``(attn, q, k, scale, bias)`` at each forward (set by
            :func:`basam_lite.capture_attention`).
    """

    config: BASAMConfig
    is_global: bool
    active: bool
    train_keys: int
    slopes: Tensor | None
    original: type[nn.Module] = nn.Module
    base_grid: tuple[int, int] = (0, 0)
    saved_position: dict[str, Tensor] | None = None
    capture_hook: Callable[..., None] | None = None

    def scale_for(self, num_keys: int, head_dim: int | None = None) -> float:
        """lambda for a softmax over ``num_keys`` keys (1 in an inactive block); ``head_dim``
        (the per-head q.k width) for the rules that need it (InfoScale)."""
        from .scaling import attention_scale

        if not self.active:
            return 1.0
        return attention_scale(num_keys, self.train_keys, self.config.scale, head_dim=head_dim)


@dataclass
class EncoderPatch:
    """What an image encoder runs at: its base size, its input size and its BA-SAM config.

    Attributes:
        base_hw: the (height, width) the encoder was built for.
        original: the encoder's class before it was given the any-size forward.
        input_hw: the size it runs at (None: the base size).
        config: the BA-SAM config applied (None: not patched).
    """

    base_hw: tuple[int, int]
    original: type[nn.Module]
    input_hw: tuple[int, int] | None = None
    config: BASAMConfig | None = None

    @property
    def use_abs_pos(self) -> bool:
        return self.config is None or self.config.use_abs_pos

    @property
    def needed(self) -> bool:
        """Whether the encoder still needs the record (patched or away from its base size)."""
        return self.config is not None or self.input_hw is not None


def swap_class(module: nn.Module, cls: type[nn.Module]) -> type[nn.Module]:
    """Give ``module`` the class ``cls`` (a subclass adding behaviour, no state of its own) and
    return the class it had."""
    original = type(module)
    module.__class__ = cls
    return original


# ---------------------------------------------------------------- attention blocks


def block_patch(attn: nn.Module) -> BlockPatch | None:
    """The record of a patched attention module (None when unpatched)."""
    return attn.__dict__.get(_BLOCK)


def attach_block(attn: nn.Module, record: BlockPatch, cls: type[nn.Module]) -> None:
    """Patch ``attn``: record ``record`` and give it the class ``cls``."""
    record.original = swap_class(attn, cls)
    attn.__dict__[_BLOCK] = record


def detach_block(attn: nn.Module) -> tuple[BlockPatch | None, dict[str, nn.Parameter]]:
    """Unpatch ``attn``: its class back, record and added parameters removed (returned, so
    :func:`reattach_block` can put the same objects back). The position tables are the
    caller's."""
    record = attn.__dict__.pop(_BLOCK, None)
    params = {}
    for key, name in _PARAMETER_NAMES.items():
        if name in attn._parameters:
            params[key] = attn._parameters.pop(name)
    if record is not None:
        attn.__class__ = record.original
    return record, params


def reattach_block(
    attn: nn.Module, record: BlockPatch, params: dict[str, nn.Parameter], cls: type[nn.Module]
) -> None:
    """Undo :func:`detach_block` with the objects it returned."""
    attach_block(attn, record, cls)
    for key, param in params.items():
        set_block_parameter(attn, key, param)  # type: ignore[arg-type]


def block_parameter(attn: nn.Module, key: BlockParameter) -> nn.Parameter | None:
    """The parameter ``key`` a patch added to ``attn`` (None when it has none)."""
    return attn._parameters.get(_PARAMETER_NAMES[key])


def set_block_parameter(attn: nn.Module, key: BlockParameter, param: nn.Parameter) -> None:
    """Register ``param`` on ``attn`` under the state_dict name of ``key``."""
    attn.register_parameter(_PARAMETER_NAMES[key], param)


# ---------------------------------------------------------------- image encoders


def encoder_patch(encoder: nn.Module) -> EncoderPatch | None:
    """The record of an encoder that is patched or away from its base size (else None)."""
    return encoder.__dict__.get(_ENCODER)


def attach_encoder(encoder: nn.Module, record: EncoderPatch, cls: type[nn.Module] | None) -> None:
    """Record ``record`` on ``encoder`` and give it the class ``cls`` (``record.original`` is
    kept when the encoder already has ``cls``; None: the encoder keeps its class)."""
    if cls is not None and type(encoder) is not cls:
        record.original = swap_class(encoder, cls)
    encoder.__dict__[_ENCODER] = record


def encoder_record(
    encoder: nn.Module, base_hw: tuple[int, int], cls: type[nn.Module] | None
) -> EncoderPatch:
    """The encoder's record, made (base size ``base_hw``, class ``cls``) when missing."""
    record = encoder_patch(encoder)
    if record is None:
        record = EncoderPatch(base_hw, type(encoder))
        attach_encoder(encoder, record, cls)
    return record


def drop_encoder_record_if_unneeded(encoder: nn.Module) -> None:
    """Give the encoder its stock class back unless BA-SAM or a non-base size still needs the
    record."""
    record = encoder_patch(encoder)
    if record is not None and not record.needed:
        detach_encoder(encoder)


def detach_encoder(encoder: nn.Module) -> EncoderPatch | None:
    """Remove the encoder's record and give it its class back; returns the record."""
    record = encoder.__dict__.pop(_ENCODER, None)
    if record is not None:
        encoder.__class__ = record.original
    return record


def parameter_names() -> tuple[str, ...]:
    """The state_dict leaf names of BA-SAM's own parameters (the learnable gain, the official
    rel-pos coefficient), for code that groups a model's parameters by role."""
    return tuple(_PARAMETER_NAMES.values())

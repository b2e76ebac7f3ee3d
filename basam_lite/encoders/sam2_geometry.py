r"""SAM 2 at other input sizes: which sizes Hiera allows, each block's token grids, and what
must follow the size outside the encoder.

What SAM 2 itself does for position (``Hiera._get_pos_embed``): a small background table
(7 x 7 in SAM 2.1) resized **bicubically** to the stride-4 token grid at every size, the base
size included, plus an 8 x 8 window table **tiled** over the grid. Nothing in the encoder is
fixed at build time, so ``Hiera`` already runs at any size that satisfies two constraints:

- the tile: the stride-4 grid must be a whole number of window tables (``tile`` floors, and the
  sum then fails with a size mismatch), i.e. the grid a multiple of ``window_spec[0]`` (8);
- the pyramid: three 2x2 query poolings (``MaxPool2d``, floor) must divide the grid exactly, or
  the FPN's 2x top-down upsampling and the mask decoder's skip connections mismatch.

With a stride-4 patch embedding both mean: the side is a multiple of
``4 * lcm(window_spec[0], 2**pools)``, **32 px** for every SAM 2.1 model and the tiny one.
:func:`check_sam2_size` refuses anything else in one line. Sizes are square: ``SAM2Base.image_size``
and ``SAM2Transforms`` carry one side (SAM 2 resizes every image to a square).

Fixed at build time outside the encoder, and set by the adapter's ``resize``
(:func:`basam_lite.set_input_size`):
``SAM2Base.image_size`` and ``sam_image_embedding_size`` (side / 16), the prompt encoder's
``image_embedding_size``, ``input_image_size`` and ``mask_input_size``; in
``SAM2ImagePredictor`` the ``_bb_feat_sizes`` (side / 4, / 8, / 16) and
``SAM2Transforms(resolution)`` (see :mod:`basam_lite.encoders.sam2_predictor`).

The base size is not in the weights (the background table is resized even at the base size):
the adapter notes the model's ``image_size`` on the trunk (:func:`note_base_size`).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from torch import nn

from ..errors import UserError

_BASE_NOTE = "basam_sam2_base"
SAM2_DEFAULT_BASE = 1024
"""The side every released SAM 2 / 2.1 model was trained at (``image_size: 1024`` in all of the
package's configs): the base of a bare Hiera trunk whose model was never seen."""


@dataclass(frozen=True)
class BlockGeometry:
    """Where one Hiera block's attention lives at an input size.

    Attributes:
        index: the block's index in ``trunk.blocks``.
        grid: the (rows, cols) feature grid entering the block (the image's token grid there).
        window: the block's window side, 0 for a global block.
        q_stride: the query pooling stride (1 without pooling).
        key_grid: the grid of keys in one softmax row: ``grid`` for a global block, the
            window for a windowed one.
        query_grid: the grid of queries: ``key_grid`` pooled by ``q_stride`` (floor).
    """

    index: int
    grid: tuple[int, int]
    window: int
    q_stride: int

    @property
    def is_global(self) -> bool:
        return self.window == 0

    @property
    def key_grid(self) -> tuple[int, int]:
        return self.grid if self.is_global else (self.window, self.window)

    @property
    def query_grid(self) -> tuple[int, int]:
        s = self.q_stride
        return (self.key_grid[0] // s, self.key_grid[1] // s)

    @property
    def num_keys(self) -> int:
        """Keys in each softmax row (padding keys of edge windows included, as SAM 2 does)."""
        return self.key_grid[0] * self.key_grid[1]


def trunk_of(model: nn.Module) -> nn.Module:
    """The Hiera trunk of a ``SAM2Base``, an ``ImageEncoder`` or a ``Hiera``."""
    encoder = getattr(model, "image_encoder", model)
    trunk = getattr(encoder, "trunk", encoder)
    if not hasattr(trunk, "blocks") or not hasattr(trunk, "window_spec"):
        raise TypeError(
            f"expected a SAM 2 model (SAM2Base with a Hiera trunk), got {type(model).__name__}"
        )
    return trunk


def patch_stride(trunk: nn.Module) -> int:
    """The stride of Hiera's patch embedding (4)."""
    return int(trunk.patch_embed.proj.stride[0])


def _q_stride(block: nn.Module) -> int:
    return int(block.q_stride[0]) if block.q_stride else 1


def size_unit(model: nn.Module) -> int:
    """The side every input size must be a multiple of (32 px for SAM 2.1 and the tiny)."""
    trunk = trunk_of(model)
    pooling = math.prod(_q_stride(b) for b in trunk.blocks)
    window = int(trunk.pos_embed_window.shape[-1])
    return patch_stride(trunk) * math.lcm(window, pooling)


def check_sam2_size(model: nn.Module, size: object) -> int:
    """``size`` (an int, or a square (side, side)) as a side SAM 2 accepts; one-line
    :class:`~basam_lite.errors.UserError` otherwise."""
    if isinstance(size, (tuple, list)) and len(size) == 2:
        if size[0] != size[1]:
            raise UserError(
                f"SAM 2 runs square inputs only (SAM2Base.image_size and SAM2Transforms hold one "
                f"side; SAM 2 resizes every image to a square): got {tuple(size)}, give one side"
            )
        size = size[0]
    if isinstance(size, bool) or not isinstance(size, numbers.Integral):
        raise UserError(f"a SAM 2 input size is one side in whole pixels, got {size!r}")
    side, unit = int(size), size_unit(model)
    if side < unit or side % unit:
        lo, hi = max(unit, side // unit * unit), (side // unit + 1) * unit
        choices = f"{lo} or {hi}" if lo != hi and side > unit else f"{hi}"
        raise UserError(
            f"SAM 2 input size {side} is not a positive multiple of {unit} px (Hiera tiles its "
            f"window position embedding over the stride-4 grid and pools it three times by 2): "
            f"use {choices}"
        )
    return side


def sam2_input_size(model: nn.Module) -> int:
    """The side a ``SAM2Base`` currently runs at (``image_size``)."""
    return int(model.image_size)


def note_base_size(trunk: nn.Module, side: int) -> None:
    """Remember on a Hiera trunk the side its model was built for (a plain entry outside the
    state_dict), so the trunk alone still knows its base size."""
    trunk.__dict__[_BASE_NOTE] = int(side)


def noted_base_size(trunk: nn.Module) -> int | None:
    """The side :func:`note_base_size` recorded on ``trunk`` (None when never noted)."""
    return trunk.__dict__.get(_BASE_NOTE)


def block_geometry(model: nn.Module, side: int | None = None) -> list[BlockGeometry]:
    """Every block's grids at input ``side`` (default: the current input size)."""
    side = sam2_input_size(model) if side is None else side
    return block_geometry_hw(model, (side, side))


def block_geometry_hw(model: nn.Module, hw: tuple[int, int]) -> list[BlockGeometry]:
    """Every block's grids at input (height, width) ``hw`` (of a model, encoder or trunk)."""
    trunk = trunk_of(model)
    p = patch_stride(trunk)
    rows, cols = -(-hw[0] // p), -(-hw[1] // p)  # Conv2d(k=7, s=4, p=3): ceil(side / 4)
    out = []
    for i, block in enumerate(trunk.blocks):
        s = _q_stride(block)
        out.append(BlockGeometry(i, (rows, cols), int(block.window_size), s))
        rows, cols = rows // s, cols // s
    return out

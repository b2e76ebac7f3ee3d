r"""What one sweep cell costs in memory, per variant, before anything runs.

A cell is one image encoded at input side :math:`S` by one variant (then decoded and scored).
Its peak, beyond the process at rest with the model loaded, is estimated as

.. math::
    \text{peak} = \underbrace{c_0 + c_1 S^2}_{\text{image, masks, metrics}}
        + \underbrace{16\, N_p\, C \cdot 4}_{\text{block activations}}
        + \text{attention}

with :math:`N = (S/p)^2` tokens, :math:`N_p` the token count padded to whole windows, :math:`C`
the embedding width, and the attention term that of the path the variant runs on:

- **stock** (``segment_anything``'s own ``Attention``, the ``vanilla`` and ``resize`` variants
  while it fits, see :func:`stock_fits`): the explicit softmax holds three :math:`H \times N
  \times N` fp32 tensors at once (scores, scores plus rel-pos, softmax):
  :math:`3 \cdot 4 H N^2` bytes in a global block, :math:`3 \cdot 4\, n_w H w^4` in the
  windowed ones (:math:`n_w` windows of :math:`w \times w` tokens);
- **fused** (:mod:`basam_lite.attention`, every BA-SAM variant, and ``vanilla`` / ``resize``
  beyond the stock budget): one bias workspace kept between calls, :math:`4 H N^2` bytes (plus
  the cached :math:`N \times N` distances) on the dense path, a chunk of at least one grid row,
  :math:`\max(\text{CHUNK\_BIAS\_BYTES},\ 4 H \sqrt N N)`, on the chunked one.

The constants were measured (peak RSS of a subprocess, tiny SAM, 256-1024 px:
``tests/test_memory.py`` checks that the estimate stays above the measured peak for every
variant), and the estimate carries a safety factor of :data:`SAFETY`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from torch import nn

from .attention import CHUNK_BIAS_BYTES, DENSE_BIAS_BUDGET, DENSE_MAX_TOKENS
from .encoders.specs import MODELS, ModelSpec, meta_model, spec_of
from .variants import get_variant

SAFETY = 1.25
"""Multiplier of every estimate: allocator slack, kernels' scratch space."""
FIXED_BYTES = 160 << 20
"""c_0: the cell's fixed cost (predictor, decoder, metric arrays at small sizes)."""
PER_PIXEL_BYTES = 96
"""c_1: bytes per input pixel (the image as uint8 and float, its resized and padded copies,
the upsampled mask logits, the metrics' float arrays)."""
STOCK_BUDGET = DENSE_BIAS_BUDGET
"""The largest ``H x N x N`` fp32 score tensor the stock attention may build: above it the
sweep runs ``vanilla`` and ``resize`` on the fused path (:func:`stock_fits`)."""

STOCK_RULE = (
    "segment_anything's own attention while one H x N x N fp32 score tensor fits "
    f"{STOCK_BUDGET >> 20} MiB (N tokens of the size the model runs at); above it the same "
    "attention on basam_lite's fused path (BASAMConfig.vanilla: equal within float rounding, "
    "features within about 3e-6)"
)
"""How the sweep runs the variants without a BA-SAM patch (``vanilla``, ``resize``): recorded
in a table's identity (its ``attention`` section)."""


@dataclass(frozen=True)
class EncoderShape:
    """What the memory of an image encoder depends on.

    Attributes:
        patch: patch size (px). heads: attention heads. dim: embedding width C.
        window: window side (tokens) of the windowed blocks. windowed: how many blocks are
        windowed. parameters: parameter count of the whole SAM. base: base input side (px).
    """

    patch: int
    heads: int
    dim: int
    window: int
    windowed: int
    parameters: int
    base: int

    @classmethod
    def of(cls, sam: nn.Module) -> EncoderShape:
        """The shape of a built (or meta-device) model of any registered family."""
        from .encoders import adapter_for

        adapter = adapter_for(sam)
        spec = spec_of(sam)
        first = adapter.block_grids(0, spec.base_hw).key  # the first attention block's grid
        first_patch = max(1, round(spec.base_side / first[0]))
        return cls.from_spec(spec, sum(p.numel() for p in sam.parameters()), first_patch)

    @classmethod
    def from_spec(cls, spec: ModelSpec, parameters: int, first_patch: int) -> EncoderShape:
        """The shape from a model's spec. ``patch`` is the px per token of the grid the global
        blocks see (SAM 1: its patch size; SAM 2: stride 16, not Hiera's stride-4 stem), read
        off their keys per row at the base size; a family without a global block (MobileSAM)
        takes ``first_patch``, the px per token of its first attention block's grid (MobileSAM:
        8, after its convolutional stage), with its widest blocks' heads and width (a safe
        estimate)."""
        if spec.global_blocks:
            keys = max(spec.base_keys[i] for i in spec.global_blocks)
            patch = max(1, round(spec.base_side / math.isqrt(keys)))
            heads, dim = spec.global_heads(), spec.global_dim()
        else:
            patch, heads, dim = first_patch, max(spec.heads), max(spec.dims)
        return cls(
            patch=patch,
            heads=heads,
            dim=dim,
            window=max(spec.windows),
            windowed=sum(1 for w in spec.windows if w > 0),
            parameters=parameters,
            base=spec.base_side,
        )

    @property
    def weight_bytes(self) -> int:
        """fp32 parameters."""
        return 4 * self.parameters


@lru_cache(maxsize=32)
def shape_of(model: str) -> EncoderShape:
    """The :class:`EncoderShape` of a registered model by name (built on the meta device: no
    memory, no weights)."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}")
    return EncoderShape.of(meta_model(model))


def stock_fits(shape: EncoderShape, size: int) -> bool:
    """Whether the stock attention's ``H x N x N`` scores at ``size`` px fit :data:`STOCK_BUDGET`
    (ViT-B and the tiny SAM up to 1024 px, ViT-L and ViT-H at 1024 px exactly)."""
    n = (size // shape.patch) ** 2
    return 4 * shape.heads * n * n <= STOCK_BUDGET


def runs_stock(variant: str, shape: EncoderShape, size: int) -> bool:
    """Whether the sweep runs ``variant`` at ``size`` on ``segment_anything``'s own attention
    (a variant without a patch, while :func:`stock_fits` at the size the model runs at)."""
    v = get_variant(variant)
    return v.config is None and stock_fits(shape, model_side(variant, shape, size))


def model_side(variant: str, shape: EncoderShape, size: int) -> int:
    """The side the model runs at: ``size``, or the base side for ``resize``."""
    return shape.base if get_variant(variant).transform == "resize_to_base" else size


def _windows(grid: int, window: int) -> int:
    return math.ceil(grid / window) ** 2


def attention_bytes(shape: EncoderShape, size: int, stock: bool, biased: bool) -> int:
    """Peak bytes of the attention at ``size`` px (batch 1, fp32, no autograd) on the stock
    path or the fused one (``biased``: an ALiBi mask, which caches the N x N distances on the
    dense path)."""
    g = size // shape.patch
    n = g * g
    h, w = shape.heads, shape.window
    nw = _windows(g, w) if w else 0
    if stock:
        glob = 3 * 4 * h * n * n
        win = 3 * 4 * nw * h * w**4 if shape.windowed else 0
        return max(glob, win)
    if n <= DENSE_MAX_TOKENS and 4 * h * n * n <= DENSE_BIAS_BUDGET:
        glob = 4 * h * n * n + (4 * n * n if biased else 0)
    else:
        glob = max(CHUNK_BIAS_BYTES, 4 * h * g * n) + 4 * h * g * n  # the chunk, one row more
    win = 4 * nw * h * w**4 if shape.windowed else 0
    # + the rel-pos terms rel_h, rel_w, counted whole: without autograd the chunked path computes
    # them per chunk once they pass encoders.vit_like.LAZY_REL_POS_BYTES, so there this is an
    # overestimate (kept: the estimate is meant to be conservative).
    return max(glob, win) + 2 * 4 * h * n * (2 * g)


def cell_bytes(model: str | EncoderShape, variant: str, size: int) -> int:
    """Estimated peak bytes of one cell (``variant`` at input side ``size``) beyond the process
    at rest with the model loaded (see the module docstring), safety factor included."""
    shape = shape_of(model) if isinstance(model, str) else model
    side = model_side(variant, shape, size)
    g = side // shape.patch
    w = shape.window or g
    padded = (math.ceil(g / w) * w) ** 2
    stock = runs_stock(variant, shape, size)
    config = get_variant(variant).config
    biased = config is not None and config.bias == "alibi2d"
    total = (
        FIXED_BYTES
        + PER_PIXEL_BYTES * max(size, side) ** 2
        + 16 * padded * shape.dim * 4
        + attention_bytes(shape, side, stock, biased)
    )
    return int(SAFETY * total)


def run_bytes(model: str, variants: tuple[str, ...], size: int) -> int:
    """Peak bytes of a run's largest cell at ``size`` plus the model's weights."""
    shape = shape_of(model)
    return shape.weight_bytes + max(cell_bytes(shape, v, size) for v in variants)


def largest_fitting(model: str, variants: tuple[str, ...], free: int, below: int) -> int | None:
    """The largest multiple of the patch size below ``below`` px whose run fits ``free``."""
    patch = shape_of(model).patch
    for s in range(below - patch, 0, -patch):
        if run_bytes(model, variants, s) <= free:
            return s
    return None

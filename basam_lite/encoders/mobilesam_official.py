r"""BA-SAM in MobileSAM's TinyViT windows: what its premise means there, and the official rule.

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
MobileSAM behaviour (cited in :data:`basam_lite.official.MOBILE_REFERENCES`): every window
scales its logits by

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

from ..errors import UserError
from .mobilesam_build import BASE_SIDE

#: The official code's constant: its comment calls it the batch dimension of the attention input.
OFFICIAL_BASE = 1444


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

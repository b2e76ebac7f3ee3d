"""basam_lite: BA-SAM's scaling factor and bias-mode attention mask on real SAM models.

The public API (a contract: code outside this repository calls these names):

- :func:`alibi_slopes`, :func:`bias_mode_mask` (``masks.py``): the bias-mode mask.
- :func:`attention_scale` (``scaling.py``): the scaling factor lambda.
- :class:`BASAMConfig` (``config.py``), :func:`apply_basam`, :func:`remove_basam` (``patch.py``).
- :func:`set_input_size` (``resolution.py``), :func:`predictor_for` (``predictor.py``) and
  :class:`BASAMPredictor` (``segment_anything``'s, ``encoders/sam1.py``).
- :func:`adapter_for` and :func:`global_blocks` (``encoders/``): the SAM family behind one
  interface.
- :func:`course_model` (``course.py``): the notebooks' model switch and budget.
- :func:`build_sam` (``models.py``) and :func:`capture_attention` (``capture.py``).
"""

from .capture import AttentionCapture, capture_attention
from .config import BASAMConfig
from .course import course_model
from .encoders import adapter_for, global_blocks
from .encoders.sam1 import BASAMPredictor
from .masks import alibi_slopes, bias_mode_mask, grid_distances
from .models import TINY, build_sam, sam_from_env
from .patch import apply_basam, is_patched, patch_config, remove_basam
from .predictor import predictor_for, to_rgb_uint8
from .resolution import input_size, restore_input_size, set_input_size
from .scaling import attention_scale

__all__ = [
    "TINY",
    "AttentionCapture",
    "BASAMConfig",
    "BASAMPredictor",
    "adapter_for",
    "alibi_slopes",
    "apply_basam",
    "attention_scale",
    "bias_mode_mask",
    "build_sam",
    "capture_attention",
    "course_model",
    "global_blocks",
    "grid_distances",
    "input_size",
    "is_patched",
    "patch_config",
    "predictor_for",
    "remove_basam",
    "restore_input_size",
    "sam_from_env",
    "set_input_size",
    "to_rgb_uint8",
]
__version__ = "0.1.0"

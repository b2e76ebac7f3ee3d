"""ViT-B dimensions at 512, 768, 1024 and 1536 px (and non-square) with every preset.

The full 12-block encoder at 1536 px takes minutes on a 2-core CPU, so these tests run the
first three blocks of a random-weight ViT-B (windowed 0-1 and global 2: both kinds, with SAM's
real dimensions and rel-pos tables) through the patched, dynamically sized encoder path.
`python -m basam_lite bench` runs the whole encoder.
"""

from __future__ import annotations

import pytest
import torch

import basam_lite as bl


@pytest.fixture(scope="module")
def vit_b_three_blocks():
    sam = bl.build_sam("vit_b")
    sam.image_encoder.blocks = sam.image_encoder.blocks[:3]
    return sam


PRESETS = ["vanilla", "scale", "bias", "paper", "official"]
# Every preset at the small sizes; at 1024 and 1536 px the two presets that carry every term
# (paper: scale + mask; official: its own scale + coefficient), to keep the suite fast.
CASES = [(p, s) for s in (512, 768, (512, 768)) for p in PRESETS] + [
    (p, s) for s in (1024, 1536) for p in ("paper", "official")
]


@pytest.mark.slow
@pytest.mark.parametrize("preset, size", CASES)
def test_vit_b_runs(vit_b_three_blocks, preset, size) -> None:
    sam = vit_b_three_blocks
    h, w = (size, size) if isinstance(size, int) else size
    config = bl.BASAMConfig.preset(preset)
    bl.remove_basam(sam)
    bl.set_input_size(sam, 1024)
    bl.apply_basam(sam, config)
    if preset == "official" and h * w < 1024 * 1024:
        with pytest.raises(ValueError, match="official BA-SAM scale cannot run"):
            bl.set_input_size(sam, size)
        return
    bl.set_input_size(sam, size)
    with torch.no_grad():
        out = sam.image_encoder(torch.randn(1, 3, h, w))
    assert out.shape == (1, 256, h // 16, w // 16)
    assert torch.isfinite(out).all()

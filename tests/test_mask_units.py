"""The base-unit mask in the model: paper at the base size, distances scaled elsewhere."""

from __future__ import annotations

import pytest
import torch

import basam_lite as bl
from basam_lite.errors import UserError
from basam_lite.masks import base_unit_scale
from basam_lite.variants import get_variant, variant_at


def _encode(sam, size: int) -> torch.Tensor:
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return sam.image_encoder(x)


def test_paper_base_is_paper_at_the_base_size(tiny_sam):
    with variant_at(tiny_sam, "paper", 256):
        paper = _encode(tiny_sam, 256)
    with variant_at(tiny_sam, "paper_base", 256):
        base = _encode(tiny_sam, 256)
    assert torch.equal(paper, base)


@pytest.mark.parametrize("size", [128, 512])
def test_paper_base_scales_the_distances_by_base_grid_over_grid(tiny_sam, size):
    """At another size it is the paper mask with every slope times base grid / grid: the same
    logits as -m_h * s * dist written with patch-unit distances."""
    s = base_unit_scale((size // 16, size // 16), (16, 16))
    assert s == 256 / size
    with variant_at(tiny_sam, "paper_base", size):
        got = _encode(tiny_sam, size)
    heads = tiny_sam.image_encoder.blocks[0].attn.num_heads
    scaled = bl.BASAMConfig.paper().with_(slopes=tuple((bl.alibi_slopes(heads) * s).tolist()))
    with variant_at(tiny_sam, scaled, size):
        want = _encode(tiny_sam, size)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    with variant_at(tiny_sam, "paper", size):
        paper = _encode(tiny_sam, size)
    assert not torch.allclose(got, paper, atol=1e-4)


def test_captured_rows_use_the_base_unit_mask(tiny_sam):
    """A captured attention row equals softmax(lambda q.k / sqrt(d) + rel-pos - m_h s dist)."""
    size, query = 512, (5, 7)
    with variant_at(tiny_sam, "paper_base", size):
        block = next(i for i, b in enumerate(tiny_sam.image_encoder.blocks) if b.window_size == 0)
        with bl.capture_attention(tiny_sam, blocks=[block], queries=[query]) as cap:
            _encode(tiny_sam, size)
        got = cap.maps[block]
    with variant_at(tiny_sam, "paper", size):
        with bl.capture_attention(tiny_sam, blocks=[block], queries=[query]) as cap:
            _encode(tiny_sam, size)
        paper = cap.maps[block]
    # Undo the paper mask and apply the base-unit one on the log-probabilities.
    grid = (size // 16, size // 16)
    heads = got.shape[1]
    # -m_h dist of the query's row, [1, heads, 1, N] (the first global block: its input is the
    # same under both variants).
    dist = bl.bias_mode_mask(grid, heads)[:, :, query[0] * grid[1] + query[1]][:, :, None]
    s = base_unit_scale(grid, (16, 16))
    want = (paper.log() - dist + s * dist).softmax(-1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_registered_as_this_projects_own_and_checked():
    v = get_variant("paper_base")
    assert v.own and "this project" in v.label
    assert v.config == bl.BASAMConfig.paper().with_(mask_units="base")
    with pytest.raises(ValueError, match="mask_units"):
        bl.BASAMConfig(mask_units="base")  # no mask to measure
    with pytest.raises(ValueError, match="mask distance unit"):
        bl.BASAMConfig(bias="alibi2d", mask_units="image")
    with pytest.raises(UserError):
        get_variant("paper-base")

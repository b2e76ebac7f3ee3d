"""capture_attention against explicit probabilities of SAM's attention written out."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import reference_attention
from test_patch import randomise_rel_pos

import basam_lite as bl


def block_input(sam, image: torch.Tensor, index: int) -> torch.Tensor:
    """The input to block ``index``'s attention (after norm1 and window partition)."""
    from segment_anything.modeling.image_encoder import window_partition

    enc = sam.image_encoder
    store = {}
    handle = enc.blocks[index].register_forward_pre_hook(lambda m, a: store.setdefault("x", a[0]))
    with torch.no_grad():
        enc(image)
    handle.remove()
    blk = enc.blocks[index]
    x = blk.norm1(store["x"])
    if blk.window_size:
        x, _ = window_partition(x, blk.window_size)
    return x


@pytest.mark.parametrize("preset", ["vanilla", "paper", "official"])
def test_global_block_all_queries(tiny_sam, preset) -> None:
    randomise_rel_pos(tiny_sam)
    config = bl.BASAMConfig.preset(preset)
    bl.apply_basam(tiny_sam, config)
    bl.set_input_size(tiny_sam, 384)
    image = torch.randn(1, 3, 384, 384)
    with bl.capture_attention(tiny_sam, blocks=[2]) as cap, torch.no_grad():
        tiny_sam.image_encoder(image)
    probs = cap.maps[2]
    assert probs.shape == (1, 6, 576, 576)
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, 6, 576))
    attn = tiny_sam.image_encoder.blocks[2].attn
    lam = bl.attention_scale(576, 256, config.scale)
    slopes = bl.alibi_slopes(6) if config.bias == "alibi2d" else None
    coef = 0.1 if config.bias == "official_relpos" else None
    x = block_input(tiny_sam, image, 2)
    with torch.no_grad():
        _, want = reference_attention(attn, x, lam, slopes, "euclidean", coef, return_probs=True)
    torch.testing.assert_close(probs, want, atol=1e-5, rtol=0)


def test_selected_queries_by_index_and_position(tiny_sam) -> None:
    randomise_rel_pos(tiny_sam)
    bl.apply_basam(tiny_sam, bl.BASAMConfig.paper())
    image = torch.randn(2, 3, 256, 256)
    with bl.capture_attention(tiny_sam, blocks=[5]) as full, torch.no_grad():
        tiny_sam.image_encoder(image)
    with bl.capture_attention(tiny_sam, blocks=[5], queries=[(3, 7), (15, 0)]) as some:
        with torch.no_grad():
            tiny_sam.image_encoder(image)
    with bl.capture_attention(tiny_sam, blocks=[5], queries=[3 * 16 + 7, 240]) as idx:
        with torch.no_grad():
            tiny_sam.image_encoder(image)
    want = full.maps[5][:, :, [55, 240]]
    torch.testing.assert_close(some.maps[5], want, atol=1e-6, rtol=0)
    torch.testing.assert_close(idx.maps[5], want, atol=1e-6, rtol=0)
    assert some.grid_maps(5).shape == (2, 6, 2, 16, 16)


def test_windowed_block_per_window(tiny_sam) -> None:
    randomise_rel_pos(tiny_sam)
    image = torch.randn(1, 3, 320, 256)  # 20 x 16 tokens: 4x4 windows, 5 x 4 of them
    bl.set_input_size(tiny_sam, (320, 256))
    with bl.capture_attention(tiny_sam, blocks=[0]) as cap, torch.no_grad():
        tiny_sam.image_encoder(image)
    assert cap.maps[0].shape == (20, 6, 16, 16)
    x = block_input(tiny_sam, image, 0)
    with torch.no_grad():
        _, want = reference_attention(tiny_sam.image_encoder.blocks[0].attn, x, return_probs=True)
    torch.testing.assert_close(cap.maps[0], want, atol=1e-5, rtol=0)
    # a chosen query: the row of its own window, placed on the image grid
    with bl.capture_attention(tiny_sam, blocks=[0], queries=[(9, 6)]) as one, torch.no_grad():
        tiny_sam.image_encoder(image)
    window = (9 // 4) * 4 + 6 // 4  # row-major window index
    torch.testing.assert_close(one.maps[0][0, :, 0], want[window, :, (9 % 4) * 4 + 6 % 4])
    grid = one.grid_maps(0)
    assert grid.shape == (1, 6, 1, 20, 16)
    assert torch.all(grid[..., :8, :] == 0) and grid[0, 0, 0, 8:12, 4:8].sum() == pytest.approx(1)
    assert one.window_origins[0].tolist() == [[8, 4]]


def test_capture_leaves_unpatched_model_unpatched(tiny_sam) -> None:
    with bl.capture_attention(tiny_sam, blocks=[2]), torch.no_grad():
        assert bl.is_patched(tiny_sam)
        tiny_sam.image_encoder(torch.randn(1, 3, 256, 256))
    assert not bl.is_patched(tiny_sam)
    assert "forward" not in tiny_sam.image_encoder.blocks[2].attn.__dict__


def test_capture_with_chunked_path_matches(tiny_sam) -> None:
    randomise_rel_pos(tiny_sam)
    image = torch.randn(1, 3, 256, 256)
    maps = {}
    for path in ("dense", "chunked"):
        bl.apply_basam(tiny_sam, bl.BASAMConfig.paper().with_(path=path))
        with bl.capture_attention(tiny_sam, blocks=[2], queries=[(1, 1)]) as cap:
            with torch.no_grad():
                tiny_sam.image_encoder(image)
        maps[path] = cap.maps[2]
    torch.testing.assert_close(maps["dense"], maps["chunked"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"blocks": [6]}, "blocks \\[6\\] do not exist"),
        ({"blocks": [2], "queries": [300]}, "query token index out of range"),
        ({"blocks": [2], "queries": [(16, 0)]}, "outside the 16x16 token grid"),
        ({"blocks": [2], "queries": []}, "queries is empty"),
    ],
)
def test_bad_capture_requests(tiny_sam, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        with bl.capture_attention(tiny_sam, **kwargs), torch.no_grad():
            tiny_sam.image_encoder(torch.randn(1, 3, 256, 256))
    assert not bl.is_patched(tiny_sam)


def test_fractional_queries_are_one_line(tiny_sam) -> None:
    """Queries are integer token positions: (0.5, 0.5) is refused in one line, not an
    IndexError from deep inside the capture."""
    from basam_lite.errors import UserError

    with pytest.raises(UserError, match="integer positions"):
        with bl.capture_attention(tiny_sam, blocks=[2], queries=[(0.5, 0.5)]):
            bl.predictor_for(tiny_sam).set_image(np.zeros((64, 64, 3), np.uint8))

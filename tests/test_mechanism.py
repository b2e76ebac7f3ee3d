"""Attention entropy and distance along both axes, against an explicit softmax."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

import basam_lite as bl
from basam_lite.axes import AxisSampler
from basam_lite.datasets import ProceduralScenes
from basam_lite.errors import UserError
from basam_lite.mechanism import attention_along_axes, object_tokens, query_tokens


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    sam = bl.build_sam("tiny")
    ds = ProceduralScenes(6, seed=0, size=256)
    return attention_along_axes(
        sam, ds, {"zoom": (256, 512), "extent": (256, 512)}, images=1, queries=3
    )


def test_extent_one_equals_zoom_at_the_base_size_and_scale_is_vanilla_there(table):
    at_base = table[table["resolution"] == 256]
    cols = ["variant", "block", "entropy", "distance_px"]
    z = at_base[at_base["axis"] == "zoom"][cols].reset_index(drop=True)
    e = at_base[at_base["axis"] == "extent"][cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(z, e)
    v = at_base[at_base["variant"] == "vanilla"].set_index(["axis", "block"])
    s = at_base[at_base["variant"] == "scale"].set_index(["axis", "block"])
    np.testing.assert_allclose(v["entropy"], s["entropy"], rtol=1e-6)  # lambda = 1 at the base


def test_statistics_are_bounded_and_keys_follow_the_size(table):
    assert set(table["keys"]) == {256, 1024}
    assert (table["normalised_entropy"] > 0).all() and (table["normalised_entropy"] <= 1).all()
    np.testing.assert_allclose(table["distance_px"], table["distance_tokens"] * 16)
    long = table[table["resolution"] == 512]
    v = long[long["variant"] == "vanilla"].set_index(["axis", "block"])["entropy"]
    s = long[long["variant"] == "scale"].set_index(["axis", "block"])["entropy"]
    assert (s < v).all()  # lambda > 1 sharpens every row at 4x the keys


def test_one_row_against_an_explicit_softmax():
    """The statistics of one query in one block, recomputed from q and k by hand."""
    sam = bl.build_sam("tiny")
    ds = ProceduralScenes(3, seed=0, size=256)
    df = attention_along_axes(sam, ds, {"extent": (512,)}, {"vanilla": None}, images=1, queries=1)
    sample = AxisSampler(ds, "extent").sample(0, 512, 256)
    tile = AxisSampler(ds, "extent").view(256).tile(0)
    tokens = object_tokens(tile.mask, 16)
    row = df.iloc[0]
    block = int(row["block"])
    captured = {}
    attn = sam.image_encoder.blocks[block].attn

    def hook(module, args, out):
        captured["x"] = args[0]

    handle = sam.image_encoder.blocks[block].attn.register_forward_hook(hook)
    bl.set_input_size(sam, 512)
    try:
        bl.BASAMPredictor(sam).set_image(sample.image)
    finally:
        handle.remove()
        bl.set_input_size(sam, 256)
    x = captured["x"]
    b, rows, cols, _ = x.shape
    qkv = attn.qkv(x).reshape(b, rows * cols, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, _ = qkv.unbind(0)
    logits = (q * attn.scale) @ k.transpose(-2, -1)
    from segment_anything.modeling.image_encoder import add_decomposed_rel_pos

    flat = logits.reshape(-1, rows * cols, rows * cols)
    flat = add_decomposed_rel_pos(
        flat, q.reshape(-1, rows * cols, q.shape[-1]), attn.rel_pos_h, attn.rel_pos_w,
        (rows, cols), (rows, cols),
    )  # fmt: skip
    probs = flat.reshape(1, attn.num_heads, rows * cols, rows * cols).softmax(-1)
    rng = np.random.default_rng([0, __import__("zlib").crc32(tile.name.encode())])
    pick = tokens[np.sort(rng.choice(len(tokens), 1, False))]
    ((r, c),) = query_tokens(sample, pick, "extent", 512, 256, 16)
    p = probs[0, :, r * cols + c]  # [heads, N]
    ent = -(p * p.clamp_min(1e-30).log()).sum(-1).mean().item()
    assert row["entropy"] == pytest.approx(ent, rel=1e-4)
    pos = torch.cartesian_prod(torch.arange(rows), torch.arange(cols)).float()
    d = ((pos - torch.tensor([r, c]).float()) ** 2).sum(-1).sqrt()
    assert row["distance_tokens"] == pytest.approx((p * d).sum(-1).mean().item(), rel=1e-4)
    assert row["normalised_entropy"] == pytest.approx(ent / math.log(rows * cols), rel=1e-4)


def test_query_tokens_follow_the_target():
    ds = ProceduralScenes(4, seed=0, size=64)
    sampler = AxisSampler(ds, "extent")
    s = sampler.sample(0, 192, 64)
    pick = np.array([[0, 0], [3, 2]])
    assert query_tokens(s, pick, "extent", 192, 64, 16) == [(4, 4), (7, 6)]
    assert query_tokens(s, pick, "zoom", 128, 64, 16) == [(1, 1), (7, 5)]
    with pytest.raises(UserError, match="unknown axis"):
        attention_along_axes(bl.build_sam("tiny"), ds, {"length": (64,)})


def test_flattest_answers_nothing_when_nothing_was_paired():
    # a study whose attention rows pair no size with the base size (e.g. two file images whose
    # targets fit no extent window): the report has no "flat?" lines instead of failing
    import pandas as pd

    from basam_lite.mechanism import flattest

    assert flattest(pd.DataFrame()).empty

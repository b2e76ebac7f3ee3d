"""The analysis and viz helpers added for notebooks 02, 03, 04 and 08."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

import basam_lite as bl
from basam_lite import analysis, viz
from basam_lite.datasets import ProceduralScenes, Prompt, batch_prompts, prompt_for
from basam_lite.metrics import mask_iou
from basam_lite.patch import patch_config

# --- architecture ----------------------------------------------------------------------------


def test_architecture_table_matches_segment_anything() -> None:
    table = analysis.architecture_table().set_index("model")
    assert table.loc["vit_b", "global_blocks"] == "2, 5, 8, 11"
    assert table.loc["vit_l", "global_blocks"] == "5, 11, 17, 23"
    assert table.loc["vit_h", "global_blocks"] == "7, 15, 23, 31"
    assert table.loc["tiny", "global_blocks"] == "2, 5"
    assert table.loc["vit_h", "heads"] == 16 and table.loc["vit_h", "head_dim"] == 80
    assert (table.loc[["vit_b", "vit_l", "vit_h"], "global_keys"] == 4096).all()
    assert (table.loc[["vit_b", "vit_l", "vit_h"], "windowed_keys"] == 196).all()
    assert table.loc["tiny", "base_side"] == 256 and table.loc["tiny", "windowed_keys"] == 16


def test_architecture_table_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        analysis.architecture_table(["vit_x"])


def test_family_keys_table_sam1_vit_b_written_out() -> None:
    """SAM 1 ViT-B: global blocks see the whole (side / 16)^2 grid, windowed ones 14 x 14 keys,
    the blocks read off segment_anything's own ``window_size`` (0: global)."""
    from segment_anything import sam_model_registry

    sides = (256, 512, 1024, 2048)
    table = analysis.family_keys_table(["vit_b"], sides).set_index("attention")
    with torch.device("meta"):
        enc = sam_model_registry["vit_b"]().image_encoder
    is_global = [b.window_size == 0 for b in enc.blocks]
    glob = table.loc["global"]
    win = table.loc["window 14 x 14"]
    assert glob["blocks"] == ", ".join(str(i) for i, g in enumerate(is_global) if g)
    assert win["blocks"] == ", ".join(str(i) for i, g in enumerate(is_global) if not g)
    assert glob["base_keys"] == (1024 // 16) ** 2 and win["base_keys"] == 14 * 14
    for side in sides:
        assert glob[f"{side} px"] == (side // 16) ** 2
        assert win[f"{side} px"] == 196
    assert glob["stride_px"] == win["stride_px"] == 16


def test_family_keys_table_missing_package_is_a_row(monkeypatch) -> None:
    from basam_lite import encoders
    from basam_lite.encoders import specs

    fam = encoders.FAMILIES["mobilesam"]
    broken = encoders.Family(fam.name, fam.packages, "no_such_module_xyz:Adapter", "mobilesam", "x")
    monkeypatch.setitem(encoders.FAMILIES, "mobilesam", broken)
    monkeypatch.setattr(specs, "meta_model", specs._meta_model.__wrapped__)
    table = analysis.family_keys_table(["vit_b", "mobilesam"], (256,))
    row = table[table.model == "mobilesam"]
    assert len(row) == 1
    assert row.iloc[0]["attention"] == "package missing: pip install 'basam-lite[mobilesam]'"
    assert pd.isna(row.iloc[0]["256 px"])
    assert set(table[table.model == "vit_b"]["attention"]) == {"global", "window 14 x 14"}


def test_family_keys_table_refused_size_and_unknown_model() -> None:
    pytest.importorskip("sam2")
    table = analysis.family_keys_table(["sam2.1_hiera_tiny"], (272, 512))  # 272: not 32k px
    assert table["272 px"].isna().all() and table["512 px"].notna().all()
    with pytest.raises(ValueError, match="unknown model"):
        analysis.family_keys_table(["vit_x"])


def test_global_blocks(tiny_sam) -> None:
    assert analysis.global_blocks(tiny_sam) == [2, 5]
    assert analysis.global_blocks(tiny_sam.image_encoder) == [2, 5]


# --- the mask alone ----------------------------------------------------------------------------


def test_mask_receptive_field_gain_zero_is_uniform() -> None:
    df = analysis.mask_receptive_field((5, 5), 4, [0.0])
    # uniform attention from the centre of a 5 x 5 grid: the mean distance to all 25 tokens
    pos = np.stack(np.meshgrid(np.arange(5), np.arange(5), indexing="ij"), -1).reshape(-1, 2)
    expected = np.linalg.norm(pos - [2, 2], axis=1).mean() * 16
    assert df["distance_px"].to_numpy() == pytest.approx(expected, rel=1e-9)
    assert df["normalised_entropy"].to_numpy() == pytest.approx(1.0, abs=1e-12)


def test_mask_receptive_field_matches_explicit_softmax() -> None:
    grid, heads, gain = (6, 7), 6, 0.7
    df = analysis.mask_receptive_field(grid, heads, [gain], query=(1, 2))
    mask = bl.bias_mode_mask(grid, heads, gain=gain)[0, :, 1 * 7 + 2].double()
    p = mask.softmax(-1)
    d = bl.grid_distances(grid)[1 * 7 + 2].double()
    # the reference mask is float32, the function works in float64
    assert df["distance_px"].to_numpy() == pytest.approx((p * d).sum(-1).numpy() * 16, rel=1e-6)
    ent = -(p * p.log()).sum(-1).numpy()
    assert df["entropy"].to_numpy() == pytest.approx(ent, rel=1e-6)


def test_mask_receptive_field_only_gain_times_slope_matters() -> None:
    df = analysis.mask_receptive_field((9, 9), 8, [1.0, 2.0]).set_index(["gain", "head"])
    # 8 heads: slopes 2^-1 ... 2^-8, so gain 2 on head h equals gain 1 on head h - 1
    for h in range(1, 8):
        assert df.loc[(2.0, h), "distance_px"] == pytest.approx(df.loc[(1.0, h - 1), "distance_px"])


def test_mask_receptive_field_all_queries_is_the_mean_over_queries() -> None:
    grid = (4, 5)
    everyone = analysis.mask_receptive_field(grid, 2, [1.0], query="all")
    each = [
        analysis.mask_receptive_field(grid, 2, [1.0], query=(r, c))["distance_px"].to_numpy()
        for r in range(4)
        for c in range(5)
    ]
    assert everyone["distance_px"].to_numpy() == pytest.approx(np.mean(each, axis=0))


def test_mask_receptive_field_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="query"):
        analysis.mask_receptive_field((4, 4), 2, [1.0], query=(4, 0))
    with pytest.raises(ValueError, match="gains"):
        analysis.mask_receptive_field((4, 4), 2, [-1.0])


# --- running SAM -------------------------------------------------------------------------------


def test_configured_restores_previous_patch(tiny_sam) -> None:
    with analysis.configured(tiny_sam, bl.BASAMConfig.paper()):
        assert patch_config(tiny_sam).name == "paper"
    assert not bl.is_patched(tiny_sam)
    bl.apply_basam(tiny_sam, bl.BASAMConfig.scale_only())
    with analysis.configured(tiny_sam, bl.BASAMConfig.official()):
        assert patch_config(tiny_sam).name == "official"
    assert patch_config(tiny_sam).name == "scale"
    with analysis.configured(tiny_sam, None):
        assert patch_config(tiny_sam).name == "scale"


def test_encoder_outputs_equal_direct_forwards(tiny_sam) -> None:
    x = torch.rand(1, 3, 256, 256)
    out = analysis.encoder_outputs(tiny_sam, x, {"plain": None, "paper": bl.BASAMConfig.paper()})
    with torch.no_grad():
        plain = tiny_sam.image_encoder(x)
        bl.apply_basam(tiny_sam, bl.BASAMConfig.paper())
        paper = tiny_sam.image_encoder(x)
    assert torch.equal(out["plain"], plain) and torch.equal(out["paper"], paper)


def test_official_equals_scale_without_positions_at_base_and_double_size(tiny_sam) -> None:
    no_pos = bl.BASAMConfig.scale_only().with_(use_abs_pos=False, drop_rel_pos=True)
    for side, same in ((256, True), (384, False), (512, True)):
        bl.set_input_size(tiny_sam, side)
        x = torch.rand(1, 3, side, side)
        out = analysis.encoder_outputs(
            tiny_sam, x, {"official": bl.BASAMConfig.official(), "no_pos": no_pos}
        )
        assert torch.equal(out["official"], out["no_pos"]) is same


def test_segment_matches_predictor(tiny_sam) -> None:
    sample = ProceduralScenes(1, size=256)[0]
    prompt = prompt_for(sample, "center")
    out = analysis.segment(tiny_sam, sample.image, prompt)
    predictor = bl.BASAMPredictor(tiny_sam)
    predictor.set_image(sample.image)
    masks, scores, _ = predictor.predict(
        point_coords=prompt.point_coords, point_labels=prompt.point_labels, multimask_output=False
    )
    assert out["features"].shape == (1, bl.TINY.prompt_dim, 16, 16)
    assert out["logits"].shape == sample.mask.shape
    assert np.array_equal(out["mask"], masks[0]) and out["score"] == pytest.approx(scores[0])
    assert not bl.is_patched(tiny_sam)


def test_official_batch_prompts_leak_every_click() -> None:
    prompts = [Prompt(np.array([[float(i), 2.0 * i]]), np.array([1])) for i in range(3)]
    leaky = analysis.official_batch_prompts(prompts)
    ours = batch_prompts(prompts)
    assert [r["point_coords"].shape for r in leaky] == [(1, 3, 2)] * 3
    assert [r["point_coords"].shape for r in ours] == [(1, 1, 2)] * 3
    for rec in leaky:
        assert torch.equal(rec["point_coords"][0], torch.tensor([[0.0, 0], [1, 2], [2, 4]]))
    with pytest.raises(ValueError, match="point"):
        analysis.official_batch_prompts([Prompt(box=np.array([0, 0, 5, 5]))])


def test_segment_batch_depends_on_neighbours_only_when_leaky(tiny_sam) -> None:
    scenes = ProceduralScenes(3, size=256)
    images = [s.image for s in scenes]
    prompts = [prompt_for(s, "center") for s in scenes]

    def image0(make, other):
        out = analysis.segment_batch(
            tiny_sam, [images[0], images[other]], make([prompts[0], prompts[other]])
        )
        return out[0]["low_res_logits"]

    ours = image0(batch_prompts, 1), image0(batch_prompts, 2)
    leaky = image0(analysis.official_batch_prompts, 1), image0(analysis.official_batch_prompts, 2)
    assert torch.allclose(ours[0], ours[1], atol=1e-5)
    assert not torch.allclose(leaky[0], leaky[1], atol=1e-5)


def test_segment_batch_runs_away_from_the_base_size(tiny_sam) -> None:
    """``Sam.forward`` (what segment_batch calls) on a model resized by set_input_size: the same
    masks as the predictor path (analysis.segment) at that size, image by image."""
    scenes = ProceduralScenes(2, size=128)
    prompts = [prompt_for(s, "center") for s in scenes]
    bl.set_input_size(tiny_sam, 128)
    try:
        out = analysis.segment_batch(tiny_sam, [s.image for s in scenes], batch_prompts(prompts))
        alone = [
            analysis.segment(tiny_sam, s.image, p) for s, p in zip(scenes, prompts, strict=True)
        ]
    finally:
        bl.restore_input_size(tiny_sam)
    for batched, single in zip(out, alone, strict=True):
        assert batched["masks"].shape[-2:] == (128, 128)
        assert np.array_equal(batched["masks"][0, 0].numpy(), np.asarray(single["mask"]))


def test_segment_batch_checks_sizes(tiny_sam) -> None:
    img = np.zeros((128, 128, 3), np.uint8)
    with pytest.raises(ValueError, match="input size"):
        analysis.segment_batch(tiny_sam, [img], [{}])
    with pytest.raises(ValueError, match="records"):
        analysis.segment_batch(tiny_sam, [img], [])


def test_mask_iou() -> None:
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    assert mask_iou(a, b) == 1.0
    a[0, :2] = True
    b[0, 1:3] = True
    assert mask_iou(a, b) == pytest.approx(1 / 3)
    assert mask_iou(torch.from_numpy(a), a) == 1.0
    with pytest.raises(ValueError, match="shape"):
        mask_iou(a, np.zeros((3, 3), bool))


def test_perturb_rel_pos_is_seeded_and_dropped_by_official(tiny_sam) -> None:
    analysis.perturb_rel_pos(tiny_sam, std=0.3, seed=0)
    tables = [b.attn.rel_pos_h.detach().clone() for b in tiny_sam.image_encoder.blocks]
    assert all(t.abs().max() > 0 for t in tables)
    other = bl.build_sam("tiny")
    analysis.perturb_rel_pos(other, std=0.3, seed=0)
    assert all(
        torch.equal(t, b.attn.rel_pos_h)
        for t, b in zip(tables, other.image_encoder.blocks, strict=True)
    )
    bl.apply_basam(tiny_sam, bl.BASAMConfig.official())
    assert all(
        float(b.attn.rel_pos_h.detach().abs().max()) == 0 for b in tiny_sam.image_encoder.blocks
    )
    bl.remove_basam(tiny_sam)
    assert all(
        torch.equal(t, b.attn.rel_pos_h)
        for t, b in zip(tables, tiny_sam.image_encoder.blocks, strict=True)
    )


# --- figures -----------------------------------------------------------------------------------


def test_show_token_map_labels_and_colour_bar() -> None:
    fig, ax = plt.subplots()
    im = viz.show_token_map(
        torch.arange(12.0).reshape(3, 4), ax, title="t", label="v", query=(1, 2)
    )
    assert ax.get_title() == "t" and ax.get_xlabel() == "token column"
    assert ax.get_ylabel() == "token row" and len(fig.axes) == 2  # the colour bar
    assert im.get_array().shape == (3, 4)
    plt.close(fig)


def test_lambda_is_exact_in_tables() -> None:
    # the numbers notebook 03's golden cell prints
    table = analysis.lambda_table([1536]).iloc[0]
    assert table["log_ratio"] == pytest.approx(math.log(9216) / math.log(4096))
    assert table["official"] == 1.0

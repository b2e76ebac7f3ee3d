"""Notebook 05c's library parts: Hiera's two position tables against SAM 2's own sum, the
cosine map against its formula, which variants are the identity at the base size, the recovery
table against the paired differences written out, the median-scene rule, and the entropy study's
key grid on a SAM 2 model."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("sam2")

from basam_lite import family_live, hiera_positions, mechanism
from basam_lite.datasets import ProceduralScenes
from basam_lite.encoders.sam2_models import build_tiny_sam2
from basam_lite.errors import UserError


@pytest.fixture(scope="module")
def sam2():
    model = build_tiny_sam2().eval()
    with torch.no_grad():  # random tables: make the window part non-zero, as a trained one is
        model.image_encoder.trunk.pos_embed_window.normal_(0, 0.02)
    return model


@pytest.mark.parametrize("side", [256, 512, 384])
def test_the_two_parts_sum_to_sam2s_own_position_embedding(sam2, side: int) -> None:
    p = hiera_positions.hiera_positions(sam2, side)
    trunk = sam2.image_encoder.trunk
    with torch.no_grad():
        own = trunk._get_pos_embed((side // 4, side // 4))[0].permute(2, 0, 1).numpy()
    assert p.grid == (side // 4, side // 4)
    np.testing.assert_allclose(p.total, own, atol=1e-6)
    # the window part repeats with period w tokens; the background is the table resized
    w = p.window_side
    np.testing.assert_array_equal(p.window[:, :w, :w], p.window[:, w : 2 * w, -w:])
    table = trunk.pos_embed.detach()
    resized = torch.nn.functional.interpolate(table, size=p.grid, mode="bicubic")[0].numpy()
    np.testing.assert_allclose(p.background, resized, atol=1e-6)


def test_the_position_table_states_stretch_and_repeat(sam2) -> None:
    t = hiera_positions.position_table(sam2, (256, 512))
    assert t["grid"].tolist() == [64, 128]
    assert t["window_tiles"].tolist() == [8.0, 16.0]
    assert t["window_period_px"].tolist() == [32, 32]
    assert t["tokens_per_background_cell"].tolist() == pytest.approx([64 / 7, 128 / 7])


def test_a_side_sam2_refuses_is_one_line(sam2) -> None:
    with pytest.raises(UserError, match="multiple of 32"):
        hiera_positions.hiera_positions(sam2, 240)


def test_cosine_map_is_the_formula_written_out() -> None:
    rng = np.random.default_rng(0)
    table = rng.normal(size=(5, 3, 4))
    got = hiera_positions.cosine_map(table, (1, 2))
    ref = table[:, 1, 2]
    for r in range(3):
        for c in range(4):
            v = table[:, r, c]
            want = float(v @ ref) / math.sqrt(float(v @ v) * float(ref @ ref))
            assert got[r, c] == pytest.approx(want, abs=1e-12)
    assert got[1, 2] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="outside"):
        hiera_positions.cosine_map(table, (3, 0))


def test_only_the_plain_temperature_rules_are_the_identity_at_the_base_size() -> None:
    for v in ("vanilla", "scale", "yarn", "jin", "infoscale"):
        assert family_live.identity_at_base(v), v
    for v in ("paper", "bias", "resize", "official", "paper_base"):
        assert not family_live.identity_at_base(v), v


def _live() -> pd.DataFrame:
    """A hand-made live table: two models, one axis, vanilla at two sides, a rule at one."""
    rows = []
    iou = {  # (model, variant, side) -> per-image IoU
        ("m1", "vanilla", 256): [0.8, 0.7, 0.9, 0.6],
        ("m1", "vanilla", 512): [0.5, 0.6, 0.4, 0.3],
        ("m1", "yarn", 512): [0.6, 0.6, 0.5, 0.5],
        ("sam2-m", "vanilla", 256): [0.5, 0.5, 0.5, 0.5],
        ("sam2-m", "vanilla", 512): [0.45, 0.5, 0.4, 0.5],
        ("sam2-m", "yarn", 512): [0.45, 0.5, 0.4, 0.5],
    }
    for (model, variant, side), values in iou.items():
        for i, v in enumerate(values):
            rows.append(
                {
                    "model": model,
                    "axis": "extent",
                    "resolution": side,
                    "prompt": "box",
                    "variant": variant,
                    "image": f"s{i}",
                    "status": "ok",
                    "iou": v,
                    "extent": side / 256,
                }
            )
    return pd.DataFrame(rows)


def test_the_recovery_table_is_the_paired_differences_written_out() -> None:
    rec = family_live.recovery_table(_live(), n_boot=200).set_index("model")
    m1 = rec.loc["m1"]
    assert (m1["side_from"], m1["side_to"], m1["images"]) == (256, 512, 4)
    assert m1["loss"] == pytest.approx(np.mean([0.3, 0.1, 0.5, 0.3]))
    assert m1["vanilla_from"] == pytest.approx(0.75) and m1["vanilla_to"] == pytest.approx(0.45)
    d = np.array([0.1, 0.0, 0.1, 0.2])
    assert m1["recovered"] == pytest.approx(d.mean())
    assert m1["se"] == pytest.approx(d.std(ddof=1) / 2)
    assert m1["ci_low"] <= m1["recovered"] <= m1["ci_high"]
    assert rec.loc["sam2-m", "recovered"] == pytest.approx(0.0)


def test_the_median_scene_is_the_lower_median_ties_by_name() -> None:
    live = _live()
    # 0.3 (s3), 0.4 (s2), 0.5 (s0), 0.6 (s1): the lower of the two middle values
    assert family_live.median_scene(live, "m1", "extent", 512) == ("s2", pytest.approx(0.4))
    # all equal at the base size: the tie goes to the first name of the lower half
    assert family_live.median_scene(live, "sam2-m", "extent", 256)[0] == "s1"
    with pytest.raises(UserError, match="no vanilla row"):
        family_live.median_scene(live, "m1", "zoom", 512)


def test_the_loss_prediction_names_the_family_that_lost_more(capsys) -> None:
    from basam_lite.exercises import nb05c

    rec = family_live.recovery_table(_live(), n_boot=200)
    assert nb05c.loss_outcome(rec)[0] == "SAM 1"
    assert nb05c.check_loss_prediction("SAM 1", rec)
    assert not nb05c.check_loss_prediction("sam 2", rec)
    assert not nb05c.check_loss_prediction(None, rec)
    assert not nb05c.check_loss_prediction("both", rec)
    out = capsys.readouterr().out
    assert "0.3" not in out and "0.05" not in out  # the verdicts never print the losses
    assert not nb05c.check_loss_prediction("SAM 1", rec[rec["model"] == "m1"])


def test_the_entropy_study_reads_a_sam2_global_blocks_own_key_grid(sam2) -> None:
    from basam_lite.analysis import entropy as row_entropy

    scenes = ProceduralScenes(2, seed=0, size=256)
    df = mechanism.attention_along_axes(
        sam2, scenes, {"extent": (256, 512)}, variants={"vanilla": None}, images=1, queries=2
    )
    assert set(df["block"]) == {4, 6}  # the tiny SAM 2's global blocks
    assert sorted(set(df["keys"])) == [256, 1024]  # stride-16 grids: 16 x 16 and 32 x 32
    assert (df["entropy"] <= np.log(df["keys"]) + 1e-5).all()
    assert ((df["normalised_entropy"] - df["entropy"] / np.log(df["keys"])).abs() < 1e-5).all()
    np.testing.assert_allclose(df["distance_px"], df["distance_tokens"] * 16)  # 16 px keys
    uniform = torch.full((1, 1, 1, 256), 1 / 256)
    assert float(row_entropy(uniform)) == pytest.approx(math.log(256), rel=1e-5)

"""Metrics: hand-computed cases, conventions, agreement with py_sod_metrics, input checks."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from basam_lite.metrics import (
    LEGACY_COLUMNS,
    METRIC_COLUMNS,
    legacy_threshold_metrics,
    segmentation_metrics,
)

GT = np.array(
    [
        [1, 1, 0, 0],
        [1, 1, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
    ],
    dtype=bool,
)
PROB = np.array(
    [
        [0.9, 0.6, 0.4, 0.0],
        [0.2, 0.8, 0.0, 0.0],
        [0.0, 0.0, 0.7, 0.0],
        [0.0, 0.0, 0.0, 0.0],
    ]
)


def _square(size: int = 32) -> np.ndarray:
    gt = np.zeros((size, size), dtype=bool)
    gt[8:20, 6:26] = True
    return gt


def test_keys_and_types():
    out = segmentation_metrics(PROB, GT)
    assert tuple(out) == METRIC_COLUMNS
    assert all(isinstance(v, float) for v in out.values())


def test_hand_computed_iou_dice_mae():
    # prob > 0.5 marks (0,0), (0,1), (1,1) inside the object and (2,2) outside it:
    # intersection 3, union 4 + 1 = 5, |pred| = |gt| = 4.
    out = segmentation_metrics(PROB, GT)
    assert out["iou"] == pytest.approx(3 / 5)
    assert out["dice"] == pytest.approx(2 * 3 / (4 + 4))
    # |p - gt| summed: object 0.1 + 0.4 + 0.2 + 0.8, background 0.4 + 0.7; over 16 pixels.
    assert out["mae"] == pytest.approx((0.1 + 0.4 + 0.2 + 0.8 + 0.4 + 0.7) / 16)


def test_threshold_is_used_for_iou():
    # At 0.65 the 0.6 pixel drops out: pred = {(0,0), (1,1), (2,2)}, intersection 2, union 5.
    out = segmentation_metrics(PROB, GT, threshold=0.65)
    assert out["iou"] == pytest.approx(2 / 5)
    assert out["dice"] == pytest.approx(2 * 2 / (3 + 4))


def test_perfect_prediction():
    gt = _square()
    out = segmentation_metrics(gt.astype(np.float64), gt)
    assert out["iou"] == out["dice"] == 1.0
    assert out["mae"] == 0.0
    assert out["s_measure"] == pytest.approx(1.0)
    assert out["max_f"] == pytest.approx(1.0)
    assert out["weighted_f"] == pytest.approx(1.0)
    assert out["e_measure"] > 0.99


def test_all_wrong_prediction():
    gt = _square()
    out = segmentation_metrics(1.0 - gt, gt)
    assert out["iou"] == out["dice"] == 0.0
    assert out["mae"] == 1.0
    assert out["s_measure"] == pytest.approx(0.0, abs=1e-9)
    assert out["weighted_f"] == pytest.approx(0.0, abs=1e-9)
    assert out["e_measure"] < 0.01
    assert out["mean_f"] < 0.01


def test_empty_gt_conventions():
    empty = np.zeros((16, 16), dtype=bool)
    nothing = segmentation_metrics(np.zeros((16, 16)), empty)
    assert nothing["iou"] == nothing["dice"] == 1.0  # nothing to find, nothing found
    assert nothing["mae"] == 0.0
    assert nothing["s_measure"] == pytest.approx(1.0)
    # py_sod_metrics: F and weighted F are 0 on an empty ground truth.
    assert nothing["max_f"] == 0.0 and nothing["weighted_f"] == 0.0

    blob = np.zeros((16, 16))
    blob[4:8, 4:8] = 0.9
    false_alarm = segmentation_metrics(blob, empty)
    assert false_alarm["iou"] == false_alarm["dice"] == 0.0
    assert false_alarm["mae"] == pytest.approx(0.9 * 16 / 256)


def test_empty_prediction_on_object_scores_zero():
    out = segmentation_metrics(np.zeros((32, 32)), _square())
    assert out["iou"] == out["dice"] == 0.0


def _library_results(pred, gt, normalize):
    from py_sod_metrics import MAE, Emeasure, Fmeasure, Smeasure, WeightedFmeasure

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fm = Fmeasure()
    sm, em, wfm, mae = Smeasure(), Emeasure(), WeightedFmeasure(), MAE()
    for m in (sm, em, fm, wfm, mae):
        m.step(pred, gt, normalize=normalize)
    curve = fm.get_results()["fm"]["curve"]
    return {
        "s_measure": sm.get_results()["sm"],
        "e_measure": em.get_results()["em"]["curve"].mean(),
        "max_f": curve.max(),
        "mean_f": curve.mean(),
        "weighted_f": wfm.get_results()["wfm"],
        "mae": mae.get_results()["mae"],
    }


def _noisy_prediction(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = _square(48)
    prob = np.clip(0.75 * gt + rng.uniform(0.0, 0.4, gt.shape) - 0.1, 0.0, 1.0)
    return prob, gt


def test_equals_py_sod_metrics_after_one_step():
    prob, gt = _noisy_prediction()
    ours = segmentation_metrics(prob, gt)
    ref = _library_results(prob, gt, normalize=False)
    for key, value in ref.items():
        assert ours[key] == pytest.approx(value, abs=1e-12), key

    toolbox = segmentation_metrics(prob, gt, toolbox_normalize=True)
    ref8 = _library_results(np.rint(prob * 255).astype(np.uint8), gt.astype(np.uint8) * 255, True)
    for key, value in ref8.items():
        assert toolbox[key] == pytest.approx(value, abs=1e-12), key


def test_metrics_are_per_image_not_accumulated():
    a = _noisy_prediction(1)
    b = _noisy_prediction(2)
    first = segmentation_metrics(*a)
    segmentation_metrics(*b)
    assert segmentation_metrics(*a) == first


def test_toolbox_mode_equals_default_on_a_full_range_8bit_map():
    prob, gt = _noisy_prediction()
    prob = np.rint(prob * 255) / 255
    prob.flat[0], prob.flat[1] = 0.0, 1.0  # spans [0, 1]: the min-max stretch is the identity
    default = segmentation_metrics(prob, gt)
    toolbox = segmentation_metrics(prob, gt, toolbox_normalize=True)
    for key in METRIC_COLUMNS:
        assert toolbox[key] == pytest.approx(default[key], abs=1e-9), key


def test_accepts_torch_tensors_with_sam_batch_dims():
    prob, gt = _noisy_prediction()
    out = segmentation_metrics(torch.from_numpy(prob).float()[None, None], torch.from_numpy(gt))
    ref = segmentation_metrics(prob.astype(np.float32), gt)
    for key in METRIC_COLUMNS:
        assert out[key] == pytest.approx(ref[key], abs=1e-6)


def test_shape_mismatch_says_to_resize():
    with pytest.raises(ValueError, match=r"resize the prediction"):
        segmentation_metrics(np.zeros((8, 8)), np.zeros((16, 16), dtype=bool))


def test_nan_rejected():
    prob = PROB.copy()
    prob[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        segmentation_metrics(prob, GT)


def test_logits_rejected():
    with pytest.raises(ValueError, match="sigmoid"):
        segmentation_metrics(PROB * 10 - 3, GT)


def test_float_gt_must_be_binary():
    with pytest.raises(ValueError, match="binarise"):
        segmentation_metrics(PROB, GT * 0.7)
    assert segmentation_metrics(PROB, GT.astype(np.uint8) * 255)["iou"] == pytest.approx(0.6)


LOGITS = np.array([[2.0, 0.6, -1.0], [0.2, 0.95, -3.0]])
LOGIT_GT = np.array([[1, 1, 0], [0, 1, 0]], dtype=bool)


def test_legacy_protocol_hand_computed():
    out = legacy_threshold_metrics(LOGITS, LOGIT_GT)
    assert tuple(out) == LEGACY_COLUMNS
    # t=0.1: pred {2.0, 0.6, 0.2, 0.95}: inter 3, union 4, one wrong pixel of 6.
    # t=0.3, 0.5: pred {2.0, 0.6, 0.95} = gt.  t=0.7, 0.9: pred {2.0, 0.95}: inter 2, union 3.
    iou = [3 / 4, 1, 1, 2 / 3, 2 / 3]
    dice = [6 / 7, 1, 1, 4 / 5, 4 / 5]
    mae = [1 / 6, 0, 0, 1 / 6, 1 / 6]
    assert out["legacy_iou"] == pytest.approx(np.mean(iou))
    assert out["legacy_dice"] == pytest.approx(np.mean(dice))
    assert out["legacy_mae"] == pytest.approx(np.mean(mae))


def test_legacy_thresholds_apply_to_logits_not_probabilities():
    # A logit of 0.05 is a probability of 0.51: foreground for segmentation_metrics at 0.5,
    # background at every legacy threshold (0.1 .. 0.9 on the logit).
    logits = np.full((4, 4), -5.0)
    logits[1:3, 1:3] = 0.05
    gt = logits > 0
    prob = 1 / (1 + np.exp(-logits))
    assert segmentation_metrics(prob, gt)["iou"] == 1.0
    assert legacy_threshold_metrics(logits, gt)["legacy_iou"] == 0.0
    assert math.isclose(legacy_threshold_metrics(logits, gt, thresholds=(0.0,))["legacy_iou"], 1.0)


def test_legacy_checks_inputs():
    with pytest.raises(ValueError, match="resize"):
        legacy_threshold_metrics(np.zeros((3, 3)), np.zeros((2, 2), dtype=bool))
    with pytest.raises(ValueError, match="NaN"):
        legacy_threshold_metrics(np.full((2, 2), np.nan), np.zeros((2, 2), dtype=bool))


# --- grid_mask_iou: how well a mask survives being known only per token -------------------


def test_grid_mask_iou_keeps_cell_aligned_blocks_and_loses_sub_cell_stripes():
    from basam_lite.metrics import grid_mask_iou

    band = np.zeros((32, 32), bool)
    band[:16] = True  # one row of 16 px cells: its edge falls where the map crosses 0
    assert grid_mask_iou(band, 16) == 1.0
    corner = np.zeros((32, 32), bool)
    corner[:16, 16:] = True  # a single cell: bilinear upsampling rounds its inner corner
    assert 0.85 < grid_mask_iou(corner, 16) < 1.0
    stripe = np.zeros((32, 32), bool)
    stripe[4:6, :] = True  # 2 px inside one cell row: coverage 1/8 everywhere, nothing drawn
    assert grid_mask_iou(stripe, 16) == 0.0
    assert grid_mask_iou(stripe, 2) == 1.0  # cells that fit the stripe keep it
    assert grid_mask_iou(np.zeros((32, 32), bool), 16) == 1.0  # empty: nothing lost


def test_grid_mask_iou_equals_torch_bilinear_upsampling_of_the_coverage():
    import torch
    import torch.nn.functional as F

    from basam_lite.metrics import grid_mask_iou

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:64, :48]
    for _ in range(5):
        cy, cx, r = rng.uniform(10, 40), rng.uniform(10, 38), rng.uniform(3, 14)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        t = torch.from_numpy(mask).float()[None, None]
        up = F.interpolate(F.avg_pool2d(t, 8) - 0.5, size=(64, 48), mode="bilinear")[0, 0] > 0
        g = torch.from_numpy(mask)
        expected = int((up & g).sum()) / int((up | g).sum())
        assert grid_mask_iou(mask, 8) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("mask", "cell", "message"),
    [
        (np.zeros((30, 32), bool), 16, "does not divide the mask's 30 x 32 px"),
        (np.zeros((32, 32), bool), 0, "positive integer"),
        (np.zeros((32, 32), bool), 2.0, "positive integer"),
        (np.zeros((2, 32, 32), bool), 16, "2-D"),
    ],
)
def test_grid_mask_iou_refuses_bad_input(mask, cell, message):
    from basam_lite.metrics import grid_mask_iou

    with pytest.raises(ValueError, match=message):
        grid_mask_iou(mask, cell)

"""The course's yardstick for fading (a map that stretches with the image) and the checkers built
on it: right, wrong and typical-mistake answers, and no measured value in a prediction's
verdict."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from basam_lite import analysis, explorer
from basam_lite.exercises import nb05

matplotlib.use("Agg")


def stretch_by_loops(p: np.ndarray, k: int) -> np.ndarray:
    """The stretched map written out: key (r, c) takes p[r // k, c // k] / k^2."""
    rows, cols = p.shape
    out = np.zeros((k * rows, k * cols))
    for r in range(k * rows):
        for c in range(k * cols):
            out[r, c] = p[r // k, c // k] / (k * k)
    return out


@pytest.mark.parametrize("k", [1, 2, 3])
def test_stretch_map_against_loops_and_entropy_rises_by_ln_k2(k: int) -> None:
    rng = np.random.default_rng(k)
    p = rng.random((3, 5))
    p /= p.sum()
    got = analysis.stretch_map(torch.tensor(p), k).numpy()
    np.testing.assert_allclose(got, stretch_by_loops(p, k), rtol=1e-12)
    assert got.sum() == pytest.approx(1.0)
    h0 = -(p * np.log(p)).sum()
    h1 = float(analysis.entropy(torch.tensor(got).reshape(-1)))
    assert h1 - h0 == pytest.approx(math.log(k * k), abs=1e-9)  # H + ln k^2
    b0 = float(analysis.below_uniform(torch.tensor(p).reshape(-1)))
    b1 = float(analysis.below_uniform(torch.tensor(got).reshape(-1)))
    assert b0 == pytest.approx(math.log(15) - h0) and b1 == pytest.approx(b0, abs=1e-9)


def test_stretch_map_rejects_a_bad_factor() -> None:
    with pytest.raises(ValueError, match="positive whole number"):
        analysis.stretch_map(torch.ones(2, 2) / 4, 0)
    with pytest.raises(ValueError, match="positive whole number"):
        analysis.stretch_map(torch.ones(2, 2) / 4, 1.5)


def _stats(below: dict[int, float], dist: dict[int, float]) -> pd.DataFrame:
    rows = []
    for image in ("a", "b"):
        for side in below:
            for variant, shift in (("vanilla", 0.0), ("paper", 0.5)):
                rows.append(
                    {
                        "image": image,
                        "block": 2,
                        "head": 0,
                        "side": side,
                        "variant": variant,
                        "below_uniform": below[side] + shift,
                        "distance_px": dist[side],
                        "entropy": math.log((side // 16) ** 2) - below[side] - shift,
                    }
                )
    return pd.DataFrame(rows)


def test_stretching_reference_is_flat_for_below_uniform_and_linear_for_distance() -> None:
    stats = _stats({128: 1.0, 256: 1.2, 512: 0.7}, {128: 50.0, 256: 90.0, 512: 150.0})
    ref = explorer.stretching_reference(stats, "below_uniform", 256).set_index(["image", "side"])
    assert (ref["below_uniform"] == 1.2).all()
    ref = explorer.stretching_reference(stats, "distance_px", 256).set_index(["image", "side"])
    assert ref.loc[("a", 512), "distance_px"] == pytest.approx(180.0)
    assert ref.loc[("a", 128), "distance_px"] == pytest.approx(45.0)
    ref = explorer.stretching_reference(stats, "entropy", 256).set_index(["image", "side"])
    h256 = math.log(256) - 1.2
    assert ref.loc[("a", 512), "entropy"] == pytest.approx(h256 + math.log(4))
    with pytest.raises(ValueError, match="no 'vanilla' rows"):
        explorer.stretching_reference(stats, "below_uniform", 1024)
    with pytest.raises(ValueError, match="no stretching reference"):
        explorer.stretching_reference(stats, "normalised_entropy", 256)
    fig = explorer.plot_statistics(stats, reference_side=256)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "vanilla at 256 px, stretched (a)" in legend and len(fig.axes) == 2
    grey = [ln for ln in fig.axes[0].get_lines() if ln.get_color() == "0.45"]
    assert len(grey) == 2 and np.allclose(grey[0].get_ydata(), 1.2)


def test_check_stretch_map_accepts_the_library_and_a_kron(capsys) -> None:
    assert nb05.check_stretch_map(analysis.stretch_map)

    def kron(p, k):
        ones = torch.ones(k, k, dtype=p.dtype)
        if p.ndim == 2:
            return torch.kron(p, ones) / k**2
        return torch.stack([torch.kron(m, ones) for m in p]) / k**2

    assert nb05.check_stretch_map(kron)
    assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("wrong", "why"),
    [
        (lambda p, k: p.repeat_interleave(k, -2).repeat_interleave(k, -1), "no longer sums to 1"),
        (lambda p, k: p.repeat_interleave(k, -2).repeat_interleave(k, -1) / k, "shared by k keys"),
        (lambda p, k: p.repeat(*([1] * (p.ndim - 2)), k, k) / (k * k), "tiled"),
        (lambda p, k: None, "shape"),
    ],
)
def test_check_stretch_map_names_the_mistake(wrong, why, capsys) -> None:
    assert not nb05.check_stretch_map(wrong)
    assert why in capsys.readouterr().out


def test_fading_prediction_reads_the_yardstick_and_never_prints_the_value(capsys) -> None:
    flat = _stats({256: 1.234, 1024: 1.251}, {256: 1.0, 1024: 4.0})
    fading = _stats({256: 1.234, 1024: 0.912}, {256: 1.0, 1024: 4.0})
    assert nb05.fading_outcome(flat, 256)[0] == "does not fade"
    assert nb05.fading_outcome(fading, 256) == ("fades", pytest.approx(0.912 - 1.234))
    assert nb05.check_fading_prediction("does not fade", flat, 256)
    assert not nb05.check_fading_prediction("fades", flat, 256)
    assert nb05.check_fading_prediction(" Fades ", fading, 256)
    assert not nb05.check_fading_prediction(None, fading, 256)
    out = capsys.readouterr().out
    for value in ("1.23", "1.25", "0.91", "0.32", "0.02"):
        assert value not in out

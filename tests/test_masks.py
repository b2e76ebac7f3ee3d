"""alibi_slopes and bias_mode_mask against Press's recipe and distances written out."""

from __future__ import annotations

import math

import pytest
import torch

from basam_lite import alibi_slopes, bias_mode_mask


def press_slopes(n: int) -> list[float]:
    """Press's recursive recipe (ALiBi paper, arXiv 2108.12409), written independently."""

    def power_of_two(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n).is_integer():
        return power_of_two(n)
    closest = 2 ** math.floor(math.log2(n))
    return power_of_two(closest) + press_slopes(2 * closest)[0::2][: n - closest]


@pytest.mark.parametrize("heads", [1, 2, 3, 6, 8, 12, 16, 24, 32])
def test_slopes_match_press(heads: int) -> None:
    torch.testing.assert_close(
        alibi_slopes(heads), torch.tensor(press_slopes(heads)), rtol=1e-6, atol=0
    )


def test_slopes_for_sam_heads() -> None:
    twelve = [2.0**-k for k in range(1, 9)] + [2**-0.5, 2**-1.5, 2**-2.5, 2**-3.5]
    torch.testing.assert_close(alibi_slopes(12), torch.tensor(twelve))
    torch.testing.assert_close(
        alibi_slopes(16), torch.tensor([2 ** (-k / 2) for k in range(1, 17)])
    )


def reference_distance(a: tuple[int, int], b: tuple[int, int], metric: str, cols: int) -> float:
    dr, dc = abs(a[0] - b[0]), abs(a[1] - b[1])
    return {
        "euclidean": math.hypot(dr, dc),
        "manhattan": dr + dc,
        "chebyshev": max(dr, dc),
        "flat": abs((a[0] * cols + a[1]) - (b[0] * cols + b[1])),
    }[metric]


@pytest.mark.parametrize("metric", ["euclidean", "manhattan", "chebyshev", "flat"])
def test_exact_values_on_3x4_grid(metric: str) -> None:
    rows, cols, heads, gain = 3, 4, 3, 0.5
    slopes = alibi_slopes(heads)
    mask = bias_mode_mask((rows, cols), heads, metric=metric, gain=gain)
    assert mask.shape == (1, heads, 12, 12)
    positions = [(r, c) for r in range(rows) for c in range(cols)]  # row-major
    for h in range(heads):
        for i, pi in enumerate(positions):
            for j, pj in enumerate(positions):
                expected = -gain * float(slopes[h]) * reference_distance(pi, pj, metric, cols)
                assert mask[0, h, i, j].item() == pytest.approx(expected, abs=1e-6)


def test_hand_values_first_to_last_token() -> None:
    # token 0 = (0, 0), token 11 = (2, 3) on a 3x4 grid; slope 1
    got = {
        m: bias_mode_mask((3, 4), 1, metric=m, slopes=[1.0])[0, 0, 0, 11].item()
        for m in ("euclidean", "manhattan", "chebyshev", "flat")
    }
    assert got["euclidean"] == pytest.approx(-math.sqrt(13))
    assert got == pytest.approx(
        {"euclidean": -math.sqrt(13), "manhattan": -5.0, "chebyshev": -3.0, "flat": -11.0}
    )


@pytest.mark.parametrize("metric", ["euclidean", "manhattan", "chebyshev", "flat"])
def test_mask_properties(metric: str) -> None:
    mask = bias_mode_mask((5, 7), 4, metric=metric)[0]
    assert torch.all(torch.diagonal(mask, dim1=-2, dim2=-1) == 0)
    assert torch.all(mask <= 0)
    torch.testing.assert_close(mask, mask.transpose(-1, -2))
    # monotone: further in the metric -> more negative, the same ordering for every head
    pos = [(r, c) for r in range(5) for c in range(7)]
    dist = torch.tensor([reference_distance(pos[0], p, metric, 7) for p in pos])
    order = torch.argsort(dist)
    assert torch.all(mask[:, 0, order].diff(dim=-1) <= 1e-6)


def test_gain_and_custom_slopes() -> None:
    base = bias_mode_mask((4, 4), 2)
    torch.testing.assert_close(bias_mode_mask((4, 4), 2, gain=3.0), 3.0 * base)
    assert torch.all(bias_mode_mask((4, 4), 2, gain=0.0) == 0)
    custom = bias_mode_mask((4, 4), 2, slopes=[1.0, 0.0])
    assert torch.all(custom[0, 1] == 0) and custom[0, 0].min() < 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"metric": "cosine"}, "unknown distance metric 'cosine'"),
        ({"slopes": [1.0]}, "got 1 slopes for 2 heads"),
        ({"slopes": [1.0, -1.0]}, "non-negative"),
        ({"gain": -1.0}, "gain must be finite and >= 0"),
        ({"grid_hw": (0, 4)}, "grid_hw must be two positive integers"),
        ({"grid_hw": (4,)}, "grid_hw must be two positive integers"),
    ],
)
def test_bad_input(kwargs: dict, message: str) -> None:
    args = {"grid_hw": (4, 4), "num_heads": 2} | kwargs
    with pytest.raises(ValueError, match=message):
        bias_mode_mask(**args)


@pytest.mark.parametrize("heads", [0, -3, 2.5])
def test_bad_head_count(heads) -> None:
    with pytest.raises(ValueError, match="num_heads must be a positive integer"):
        alibi_slopes(heads)


def test_base_unit_scale_is_base_grid_over_current_grid() -> None:
    from basam_lite.masks import base_unit_scale

    assert base_unit_scale((16, 16), (16, 16)) == 1.0
    assert base_unit_scale((32, 32), (16, 16)) == 0.5
    assert base_unit_scale((8, 8), (16, 16)) == 2.0
    assert base_unit_scale((24, 12), (16, 8)) == 16 / 24  # the same factor along both axes
    assert base_unit_scale((32, 16), (16, 16)) == pytest.approx(math.sqrt(256 / 512))
    with pytest.raises(ValueError, match="grid_hw"):
        base_unit_scale((0, 4), (16, 16))


@pytest.mark.parametrize("metric", ["euclidean", "manhattan", "chebyshev", "flat"])
def test_base_unit_mask_scales_distances_exactly(metric: str) -> None:
    from basam_lite.masks import base_unit_scale

    heads, base = 4, (4, 4)
    slopes = alibi_slopes(heads)
    # At the base grid the base-unit mask is the paper's mask, bit for bit.
    s = base_unit_scale(base, base)
    assert torch.equal(bias_mode_mask(base, heads, metric, distance_scale=s),
                       bias_mode_mask(base, heads, metric))  # fmt: skip
    for grid in ((8, 8), (2, 2), (6, 3)):
        s = base_unit_scale(grid, base)
        mask = bias_mode_mask(grid, heads, metric=metric, distance_scale=s)
        rows, cols = grid
        positions = [(r, c) for r in range(rows) for c in range(cols)]
        for h in range(heads):
            for i, pi in enumerate(positions):
                for j, pj in enumerate(positions):
                    want = -slopes[h].item() * s * reference_distance(pi, pj, metric, cols)
                    assert mask[0, h, i, j].item() == pytest.approx(want, rel=1e-6, abs=1e-7)
    with pytest.raises(ValueError, match="distance_scale"):
        bias_mode_mask(base, heads, distance_scale=0.0)

"""Exercise checkers: each accepts the solution's answer and rejects a wrong one.

One test function per checker, named ``test_nbNN_<checker>``; answers are computed as in
``notebooks/solutions/NN_*.md``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import basam_lite as bl
from basam_lite.exercises import Verdict, nb02, nb03, nb04, nb08

# --- notebook 02: resolution is sequence length ---------------------------------------------


def test_nb02_check_dense_gib_accepts_formula_and_names_mistakes(capsys) -> None:
    def gib(side, heads):
        return heads * ((side // 16) ** 2) ** 2 * 4 / 2**30

    assert nb02.check_dense_gib(gib)
    capsys.readouterr()
    for wrong, why in [
        (lambda s, h: gib(s, h) / 4, "4 bytes"),
        (lambda s, h: gib(s, h) * 2**30 / 1e9, "GB"),
        (lambda s, h: h * (s // 16) ** 2 * 4 / 2**30, "N x N"),
        (lambda s, h: gib(s, h) / h, "heads"),
    ]:
        assert not nb02.check_dense_gib(wrong)
        out = capsys.readouterr().out
        assert why in out and "case" in out, out


def test_nb02_check_resize_accepts_library_and_names_mistakes(capsys) -> None:
    import torch.nn.functional as F

    from basam_lite.resolution import resample_pos_embed

    def interp(size=None, swap=False, back=True, **kw):
        def fn(t, grid):
            out = F.interpolate(t.permute(0, 3, 1, 2), size=grid[::-1] if swap else grid, **kw)
            return out.permute(0, 2, 3, 1) if back else out

        return fn

    assert nb02.check_resize(resample_pos_embed)
    assert nb02.check_resize(interp(mode="bicubic", align_corners=False))
    capsys.readouterr()
    for wrong, why in [
        (interp(mode="bicubic", align_corners=False, swap=True), "swapped"),  # transposed grid
        (interp(mode="bicubic", align_corners=False, back=False), "channels back last"),
        (interp(mode="bilinear", align_corners=False), "bilinear"),
        (interp(mode="bicubic", align_corners=True), "align_corners"),
    ]:
        assert not nb02.check_resize(wrong)
        out = capsys.readouterr().out
        assert why in out, out


def test_nb02_check_keys_prediction(capsys) -> None:
    sam = bl.build_sam("tiny")  # random weights: only the shapes matter
    measured = bl.analysis.keys_per_row(sam, 192)
    assert measured == (16, 144)
    assert tuple(bl.input_size(sam)) == (256, 256)  # returned to its base size
    assert nb02.check_keys_prediction((16, 144), measured, 192)
    capsys.readouterr()
    assert not nb02.check_keys_prediction((36, 144), measured, 192)
    assert "do not grow" in capsys.readouterr().out
    assert not nb02.check_keys_prediction((16, 12), measured, 192)
    assert "one side" in capsys.readouterr().out
    assert not nb02.check_keys_prediction(None, measured, 192)


def test_neighbour_correlation_against_references() -> None:
    from basam_lite.embedding import neighbour_correlation, shuffled

    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 32, 32, 8, generator=g)
    assert abs(neighbour_correlation(noise)) < 0.05
    x = torch.linspace(0, 1, 32)
    smooth = (torch.sin(3 * x)[:, None] * torch.cos(2 * x)[None, :])[None, ..., None].repeat(
        1, 1, 1, 4
    )
    assert neighbour_correlation(smooth) > 0.95
    # a written-out reference for one channel: right and lower pairs pooled, Pearson
    t = torch.randn(5, 6, 1, generator=g, dtype=torch.float64)
    a = torch.cat([t[:, :-1].flatten(), t[:-1, :].flatten()])
    b = torch.cat([t[:, 1:].flatten(), t[1:, :].flatten()])
    ref = float(np.corrcoef(a.numpy(), b.numpy())[0, 1])
    assert math.isclose(neighbour_correlation(t), ref, rel_tol=1e-9)
    s = shuffled(smooth)
    assert torch.equal(s.flatten().sort().values, smooth.flatten().sort().values)
    assert neighbour_correlation(s) < 0.5
    with pytest.raises(ValueError, match="constant"):
        neighbour_correlation(torch.ones(1, 4, 4, 2))
    with pytest.raises(ValueError, match="rows, cols"):
        neighbour_correlation(torch.ones(1, 1, 4, 2))


# --- notebook 03: the scaling factor ---------------------------------------------------------


def test_nb03_check_lambda_accepts_library_and_names_mistakes(capsys) -> None:
    assert nb03.check_lambda(lambda n, t: bl.attention_scale(n, train_keys=t))
    assert nb03.check_lambda(lambda n, t: math.log2(n) / math.log2(t))  # any base
    capsys.readouterr()
    for wrong, why in [
        (lambda n, t: math.log(t) / math.log(n), "upside down"),
        (lambda n, t: math.log(n / t), "difference of logs"),
        (lambda n, t: math.sqrt(n / t), "side ratio"),
    ]:
        assert not nb03.check_lambda(wrong)
        out = capsys.readouterr().out
        assert why in out and "case 0" in out, out


def test_nb03_check_entropy_accepts_library_and_names_mistakes(capsys) -> None:
    assert nb03.check_entropy(bl.analysis.entropy)
    assert nb03.check_entropy(lambda p: torch.special.entr(p).sum(-1))
    capsys.readouterr()
    for wrong, why in [
        (lambda p: -(p * p.log()).sum(-1), "NaN"),
        (lambda p: -(p * torch.log2(p.clamp_min(1e-30))).sum(-1), "bits"),
        (lambda p: -(p * p.clamp_min(1e-30).log()).sum(-2), "axis -2"),  # transposed
        (lambda p: (p * p.clamp_min(1e-30).log()).sum(-1), "sign"),
    ]:
        assert not nb03.check_entropy(wrong)
        out = capsys.readouterr().out
        assert why in out, out


def test_nb03_check_scale_prediction(capsys) -> None:
    import pandas as pd

    stats = pd.DataFrame(
        {"variant": ["plain SAM", "with lambda"] * 2, "normalised_entropy": [0.9, 0.8, 0.88, 0.82]}
    )
    assert nb03.check_scale_prediction("sharper", stats)
    assert nb03.check_scale_prediction(" Sharper ", stats)
    assert not nb03.check_scale_prediction("softer", stats)
    assert not nb03.check_scale_prediction(None, stats)
    softer = stats.assign(variant=["with lambda", "plain SAM"] * 2)
    assert nb03.check_scale_prediction("softer", softer)  # the measurement decides, not theory
    assert "other effects win" in capsys.readouterr().out


def test_nb03_check_official_2560(capsys) -> None:
    assert nb03.check_official_2560(math.log((2560 // 1024) ** 2 * 4096, 4096))
    assert nb03.check_official_2560(1.167)  # rounded to the stated 3 decimals
    assert nb03.check_official_2560(bl.attention_scale((2560 // 16) ** 2, mode="official"))
    capsys.readouterr()
    assert not nb03.check_official_2560(round(bl.attention_scale((2560 // 16) ** 2), 3))
    assert "paper-like" in capsys.readouterr().out
    assert not nb03.check_official_2560(None)


def test_nb03_check_tiny_lambda_512(capsys) -> None:
    assert nb03.check_tiny_lambda_512(math.log((512 // 16) ** 2) / math.log((256 // 16) ** 2))
    assert nb03.check_tiny_lambda_512(1.25)
    capsys.readouterr()
    assert not nb03.check_tiny_lambda_512(round(bl.attention_scale((512 // 16) ** 2), 3))
    assert "4096" in capsys.readouterr().out
    assert not nb03.check_tiny_lambda_512(2)
    assert "side ratio" in capsys.readouterr().out


# --- notebook 04: the bias-mode mask ---------------------------------------------------------


def test_nb04_check_alibi_slopes_accepts_library_and_names_mistakes(capsys) -> None:
    assert nb04.check_alibi_slopes(bl.alibi_slopes)
    assert nb04.check_alibi_slopes(lambda n: bl.alibi_slopes(n).tolist())  # a list is fine
    capsys.readouterr()
    for wrong, why in [
        (lambda n: bl.alibi_slopes(n).sort().values, "order"),
        (lambda n: bl.alibi_slopes(n).sort(descending=True).values, "order"),
        (lambda n: [2.0 ** (-8 * (h + 1) / n) for h in range(n)], "shortcut"),
        (lambda n: [2.0 ** (-8 * h / n) for h in range(n)], "off by one"),
        (lambda n: bl.alibi_slopes(n).flip(0), "order"),
    ]:
        assert not nb04.check_alibi_slopes(wrong)
        out = capsys.readouterr().out
        assert why in out and "case" in out, out


def _mask(grid, slopes, by_columns=False, sign=-1.0):
    rows, cols = grid
    i = torch.arange(rows * cols)
    rc = (i % rows, i // rows) if by_columns else (i // cols, i % cols)
    pos = torch.stack(rc, 1).float()
    return sign * torch.as_tensor(slopes).float()[:, None, None] * torch.cdist(pos, pos)[None]


def test_nb04_check_euclidean_mask_accepts_formula_and_names_mistakes(capsys) -> None:
    assert nb04.check_euclidean_mask(_mask)
    capsys.readouterr()
    for wrong, why in [
        (lambda g, s: _mask(g, s, sign=1.0), "sign"),
        (lambda g, s: _mask(g, s, by_columns=True), "swapped"),  # transposed grid
        (lambda g, s: -s[:, None, None] * bl.grid_distances(g, "flat")[None], "flat"),
        (lambda g, s: -s[:, None, None] * bl.grid_distances(g, "manhattan")[None], "Manhattan"),
    ]:
        assert not nb04.check_euclidean_mask(wrong)
        out = capsys.readouterr().out
        assert why in out, out
    assert not nb04.check_euclidean_mask(lambda g, s: _mask(g, s)[0])  # one head only: shape


def test_nb04_check_mask_prediction(capsys) -> None:
    measured = bl.bias_mode_mask((4, 5), 8)[0, 0, 0, 3 * 5 + 4].item()
    assert nb04.check_mask_prediction(-2.5, measured)
    assert nb04.check_mask_prediction(-2.5004, measured)  # within the stated 0.0006
    capsys.readouterr()
    assert not nb04.check_mask_prediction(2.5, measured)
    assert "sign" in capsys.readouterr().out
    assert not nb04.check_mask_prediction(-5.0, measured)
    assert "slope" in capsys.readouterr().out
    assert not nb04.check_mask_prediction(-3.5, measured)
    assert "Manhattan" in capsys.readouterr().out
    assert not nb04.check_mask_prediction(None, measured)


def test_nb08_check_click(capsys) -> None:
    assert nb08.check_click((200, 10))
    assert nb08.check_click(np.array([[200.0, 10.0]]))  # SAM's (N, 2) layout
    capsys.readouterr()
    assert not nb08.check_click((10, 200))
    assert "transposed" in capsys.readouterr().out
    assert not nb08.check_click(None)
    assert not nb08.check_click((200, 10, 0))


def test_checkers_return_verdicts() -> None:
    v = nb02.check_keys_prediction(None, (16, 144), 192)
    assert isinstance(v, Verdict) and not v and repr(v).startswith("Not yet: ")

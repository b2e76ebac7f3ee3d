"""Paired statistics against explicit loops, scipy and known cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from basam_lite.errors import UserError
from basam_lite.stats import (
    _cell_rng,
    bootstrap_interval,
    findings_table,
    holm,
    images_needed,
    paired_t_pvalue,
    paired_table,
)


def table(rng: np.random.Generator, n: int = 30) -> pd.DataFrame:
    """A sweep-like table: two sizes, vanilla and two variants with known shifts."""
    rows = []
    for size in (256, 512):
        for i in range(n):
            base = rng.uniform(0.4, 0.9)
            for variant, shift in (("vanilla", 0.0), ("big", 0.1), ("none", 0.0)):
                noise = {"vanilla": 0.0, "big": rng.normal(0, 0.02), "none": 0.02 * (-1) ** i}[
                    variant
                ]  # "none": differences of mean exactly 0
                rows.append(
                    dict(model="m", axis="extent", resolution=size, prompt="box", image=f"i{i}",
                         variant=variant, status="ok", iou=base + shift + noise)
                )  # fmt: skip
    return pd.DataFrame(rows)


def slow_reference(df: pd.DataFrame, n_boot: int, seed: int) -> list[dict]:
    """Every statistic with explicit loops: pairing by dictionary, bootstrap one draw at a time,
    the t statistic and Holm written out."""
    ref = {}
    for r in df.itertuples():
        if r.variant == "vanilla":
            ref[(r.model, r.axis, r.resolution, r.prompt, r.image)] = r.iou
    cells: dict[tuple, list[float]] = {}
    for r in df.itertuples():
        if r.variant != "vanilla":
            key = (r.model, r.axis, r.resolution, r.prompt, r.variant)
            cells.setdefault(key, []).append(r.iou - ref[(*key[:4], r.image)])
    out = []
    for key in sorted(cells):
        d = cells[key]
        n = len(d)
        mean = sum(d) / n
        sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
        rng = _cell_rng(seed, key)
        means = []
        for _ in range(n_boot):
            pick = rng.integers(0, n, size=n)
            means.append(sum(d[j] for j in pick) / n)
        t = mean / (sd / math.sqrt(n))
        p = 2 * sps.t.sf(abs(t), n - 1)
        lo, hi = np.percentile(means, [2.5, 97.5])
        out.append(dict(key=key, mean=mean, sd=sd, se=sd / math.sqrt(n), lo=lo, hi=hi, p=p))
    order = sorted(range(len(out)), key=lambda k: out[k]["p"])
    m, running = len(out), 0.0
    for rank, k in enumerate(order):
        running = max(running, min(1.0, (m - rank) * out[k]["p"]))
        out[k]["p_holm"] = running
    return out


def test_paired_table_matches_the_slow_reference():
    df = table(np.random.default_rng(0))
    got = paired_table(df, n_boot=300, seed=4)
    want = slow_reference(df, n_boot=300, seed=4)
    assert len(got) == len(want) == 4
    for row, ref in zip(got.itertuples(), want, strict=True):
        assert (row.model, row.axis, row.resolution, row.prompt, row.variant) == ref["key"]
        for name in ("mean", "sd", "se", "p", "p_holm"):
            assert getattr(row, name) == pytest.approx(ref[name], rel=1e-9, abs=1e-12)
        assert row.ci_low == pytest.approx(ref["lo"], rel=1e-12)
        assert row.ci_high == pytest.approx(ref["hi"], rel=1e-12)
    big = got[got["variant"] == "big"]
    none = got[got["variant"] == "none"]
    assert big["significant"].all() and not none["significant"].any()
    assert (
        (big["ci_low"] > 0.05) & (big["ci_low"] < big["mean"]) & (big["mean"] < big["ci_high"])
    ).all()


def test_known_cases():
    # Holm on a textbook example.
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, np.nan, 0.01]), [0.5, np.nan, 0.02])
    # A constant difference: zero-width interval, p = 0; all zero: p = 1.
    rng = np.random.default_rng(0)
    assert bootstrap_interval(np.full(10, 0.25), 200, rng) == (0.25, 0.25)
    assert paired_t_pvalue(np.full(5, 0.1)) == 0.0 and paired_t_pvalue(np.zeros(5)) == 1.0
    d = np.array([0.1, -0.05, 0.2, 0.0, 0.15])
    assert paired_t_pvalue(d) == pytest.approx(sps.ttest_rel(d, np.zeros(5)).pvalue)
    # The interval of a large normal sample is close to mean +- 1.96 SE.
    x = rng.normal(0.03, 0.1, 4000)
    lo, hi = bootstrap_interval(x, 2000, np.random.default_rng(1))
    se = x.std(ddof=1) / math.sqrt(x.size)
    assert lo == pytest.approx(x.mean() - 1.96 * se, abs=0.3 * se)
    assert hi == pytest.approx(x.mean() + 1.96 * se, abs=0.3 * se)
    np.testing.assert_array_equal(images_needed([0.1, 0.05, 0.0]), [100, 25, 0])


def test_the_seeded_interval_does_not_depend_on_the_other_cells():
    df = table(np.random.default_rng(2))
    alone = paired_table(df[df["resolution"] == 512], n_boot=200, seed=0)
    both = paired_table(df, n_boot=200, seed=0)
    a = alone.set_index("variant")[["ci_low", "ci_high", "mean"]]
    b = both[both["resolution"] == 512].set_index("variant")[["ci_low", "ci_high", "mean"]]
    pd.testing.assert_frame_equal(a, b)


def test_findings_table_and_bad_input():
    df = table(np.random.default_rng(3), n=12)
    text = findings_table(df, n_boot=200)
    assert text.count("\n| m | extent |") == 4
    assert "differ from vanilla after Holm's correction across all 4" in text
    with pytest.raises(UserError, match="no 'vanilla' rows"):
        paired_table(df[df["variant"] != "vanilla"])
    with pytest.raises(UserError, match="n_boot"):
        paired_table(df, n_boot=10)
    with pytest.raises(UserError, match="target_se"):
        images_needed(0.1, 0)

r"""Paired statistics of a sweep table: each variant against a reference on the same images.

For one cell (model, axis, input size, prompt, variant) with per-image differences
:math:`d_i = m_i(\text{variant}) - m_i(\text{reference})`, :math:`i = 1..n`:

- the mean difference :math:`\bar d` and its standard error :math:`s_d / \sqrt n`
  (:math:`s_d` the sample standard deviation, ``ddof=1``);
- a paired bootstrap 95% interval: resample the :math:`n` images with replacement
  ``n_boot`` times, take the 2.5% and 97.5% percentiles of the resampled means (the images stay
  paired: both variants' scores of an image move together). The draws are seeded by
  ``(seed, cell)``, so a cell's interval does not depend on which other cells are in the table;
- a two-sided p-value of the paired t-test (:math:`t = \bar d / (s_d / \sqrt n)`, n - 1 degrees of
  freedom; 1 when every difference is 0, 0 when they are all one other value), and the Holm
  step-down adjustment across every cell of the table (the family: all variants, sizes, axes,
  prompts and models together). A cell is *significant* when its Holm-adjusted p-value is below
  ``alpha``; the bootstrap interval is reported beside it, not used for the decision.

:func:`images_needed` turns a pilot's per-image standard deviation into the number of images
that brings the standard error to a target (:math:`n = \lceil (s_d / \mathrm{SE})^2 \rceil`).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from .errors import UserError

CELL = ("model", "axis", "resolution", "prompt", "variant")
"""The columns that name one cell of the paired comparison."""


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    r"""Holm's step-down adjusted p-values: sort ascending, :math:`\tilde p_{(k)} =
    \max_{j \le k} \min(1, (m - j + 1)\, p_{(j)})`, returned in the input order. NaN stays NaN
    and does not count in :math:`m`."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    if m == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    adjusted = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(adjusted)
    return out


def _cell_rng(seed: int, key: tuple) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(repr(key).encode())])


def bootstrap_interval(
    d: np.ndarray, n_boot: int, rng: np.random.Generator, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of the mean of ``d`` over ``n_boot`` resamples with replacement."""
    d = np.asarray(d, dtype=float)
    idx = rng.integers(0, d.size, size=(n_boot, d.size))
    means = d[idx].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def paired_t_pvalue(d: np.ndarray) -> float:
    """Two-sided p-value of the paired t-test on differences ``d`` (see the module docstring
    for the degenerate cases)."""
    d = np.asarray(d, dtype=float)
    if d.size < 2:
        return float("nan")
    if np.all(d == d[0]):
        return 1.0 if d[0] == 0 else 0.0
    return float(sps.ttest_1samp(d, 0.0).pvalue)


def differences(df: pd.DataFrame, reference: str = "vanilla", metric: str = "iou") -> pd.DataFrame:
    """Per-image differences ``variant - reference`` of ``metric``: one row per (cell, image)
    where both ran (``status == "ok"``), columns ``CELL + ("image", "difference")``."""
    ok = df[df["status"] == "ok"] if "status" in df else df
    if "axis" not in ok:
        ok = ok.assign(axis="zoom")
    group = [c for c in CELL if c != "variant"] + ["image"]
    ref = ok[ok["variant"] == reference].set_index(group)[metric]
    if ref.empty:
        raise UserError(f"no {reference!r} rows with a {metric} to pair against")
    rest = ok[ok["variant"] != reference]
    joined = rest.join(ref.rename("_reference"), on=group, how="inner")
    joined = joined.assign(difference=joined[metric] - joined["_reference"])
    joined = joined.dropna(subset=["difference"])
    return joined[[*CELL, "image", "difference"]].reset_index(drop=True)


def paired_table(
    df: pd.DataFrame,
    reference: str = "vanilla",
    metric: str = "iou",
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """One row per cell (``CELL``) of ``variant - reference`` on the same images: ``images``,
    ``mean``, ``sd``, ``se``, ``ci_low``, ``ci_high`` (paired bootstrap, 95%), ``p``,
    ``p_holm`` (across all cells) and ``significant`` (``p_holm < alpha``)."""
    if n_boot < 100:
        raise UserError(f"n_boot {n_boot} is too few for a 95% interval: use at least 100")
    d = differences(df, reference, metric)
    rows = []
    for key, cell in d.groupby(list(CELL), sort=False):
        x = cell["difference"].to_numpy(dtype=float)
        n = x.size
        sd = float(x.std(ddof=1)) if n > 1 else float("nan")
        lo, hi = bootstrap_interval(x, n_boot, _cell_rng(seed, key))
        rows.append(
            {
                **dict(zip(CELL, key, strict=True)),
                "images": n,
                "mean": float(x.mean()),
                "sd": sd,
                "se": sd / math.sqrt(n) if n > 1 else float("nan"),
                "ci_low": lo,
                "ci_high": hi,
                "p": paired_t_pvalue(x),
            }
        )
    out = pd.DataFrame(rows)
    if out.empty:
        raise UserError(f"no cell has both a variant and {reference!r} on the same images")
    out["p_holm"] = holm(out["p"].to_numpy())
    out["significant"] = out["p_holm"] < alpha
    return out.sort_values(list(CELL), kind="stable").reset_index(drop=True)


def images_needed(sd: float | np.ndarray, target_se: float = 0.01) -> np.ndarray:
    """Images that bring the paired standard error to ``target_se``: ceil((sd / target)^2)."""
    if target_se <= 0:
        raise UserError(f"target_se must be > 0, got {target_se}")
    return np.ceil((np.asarray(sd, dtype=float) / target_se) ** 2)


def findings_table(
    df: pd.DataFrame,
    reference: str = "vanilla",
    metric: str = "iou",
    seed: int = 0,
    n_boot: int = 2000,
    alpha: float = 0.05,
    section: Callable[[str], str] | None = None,
) -> str:
    """The findings as a Markdown table: each cell's difference from ``reference`` in points
    (x 100) with its 95% bootstrap interval, the standard error, the number of images and a
    ``*`` where the Holm-adjusted p-value is below ``alpha``. Generated, never typed.

    ``section`` (model name -> a title, e.g. its family) splits the rows into one table per
    title, each under a ``### title`` heading, in order of first appearance; Holm's correction
    still runs across every cell of every section."""
    t = paired_table(df, reference, metric, n_boot=n_boot, seed=seed, alpha=alpha)
    header = [
        f"| model | axis | size (px) | prompt | variant | {metric} - {reference} (points) "
        "| 95% interval | SE | images | Holm |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    titles = t["model"].map(section) if section is not None else pd.Series("", index=t.index)
    lines: list[str] = []
    for title in titles.unique():
        if section is not None:
            lines += [*([""] if lines else []), f"### {title}", ""]
        lines += header
        for r in t[titles == title].itertuples(index=False):
            lines.append(
                f"| {r.model} | {r.axis} | {r.resolution} | {r.prompt} | {r.variant} "
                f"| {100 * r.mean:+.1f} | [{100 * r.ci_low:+.1f}, {100 * r.ci_high:+.1f}] "
                f"| {100 * r.se:.1f} | {r.images} | {'*' if r.significant else ''} |"
            )
    n_sig = int(t["significant"].sum())
    lines.append("")
    lines.append(
        f"{n_sig} of {len(t)} cells differ from {reference} after Holm's correction across all "
        f"{len(t)} (alpha {alpha}); intervals: paired bootstrap, {n_boot} resamples, seed {seed}."
    )
    return "\n".join(lines)

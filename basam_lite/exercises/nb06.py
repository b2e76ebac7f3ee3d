"""Checkers for notebook 06 (zero-shot experiments)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import Verdict, check_implementation, close, verdict
from .predictions import check_prediction


def _expected_rows(cfg: object) -> int:
    from ..datasets import open_dataset

    n = len(open_dataset(cfg.dataset, seed=cfg.seed))  # type: ignore[attr-defined]
    if cfg.limit is not None:  # type: ignore[attr-defined]
        n = min(n, cfg.limit)  # type: ignore[attr-defined]
    k, shards = cfg.shard  # type: ignore[attr-defined]
    images = len([i for i in range(n) if i % shards == k])
    return (
        images
        * len(cfg.resolutions)  # type: ignore[attr-defined]
        * len(cfg.models)  # type: ignore[attr-defined]
        * len(cfg.variants)  # type: ignore[attr-defined]
        * len(cfg.prompts)  # type: ignore[attr-defined]
    )


def check_row_count(answer: object, cfg: object) -> Verdict:
    """Rows the sweep ``cfg`` (a :class:`~basam_lite.sweep.SweepConfig`) writes."""
    return verdict(
        close(answer, _expected_rows(cfg), rel=0, abs_tol=0.5),
        "one row per image x resolution x model x variant x prompt (skipped rows included).",
        "count every combination the sweep loops over: images, resolutions, models, variants "
        "and prompts (rows that cannot run are still written, with status 'skipped').",
    )


def check_shard(answer: object) -> Verdict:
    """The K of the ``--shard K/4`` job that runs image index 10."""
    return verdict(
        close(answer, 10 % 4, rel=0, abs_tol=0.1),
        "shard K/N keeps the images whose index % N == K, so the shards interleave.",
        "the shards do not split the images into contiguous blocks: see the --shard help "
        "(images with index % N == K).",
    )


Z95 = 1.959963984540054
"""The normal quantile of a two-sided 95% interval."""


def paired_interval_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[mean, low, high]`` of the paired differences ``a - b`` (per-image scores of two
    variants on the same images), from :func:`basam_lite.quickstart.paired_difference`: the mean
    +- 1.96 standard errors (standard deviation with ddof=1 over sqrt(images))."""
    from ..quickstart import paired_difference

    n = len(a)
    rows = [
        {"model": "m", "prompt": "p", "resolution": 0, "image": i, "variant": v, "iou": x}
        for v, xs in (("a", a), ("b", b))
        for i, x in enumerate(np.asarray(xs, dtype=float))
    ]
    d = paired_difference(pd.DataFrame(rows), "a", reference="b").iloc[0]
    assert int(d["images"]) == n
    mean, se = float(d["mean_iou_difference"]), float(d["standard_error"])
    return np.array([mean, mean - Z95 * se, mean + Z95 * se])


def interval_cases(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-image score pairs for :func:`check_paired_interval` (correlated, as real ones)."""
    rng = np.random.default_rng(seed)
    cases = []
    for n in (24, 7, 100):
        base = rng.uniform(0.4, 0.9, n)
        cases.append((base + rng.normal(0.01, 0.03, n), base))
    return cases


def _diagnose_interval(got: np.ndarray, want: np.ndarray) -> str | None:
    mean, _, high = want
    half = high - mean
    g_mean, _, g_high = got
    if np.isclose(g_mean, -mean, atol=1e-9) and not np.isclose(mean, 0):
        return "wrong sign: the difference is a - b (the variant minus the reference)"
    if np.isclose(g_mean, mean, atol=1e-9):
        ratio = (g_high - g_mean) / half
        if np.isclose(ratio, 1 / Z95, rtol=1e-3):
            return "that is +- 1 standard error; a 95% interval is +- 1.96 standard errors"
        if 0.9 < ratio < 1.0:
            return "the standard deviation needs ddof=1 (the sample standard deviation)"
        if ratio > 1.0:
            return (
                f"the interval is {ratio:.1f}x too wide: use the standard error of the per-image "
                "differences a - b (their standard deviation over sqrt(images)), not the spread "
                "of a and b taken separately"
            )
    return None


def check_paired_interval(paired_interval) -> Verdict:
    """Implement it: ``paired_interval(a, b)`` returns ``[mean, low, high]`` of the paired
    differences ``a - b``, 95% normal interval (rtol 1e-4, atol 1e-5)."""
    return check_implementation(
        lambda a, b: np.asarray(paired_interval(a, b), dtype=float).reshape(-1),
        paired_interval_reference,
        interval_cases(),
        rtol=1e-4,
        atol=1e-5,
        right="your interval matches quickstart.paired_difference's mean +- 1.96 SE.",
        diagnose=_diagnose_interval,
    )


SE_OPTIONS = ("half", "the same", "twice", "four times")


def se_outcome(table: pd.DataFrame, variant: str, parts: int = 4) -> tuple[str, float]:
    """How the standard error of ``variant - vanilla`` changes with 1/``parts`` of the images
    against all of them, as one of :data:`SE_OPTIONS`, and the ratio: the median over the
    (model, prompt, resolution) cells of ``table`` of the root mean square of the standard errors
    of ``parts`` disjoint subsets of images (by index modulo ``parts``) over the full one."""
    from ..quickstart import paired_difference

    sorted_index = {name: i for i, name in enumerate(sorted(set(table["image"])))}
    se_all = paired_difference(table, variant)["standard_error"]
    part = table["image"].map(sorted_index) % parts
    squares = sum(
        paired_difference(table[part == k], variant)["standard_error"] ** 2 for k in range(parts)
    )
    ratio = float((np.sqrt(squares / parts) / se_all).median())
    targets = np.log([0.5, 1.0, 2.0, 4.0])
    return SE_OPTIONS[int(np.argmin(abs(targets - np.log(ratio))))], ratio


def check_se_prediction(prediction: object, table: pd.DataFrame, variant: str = "paper") -> Verdict:
    """Predict, then run: with a quarter of the images, is the standard error of ``variant -
    vanilla`` about half, the same, twice or four times the one with all of them?"""
    outcome, _ = se_outcome(table, variant)
    return check_prediction(
        prediction,
        outcome,
        SE_OPTIONS,
        "the standard error shrinks like 1/sqrt(images): four times the scenes halve it. A single "
        "subset scatters around that, because its spread is itself estimated from few images. "
        "The next cell prints the measured ratio.",
    )

"""Checkers for notebook 06 (zero-shot experiments)."""

from __future__ import annotations

import pandas as pd

from . import Verdict, close, verdict


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


def best_variant(table: pd.DataFrame, model: str = "tiny-vanilla", prompt: str = "box") -> str:
    """The variant with the highest value at the largest resolution of a ``summary_table``."""
    models = table.index.get_level_values("model")
    if model not in set(models):
        model = str(models[0])
    part = table.xs((model, prompt), level=("model", "prompt"))
    return str(part[max(part.columns)].idxmax())


def check_best_variant(
    answer: object, table: pd.DataFrame, model: str = "tiny-vanilla", prompt: str = "box"
) -> Verdict:
    """Which variant has the highest mean IoU at the largest resolution of ``table``."""
    expected = best_variant(table, model, prompt)
    return verdict(
        isinstance(answer, str) and answer.strip().lower() == expected,
        "read the last column of the model's box rows and take the largest.",
        "give a variant name as a string (e.g. 'scale'); look at the rows of the model "
        "(tiny-vanilla) with box prompts, in the column of the largest resolution.",
    )

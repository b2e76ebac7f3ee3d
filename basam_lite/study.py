"""Detail or length: the sweep along both axes, and the full study with paired statistics.

``python -m basam_lite sweep`` (no arguments) is :func:`main_job`: the zoom sweep into ``--out``
(``results/sweep.csv``), the extent sweep into ``OUT_extent.csv`` on fewer sizes and images
(``--extent-resolutions``, ``--extent-limit``), both summaries printed, and one figure
(``OUT.png``) with the two axes side by side and the token-grid ceiling on each.

``python -m basam_lite study`` is the same two sweeps on enough images that the paired standard
error of each variant's difference from vanilla is about one IoU point at the key sizes, written
to ``results/study/``, with the findings table (:func:`basam_lite.stats.findings_table`: paired
differences, bootstrap intervals, Holm-significant cells) printed and saved.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import pandas as pd


def extent_path(out: str | Path) -> Path:
    """Where the extent table of a two-axis run goes: ``OUT_extent.csv`` beside ``OUT``."""
    out = Path(out)
    return out.with_name(f"{out.stem}_extent{out.suffix}")


def _axis_args(args: argparse.Namespace, axis: str) -> argparse.Namespace:
    one = copy.copy(args)
    one.axis = axis
    one.no_plot = True
    if axis == "extent":
        one.out = str(extent_path(args.out))
        one.resolutions = list(args.extent_resolutions)
        limits = [x for x in (args.limit, args.extent_limit) if x is not None]
        one.limit = min(limits) if limits else None
    return one


def main_job(args: argparse.Namespace) -> int:
    """Both axes (see the module docstring); returns the exit status."""
    from .plots import plot_axes
    from .sweep import read_table, run

    for axis in ("zoom", "extent"):
        print(f"== {axis} axis")
        status = run(_axis_args(args, axis))
        if status:
            return status
    if not args.no_plot:
        zoom = read_table(args.out)
        extent = read_table(extent_path(args.out))
        png = plot_axes(zoom, extent, Path(args.out).with_suffix(".png"), metric=args.metric)
        print(f"plot: {png}")
    return 0


def tables(out: str | Path) -> pd.DataFrame:
    """The zoom and extent tables of a two-axis run, concatenated (an ``axis`` column tells
    them apart)."""
    from .sweep import read_table

    parts = [read_table(p) for p in (Path(out), extent_path(out)) if Path(p).exists()]
    return pd.concat(parts, ignore_index=True)

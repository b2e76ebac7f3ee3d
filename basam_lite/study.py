"""Detail or length: the sweep along both axes, and the full study with paired statistics.

``python -m basam_lite sweep`` (no arguments) is :func:`basam_lite.sweep.main_job`: the zoom
sweep into ``--out`` (``results/sweep.csv``: 12 procedural scenes at 128 to 768 px), the extent
sweep into ``OUT_extent.csv`` (``--extent-resolutions``, default 192, 256 and 512 px;
``--extent-limit``, default 12), both summaries printed, and one figure (``OUT.png``) with the
two axes side by side and the token-grid ceiling on each: a demonstration within 10 minutes.

``python -m basam_lite study`` is the evidence: the same two sweeps on :data:`STUDY_IMAGES`
scenes at the key sizes (:data:`STUDY_ZOOM`, :data:`STUDY_EXTENT`), IoU, Dice and MAE only
(``--metrics binary``), written to ``results/study/``, with the findings table
(:func:`basam_lite.stats.findings_table`: paired differences, bootstrap intervals,
Holm-significant cells, each cell's standard error) printed and saved, and the attention-entropy
study (:func:`mechanism_study`). ``--shard K/N`` splits it; the README gives the merge steps.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from .models import OFFICIAL_NAMES
from .sweep import extent_path, main_job


def live_axes(
    sam: object,
    model_name: str,
    sizes: tuple[int, ...],
    images: int = 4,
    variants: tuple[str, ...] = ("vanilla", "scale", "paper", "paper_base"),
    prompts: tuple[str, ...] = ("box",),
    dataset: str | None = None,
) -> pd.DataFrame:
    """A small sweep on both axes for a notebook: ``sam`` (named ``model_name``) on the first
    ``images`` procedural test scenes at ``sizes`` with ``variants``; the two tables,
    concatenated (written to a temporary folder, then deleted)."""
    import tempfile

    from .sweep import SweepConfig, run_sweep

    parts = []
    with tempfile.TemporaryDirectory() as tmp:
        for axis in ("zoom", "extent"):
            cfg = SweepConfig(
                models=(model_name,),
                variants=variants,
                resolutions=sizes,
                dataset=dataset or f"synthetic:{max(images, 2)}",
                prompts=prompts,
                limit=images,
                axis=axis,
            )
            out = Path(tmp) / f"{axis}.csv"
            parts.append(run_sweep(cfg, out, progress=False, models={model_name: sam}))
    return pd.concat(parts, ignore_index=True)


def tables(out: str | Path) -> pd.DataFrame:
    """The zoom and extent tables of a two-axis run, concatenated (an ``axis`` column tells
    them apart)."""
    from .sweep import read_table

    parts = [read_table(p) for p in (Path(out), extent_path(out)) if Path(p).exists()]
    return pd.concat(parts, ignore_index=True)


# ---------------------------------------------------------------- the full study

STUDY_IMAGES = 240
"""Images of the study. Sized from the per-image SD of the paired differences from vanilla
(SE = SD / sqrt(n), so n = (SD / 0.01)^2 for one IoU point): in the 24-scene zoom pilot the
largest SD was 0.182 (tiny-basam, box, paper at 1024 px: 332 images) and the median cell needs
about 40. 240 images is what two CPU cores run in about an hour at the sizes below; they bring a
cell of SD 0.15 to one point and the largest pilot SD to 1.2 points. The findings table states
each cell's measured SE and the images it would need."""
STUDY_ZOOM = (128, 512, 1024)
"""The study's key zoom sizes: half, twice and four times the tiny models' 256 px."""
STUDY_EXTENT = (128, 512)
"""The study's key extent sizes: a window half as wide (targets that fit it), a canvas twice as
wide."""
MECHANISM_ZOOM = (128, 256, 512, 768, 1024)
MECHANISM_EXTENT = (128, 192, 256, 512, 768)
"""The attention-entropy study's sizes: denser than the sweep's, as it is cheap (a few query
rows per image), so that entropy against keys is a curve on both axes."""
STUDY_OUT = "results/study/sweep.parquet"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--images",
        type=int,
        default=STUDY_IMAGES,
        help="procedural test scenes, or the first N images of --dataset",
    )
    p.add_argument("--zoom-resolutions", nargs="+", type=int, default=list(STUDY_ZOOM))
    p.add_argument("--extent-resolutions", nargs="+", type=int, default=list(STUDY_EXTENT))
    p.add_argument("--model", nargs="+", default=["tiny-vanilla", "tiny-basam"])
    p.add_argument(
        "--checkpoint", default=None, help="weights of an official model (vit_b, vit_l, vit_h)"
    )
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="run an official model with seeded random weights on purpose (default: "
        "--checkpoint or $BASAM_SAM_CHECKPOINT, else refused)",
    )
    p.add_argument("--variants", nargs="+", default=None, help="default: every variant")
    p.add_argument("--prompt", nargs="+", default=["box", "point"])
    p.add_argument("--dataset", default=None, help="default: synthetic:IMAGES")
    p.add_argument("--out", default=STUDY_OUT, help="zoom table; the extent one goes beside it")
    p.add_argument("--shard", default="0/1", help="K/N, as for the sweep (merge with sweep)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--target-se", type=float, default=0.01, help="for the images-needed column")
    p.add_argument(
        "--metrics",
        default="binary",
        choices=("binary", "all"),
        help="binary (default: IoU, Dice, MAE; the findings read IoU) or all metric columns",
    )
    p.add_argument("--findings-only", action="store_true", help="tables exist: just report")
    p.add_argument(
        "--figure",
        action="store_true",
        help="with --findings-only: also draw OUT.png, both axes side by side, and "
        "OUT.mechanism.png from OUT.mechanism.csv (e.g. after merging the shards of a study)",
    )
    p.add_argument(
        "--mechanism-only",
        action="store_true",
        help="just the attention-entropy study (e.g. after merging the shards of a study)",
    )
    p.add_argument(
        "--mechanism-images",
        type=int,
        default=16,
        help="images of the attention-entropy study (0: skip it)",
    )
    p.add_argument("--mechanism-zoom", nargs="+", type=int, default=list(MECHANISM_ZOOM))
    p.add_argument("--mechanism-extent", nargs="+", type=int, default=list(MECHANISM_EXTENT))


def sweep_args(args: argparse.Namespace) -> argparse.Namespace:
    """The ``sweep`` command line of the study (both axes)."""
    from . import sweep

    parser = argparse.ArgumentParser()
    sweep.add_arguments(parser)
    argv = [
        "--axis", "both",
        "--model", *args.model,
        "--resolutions", *map(str, args.zoom_resolutions),
        "--extent-resolutions", *map(str, args.extent_resolutions),
        "--extent-limit", str(args.images),
        "--dataset", args.dataset or f"synthetic:{args.images}",
        "--prompt", *args.prompt,
        "--out", args.out,
        "--shard", args.shard,
        "--device", args.device,
        "--metrics", args.metrics,
    ]  # fmt: skip
    if args.variants:
        argv += ["--variants", *args.variants]
    if args.checkpoint:
        argv += ["--checkpoint", args.checkpoint]
    if getattr(args, "random_weights", False):
        argv += ["--random-weights"]
    if args.dataset:  # a real dataset: the first --images images on both axes
        argv += ["--limit", str(args.images)]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    return parser.parse_args(argv)


def incomplete_lines(out: str | Path) -> list[str]:
    """A warning heading the findings when either axis's table is not complete (a killed run,
    a partial merge, a missing axis): the findings then cover only the rows it holds."""
    from .sweep import read_meta

    bad = []
    for p in (Path(out), extent_path(out)):
        meta = read_meta(p) if p.exists() else None
        if not p.exists():
            bad.append(f"{p} is missing")
        elif meta is None or not meta.get("complete"):
            bad.append(f"{p} is incomplete (its run stopped, or shards are missing)")
    if not bad:
        return []
    return [
        f"**Incomplete table: {'; '.join(bad)}.** These findings cover only the rows written "
        "so far; rerun the same command (it resumes) or merge every shard, then report again.",
        "",
    ]


def report(out: str | Path, target_se: float = 0.01) -> str:
    """The findings of a two-axis run (``out`` and ``OUT_extent.csv``): the paired table with
    intervals and Holm marks, and the images each cell would need for a standard error of
    ``target_se``. Written to ``OUT.findings.md`` and returned."""
    from .stats import findings_table, images_needed, paired_table

    df = tables(out)
    text = findings_table(df)
    t = paired_table(df)
    t["needed"] = images_needed(t["sd"].to_numpy(), target_se)
    worst = t.loc[t["se"].idxmax()]
    lines = [
        text,
        "",
        f"Largest standard error: {100 * worst['se']:.2f} points ({worst['model']}, "
        f"{worst['axis']}, {worst['resolution']} px, {worst['prompt']}, {worst['variant']}; "
        f"per-image SD {100 * worst['sd']:.1f} points over {int(worst['images'])} images); "
        f"{int(t['needed'].max())} images would bring every cell to {100 * target_se:.1f}.",
    ]
    body = "\n".join(incomplete_lines(out) + lines)
    from .outputs import write_text_atomic

    write_text_atomic(Path(out).with_suffix(".findings.md"), body + "\n")
    return body


FINDINGS_STARTS = ("**Incomplete table: ", "| model | axis | size (px) | prompt | variant |")
MECHANISM_START = "Change of the mean attention entropy of the global blocks"
MECHANISM_COLUMNS = {"image", "axis", "resolution", "variant", "block", "entropy", "model"}


def _head(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read(4096)


def is_findings(path: Path) -> bool:
    """``OUT.findings.md`` as :func:`report` writes it."""
    return _head(path).startswith(FINDINGS_STARTS)


def is_mechanism_report(path: Path) -> bool:
    """``OUT.mechanism.md`` as :func:`mechanism_report` writes it."""
    return _head(path).startswith(MECHANISM_START)


def is_mechanism_table(path: Path) -> bool:
    """``OUT.mechanism.csv`` as :func:`mechanism_study` writes it (its header)."""
    return set(_head(path).split("\n", 1)[0].split(",")) >= MECHANISM_COLUMNS


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any work, to replace a file beside ``--out`` that this run would write
    and this project did not (the findings, the mechanism's table, report and plots, the
    figure); the tables and the main plot are checked by the sweep."""
    from .outputs import is_matplotlib_png, refuse_foreign

    if "{" in args.out:  # a shard: only its tables are written
        return
    out = Path(args.out)
    how = "move it, or choose another --out"
    mechanism = args.mechanism_only or (bool(args.mechanism_images) and not args.findings_only)
    checks = [] if args.mechanism_only else [(".findings.md", is_findings, "a findings report")]
    if mechanism or args.findings_only:
        checks.append((".mechanism.md", is_mechanism_report, "a mechanism report"))
    if mechanism:
        checks.append((".mechanism.csv", is_mechanism_table, "a mechanism table"))
    if mechanism or args.figure:
        checks.append((".mechanism.png", is_matplotlib_png, "a plot"))
    if args.figure:
        checks.append((".png", is_matplotlib_png, "a plot"))
    for suffix, is_ours, what in checks:
        refuse_foreign(out.with_suffix(suffix), is_ours, what, how)


def run(args: argparse.Namespace) -> int:
    from .errors import UserError

    if args.images < 2:
        raise UserError(f"--images {args.images}: the extent axis needs at least 2 images")
    if not args.target_se > 0:
        raise UserError(
            f"--target-se {args.target_se:g}: a standard error is positive; give e.g. 0.01"
        )
    if args.figure and not args.findings_only:
        raise UserError("--figure goes with --findings-only (a full run draws OUT.png anyway)")
    if args.figure and not extent_path(args.out).exists():
        raise UserError(
            f"--figure needs both axes' tables: {extent_path(args.out)} is missing (run the "
            "extent axis, or merge its shards, first)"
        )
    check_outputs(args)
    if args.mechanism_only:
        if args.findings_only or not args.mechanism_images:
            raise UserError(
                "--mechanism-only runs the attention-entropy study: leave out --findings-only "
                "and give --mechanism-images 1 or more"
            )
        print(mechanism_study(args))
        return 0
    if not args.findings_only:
        status = main_job(sweep_args(args))
        if status:
            return status
        if "{" in args.out:  # one shard of a study: the findings need every shard
            print(
                f"shard {args.shard} written; merge the shards with `sweep --merge` (each axis), "
                "then run `study --findings-only` and `study --mechanism-only` on the merged --out"
            )
            return 0
        if args.mechanism_images:
            print(mechanism_study(args))
    print(report(args.out, args.target_se))
    mech = Path(args.out).with_suffix(".mechanism.csv")
    if args.findings_only and mech.exists():  # the attention study's answer, from its table
        print(mechanism_report(args.out))
    if args.findings_only and args.figure:  # e.g. after merging a sharded study
        from .plots import plot_axes, plot_mechanism
        from .sweep import read_table

        png = Path(args.out).with_suffix(".png")
        print(f"plot: {plot_axes(read_table(args.out), read_table(extent_path(args.out)), png)}")
        if mech.exists():
            print(f"plot: {plot_mechanism(pd.read_csv(mech), mech.with_suffix('.png'))}")
    return 0


def mechanism_study(args: argparse.Namespace) -> str:
    """Attention entropy and distance along both axes for every model of the study (the first
    ``--mechanism-images`` scenes at ``--mechanism-zoom`` and ``--mechanism-extent``, 8 query
    tokens on each target), written to
    ``OUT.mechanism.csv`` and ``OUT.mechanism.png``; returns the summary table as text."""
    import torch

    from .datasets import open_dataset
    from .mechanism import attention_along_axes
    from .models import build_sam, loads_checkpoint
    from .outputs import write_text_atomic
    from .plots import plot_mechanism

    if args.threads:
        torch.set_num_threads(args.threads)
    ds = open_dataset(args.dataset or f"synthetic:{args.images}")
    sizes = {"zoom": tuple(args.mechanism_zoom), "extent": tuple(args.mechanism_extent)}
    parts = []
    from .sweep import build_official_random, official_checkpoint

    random = getattr(args, "random_weights", False)
    official = official_checkpoint(args.model, args.checkpoint, random)
    for name in args.model:
        if name in OFFICIAL_NAMES:
            sam = build_official_random(name) if official is None else build_sam(name, official)
        else:
            sam = build_sam(name, args.checkpoint if loads_checkpoint(name) else None)
        sam = sam.to(args.device).eval()
        df = attention_along_axes(sam, ds, sizes, images=args.mechanism_images, queries=8)
        parts.append(df.assign(model=name))
    df = pd.concat(parts, ignore_index=True)
    out = Path(args.out)
    write_text_atomic(out.with_suffix(".mechanism.csv"), df.to_csv(index=False))
    plot_mechanism(df, out.with_suffix(".mechanism.png"))
    return mechanism_report(out)


def mechanism_report(out: str | Path) -> str:
    """The mechanism's answer, from ``OUT.mechanism.csv``: the change of the global blocks'
    attention entropy from the base size, per model, axis, variant and size, with paired
    bootstrap intervals over images (:func:`basam_lite.mechanism.entropy_change`). Written to
    ``OUT.mechanism.md`` and returned."""
    from .mechanism import entropy_change
    from .outputs import write_text_atomic

    out = Path(out)
    df = pd.read_csv(out.with_suffix(".mechanism.csv"))
    t = entropy_change(df)
    lines = [
        "Change of the mean attention entropy of the global blocks (nats) from the base size "
        f"to each size, {df['image'].nunique()} images, "
        f"{df.drop_duplicates(['image', 'axis', 'resolution']).shape[0]} image-sizes; "
        "paired bootstrap 95% intervals over images; `vs vanilla`: the change minus vanilla's "
        "on the same images; `uniform`: the change of ln n, the entropy of uniform attention over "
        "n keys.",
        "",
        "| model | axis | size (px) | keys | variant | change (nats) | 95% interval "
        "| vs vanilla | uniform | images |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in t.itertuples():
        lines.append(
            f"| {r.model} | {r.axis} | {r.resolution} | {r.keys} | {r.variant} | "
            f"{r.change:+.3f} | [{r.low:+.3f}, {r.high:+.3f}] | {r.vs_vanilla:+.3f} | "
            f"{r.uniform:+.3f} | {r.images} |"
        )
    body = "\n".join(lines)
    write_text_atomic(out.with_suffix(".mechanism.md"), body + "\n")
    return body

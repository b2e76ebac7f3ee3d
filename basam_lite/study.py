"""Detail or length: the sweep along both axes, and the full study with paired statistics.

``python -m basam_lite sweep`` (no arguments) is :func:`basam_lite.sweep.main_job`: the zoom
sweep into ``--out`` (``results/sweep.csv``), the extent sweep into ``OUT_extent.csv`` on fewer
sizes and images (``--extent-resolutions``, default 192, 256 and 512 px; ``--extent-limit``,
default 12), both summaries printed, and one figure (``OUT.png``) with the two axes side by side
and the token-grid ceiling on each.

``python -m basam_lite study`` is the same two sweeps on enough images that the paired standard
error of each variant's difference from vanilla is about one IoU point at the key sizes, written
to ``results/study/``, with the findings table (:func:`basam_lite.stats.findings_table`: paired
differences, bootstrap intervals, Holm-significant cells) printed and saved.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

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

STUDY_IMAGES = 340
"""Images of the full study. Sized from the per-image SD of the paired differences from vanilla
(SE = SD / sqrt(n), so n = (SD / 0.01)^2 for one IoU point): the largest SD was 0.182 on the
zoom axis (``results/sweep.csv``, 24 scenes: tiny-basam, box, paper at 1024 px, 332 images) and
0.179 on the extent axis (a pilot of 8 scenes at 512 and 768 px: tiny-vanilla, point, paper at
768 px, 321 images); the median cell needs about 40. 340 images bring every such cell to about
one point."""
STUDY_ZOOM = (128, 256, 512, 1024)
STUDY_EXTENT = (128, 192, 256, 512, 768)
STUDY_OUT = "results/study/sweep.csv"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", type=int, default=STUDY_IMAGES, help="procedural test scenes")
    p.add_argument("--zoom-resolutions", nargs="+", type=int, default=list(STUDY_ZOOM))
    p.add_argument("--extent-resolutions", nargs="+", type=int, default=list(STUDY_EXTENT))
    p.add_argument("--model", nargs="+", default=["tiny-vanilla", "tiny-basam"])
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
        "--mechanism-only",
        action="store_true",
        help="just the attention-entropy study (e.g. after merging the shards of a study)",
    )
    p.add_argument(
        "--mechanism-images",
        type=int,
        default=8,
        help="images of the attention-entropy study (0: skip it)",
    )


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
    if args.threads:
        argv += ["--threads", str(args.threads)]
    return parser.parse_args(argv)


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
    body = "\n".join(lines)
    from .outputs import write_text_atomic

    write_text_atomic(Path(out).with_suffix(".findings.md"), body + "\n")
    return body


def run(args: argparse.Namespace) -> int:
    from .errors import UserError

    if args.images < 2:
        raise UserError(f"--images {args.images}: the extent axis needs at least 2 images")
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
    return 0


def mechanism_study(args: argparse.Namespace) -> str:
    """Attention entropy and distance along both axes for every model of the study (the first
    ``--mechanism-images`` scenes, 8 query tokens on each target), written to
    ``OUT.mechanism.csv`` and ``OUT.mechanism.png``; returns the summary table as text."""
    import torch

    from .datasets import open_dataset
    from .mechanism import attention_along_axes, mechanism_summary
    from .models import build_sam
    from .outputs import write_text_atomic
    from .plots import plot_mechanism

    if args.threads:
        torch.set_num_threads(args.threads)
    ds = open_dataset(args.dataset or f"synthetic:{args.images}")
    sizes = {"zoom": tuple(args.zoom_resolutions), "extent": tuple(args.extent_resolutions)}
    parts = []
    for name in args.model:
        sam = build_sam(name).to(args.device).eval()
        df = attention_along_axes(sam, ds, sizes, images=args.mechanism_images, queries=8)
        parts.append(df.assign(model=name))
    df = pd.concat(parts, ignore_index=True)
    out = Path(args.out)
    write_text_atomic(out.with_suffix(".mechanism.csv"), df.to_csv(index=False))
    plot_mechanism(df, out.with_suffix(".mechanism.png"))
    table = {m: mechanism_summary(d) for m, d in df.groupby("model")}
    return "\n\n".join(f"{m}:\n{t.round(3).to_string()}" for m, t in table.items())

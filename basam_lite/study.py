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

``--plan NAME`` picks the study's defaults from :data:`basam_lite.study_plans.STUDY_PLANS`:
``first`` (the default, the committed first study) or ``families`` (tiny SAM 1 and tiny SAM 2,
lambda beside the temperature rules, box prompt, into ``results/families/``), which also runs
``vanilla`` at the base size into ``OUT_base`` (``--base``): the findings then add each model's
loss away from its base size (:mod:`basam_lite.degradation`), split per family, and
``OUT.summary.md`` (:mod:`basam_lite.family_summary`). ``scripts/families_study.sh`` runs it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from .models import OFFICIAL_NAMES
from .study_plans import STUDY_EXTENT, STUDY_IMAGES, STUDY_PLANS, STUDY_ZOOM, StudyPlan
from .sweep import base_path, extent_path, main_job, tables

__all__ = ["STUDY_EXTENT", "STUDY_IMAGES", "STUDY_ZOOM", "apply_plan", "live_axes", "report"]


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


# ---------------------------------------------------------------- the full study

MECHANISM_ZOOM = STUDY_PLANS["first"].mechanism_zoom
MECHANISM_EXTENT = STUDY_PLANS["first"].mechanism_extent
"""The attention-entropy study's sizes: denser than the sweep's, as it is cheap (a few query
rows per image), so that entropy against keys is a curve on both axes."""
STUDY_OUT = "results/study/sweep.parquet"


PLAN_ARGUMENTS = {
    "images": "images",
    "zoom_resolutions": "zoom",
    "extent_resolutions": "extent",
    "model": "models",
    "variants": "variants",
    "prompt": "prompts",
    "out": "out",
    "base": "base",
    "mechanism_variants": "mechanism_variants",
    "mechanism_zoom": "mechanism_zoom",
    "mechanism_extent": "mechanism_extent",
}
"""Command-line argument -> the :class:`StudyPlan` field that fills it when it is not given."""


def apply_plan(args: argparse.Namespace) -> argparse.Namespace:
    """Fill every argument left out (None) from ``--plan`` (:data:`STUDY_PLANS`); arguments
    given stay. Idempotent; returns ``args``."""
    from .errors import UserError

    name = getattr(args, "plan", None) or "first"
    if name not in STUDY_PLANS:
        raise UserError(f"unknown --plan {name!r}: choose one of {', '.join(STUDY_PLANS)}")
    plan: StudyPlan = STUDY_PLANS[name]
    args.plan = name
    for arg, field in PLAN_ARGUMENTS.items():
        if getattr(args, arg, None) is None:
            value = getattr(plan, field)
            setattr(args, arg, list(value) if isinstance(value, tuple) else value)
    return args


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--plan",
        default="first",
        choices=tuple(STUDY_PLANS),
        help="the study whose defaults the other arguments take: first (results/study/, tiny "
        "SAM 1) or families (results/families/, tiny SAM 1 and 2, the temperature rules); see "
        "basam_lite.study_plans",
    )
    p.add_argument(
        "--images",
        type=int,
        default=None,
        help=f"procedural test scenes, or the first N images of --dataset (default "
        f"{STUDY_IMAGES}, the plan's)",
    )
    p.add_argument("--zoom-resolutions", nargs="+", type=int, default=None)
    p.add_argument("--extent-resolutions", nargs="+", type=int, default=None)
    p.add_argument("--model", nargs="+", default=None, help="default: the plan's models")
    p.add_argument(
        "--base",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also run vanilla at each model's base size into OUT_base (the reference of the "
        "degradation table; default: the plan's, on for --plan families)",
    )
    p.add_argument(
        "--checkpoint", default=None, help="weights of an official model (vit_b, vit_l, vit_h)"
    )
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="run an official model with seeded random weights on purpose (default: "
        "--checkpoint or $BASAM_SAM_CHECKPOINT, else refused)",
    )
    p.add_argument("--variants", nargs="+", default=None, help="default: the plan's variants")
    p.add_argument("--prompt", nargs="+", default=None, help="default: the plan's prompts")
    p.add_argument("--dataset", default=None, help="default: synthetic:IMAGES")
    p.add_argument(
        "--out",
        default=None,
        help=f"zoom table; the extent one goes beside it (default {STUDY_OUT}, the plan's)",
    )
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
        "--readme",
        default=None,
        help="with --findings-only and a base table: also put OUT.summary.md between the "
        "<!-- families:begin --> and <!-- families:end --> lines of this Markdown file",
    )
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
    p.add_argument("--mechanism-zoom", nargs="+", type=int, default=None)
    p.add_argument("--mechanism-extent", nargs="+", type=int, default=None)
    p.add_argument(
        "--mechanism-variants",
        nargs="+",
        default=None,
        help="the attention-entropy study's variants (default: the plan's; resize has no "
        "attention of its own at the size and is refused)",
    )


def sweep_args(args: argparse.Namespace) -> argparse.Namespace:
    """The ``sweep`` command line of the study (both axes)."""
    from . import sweep

    apply_plan(args)
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


def base_side_of(models: list[str]) -> int:
    """The one base side of ``models`` (a UserError when they differ: the base table runs one
    size)."""
    from .errors import UserError
    from .sweep import base_side

    sides = {m: base_side(m) for m in models}
    if len(set(sides.values())) != 1:
        raise UserError(
            "--base runs vanilla at one base size, but the models' differ ("
            + ", ".join(f"{m} {s} px" for m, s in sides.items())
            + "): run one study per base size, or pass --no-base"
        )
    return next(iter(sides.values()))


def base_args(args: argparse.Namespace) -> argparse.Namespace:
    """The sweep of the base table: ``vanilla`` at the models' base size, zoom axis (at the
    base size both axes show the scene itself), the study's images, into ``OUT_base``."""
    import copy

    one = copy.copy(sweep_args(args))
    one.axis = "zoom"
    one.resolutions = [base_side_of(list(args.model))]
    one.variants = ["vanilla"]
    one.out = str(base_path(args.out))
    one.no_plot = True
    one.header = "== base size"
    return one


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
    from .degradation import degradation_markdown, family_title
    from .stats import findings_table, images_needed, paired_table
    from .sweep import read_table

    df = tables(out)
    several = df["model"].map(family_title).nunique() > 1
    text = findings_table(df, section=family_title if several else None)
    if several:
        text = f"{FAMILY_FINDINGS}\n\n{text}"
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
    if base_path(out).exists():  # each model's loss away from its base size
        lines += [
            "",
            "## Away from the base size",
            "",
            degradation_markdown(df, read_table(base_path(out))),
        ]
    body = "\n".join(incomplete_lines(out) + lines)
    from .outputs import write_text_atomic

    write_text_atomic(Path(out).with_suffix(".findings.md"), body + "\n")
    return body


FAMILY_FINDINGS = (
    "Per family: each model's variants against the same model's vanilla on the same images; "
    "Holm's correction across every cell of every family."
)
"""The first line of the findings of a study of several families."""
FINDINGS_STARTS = (
    "**Incomplete table: ",
    "| model | axis | size (px) | prompt | variant |",
    FAMILY_FINDINGS,
)
MECHANISM_START = "Change of the mean attention entropy of the global blocks"
MECHANISM_COLUMNS = {"image", "axis", "resolution", "variant", "block", "entropy", "model"}


def _head(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read(4096)


def is_findings(path: Path) -> bool:
    """``OUT.findings.md`` as :func:`report` writes it."""
    return _head(path).startswith(FINDINGS_STARTS)


def is_summary(path: Path) -> bool:
    """``OUT.summary.md`` as :func:`basam_lite.family_summary.write_summary` writes it."""
    from .family_summary import SUMMARY_START

    return _head(path).startswith(SUMMARY_START)


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
    if not args.mechanism_only and (args.base or base_path(out).exists()):
        checks.append((".summary.md", is_summary, "a study summary"))
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
    from . import sweep
    from .errors import UserError

    apply_plan(args)

    if args.images < 2:
        raise UserError(f"--images {args.images}: the extent axis needs at least 2 images")
    if not args.target_se > 0:
        raise UserError(
            f"--target-se {args.target_se:g}: a standard error is positive; give e.g. 0.01"
        )
    if args.readme and not (args.findings_only and base_path(args.out).exists()):
        raise UserError(
            f"--readme goes with --findings-only on a study with a base table "
            f"({base_path(args.out)} is its table)"
        )
    if args.readme:
        from .family_summary import check_readme

        check_readme(Path(args.readme))
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
        if args.base:
            base = base_args(args)
            sweep.config_of(base, (0, 1) if base.shard == "auto" else base.shard)  # checked
        status = main_job(sweep_args(args))
        if status:
            return status
        if args.base:
            status = sweep.run(base_args(args))
            if status:
                return status
        if "{" in args.out:  # one shard of a study: the findings need every shard
            tables = "each axis" + (" and the base table" if args.base else "")
            print(
                f"shard {args.shard} written; merge the shards with `sweep --merge` ({tables}), "
                "then run `study --findings-only` and `study --mechanism-only` on the merged --out"
            )
            return 0
        if args.mechanism_images:
            print(mechanism_study(args))
    print(report(args.out, args.target_se))
    mech = Path(args.out).with_suffix(".mechanism.csv")
    if args.findings_only and mech.exists():  # the attention study's answer, from its table
        print(mechanism_report(args.out))
    if base_path(args.out).exists():  # a study with a base table: its summary, generated
        from .family_summary import fill_readme, write_summary

        summary = write_summary(args.out)
        print(f"summary: {summary}")
        if args.readme:
            print(f"summary written into {fill_readme(args.readme, summary.read_text())}")
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

    apply_plan(args)
    variants = mechanism_variants(args.mechanism_variants)
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
        df = attention_along_axes(
            sam, ds, sizes, variants=variants, images=args.mechanism_images, queries=8
        )
        parts.append(df.assign(model=name))
    df = pd.concat(parts, ignore_index=True)
    out = Path(args.out)
    write_text_atomic(out.with_suffix(".mechanism.csv"), df.to_csv(index=False))
    plot_mechanism(df, out.with_suffix(".mechanism.png"))
    return mechanism_report(out)


def mechanism_variants(names: list[str]) -> dict[str, object]:
    """``name -> config`` for the attention-entropy study (None: plain attention), from the
    variant registry; ``vanilla`` is always in (the other rows are read against it). A variant
    that does not run the model at the size (``resize``) is refused in one line."""
    from .errors import UserError
    from .variants import get_variant

    out: dict[str, object] = {"vanilla": None}
    for name in names:
        v = get_variant(name)
        if v.transform != "none":
            raise UserError(
                f"--mechanism-variants {name}: it runs the model at its base size, so it has no "
                "attention of its own at the size; leave it out"
            )
        if v.config is not None:
            out[name] = v.config
    return out


def mechanism_report(out: str | Path) -> str:
    """The mechanism's answer, from ``OUT.mechanism.csv``: the change of the global blocks'
    attention entropy from the base size, per model, axis, variant and size, with paired
    bootstrap intervals over images (:func:`basam_lite.mechanism.entropy_change`). Written to
    ``OUT.mechanism.md`` and returned."""
    from .mechanism import entropy_change, flattest
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
    flat = flattest(t)
    if not flat.empty:
        lines += ["", "Does any rule keep the entropy flat on the extent axis?", ""]
    for r in flat.itertuples():
        lines.append(
            f"- {r.model}, {r.resolution} px ({r.keys} keys; uniform attention {r.uniform:+.3f} "
            f"nats, vanilla {r.vanilla:+.3f}): the least change is {r.variant}'s, "
            f"{r.change:+.3f} nats [{r.low:+.3f}, {r.high:+.3f}]: "
            + ("flat (the interval holds 0)." if r.flat else "not flat (the interval excludes 0).")
        )
    body = "\n".join(lines)
    write_text_atomic(out.with_suffix(".mechanism.md"), body + "\n")
    return body

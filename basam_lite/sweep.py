"""Zero-shot resolution sweep: model x variant x input resolution x dataset x prompt.

With no arguments, ``python -m basam_lite sweep`` is the main job: both tiny checkpoints, every
variant, resolutions 128-512, 8 procedural test scenes, box and centre-point prompts, written to
``results/sweep.csv`` (+ ``.meta.json`` and a plot ``results/sweep.png``), with the mean IoU per
variant x resolution printed at the end.

Variants: ``vanilla`` (position-embedding interpolation only), ``scale``, ``bias``, ``paper``,
``official`` (BASAMConfig presets at input size S; ``official`` refuses sizes below the base
size: those rows are kept with ``status="skipped"`` and the reason) and ``resize`` (the image
resized to S, then to the model's base size, which the model runs at: what a user would do).

Prompts come from the ground-truth mask at its own resolution and are scaled into the model's
frame: ``box`` (tight box), ``point`` (the centre point: innermost object pixel) or ``click``
(one random object pixel seeded by (seed, image name): the official protocol's click).

The table is written as it goes, one flush per (image, resolution, model, variant); a rerun with
the same arguments skips the rows already there. ``--shard K/N`` keeps images with index % N == K;
``--merge A.csv B.csv --out all.csv`` merges shards into the table the unsharded run writes (rows
ordered by ``row``, the position in the unsharded run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from tqdm.auto import tqdm

from .datasets import ProceduralScenes, Sample, open_dataset, prompt_for
from .metrics import LEGACY_COLUMNS, METRIC_COLUMNS, legacy_threshold_metrics, segmentation_metrics
from .models import OFFICIAL_NAMES, build_sam
from .predictor import BASAMPredictor, FitResize
from .variants import get_variant, variant_at, variant_names

PROMPTS = {"box": "box", "point": "center", "click": "point"}
"""Sweep prompt name -> :func:`basam_lite.datasets.prompt_for` kind."""

KEY = ("model", "image", "resolution", "variant", "prompt")
COLUMNS = (
    "row",
    *KEY,
    "dataset",
    "status",
    "reason",
    *METRIC_COLUMNS,
    *LEGACY_COLUMNS,
    "seconds",
    "encode_seconds",
)

DEFAULT_RESOLUTIONS = (128, 192, 256, 384, 512, 768, 1024)
DEFAULT_DATASET = "synthetic:24"


@dataclass
class SweepConfig:
    """Everything that defines a sweep's rows (and its resume keys)."""

    models: tuple[str, ...] = ("tiny-vanilla", "tiny-basam")
    checkpoint: str | None = None
    variants: tuple[str, ...] = variant_names()
    resolutions: tuple[int, ...] = DEFAULT_RESOLUTIONS
    dataset: str = DEFAULT_DATASET
    prompts: tuple[str, ...] = ("box", "point")
    device: str = "cpu"
    seed: int = 0
    limit: int | None = None
    shard: tuple[int, int] = (0, 1)

    def __post_init__(self) -> None:
        for v in self.variants:
            get_variant(v)
        for p in self.prompts:
            if p not in PROMPTS:
                raise ValueError(f"unknown prompt {p!r}: choose from {', '.join(PROMPTS)}")
        k, n = self.shard
        if not 0 <= k < n:
            raise ValueError(f"shard {k}/{n}: need 0 <= K < N")


def load_models(cfg: SweepConfig) -> dict[str, Sam]:
    models = {}
    for name in cfg.models:
        ckpt = cfg.checkpoint if name in OFFICIAL_NAMES else None
        models[name] = build_sam(name, ckpt).to(cfg.device).eval()
    return models


def sample_at(ds: Sequence[Sample], index: int, size: int) -> Sample:
    """Image ``index`` for a run at ``size``: procedural scenes are rendered at ``size`` (the
    same scene, exact mask); file images stay native (the predictor resizes them)."""
    if isinstance(ds, ProceduralScenes):
        return ds.sample(index, size=(size, size))
    return ds[index]


def _scored(logits: torch.Tensor, gt: np.ndarray) -> dict[str, float]:
    """Metrics of (H, W) logits at the ground truth's resolution."""
    prob = torch.sigmoid(logits).clamp(0, 1).double().numpy()
    return {**segmentation_metrics(prob, gt), **legacy_threshold_metrics(logits.numpy(), gt)}


@torch.no_grad()
def run_variant(
    sam: Sam, sample: Sample, variant: str, size: int, prompts: Sequence[str], seed: int
) -> list[dict[str, object]]:
    """Rows (metrics, seconds) of one image at one size for one variant, one per prompt; the
    model is left as it was (raises ValueError where the variant cannot run at ``size``)."""
    with variant_at(sam, variant, size):
        return _variant_rows(sam, sample, variant, size, prompts, seed)


def _variant_rows(
    sam: Sam, sample: Sample, variant: str, size: int, prompts: Sequence[str], seed: int
) -> list[dict[str, object]]:
    image, frame_hw = sample.image, sample.hw
    if get_variant(variant).transform == "resize_to_base":
        # The information available at S: the image fit to S, then the model's own resize.
        fit = FitResize((size, size))
        if max(sample.hw) != size:
            image = fit.apply_image(sample.image)
        frame_hw = image.shape[:2]
    predictor = BASAMPredictor(sam)
    t0 = time.perf_counter()
    predictor.set_image(image)
    if sam.device.type == "cuda":
        torch.cuda.synchronize()
    encode = time.perf_counter() - t0
    rows = []
    for name in prompts:
        prompt = prompt_for(sample, PROMPTS[name], seed).scaled(sample.hw, frame_hw)
        t1 = time.perf_counter()
        masks, _, _ = predictor.predict(
            **prompt.predictor_kwargs(),
            multimask_output=False,
            return_logits=True,
        )
        logits = torch.from_numpy(np.asarray(masks[0], dtype=np.float32))
        if tuple(logits.shape) != sample.hw:
            logits = F.interpolate(
                logits[None, None], size=sample.hw, mode="bilinear", align_corners=False
            )[0, 0]
        decode = time.perf_counter() - t1
        rows.append(
            {
                "prompt": name,
                "status": "ok",
                "reason": "",
                **_scored(logits, sample.mask),
                "seconds": encode + decode,
                "encode_seconds": encode,
            }
        )
    return rows


def skipped_rows(prompts: Sequence[str], reason: str) -> list[dict[str, object]]:
    nan = dict.fromkeys((*METRIC_COLUMNS, *LEGACY_COLUMNS), float("nan"))
    return [
        {
            "prompt": p,
            "status": "skipped",
            "reason": reason,
            **nan,
            "seconds": 0.0,
            "encode_seconds": 0.0,
        }
        for p in prompts
    ]


# ---------------------------------------------------------------- table files


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def partial_path(out: Path) -> Path:
    """Where rows are appended: the CSV itself, or a CSV sidecar of a Parquet table."""
    return out if not is_parquet(out) else out.with_name(out.name + ".partial.csv")


def meta_path(out: Path) -> Path:
    return out.with_name(out.name + ".meta.json")


def read_table(path: str | Path) -> pd.DataFrame:
    """A results table (CSV or Parquet), with ``reason`` as strings."""
    path = Path(path)
    text = {c: str for c in ("model", "image", "variant", "prompt", "dataset", "status")}
    df = (
        pd.read_parquet(path)
        if is_parquet(path)
        else pd.read_csv(path, keep_default_na=False, na_values=[""], dtype=text)
    )
    if "reason" in df:
        df["reason"] = df["reason"].astype(object).where(df["reason"].notna(), "").astype(str)
    return df


def repair_partial(path: Path) -> None:
    """Drop a half-written last line (a run killed mid-write), so appending stays valid CSV."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def existing_rows(out: Path) -> pd.DataFrame:
    parts = [read_table(p) for p in (out, partial_path(out)) if p.exists() and p.stat().st_size]
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(COLUMNS))


def append_rows(path: Path, rows: list[dict[str, object]]) -> None:
    if not rows:
        return
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    write_header = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        df.to_csv(f, header=write_header, index=False)
        f.flush()


def environment() -> dict[str, str]:
    import segment_anything

    from . import __version__

    versions = {"python": platform.python_version(), "basam_lite": __version__}
    for name, mod in (("torch", torch), ("numpy", np), ("pandas", pd)):
        versions[name] = mod.__version__
    versions["segment_anything"] = getattr(segment_anything, "__version__", "1.0")
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("pysodmetrics", "segment_anything", "segment-anything"):
        with contextlib.suppress(PackageNotFoundError):
            versions[dist.replace("-", "_")] = version(dist)
    return versions


def metadata(cfg: SweepConfig) -> dict[str, object]:
    cfg_dict = asdict(cfg)
    cfg_dict["shard"] = f"{cfg.shard[0]}/{cfg.shard[1]}"
    return {
        "config": cfg_dict,
        "seed": cfg.seed,
        "versions": environment(),
        "machine": f"{platform.machine()} {platform.system()}, device {cfg.device}",
    }


def write_final(out: Path, df: pd.DataFrame, meta: dict[str, object]) -> None:
    """Write the complete table (sorted by ``row``) and its metadata sidecar."""
    df = df.sort_values("row", kind="stable").reset_index(drop=True)
    if is_parquet(out):
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df, preserve_index=False)
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), b"basam_lite": json.dumps(meta).encode()}
        )
        pq.write_table(table, out)
        partial_path(out).unlink(missing_ok=True)
    else:
        df.to_csv(out, index=False)
    meta_path(out).write_text(json.dumps(meta, indent=2, default=str))


def merge_shards(paths: Sequence[str | Path], out: str | Path) -> pd.DataFrame:
    """Merge shard tables into the unsharded table (ordered by ``row``, duplicates dropped)."""
    out = Path(out)
    frames = [read_table(p) for p in paths]
    df = pd.concat(frames, ignore_index=True).drop_duplicates(subset=list(KEY), keep="first")
    metas = [
        json.loads(meta_path(Path(p)).read_text()) for p in paths if meta_path(Path(p)).exists()
    ]
    meta: dict[str, object] = dict(metas[0]) if metas else {}
    if meta:
        meta["config"] = {**meta["config"], "shard": "merged"}  # type: ignore[dict-item]
    meta["merged_from"] = [str(p) for p in paths]
    out.parent.mkdir(parents=True, exist_ok=True)
    write_final(out, df, meta)
    return df.sort_values("row", kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------- the sweep


def run_sweep(
    cfg: SweepConfig,
    out: str | Path,
    progress: bool = True,
    stop_after: int | None = None,
    models: dict[str, Sam] | None = None,
) -> pd.DataFrame:
    """Run (or resume) the sweep into ``out`` and return the table (so far).

    ``stop_after`` stops once that many new rows are written (to test resuming); ``models``
    lets a caller pass already built models by name. Rows: one per image x resolution x
    model x variant x prompt, ``row`` being its position in the unsharded run.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ds = open_dataset(cfg.dataset, seed=cfg.seed)
    n = len(ds) if cfg.limit is None else min(cfg.limit, len(ds))
    k, n_shards = cfg.shard
    indices = [i for i in range(n) if i % n_shards == k]
    repair_partial(partial_path(out))
    done = existing_rows(out)
    done_keys = set(map(tuple, done[list(KEY)].astype(str).to_numpy())) if len(done) else set()
    meta = metadata(cfg)
    meta_path(out).write_text(json.dumps({**meta, "complete": False}, indent=2, default=str))
    models = models if models is not None else load_models(cfg)
    sizes, names, variants, prompts = cfg.resolutions, cfg.models, cfg.variants, cfg.prompts
    per_image = len(sizes) * len(names) * len(variants) * len(prompts)
    sink = partial_path(out)
    written = 0
    bar = tqdm(total=len(indices) * per_image, disable=not progress, desc="sweep", unit="row")
    for i in indices:
        # Procedural scenes are named without rendering, so a resumed run skips them for free.
        name = ds.name(i) if isinstance(ds, ProceduralScenes) else None
        for r, size in enumerate(sizes):
            sample = None
            for m, model_name in enumerate(names):
                for v, variant in enumerate(variants):
                    first = (((i * len(sizes) + r) * len(names) + m) * len(variants) + v) * len(
                        prompts
                    )
                    if name is None:
                        sample = sample_at(ds, i, size)
                        name = sample.name
                    keys = [(model_name, name, str(size), variant, p) for p in prompts]
                    if all(key in done_keys for key in keys):
                        bar.update(len(prompts))
                        continue
                    if sample is None:
                        sample = sample_at(ds, i, size)
                    try:
                        rows = run_variant(
                            models[model_name], sample, variant, size, prompts, cfg.seed
                        )
                    except ValueError as e:
                        if variant != "official":
                            raise
                        rows = skipped_rows(prompts, str(e).splitlines()[0])
                    for p, row in enumerate(rows):
                        row.update(
                            row=first + p,
                            model=model_name,
                            image=sample.name,
                            resolution=size,
                            variant=variant,
                            dataset=cfg.dataset,
                        )
                    rows = [
                        row for row, key in zip(rows, keys, strict=True) if key not in done_keys
                    ]
                    append_rows(sink, rows)
                    written += len(rows)
                    bar.update(len(prompts))
                    if stop_after is not None and written >= stop_after:
                        bar.close()
                        return existing_rows(out)
    bar.close()
    df = existing_rows(out)
    df = df.drop_duplicates(subset=list(KEY), keep="first")
    write_final(out, df, {**meta, "complete": True, "rows": len(df)})
    return df.sort_values("row", kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------- command line


def _shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard wants K/N (e.g. 0/4), got {text!r}") from None
    if not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"--shard {text}: need 0 <= K < N")
    return k, n


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = SweepConfig()
    p.add_argument(
        "--model",
        nargs="+",
        default=list(d.models),
        help="tiny-vanilla, tiny-basam, tiny, vit_b, vit_l, vit_h (several allowed)",
    )
    p.add_argument("--checkpoint", default=None, help="weights of the official model (.pth)")
    p.add_argument("--variants", nargs="+", default=list(d.variants), choices=variant_names())
    p.add_argument("--resolutions", nargs="+", type=int, default=list(d.resolutions))
    p.add_argument(
        "--dataset",
        default=d.dataset,
        help="synthetic[:N] | folder:PATH | dis5k:PATH | duts:PATH | isic2016:PATH | "
        "cod10k:PATH | coco:ANNOTATIONS.json:IMAGES",
    )
    p.add_argument(
        "--prompt",
        nargs="+",
        default=list(d.prompts),
        choices=tuple(PROMPTS),
        help="box, point (centre point) or click (random seeded click)",
    )
    p.add_argument("--out", default="results/sweep.csv", help=".csv or .parquet")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="first N images only")
    p.add_argument("--shard", type=_shard, default=(0, 1), help="K/N: images with index %% N == K")
    p.add_argument("--merge", nargs="+", default=None, help="merge these shard tables into --out")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--metric", default="iou", help="metric of the printed summary and the plot")


def run(args: argparse.Namespace) -> int:
    from .plots import plot_sweep, summary_table

    out = Path(args.out)
    if args.merge:
        df = merge_shards(args.merge, out)
    else:
        if args.threads:
            torch.set_num_threads(args.threads)
        cfg = SweepConfig(
            models=tuple(args.model),
            checkpoint=args.checkpoint,
            variants=tuple(args.variants),
            resolutions=tuple(args.resolutions),
            dataset=args.dataset,
            prompts=tuple(args.prompt),
            device=args.device,
            seed=args.seed,
            limit=args.limit,
            shard=args.shard,
        )
        t0 = time.perf_counter()
        df = run_sweep(cfg, out)
        print(f"{len(df)} rows in {out} ({time.perf_counter() - t0:.0f} s this run)")
    with pd.option_context("display.width", 160, "display.max_columns", 30):
        print(f"mean {args.metric} per variant x resolution:")
        print(summary_table(df, metric=args.metric).round(3).to_string())
    if not args.no_plot:
        png = out.with_suffix(".png")
        plot_sweep(df, png, metric=args.metric)
        print(f"plot: {png}")
    return 0

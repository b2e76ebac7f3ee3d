"""Zero-shot resolution sweep: model x variant x input resolution x dataset x prompt.

With no arguments, ``python -m basam_lite sweep`` is the main job: the defaults of
:class:`SweepConfig` (both tiny checkpoints, every variant, the sizes and procedural test scenes
``--help`` lists), written to ``results/sweep.csv`` (+ ``.meta.json`` and a plot
``results/sweep.png``), with the mean IoU per variant x resolution printed at the end.

Variants: ``vanilla`` (position-embedding interpolation only), ``scale``, ``bias``, ``paper``,
``official`` (BASAMConfig presets at input size S; ``official`` refuses sizes below the base
size: those rows are kept with ``status="skipped"`` and the reason) and ``resize`` (the image
resized to S, then to the model's base size, which the model runs at: what a user would do).

Prompts come from the ground-truth mask at its own resolution and are scaled into the model's
frame: ``box`` (tight box), ``point`` (the centre point: innermost object pixel) or ``click``
(one random object pixel seeded by (seed, image name): the official protocol's click).

The table is written as it goes, one flush per (image, resolution, model, variant). Every table
carries its run identity (:mod:`basam_lite.run_identity`: weights' hashes, the dataset's
fingerprint, seed, prompts, variant definitions, versions) in its ``.meta.json`` (and Parquet
metadata). A rerun into the same ``--out`` resumes only when the identity matches; more sizes,
variants, models or images extend the table; anything else is refused before a byte is
written (``--out`` elsewhere, or ``--overwrite``). A file that is not a sweep table is never
written over. ``--shard K/N`` (or ``auto``, from SLURM or torchrun) keeps images with
index % N == K; ``--merge A.csv B.csv --out all.csv`` merges the shards of one identity into the
table the unsharded run writes (rows ordered by ``row``, the position in the unsharded run).
A bad image stops the run (``--on-error stop``, rows so far kept) or is recorded with
``status="error"`` and its reason (``--on-error skip``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .axes import (
    AXES,
    AXIS_COLUMNS,
    AxisSampler,
    axis_columns,
    check_axis,
    nan_scores,
    scored,
)
from .config import BASAMConfig
from .datasets import ProceduralScenes, Sample, open_dataset, prompt_for
from .datasets.extent import TargetDoesNotFit
from .encoders.specs import check_model_size, model_spec
from .errors import UserError
from .memory import STOCK_RULE, EncoderShape, largest_fitting, run_bytes, runs_stock, shape_of
from .metrics import LEGACY_COLUMNS, METRIC_COLUMNS, SOD_COLUMNS
from .models import (
    CHECKPOINT_ENV,
    OFFICIAL_NAMES,
    TINY,
    build_sam,
    bundled_checkpoint,
    bundled_names,
    check_checkpoint,
    loads_checkpoint,
    model_names,
    tiny_checkpoint_path,
)
from .outputs import (
    is_matplotlib_png,
    output_lock,
    refuse_foreign,
    write_text_atomic,
    write_with,
)
from .predictor import predictor_for
from .provenance import platform_name, versions
from .run_identity import (
    Identity,
    config_identity,
    differences,
    file_sha256,
    files_fingerprint,
    json_hash,
    plain,
    union,
)
from .sizes import fit_image
from .threads import use_quiet_threads
from .variants import Variant, get_variant, known_variant_names, variant_at, variant_names

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
    *AXIS_COLUMNS,
    "seconds",
    "encode_seconds",
)

DEFAULT_RESOLUTIONS = (128, 192, 256, 384, 512, 768)
"""The main job's zoom sizes: 0.5x to 3x the tiny models' 256 px. 1024 px is left to the study
(``python -m basam_lite study``): it alone cost half the main job's time (0.76 s an encode
against 0.34 s at 768 px, ``results/sweep.csv`` of the seven-size run)."""
DEFAULT_DATASET = "synthetic:12"
"""The main job's procedural test scenes: a demonstration that fits 10 minutes on two cores with
room for a slower CPU. The evidence, with paired standard errors near one point, is the study's
(``results/study/``)."""
METRIC_SETS = ("all", "binary")
"""``SweepConfig.metrics``: every metric column, or the binary ones only (``metrics.SOD_COLUMNS``
NaN), for a study that reads IoU."""
EXTENT_RESOLUTIONS = (192, 256, 512)
"""The main job's canvas sides on the extent axis (0.75x to 2x the tiny models' 256 px; the
study, ``python -m basam_lite study``, runs 128 and 512 px on many more images). 192 rather
than 128: a 128 px window holds few targets whole (about half of them), so a 128 px point
would average a small, different subset."""
EXTENT_LIMIT = 12
"""The main job's images on the extent axis (the zoom axis's 12)."""
ZOOM_FACTORS = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
"""Default zoom sizes as multiples of the model's base side (:data:`DEFAULT_RESOLUTIONS` for
the tiny models' 256 px; 512 to 3072 px for ViT-B/L/H)."""
EXTENT_FACTORS = (0.75, 1.0, 2.0)
"""Default extent canvas sides as multiples of the base side (:data:`EXTENT_RESOLUTIONS` for
the tiny models; 768, 1024 and 2048 px for ViT-B/L/H)."""


def default_sizes(models: Sequence[str], axis: str) -> tuple[int, ...]:
    """The default sizes for ``models`` on ``axis``: the factors times the largest base side
    among them, each rounded to a multiple of the patch size."""
    base = max(base_side(m) for m in models)
    patch = max(patch_of(m) for m in models)
    factors = EXTENT_FACTORS if axis == "extent" else ZOOM_FACTORS
    return tuple(max(patch, round(f * base / patch) * patch) for f in factors)


def default_images(models: Sequence[str]) -> int:
    """The default number of images: 12 at the tiny models' 256 px base, scaled by 256 / base
    (3 for ViT-B/L/H), so that a default run of a larger model stays a demonstration."""
    base = max(base_side(m) for m in models)
    return max(1, DEFAULT_IMAGES * TINY.img_size // base)


DEFAULT_IMAGES = 12
"""Images of the default run of the tiny models (``synthetic:12``, ``--extent-limit 12``)."""


ON_ERROR = ("stop", "skip")
"""What a bad image does: stop the run (rows so far kept) or a row with status "error"."""


def patch_of(model: str) -> int:
    """Patch size of a model by name (its spec: :func:`basam_lite.encoders.specs.model_spec`)."""
    return model_spec(model).patch_size


def _nearest_multiples(size: int, patch: int) -> str:
    lo = max(patch, size // patch * patch)
    hi = max(patch, (size // patch + 1) * patch)
    return f"{lo} or {hi}" if lo != hi else str(lo)


@dataclass
class SweepConfig:
    """Everything that defines a sweep's rows. Every field but the grid (``GRID``) and the
    shard enters the run identity (:func:`identity`), so a field added here is checked on
    resume and merge without further code.

    Raises:
        UserError: an unknown model, variant or prompt, a size that is not a positive multiple
            of the patch size, a negative seed, ``limit`` < 1, a bad shard, or a checkpoint
            given without an official model to load it into.
    """

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
    axis: str = "zoom"  # zoom: more pixels per scene; extent: more canvas (basam_lite.axes)
    metrics: str = "all"  # all, or "binary": IoU, Dice, MAE (metrics.SOD_COLUMNS left NaN)

    def __post_init__(self) -> None:
        check_axis(self.axis)
        if self.metrics not in METRIC_SETS:
            raise UserError(
                f"metrics {self.metrics!r}: choose from {', '.join(METRIC_SETS)} (binary skips "
                "the S, E and F measures, about 40% of a 1024 px row's time)"
            )
        for what, values, allowed in (
            ("model", self.models, model_names()),
            ("variant", self.variants, known_variant_names()),
            ("prompt", self.prompts, tuple(PROMPTS)),
        ):
            if not values:
                raise UserError(f"no {what} given: choose from {', '.join(allowed)}")
            for v in values:
                if v not in allowed:
                    raise UserError(f"unknown {what} {v!r}: choose from {', '.join(allowed)}")
            if len(set(values)) != len(values):
                raise UserError(f"a {what} is named twice in {list(values)}: name each once")
        if not self.resolutions:
            raise UserError("no resolution given: pass --resolutions, e.g. 256 512")
        if len(set(self.resolutions)) != len(self.resolutions):
            raise UserError(f"a resolution is named twice in {list(self.resolutions)}")
        for model in self.models:
            patch = patch_of(model)
            for s in self.resolutions:
                if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
                    raise UserError(f"resolution {s!r} is not an integer number of pixels")
                if s < patch or s % patch:
                    raise UserError(
                        f"resolution {s} is not a positive multiple of {model}'s patch size "
                        f"{patch}: use {_nearest_multiples(int(s), patch)}"
                    )
                check_model_size(model, int(s))  # the family's own rule (SAM 2: 32 px)
        if self.seed < 0:
            raise UserError(f"seed must be >= 0, got {self.seed}")
        if self.limit is not None and self.limit < 1:
            raise UserError(
                f"limit {self.limit} selects no image: give --limit 1 or more (or leave it out "
                "for every image)"
            )
        k, n = self.shard
        if not 0 <= k < n:
            raise UserError(f"shard {k}/{n}: need 0 <= K < N")
        official = [m for m in self.models if loads_checkpoint(m)]
        if self.checkpoint is not None and not official:
            raise UserError(
                f"--checkpoint {self.checkpoint} was given but no model loads one "
                f"({', '.join(self.models)} bring their own weights): add --model vit_b, "
                "vit_l or vit_h, or leave --checkpoint out"
            )
        if self.checkpoint is not None and len(official) > 1:
            raise UserError(
                f"one --checkpoint cannot serve {', '.join(official)}: run one official model "
                "per sweep"
            )
        try:
            torch.device(self.device)
        except RuntimeError:
            raise UserError(f"unknown device {self.device!r}: use cpu, cuda or cuda:N") from None


GRID = ("models", "variants", "resolutions", "limit")
"""Config fields a rerun may extend (more sizes, variants, models or images): a resume."""
SCOPE = ("shard",)
"""Config fields that say which part of a run a table holds (compared, never extended)."""


def _identity_device(device: str) -> str:
    return torch.device(device).type  # cuda:3 computes what cuda:0 does


def _identity_checkpoint(checkpoint: str | None) -> str | None:
    return None if checkpoint is None else Path(checkpoint).name  # its sha256 is in "weights"


def model_weights(name: str, checkpoint: str | None) -> dict[str, object]:
    """What a model's weights are: its checkpoint file's name and sha256, or how it is
    initialised when it loads none."""
    path = (
        checkpoint
        if loads_checkpoint(name)
        else None
        if name == "tiny"
        else tiny_checkpoint_path(name)
    )
    if path is None:
        init = (
            "build_tiny_sam(seed=0)"
            if name == "tiny"
            else RANDOM_OFFICIAL_INIT
            if name in OFFICIAL_NAMES
            else f"{name}: its family's init, seed 0"
        )
        return {"file": None, "sha256": None, "init": init}
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{name}'s weights {path} are missing: restore the file or drop {name}")
    return {"file": path.name, "sha256": file_sha256(path)}


def variant_definition(variant: str) -> dict[str, object]:
    """What a variant runs (:mod:`basam_lite.variants`): its transform and the BASAMConfig it
    applies (None: the stock model)."""
    v = get_variant(variant)
    return {"transform": v.transform, "basam": plain(v.config)}


def used_images(cfg: SweepConfig, ds: Sequence[Sample]) -> list[int]:
    """The dataset indices whose content decides the numbers of ``cfg``'s grid, every shard
    included: the first ``limit`` images and, on the extent axis, the mosaic neighbours they show
    at every size and base side of the grid (procedural scenes: found without rendering; a file
    dataset's mosaic needs each target's name, so there every image counts)."""
    n = len(ds) if cfg.limit is None else min(cfg.limit, len(ds))
    if cfg.axis != "extent" or n == len(ds):
        return list(range(n))
    if not isinstance(ds, ProceduralScenes):
        return list(range(len(ds)))
    used = set(range(n))
    sampler = AxisSampler(ds, "extent", seed=cfg.seed)
    for base in sorted({base_side(m) for m in cfg.models}):
        view = sampler.view(base)
        for side in cfg.resolutions:
            for i in range(n):
                used.update(view.mosaic(i, side).values())
    return sorted(used)


def _leaf_files(ds: Sequence[Sample], indices: Sequence[int]) -> tuple[list[Path], list[Path]]:
    """The files behind images ``indices`` (each image's, then its mask's) and the roots of the
    dataset parts they lie in."""
    files: list[Path] = []
    roots: dict[str, Path] = {}
    for index in indices:
        part, i = _part_of(ds, index)
        if hasattr(part, "pairs"):
            roots.setdefault(str(part.root), Path(part.root))
            files += list(part.pairs[i])
        else:  # COCO: the picture of the instance
            roots.setdefault(str(part.images_dir), Path(part.images_dir))
            info = part.coco.imgs[part.coco.anns[part.ann_ids[i]]["image_id"]]
            files.append(Path(part.images_dir) / info["file_name"])
    return files, list(roots.values())


def dataset_fingerprint(
    ds: Sequence[Sample], used: Sequence[int] | None = None
) -> dict[str, object]:
    """The content of the images ``used`` (default: all; see :func:`used_images`): for files
    every file's path (relative to its root), size and sha256, for procedural scenes a hash of
    every scene's parameters. A run reads and hashes only what it uses (``synthetic:20000
    --limit 1`` draws one scene); with every image used the fingerprint is the whole dataset's,
    as tables made before this stored it. COCO: the annotation file is hashed whole. Hashing a
    file reads it once per run, so data copied to another disk keeps its identity."""
    if used is not None and len(used) >= len(ds):
        used = None
    if isinstance(ds, ProceduralScenes):
        if used is None:
            scenes: list[object] = [plain(ds.scene(i)) for i in range(len(ds))]
            return {"kind": "procedural", "scenes": len(ds), "scene_sha256": json_hash(scenes)}
        scenes = [[i, plain(ds.scene(i))] for i in used]  # the index: which scenes were drawn
        return {
            "kind": "procedural",
            "scenes": len(ds),
            "used": len(used),
            "scene_sha256": json_hash(scenes),
        }
    leaves: list[object] = []
    stack = [ds]
    while stack:
        part = stack.pop(0)
        if hasattr(part, "parts"):
            stack = list(part.parts) + stack
        else:
            leaves.append(part)
    if any(not (hasattr(p, "pairs") or hasattr(p, "coco")) for p in leaves):
        return {"kind": type(ds).__name__, "repr": repr(ds), "samples": len(ds)}
    coco = next((p for p in leaves if hasattr(p, "coco")), None)
    if used is None and coco is not None:  # the whole dataset: every picture an annotation names
        imgs = coco.coco.imgs
        names = sorted({imgs[a["image_id"]]["file_name"] for a in coco.coco.anns.values()})
        files = [Path(coco.images_dir) / n for n in names]
        return {
            "kind": type(ds).__name__,
            "annotations_sha256": json_hash(coco.coco.dataset),
            "instances": len(ds),
            "read_max_side": str(getattr(coco, "max_side", None)),
            **files_fingerprint(Path(coco.images_dir), files),
        }
    files, roots = _leaf_files(ds, range(len(ds)) if used is None else used)
    root = Path(os.path.commonpath([str(r.resolve()) for r in roots])) if roots else Path(".")
    out: dict[str, object] = {"kind": type(ds).__name__}
    if coco is not None:
        out["annotations_sha256"] = json_hash(coco.coco.dataset)
        out["instances"] = len(ds)
    else:
        out["samples"] = len(ds)
    if used is not None:
        out["used"] = len(used)
    sides = sorted({str(getattr(p, "max_side", None)) for p in leaves})
    out["read_max_side"] = sides[0] if len(sides) == 1 else sides  # how huge images are read
    return {**out, **files_fingerprint(root, files)}


def number_versions() -> dict[str, str]:
    """Versions of the packages that change the numbers of a sweep."""
    env = versions()
    return {
        k: env[k]
        for k in ("torch", "numpy", "segment_anything", "pysodmetrics", "basam_lite")
        if k in env
    }


def identity(cfg: SweepConfig, ds: Sequence[Sample]) -> Identity:
    """The run identity of ``cfg`` on the opened dataset ``ds`` (see :mod:`run_identity`)."""
    ident = config_identity(
        cfg,
        GRID,
        SCOPE,
        normalise={"device": _identity_device, "checkpoint": _identity_checkpoint},
    )
    ident["weights"] = {m: model_weights(m, cfg.checkpoint) for m in cfg.models}
    ident["data"] = dataset_fingerprint(ds, used_images(cfg, ds))
    ident["definitions"] = {v: variant_definition(v) for v in cfg.variants}
    ident["prompt_kinds"] = {p: PROMPTS[p] for p in cfg.prompts}
    ident["attention"] = {
        v: STOCK_RULE for v in cfg.variants if get_variant(v).config is None
    }  # how variants without a patch run (basam_lite.memory.stock_fits)
    ident["versions"] = number_versions()
    return ident


KEYED = ("weights", "definitions", "attention")
"""Identity sections keyed by a grid value: a new key is an extension, not a difference."""


def extended(cfg: SweepConfig, grid: dict[str, object]) -> SweepConfig:
    """``cfg`` with its grid widened to hold a table's earlier grid too."""
    limits = [cfg.limit, grid.get("limit")]
    return replace(
        cfg,
        models=tuple(union(cfg.models, grid.get("models", []))),
        variants=tuple(union(cfg.variants, grid.get("variants", []))),
        resolutions=tuple(union(cfg.resolutions, grid.get("resolutions", []), sort=True)),
        limit=None if None in limits else max(int(x) for x in limits),  # type: ignore[arg-type]
    )


def available_bytes(device: str) -> int:
    dev = torch.device(device)
    if dev.type == "cuda":
        return int(torch.cuda.mem_get_info(dev)[0])
    import psutil

    return int(psutil.virtual_memory().available)


def check_runnable(cfg: SweepConfig) -> None:
    """What can be checked before a model loads: the device exists, the checkpoint file does,
    and the largest size's attention fits the memory available now (an estimate, refused up
    front rather than after hours)."""
    dev = torch.device(cfg.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"--device {cfg.device}: this torch ({torch.__version__}) sees no CUDA device; "
            "use --device cpu or a machine with a GPU"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"--device {cfg.device}: only {torch.cuda.device_count()} CUDA device(s)")
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"--device {cfg.device}: the sweep runs on cpu or cuda")
    if cfg.checkpoint is not None:
        p = Path(cfg.checkpoint).expanduser()
        if not p.is_file():
            raise UserError(
                f"--checkpoint {p} is not a file: pass the local path of the official weights "
                "(`python -m basam_lite weights get vit_b` downloads them and prints it)"
            )
        for name in cfg.models:
            if name in OFFICIAL_NAMES:
                check_checkpoint(name, p)  # name, MD5 prefix, keys and shapes: one line
    for name in cfg.models:
        if name in bundled_names():
            try:
                bundled_checkpoint(name)
            except FileNotFoundError as e:
                raise UserError(str(e)) from None
    free = available_bytes(cfg.device)
    others = {m: shape_of(m).weight_bytes for m in cfg.models}  # every model stays loaded
    for name in cfg.models:
        for size in cfg.resolutions:
            rest = sum(b for m, b in others.items() if m != name)
            need = rest + run_bytes(name, cfg.variants, size)
            if need > free:
                fits = largest_fitting(name, cfg.variants, free - rest, size)
                hint = f"sizes up to {fits} px fit" if fits else "no size fits"
                raise UserError(
                    f"resolution {size}: {name} with {', '.join(cfg.variants)} needs about "
                    f"{need / 2**30:.1f} GiB ({(size // patch_of(name)) ** 2} tokens, weights "
                    f"included: basam_lite.memory) but {free / 2**30:.1f} GiB is available on "
                    f"{cfg.device}: {hint}; drop the size or use a bigger machine"
                )


RANDOM_OFFICIAL_INIT = (
    "random: segment_anything's init under torch.manual_seed(0) (--random-weights)"
)
"""How an official model without a checkpoint is built, as its identity records it."""


def build_official_random(name: str) -> nn.Module:
    """An official model with random weights, seeded (``--random-weights``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_sam(name)


class LazyModels(dict):
    """Models built on first use (a resumed run that has nothing left loads none)."""

    def __init__(self, cfg: SweepConfig, built: dict[str, nn.Module] | None = None) -> None:
        super().__init__(built or {})
        self.cfg = cfg

    def __missing__(self, name: str) -> nn.Module:
        if name in OFFICIAL_NAMES and self.cfg.checkpoint is None:
            sam = build_official_random(name)  # only with --random-weights (checked up front)
        else:
            sam = build_sam(name, self.cfg.checkpoint if loads_checkpoint(name) else None)
        self[name] = sam.to(self.cfg.device).eval()
        return self[name]


def load_models(cfg: SweepConfig) -> dict[str, nn.Module]:
    """Every model of ``cfg``, built now."""
    models = LazyModels(cfg)
    return {name: models[name] for name in cfg.models}


@torch.no_grad()
def run_variant(
    sam: nn.Module,
    sample: Sample,
    variant: str,
    size: int,
    prompts: Sequence[str],
    seed: int,
    sod: bool = True,
) -> list[dict[str, object]]:
    """Rows (metrics, seconds) of one image at one size for one variant, one per prompt; the
    model is left as it was (raises ValueError where the variant cannot run at ``size``).
    ``sod=False`` leaves ``metrics.SOD_COLUMNS`` NaN."""
    with variant_at(sam, sweep_variant(sam, variant, size), size):
        return _variant_rows(sam, sample, variant, size, prompts, seed, sod)


def sweep_variant(sam: nn.Module, variant: str, size: int) -> Variant:
    """What the sweep runs for ``variant`` at ``size``: the variant itself, or for one without
    a patch (``vanilla``, ``resize``) whose stock attention would not fit
    (:func:`basam_lite.memory.stock_fits`), the same attention on the fused path
    (``BASAMConfig.vanilla``): the rule :data:`basam_lite.memory.STOCK_RULE`, which a table's
    identity records."""
    v = get_variant(variant)
    if v.config is None and not runs_stock(variant, EncoderShape.of(sam), size):
        return replace(v, config=BASAMConfig.vanilla())
    return v


def _variant_rows(
    sam: nn.Module,
    sample: Sample,
    variant: str,
    size: int,
    prompts: Sequence[str],
    seed: int,
    sod: bool = True,
) -> list[dict[str, object]]:
    image, frame_hw = sample.image, sample.hw
    if get_variant(variant).transform == "resize_to_base":
        # The information available at S: the image fit to S, then the model's own resize.
        if max(sample.hw) != size:
            image = fit_image(sample.image, (size, size))
        frame_hw = image.shape[:2]
    predictor = predictor_for(sam)
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
                **scored(logits, sample, sod),
                "seconds": encode + decode,
                "encode_seconds": encode,
            }
        )
    return rows


def skipped_rows(prompts: Sequence[str], reason: str) -> list[dict[str, object]]:
    nan = nan_scores()
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

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
NUMERIC_COLUMNS = (
    *METRIC_COLUMNS,
    *LEGACY_COLUMNS,
    *(c for c in AXIS_COLUMNS if c != "axis"),
    "seconds",
    "encode_seconds",
)
"""Columns ``--metric`` may name."""


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def partial_path(out: Path) -> Path:
    """Where rows are appended: the CSV itself, or a CSV sidecar of a Parquet table."""
    return out if not is_parquet(out) else out.with_name(out.name + ".partial.csv")


def meta_path(out: Path) -> Path:
    return out.with_name(out.name + ".meta.json")


def plot_path(out: Path) -> Path:
    """The plot beside a table (``.png``; never the table itself, whose suffix is a table's)."""
    return out.with_suffix(".png")


def read_table(path: str | Path) -> pd.DataFrame:
    """A results table (CSV or Parquet), with ``reason`` as strings."""
    path = Path(path)
    text = {c: str for c in ("model", "image", "variant", "prompt", "dataset", "status", "axis")}
    df = (
        pd.read_parquet(path)
        if is_parquet(path)
        else pd.read_csv(path, keep_default_na=False, na_values=[""], dtype=text)
    )
    if "reason" in df:
        df["reason"] = df["reason"].astype(object).where(df["reason"].notna(), "").astype(str)
    return df


def check_table_path(out: Path) -> None:
    """Refuse an ``--out`` that cannot be a sweep table: a folder or another extension."""
    if out.is_dir():
        raise UserError(f"--out {out} is a folder: give a file such as {out / 'sweep.csv'}")
    if out.suffix.lower() not in TABLE_SUFFIXES:
        ext = out.suffix or "a name without extension"
        raise UserError(
            f"--out {out}: a sweep table is a .csv or .parquet file, not {ext}: give e.g. "
            f"{out.with_suffix('.csv')}"
        )


def _table_columns(path: Path) -> list[str]:
    """The column names a table file holds, or a UserError if it is no table."""
    try:
        if is_parquet(path):
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        with open(path, newline="") as f:
            header = f.readline()
    except Exception as e:
        raise UserError(
            f"{path} exists and is not a readable table ({type(e).__name__}); it was left "
            "unchanged: choose another --out"
        ) from None
    return header.rstrip("\r\n").split(",") if header else []


def read_meta(out: Path) -> dict[str, object] | None:
    """The metadata a table was written with (``.meta.json``, else the Parquet metadata)."""
    mp = meta_path(out)
    if mp.is_file():
        try:
            return json.loads(mp.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError(f"{mp} is not JSON: remove it, or choose another --out") from None
    if is_parquet(out) and out.is_file():
        import pyarrow.parquet as pq

        raw = (pq.read_schema(out).metadata or {}).get(b"basam_lite")
        return json.loads(raw) if raw else None
    return None


def _refuse(out: Path, problem: str) -> UserError:
    committed = Path(__file__).resolve().parents[1] / "results"
    if out.resolve().is_relative_to(committed):  # the project's own results: not suggested
        return UserError(
            f"--out {out} {problem}; nothing was written: it is one of the project's committed "
            "results, so write elsewhere with --out (e.g. runs/sweep.csv)"
        )
    return UserError(
        f"--out {out} {problem}; nothing was written: write elsewhere with --out, or replace "
        "it with --overwrite"
    )


def _table_files(out: Path) -> list[Path]:
    """The files of the table at ``out`` that exist; refuses a folder or a file that is no
    sweep table at all (not even ``--overwrite`` replaces another program's file)."""
    check_table_path(out)
    tables = [p for p in dict.fromkeys((out, partial_path(out))) if p.exists()]
    for p in tables:
        if p.is_dir():
            raise UserError(f"{p} is a folder: give another --out")
        columns = _table_columns(p)
        if columns and not {"row", "model", "image", "variant"} <= set(columns):
            raise UserError(
                f"--out {out}: {p} holds a table with other columns ({', '.join(columns[:6])}"
                f"{', ...' if len(columns) > 6 else ''}), not a sweep table; nothing was written: "
                "choose another --out (--overwrite replaces only sweep tables)"
            )
    return tables


def prior_identity(out: Path) -> Identity | None:
    """The identity of the sweep table at ``out`` (None when there is none yet); refuses a
    file that is not a sweep table of this layout, or one written without an identity."""
    tables = _table_files(out)
    for p in tables:
        columns = _table_columns(p)
        if columns and columns != list(COLUMNS):
            raise _refuse(
                out, f"holds a table of an older sweep column layout ({len(columns)} columns)"
            )
    meta = read_meta(out)
    if not tables:
        return None  # a metadata file without rows: nothing to keep
    if meta is None:
        raise _refuse(out, "exists but has no sweep metadata beside it (so not this sweep's table)")
    if "identity" not in meta:
        raise _refuse(
            out,
            "was written before tables recorded their run identity (weights, data, versions), "
            "so its rows cannot be checked against this run",
        )
    return meta["identity"]  # type: ignore[return-value]


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


def metadata(cfg: SweepConfig, ident: Identity | None = None) -> dict[str, object]:
    cfg_dict = asdict(cfg)
    cfg_dict["shard"] = f"{cfg.shard[0]}/{cfg.shard[1]}"
    meta: dict[str, object] = {
        "config": cfg_dict,
        "seed": cfg.seed,
        "versions": versions(),
        "machine": f"{platform_name()}, device {cfg.device}",
    }
    if ident is not None:
        meta["identity"] = ident
    return meta


def write_meta(out: Path, meta: dict[str, object]) -> None:
    write_text_atomic(meta_path(out), json.dumps(meta, indent=2, default=str))


def write_final(out: Path, df: pd.DataFrame, meta: dict[str, object]) -> None:
    """Write the complete table (sorted by ``row``) and its metadata sidecar, each atomically."""
    df = df.sort_values("row", kind="stable").reset_index(drop=True)
    if is_parquet(out):
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df, preserve_index=False)
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), b"basam_lite": json.dumps(meta, default=str).encode()}
        )
        write_with(out, lambda tmp: pq.write_table(table, tmp))
        write_meta(out, meta)
        partial_path(out).unlink(missing_ok=True)
    else:
        write_with(out, lambda tmp: df.to_csv(tmp, index=False))
        write_meta(out, meta)


def remove_table(out: Path) -> None:
    """``--overwrite``: delete the sweep table, its Parquet sidecar and its metadata (never a
    file that is no sweep table)."""
    _table_files(out)
    for p in (out, partial_path(out), meta_path(out)):
        p.unlink(missing_ok=True)


def check_shard_rows(path: Path, meta: dict[str, object], table: pd.DataFrame) -> None:
    """A shard's rows against its own metadata: as many as it says when complete, each key
    once, and every row inside its run's grid (models, variants, sizes, prompts, dataset)."""
    rows = meta.get("rows")
    if meta.get("complete") and isinstance(rows, int) and len(table) != rows:
        raise UserError(
            f"shard {path} holds {len(table)} rows but its metadata says {rows} (the table was "
            "cut short or edited): rerun that shard's command to rebuild it, then merge again"
        )
    if table.duplicated(subset=list(KEY)).any():
        raise UserError(f"shard {path} holds the same row twice: rerun that shard's command")
    ident = meta["identity"]  # type: ignore[index]
    grid, config = ident["grid"], ident["config"]  # type: ignore[index]
    allowed = {
        "model": set(grid["models"]),
        "variant": set(grid["variants"]),
        "resolution": {int(r) for r in grid["resolutions"]},
        "prompt": set(config["prompts"]),
        "dataset": {config["dataset"]},
    }
    for column, values in allowed.items():
        if column not in table:
            continue
        got = set(table[column].astype(int) if column == "resolution" else table[column])
        stray = sorted(map(str, got - values))
        if stray:
            raise UserError(
                f"shard {path} holds rows outside its own run ({column} {', '.join(stray[:3])}): "
                "rerun that shard's command to rebuild it, then merge again"
            )
    k, n = _shard_of(meta, path)
    cells = len(grid["resolutions"]) * len(grid["models"]) * len(grid["variants"])
    per_image = cells * len(config["prompts"])
    if "row" in table and len(table) and per_image:
        images = pd.to_numeric(table["row"], errors="coerce") // per_image
        other = images[(images % n != k) | images.isna()]
        if len(other):
            raise UserError(
                f"shard {path} holds rows of another shard (row {table.loc[other.index[0], 'row']}"
                f" is not shard {k}/{n}'s): rerun that shard's command to rebuild it, then merge "
                "again"
            )


def _shard_of(meta: dict[str, object], path: Path) -> tuple[int, int]:
    shard = meta["identity"]["scope"]["shard"]  # type: ignore[index]
    if not isinstance(shard, list) or len(shard) != 2:
        raise UserError(f"{path} is a merged table ({shard}), not one shard: merge the shards")
    return int(shard[0]), int(shard[1])


def merge_shards(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    allow_partial: bool = False,
    overwrite: bool = False,
) -> pd.DataFrame:
    """Merge the shard tables of one run into the unsharded table (ordered by ``row``).

    Every shard must carry the same identity (grid included) and be complete, and shards
    0..N-1 must each be given once; otherwise a UserError names the missing, duplicated,
    incomplete or unrelated shards. ``allow_partial`` writes the union of what is there,
    marked ``"complete": false`` with the missing and incomplete shards in its metadata.
    """
    out = Path(out)
    check_table_path(out)
    paths = [Path(p) for p in paths]
    if any(p.resolve() == out.resolve() for p in paths):
        raise UserError(f"--out {out} is one of the shards being merged: write the union elsewhere")
    metas = []
    for p in paths:
        if not p.is_file():
            raise UserError(f"shard {p} does not exist: check the paths given to --merge")
        ident = prior_identity(p)
        if ident is None:
            raise UserError(f"{p} is not a sweep table")
        metas.append(read_meta(p))
    first = metas[0]["identity"]  # type: ignore[index]
    for p, meta in zip(paths[1:], metas[1:], strict=True):
        diff = [
            d
            for d in differences(first, meta["identity"], compare_grid=True)  # type: ignore[arg-type]
            if not d.startswith("scope.")
        ]
        if diff:
            raise UserError(
                f"{p} is not a shard of the same run as {paths[0]}: {'; '.join(diff[:4])}"
                f"{' ...' if len(diff) > 4 else ''}; merge only shards of one sweep"
            )
    shards = [_shard_of(m, p) for m, p in zip(metas, paths, strict=True)]
    counts = {n for _, n in shards}
    if len(counts) > 1:
        raise UserError(f"shards of different counts N ({sorted(counts)}): merge one sharding")
    (n,) = counts
    seen: dict[int, Path] = {}
    for (k, _), p in zip(shards, paths, strict=True):
        if k in seen:
            raise UserError(f"shard {k}/{n} given twice ({seen[k]} and {p}): give each once")
        seen[k] = p
    missing = [f"{k}/{n}" for k in range(n) if k not in seen]
    incomplete = [str(p) for p, m in zip(paths, metas, strict=True) if not m.get("complete")]
    if (missing or incomplete) and not allow_partial:
        parts = ([f"missing shard(s) {', '.join(missing)}"] if missing else []) + (
            [f"incomplete shard(s) {', '.join(incomplete)}"] if incomplete else []
        )
        raise UserError(
            f"cannot merge a complete table: {'; '.join(parts)}: finish them (rerun the same "
            "command to resume), or pass --allow-partial to write a union marked partial"
        )
    tables = [read_table(p) for p in paths]
    for p, meta, table in zip(paths, metas, tables, strict=True):
        check_shard_rows(p, meta, table)
    df = pd.concat(tables, ignore_index=True)
    df = df.drop_duplicates(subset=list(KEY), keep="first")
    complete = not (missing or incomplete)
    ident = json.loads(json.dumps(first))
    ident["scope"] = {"shard": [0, 1]} if complete else {"shard": "partial union"}
    meta = {k: v for k, v in metas[0].items() if k not in ("rows", "complete", "partial")}
    meta["config"] = {**meta["config"], "shard": "merged"}  # type: ignore[dict-item]
    meta.update(
        identity=ident, complete=complete, rows=len(df), merged_from=[str(p) for p in paths]
    )
    if not complete:
        meta["partial"] = {"missing_shards": missing, "incomplete_shards": incomplete}
    out.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(out):
        if overwrite:
            remove_table(out)
        else:
            prior = prior_identity(out)
            if prior is not None and differences(prior, ident, compare_grid=True):
                raise _refuse(out, "holds another run's table")
        write_final(out, df, meta)
    return df.sort_values("row", kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------- the sweep


def _open(cfg: SweepConfig, on_error: str = "stop") -> Sequence[Sample]:
    """The sweep's dataset, every file checked as it opens: under "stop" one UserError lists
    every bad file before anything runs; under "skip" they are left out, and
    :func:`skipped_files` lists them for the table's meta (the log beside the table)."""
    try:
        return open_dataset(
            cfg.dataset, seed=cfg.seed, on_error="skip" if on_error == "skip" else "raise"
        )
    except (ValueError, OSError) as e:  # the spec or the files: the user's to fix
        message = str(e).replace(
            "open the dataset with on_error='skip' to leave them out (each is listed by its "
            "problems() method)",
            "rerun with --on-error skip to leave them out (listed in the table's meta)",
        )
        raise UserError(message) from e


def skipped_files(ds: Sequence[Sample]) -> list[dict[str, str]]:
    """The files a dataset left out as it opened (``on_error="skip"``), with their reasons."""
    return [{"file": f, "reason": r} for f, r in getattr(ds, "problems", list)()]


def _part_of(ds: Sequence[Sample], index: int) -> tuple[Sequence[Sample], int]:
    """The dataset part holding image ``index`` (in concatenated datasets), and its index there."""
    part, i = ds, index
    while hasattr(part, "parts"):
        for p in part.parts:
            if i < len(p):
                part = p
                break
            i -= len(p)
    return part, i


def _image_label(ds: Sequence[Sample], index: int) -> str:
    """The file(s) behind image ``index`` (for messages), or its position."""
    part, i = _part_of(ds, index)
    if hasattr(part, "pairs"):
        image, mask = part.pairs[i]
        return f"{image} (mask {mask})"
    return f"image {index} of the dataset"


def _image_name(ds: Sequence[Sample], index: int) -> str:
    part, i = _part_of(ds, index)
    if hasattr(part, "names"):
        return part.names[i]
    return f"image-{index:05d}"


def _renumber(df: pd.DataFrame, cfg: SweepConfig, names: dict[str, int]) -> pd.DataFrame:
    """``row`` = position in the unsharded run of ``cfg``'s grid (after a grid extension the
    earlier rows move to their place in the wider grid)."""
    pos = [
        {v: i for i, v in enumerate(values)}
        for values in (cfg.resolutions, cfg.models, cfg.variants, cfg.prompts)
    ]
    r = df["resolution"].astype(int).map(pos[0])
    m, v, p = (df[c].map(d) for c, d in zip(("model", "variant", "prompt"), pos[1:], strict=True))
    i = df["image"].map(names)
    rows = (((i * len(pos[0]) + r) * len(pos[1]) + m) * len(pos[2]) + v) * len(pos[3]) + p
    if rows.isna().any():  # not reachable: the identity fixes the images and the grid holds all
        raise RuntimeError(f"rows outside the grid: {df[rows.isna()][list(KEY)].head()}")
    return df.assign(row=rows.astype(int))


def error_rows(prompts: Sequence[str], reason: str) -> list[dict[str, object]]:
    """Rows of an image that could not be read or prompted (``--on-error skip``)."""
    return [{**row, "status": "error"} for row in skipped_rows(prompts, reason)]


def selected(cfg: SweepConfig, ds: Sequence[Sample]) -> list[int]:
    """The image indices ``cfg`` runs (its limit and shard); empty work is a UserError."""
    n = len(ds) if cfg.limit is None else min(cfg.limit, len(ds))
    k, n_shards = cfg.shard
    indices = [i for i in range(n) if i % n_shards == k]
    if not indices:
        raise UserError(
            f"nothing to run: {cfg.dataset} holds {len(ds)} image(s)"
            + (f", --limit {cfg.limit}" if cfg.limit is not None else "")
            + (f", and shard {k}/{n_shards} selects none of them" if n_shards > 1 else "")
            + ": give a dataset with images (or fewer shards)"
        )
    return indices


def run_sweep(
    cfg: SweepConfig,
    out: str | Path,
    progress: bool = True,
    stop_after: int | None = None,
    models: dict[str, nn.Module] | None = None,
    *,
    on_error: str = "stop",
    overwrite: bool = False,
    extend: bool = False,
    random_weights: bool = False,
) -> pd.DataFrame:
    """Run (or resume) the sweep into ``out`` and return the table (so far).

    A rerun into a table of the same identity computes only the cells of ``cfg``'s own grid
    that the table lacks. A grid beyond the table's (more models, variants, sizes or images)
    widens the table to the cross product of both grids, every new cell computed: refused
    unless ``extend``. An official model without ``cfg.checkpoint`` (and not passed in
    ``models``) runs seeded random weights only with ``random_weights``; the identity records
    it. With ``progress`` the plan (rows to run, rows already there) is printed first.

    ``stop_after`` stops once that many new rows are written (to test resuming); ``models``
    lets a caller pass already built models by name (they must be what
    ``build_sam(name, checkpoint)`` builds: the identity records the files). Rows: one per
    image x resolution x model x variant x prompt, ``row`` being its position in the unsharded
    run. ``on_error``: ``"stop"`` raises a UserError naming the image and its problem (rows
    already written stay), ``"skip"`` records its rows with ``status="error"`` and the reason.
    ``overwrite`` replaces a table of another identity instead of refusing.

    Raises:
        UserError: nothing to run, an ``out`` that is not this sweep's table, a table of another
            identity (each difference named), a second writer, or a bad image under "stop".
    """
    if on_error not in ON_ERROR:
        raise UserError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
    out = Path(out)
    _table_files(out)  # a folder, another extension or another program's table: refused now
    check_random_weights(cfg, models, random_weights)
    check_runnable(cfg)
    ds = _open(cfg, on_error)
    selected(cfg, ds)
    ident = identity(cfg, ds)
    if not overwrite:
        prior = prior_identity(out)
        if prior is not None:
            diff = against_table(prior, cfg, ident, ds)
            if diff:
                raise _refuse(
                    out,
                    f"holds a table of another run ({'; '.join(diff[:4])}"
                    f"{' ...' if len(diff) > 4 else ''})",
                )
            check_widening(cfg, prior["grid"], out, extend, len(ds))
    models = dict(models or {})
    for name in cfg.models:  # an official model's checkpoint is refused before any file is made
        if name in OFFICIAL_NAMES and cfg.checkpoint is not None and name not in models:
            models[name] = build_sam(name, cfg.checkpoint).to(cfg.device).eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(out):
        if overwrite:
            remove_table(out)
        prior = prior_identity(out)  # again under the lock: another writer may have finished
        if prior is not None:
            diff = against_table(prior, cfg, ident, ds)
            if diff:
                raise _refuse(out, f"holds a table of another run ({'; '.join(diff[:4])})")
            widened = check_widening(cfg, prior["grid"], out, extend, len(ds))
            table = extended(cfg, prior["grid"])
            asked = table if widened else cfg  # widening runs the whole wider grid
            cfg, ident = table, identity(table, ds)
        else:
            asked = cfg
        return _run_locked(cfg, ds, ident, out, progress, stop_after, models, on_error, asked)


def on_grid(cfg: SweepConfig, grid: dict[str, object]) -> SweepConfig:
    """``cfg`` with a table's grid (its models, variants, sizes and limit) in place of its own."""
    return replace(
        cfg,
        models=tuple(grid["models"]),  # type: ignore[arg-type]
        variants=tuple(grid["variants"]),  # type: ignore[arg-type]
        resolutions=tuple(grid["resolutions"]),  # type: ignore[arg-type]
        limit=grid.get("limit"),  # type: ignore[arg-type]
    )


def against_table(
    prior: Identity, cfg: SweepConfig, ident: Identity, ds: Sequence[Sample]
) -> list[str]:
    """What differs between a table's identity and this run's (``ident``, of ``cfg`` on
    ``ds``), grid extensions aside. The data are compared over the images the table's own grid
    uses (a rerun with another ``--limit`` hashes the table's images, not its own)."""
    if prior.get("grid") and prior["grid"] != ident.get("grid"):
        used = used_images(on_grid(cfg, prior["grid"]), ds)
        ident = {**ident, "data": dataset_fingerprint(ds, used)}
    return differences(prior, ident, keyed=KEYED)


def check_random_weights(
    cfg: SweepConfig, models: dict[str, nn.Module] | None, random_weights: bool
) -> None:
    """Refuse an official model that would run random weights without ``random_weights``."""
    given = models or {}
    random = [
        m for m in cfg.models if m in OFFICIAL_NAMES and cfg.checkpoint is None and m not in given
    ]
    if random and not random_weights:
        raise UserError(
            f"{', '.join(random)} has no weights: pass --checkpoint (or set {CHECKPOINT_ENV}) to "
            "the official .pth file, or --random-weights to run seeded random weights on purpose "
            "(recorded in the table's identity)"
        )


def _grid_cells(grid: dict[str, object], images: int) -> int:
    n = images if grid.get("limit") is None else min(int(grid["limit"]), images)  # type: ignore[arg-type]
    return n * len(grid["models"]) * len(grid["variants"]) * len(grid["resolutions"])  # type: ignore[arg-type]


def check_widening(
    cfg: SweepConfig, grid: dict[str, object], out: Path, extend: bool, images: int
) -> bool:
    """Whether ``cfg`` widens the table's ``grid`` (more models, variants, sizes or images);
    without ``extend`` a widening is refused, naming what it would add."""
    wider = extended(cfg, grid)
    table = on_grid(cfg, grid)
    added = [
        f"{f} {sorted(set(getattr(wider, f)) - set(getattr(table, f)), key=str)}"
        for f in ("models", "variants", "resolutions")
        if set(getattr(wider, f)) != set(getattr(table, f))
    ]
    if wider.limit != table.limit:
        added.append(f"images up to {wider.limit or 'all'} (table: {table.limit})")
    if not added:
        return False
    new = _grid_cells(plain(wider.__dict__), images) - _grid_cells(grid, images)  # type: ignore[arg-type]
    what = (
        f"widen {out}'s grid ({'; '.join(added)}: {new} new cell(s) x {len(cfg.prompts)} "
        "prompt(s), every model x variant x size x image of the wider grid)"
    )
    if not extend:
        raise UserError(
            f"this run would {what}: pass --extend to widen it, or write elsewhere with --out"
        )
    print(f"extending: this run will {what}", file=sys.stderr)
    return True


def _run_locked(
    cfg: SweepConfig,
    ds: Sequence[Sample],
    ident: Identity,
    out: Path,
    progress: bool,
    stop_after: int | None,
    models: dict[str, nn.Module] | None,
    on_error: str,
    asked: SweepConfig | None = None,
) -> pd.DataFrame:
    """Run the cells of ``asked`` (default: all of ``cfg``, the table's grid) that the table
    lacks; the table is complete once every cell of ``cfg`` is there."""
    asked = cfg if asked is None else asked
    indices = selected(cfg, ds)
    wanted = set(selected(asked, ds))
    sink = partial_path(out)
    repair_partial(sink)
    done = existing_rows(out)
    done_keys = set(map(tuple, done[list(KEY)].astype(str).to_numpy())) if len(done) else set()
    meta = {**metadata(cfg, ident), "on_error": on_error, "skipped_files": skipped_files(ds)}
    for skipped in meta["skipped_files"]:
        print(f"skipped {skipped['file']}: {skipped['reason']}", file=sys.stderr)
    write_meta(out, {**meta, "complete": False})
    models = LazyModels(cfg, models)
    sampler = AxisSampler(ds, cfg.axis, seed=cfg.seed)
    sizes, names, variants, prompts = cfg.resolutions, cfg.models, cfg.variants, cfg.prompts
    per_image = len(sizes) * len(names) * len(variants) * len(prompts)
    written = 0
    image_index: dict[str, int] = {}
    cells = len(asked.resolutions) * len(asked.models) * len(asked.variants) * len(prompts)
    planned = len(wanted) * cells
    if progress:
        print(plan_line(asked, ds, wanted, done, out), file=sys.stderr)
    bar = tqdm(total=planned, disable=not progress, desc="sweep", unit="row")
    for i in indices:
        # Procedural scenes are named without rendering, so a resumed run skips them for free.
        name = ds.name(i) if isinstance(ds, ProceduralScenes) else _image_name(ds, i)
        for r, size in enumerate(sizes):
            loaded: dict[int | None, tuple[Sample | None, str | None]] = {}  # by base side
            for m, model_name in enumerate(names):
                patch, side = patch_of(model_name), base_side(model_name)
                for v, variant in enumerate(variants):
                    first = (((i * len(sizes) + r) * len(names) + m) * len(variants) + v) * len(
                        prompts
                    )
                    base = side if cfg.axis == "extent" else None
                    if not loaded and not isinstance(ds, ProceduralScenes):
                        sample, problem = _load(sampler, i, size, base, prompts, cfg.seed)
                        loaded[base] = sample, problem
                        name = sample.name if sample is not None else name
                    image_index[name] = i
                    keys = [(model_name, name, str(size), variant, p) for p in prompts]
                    if not (
                        i in wanted
                        and size in asked.resolutions
                        and model_name in asked.models
                        and variant in asked.variants
                    ):
                        continue  # a cell of the table this run was not asked for
                    if all(key in done_keys for key in keys):
                        bar.update(len(prompts))
                        continue
                    if base not in loaded:
                        loaded[base] = _load(sampler, i, size, base, prompts, cfg.seed)
                    sample, problem = loaded[base]
                    sam = models[model_name]
                    extra: dict[str, object] = {
                        "axis": cfg.axis,
                        "tokens": (size // patch) ** 2,
                        "extent": size / side,
                    }
                    if isinstance(problem, TargetDoesNotFit):
                        rows = skipped_rows(prompts, str(problem).splitlines()[0])
                    elif problem is not None:
                        if on_error == "stop":
                            kept = len(done) + written
                            raise UserError(
                                f"{_image_label(ds, i)}: {problem}; stopped ({kept} row(s) kept "
                                f"in {sink}): fix or remove the file, or rerun with "
                                "--on-error skip to record it and go on"
                            )
                        rows = error_rows(prompts, problem)
                    else:
                        assert sample is not None
                        extra = axis_columns(sample, cfg.axis, size, side, patch)
                        try:
                            rows = run_variant(
                                sam, sample, variant, size, prompts, cfg.seed,
                                sod=cfg.metrics == "all",
                            )  # fmt: skip
                        except ValueError as e:
                            if variant != "official":
                                raise
                            rows = skipped_rows(prompts, str(e).splitlines()[0])
                    for p, row in enumerate(rows):
                        row.update(
                            **extra,
                            row=first + p,
                            model=model_name,
                            image=name,
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
    df = _renumber(df.drop_duplicates(subset=list(KEY), keep="first"), cfg, image_index)
    errors = int((df["status"] == "error").sum())
    complete = len(df) >= len(indices) * per_image  # every cell of the table's grid
    write_final(out, df, {**meta, "complete": complete, "rows": len(df), "error_rows": errors})
    return df.sort_values("row", kind="stable").reset_index(drop=True)


def plan_line(
    asked: SweepConfig, ds: Sequence[Sample], wanted: set[int], done: pd.DataFrame, out: Path
) -> str:
    """What a run will compute, printed before it starts: the grid asked for, its rows, and
    how many of them the table already holds."""
    rows = len(wanted) * len(asked.models) * len(asked.variants) * len(asked.resolutions)
    rows *= len(asked.prompts)
    there = 0
    if len(done):
        names = {
            ds.name(i) if isinstance(ds, ProceduralScenes) else _image_name(ds, i) for i in wanted
        }
        hit = (
            done["model"].isin(asked.models)
            & done["variant"].isin(asked.variants)
            & done["resolution"].astype(int).isin(asked.resolutions)
            & done["prompt"].isin(asked.prompts)
            & done["image"].isin(names)
        )
        there = int(hit.sum())
    return (
        f"plan: {', '.join(asked.models)} x {', '.join(asked.variants)} x "
        f"{' '.join(map(str, asked.resolutions))} px x {', '.join(asked.prompts)} on "
        f"{len(wanted)} image(s) ({asked.axis} axis) = {rows} row(s); {there} already in {out}, "
        f"{max(0, rows - there)} to run"
    )


def _load(
    sampler: AxisSampler,
    index: int,
    size: int,
    base: int | None,
    prompts: Sequence[str],
    seed: int,
) -> tuple[Sample | None, str | TargetDoesNotFit | None]:
    """Image ``index`` for a run at ``size`` on the sampler's axis (``base``: the model's base
    side, for the extent axis) and a check that every prompt can be made from its mask:
    (sample, None); (None, the problem) for an unreadable file or an unusable mask; (None, the
    exception) for a window below the base size that cannot hold the target (a skipped row)."""
    try:
        sample = sampler.sample(index, size, base or size)
        for p in prompts:
            prompt_for(sample, PROMPTS[p], seed)
    except TargetDoesNotFit as e:
        return None, e
    except (ValueError, OSError) as e:
        return None, (str(e).splitlines() or [type(e).__name__])[0]
    return sample, None


def base_side(model: str) -> int:
    """The base input side of a model by name, from its spec (256 for the tiny models, 1024 for
    the official ones)."""
    return model_spec(model).base_side


# ---------------------------------------------------------------- command line


def _shard(text: str) -> tuple[int, int] | str:
    if text == "auto":
        return "auto"
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--shard wants K/N (e.g. 0/4) or auto, got {text!r}"
        ) from None
    if not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"--shard {text}: need 0 <= K < N")
    return k, n


def shard_from_env(env: dict[str, str] | None = None) -> tuple[int, int]:
    """``--shard auto``: (K, N) from a SLURM job array (``SLURM_ARRAY_TASK_ID``, ``_COUNT``,
    ``_MIN`` and ``_STEP``: ``--array=0-7`` or ``1-8`` alike) or from torchrun (``RANK``,
    ``WORLD_SIZE``)."""
    env = dict(os.environ if env is None else env)
    try:
        if "SLURM_ARRAY_TASK_ID" in env:
            task = int(env["SLURM_ARRAY_TASK_ID"])
            n = int(env["SLURM_ARRAY_TASK_COUNT"])
            first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
            step = int(env.get("SLURM_ARRAY_TASK_STEP", "1") or 1)
            k, rem = divmod(task - first, step)
            source = f"SLURM_ARRAY_TASK_ID={task} (array from {first}, step {step}, {n} tasks)"
        elif "RANK" in env and "WORLD_SIZE" in env:
            k, n, rem = int(env["RANK"]), int(env["WORLD_SIZE"]), 0
            source = f"RANK={k}, WORLD_SIZE={n} (torchrun)"
        else:
            k = n = rem = -1
            source = ""
    except (KeyError, ValueError) as e:
        raise UserError(
            f"--shard auto: scheduler variables unreadable ({e}): give --shard K/N"
        ) from None
    if source == "":
        raise UserError(
            "--shard auto found no scheduler: set by a SLURM job array "
            "(SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT) or torchrun (RANK, WORLD_SIZE); "
            "elsewhere give --shard K/N"
        )
    if rem or not 0 <= k < n:
        raise UserError(
            f"--shard auto: {source} is not one of {n} evenly spaced tasks: use a contiguous "
            "array such as --array=0-7, or give --shard K/N"
        )
    return k, n


def shard_device(device: str, env: dict[str, str] | None = None) -> str:
    """``cuda`` under torchrun means this process's GPU, ``cuda:LOCAL_RANK`` (SLURM gives each
    task its own GPU through ``CUDA_VISIBLE_DEVICES``, so there ``cuda`` stays ``cuda:0``)."""
    env = dict(os.environ if env is None else env)
    if device == "cuda" and "LOCAL_RANK" in env and "SLURM_ARRAY_TASK_ID" not in env:
        return f"cuda:{int(env['LOCAL_RANK'])}"
    return device


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = SweepConfig()
    listed = " ".join
    p.add_argument(
        "--model",
        nargs="+",
        default=list(d.models),
        help=f"{', '.join(model_names())} (several allowed; default: {listed(d.models)})",
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        help=f"weights of the official model (.pth; default: ${CHECKPOINT_ENV} when set); none "
        "for tiny",
    )
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="run an official model with seeded random weights on purpose (recorded in the "
        "table's identity); without it an official model needs --checkpoint or "
        f"${CHECKPOINT_ENV}",
    )
    p.add_argument(
        "--extend",
        action="store_true",
        help="widen an existing table's grid (more models, variants, sizes or images): every "
        "cell of the wider grid is computed; without it a rerun only fills its own cells",
    )
    p.add_argument(
        "--variants",
        nargs="+",
        default=list(d.variants),
        choices=known_variant_names(),
        help=f"default: {listed(d.variants)}",
    )
    p.add_argument(
        "--resolutions",
        nargs="+",
        type=int,
        default=None,
        help="input sizes in px, multiples of 16 (default: "
        f"{listed(map(str, default_sizes(['tiny'], 'zoom')))} for the tiny models, "
        f"{listed(map(str, default_sizes(['vit_b'], 'zoom')))} for vit_b/l/h: 0.5x to 3x the "
        "model's base side)",
    )
    p.add_argument(
        "--dataset",
        default=None,
        help="synthetic[:N] | folder:PATH | dis5k:PATH[:SPLIT] | duts:PATH | isic2016:PATH | "
        f"cod10k:PATH | coco:ANNOTATIONS.json:IMAGES (default: {d.dataset} for the tiny models, "
        f"synthetic:{default_images(['vit_b'])} for vit_b/l/h)",
    )
    p.add_argument(
        "--prompt",
        nargs="+",
        default=list(d.prompts),
        choices=tuple(PROMPTS),
        help=f"box, point (centre point) or click (random seeded click; default: "
        f"{listed(d.prompts)})",
    )
    p.add_argument(
        "--out",
        default=None,
        help=".csv or .parquet (default: results/sweep.csv, the project's main job, for the "
        "tiny models; runs/sweep-MODEL.csv with an official model); {k} and {n} become the shard",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a table of another run")
    p.add_argument("--device", default=d.device, help=f"cpu, cuda or cuda:N (default: {d.device})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"default: {d.seed}")
    p.add_argument("--limit", type=_positive, default=None, help="first N images only")
    p.add_argument(
        "--shard",
        type=_shard,
        default=d.shard,
        help="K/N: images with index %% N == K; auto: from SLURM array or torchrun variables",
    )
    p.add_argument(
        "--on-error",
        choices=ON_ERROR,
        default="stop",
        help="a bad image: stop (default; rows so far kept) or skip (a row with status error)",
    )
    p.add_argument("--merge", nargs="+", default=None, help="merge these shard tables into --out")
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="with --merge: write the union of missing or incomplete shards, marked partial",
    )
    p.add_argument(
        "--threads",
        type=_positive,
        default=None,
        help="torch CPU threads (default: one core left to the rest of the machine and none "
        "another runnable process is on, at least one; OMP_NUM_THREADS or BASAM_THREADS "
        "choose it too)",
    )
    p.add_argument("--no-plot", action="store_true")
    p.add_argument(
        "--metrics",
        default="all",
        choices=METRIC_SETS,
        help="all metric columns (default), or binary: IoU, Dice and MAE only, the S, E and F "
        "measures left empty (about 40%% of a 1024 px row's time; the study's choice)",
    )
    p.add_argument(
        "--metric",
        default="iou",
        help=f"metric of the printed summary and the plot: {', '.join(NUMERIC_COLUMNS)} "
        "(default: iou)",
    )
    p.add_argument(
        "--axis",
        default="both",
        choices=(*AXES, "both"),
        help="zoom: the scene drawn with more pixels (today's sweep); extent: the image at the "
        "model's base size inside a larger canvas (basam_lite.axes); both (the main job): zoom "
        "into --out, extent into OUT_extent.csv with --extent-resolutions and --extent-limit, "
        "and one figure with the two axes side by side",
    )
    p.add_argument(
        "--extent-resolutions",
        nargs="+",
        type=int,
        default=None,
        help="with --axis both: the extent axis's canvas sides in px (default: 0.75x, 1x, 2x "
        f"the base side: {listed(map(str, default_sizes(['tiny'], 'extent')))} for the tiny "
        f"models, {listed(map(str, default_sizes(['vit_b'], 'extent')))} for vit_b/l/h)",
    )
    p.add_argument(
        "--extent-limit",
        type=int,
        default=None,
        help=f"with --axis both: the first N images on the extent axis (default: {EXTENT_LIMIT} "
        f"for the tiny models, {default_images(['vit_b'])} for vit_b/l/h)",
    )


def extent_path(out: str | Path) -> Path:
    """Where the extent table of a two-axis run goes: ``OUT_extent.csv`` beside ``OUT``."""
    out = Path(out)
    return out.with_name(f"{out.stem}_extent{out.suffix}")


def base_path(out: str | Path) -> Path:
    """Where the base-size table of a study goes: ``OUT_base.EXT`` beside ``OUT``."""
    out = Path(out)
    return out.with_name(f"{out.stem}_base{out.suffix}")


def tables(out: str | Path) -> pd.DataFrame:
    """The zoom and extent tables of a two-axis run, concatenated (an ``axis`` column tells
    them apart)."""
    parts = [read_table(p) for p in (Path(out), extent_path(out)) if Path(p).exists()]
    return pd.concat(parts, ignore_index=True)


def refuse_plot_over_foreign_file(out: Path) -> None:
    """Before any work: the plot beside ``out`` may replace only a plot (a Matplotlib PNG)."""
    refuse_foreign(plot_path(out), is_matplotlib_png, "a plot", "move it, or pass --no-plot")


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


def config_of(args: argparse.Namespace, shard: tuple[int, int]) -> SweepConfig:
    """The sweep ``args`` ask for, as shard ``shard`` (every value checked as it is built)."""
    return SweepConfig(
        models=tuple(args.model),
        checkpoint=args.checkpoint,
        variants=tuple(args.variants),
        resolutions=tuple(args.resolutions),
        dataset=args.dataset,
        prompts=tuple(args.prompt),
        device=shard_device(args.device) if args.shard == "auto" else args.device,
        seed=args.seed,
        limit=args.limit,
        shard=shard,
        axis=getattr(args, "axis", "zoom"),
        metrics=getattr(args, "metrics", "all"),
    )


def main_job(args: argparse.Namespace) -> int:
    """Both axes (see the module docstring); returns the exit status. Both axes' arguments
    are checked before the first runs (a bad extent size is refused before the zoom table)."""
    from .plots import plot_axes

    if not args.no_plot and "{" not in args.out:
        refuse_plot_over_foreign_file(Path(args.out))
    for axis in ("zoom", "extent"):
        one = _axis_args(args, axis)
        config_of(one, (0, 1) if one.shard == "auto" else one.shard)
    for axis in ("zoom", "extent"):
        one = _axis_args(args, axis)
        one.header = f"== {axis} axis"  # printed once the run has succeeded
        status = run(one)
        if status:
            return status
    if not args.no_plot and "{" not in args.out:  # a sharded --out: plot after the merge
        zoom = read_table(args.out)
        extent = read_table(extent_path(args.out))
        png = plot_axes(zoom, extent, Path(args.out).with_suffix(".png"), metric=args.metric)
        print(f"plot: {png}")
    return 0


def official_checkpoint(
    models: Sequence[str], checkpoint: str | None, random_weights: bool
) -> str | None:
    """The checkpoint an official model of ``models`` loads: ``checkpoint``, else
    ``$BASAM_SAM_CHECKPOINT`` (said on stderr), else None, which only ``random_weights``
    allows (a one-line UserError otherwise)."""
    official = [m for m in models if m in OFFICIAL_NAMES]
    if checkpoint is not None or not official:
        return checkpoint
    env = os.environ.get(CHECKPOINT_ENV)
    if env and not random_weights:
        print(f"--checkpoint from {CHECKPOINT_ENV}={env}", file=sys.stderr)
        return env
    if not random_weights:
        raise UserError(
            f"{', '.join(official)} has no weights: pass --checkpoint, set {CHECKPOINT_ENV} "
            "(`python -m basam_lite weights get` fetches the file), or pass --random-weights to "
            "run seeded random weights on purpose (recorded in the table's identity)"
        )
    return None


def fill_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """The command line's defaults that follow the model (sizes, images, dataset, --out) and
    the checkpoint from the environment; arguments given stay as they are."""
    models = list(args.model)
    official = [m for m in models if m in OFFICIAL_NAMES]
    if getattr(args, "resolutions", None) is None:
        axis = "extent" if getattr(args, "axis", "zoom") == "extent" else "zoom"
        args.resolutions = list(default_sizes(models, axis))
    if getattr(args, "extent_resolutions", None) is None:
        args.extent_resolutions = list(default_sizes(models, "extent"))
    if getattr(args, "extent_limit", None) is None:
        args.extent_limit = default_images(models)
    if getattr(args, "dataset", None) is None:
        args.dataset = f"synthetic:{default_images(models)}"
    if getattr(args, "out", None) is None and args.merge:
        raise UserError("--merge writes the merged table to --out: give it, e.g. runs/sweep.csv")
    if getattr(args, "out", None) is None:
        args.out = f"runs/sweep-{'-'.join(official)}.csv" if official else "results/sweep.csv"
    if not args.merge:
        random = getattr(args, "random_weights", False)
        args.checkpoint = official_checkpoint(models, args.checkpoint, random)
    return args


def skipped_summary(df: pd.DataFrame) -> list[str]:
    """One line per reason rows were not scored (skipped or error): how many, and why."""
    bad = df[df["status"] != "ok"]
    if bad.empty:
        return []
    counts = bad.groupby(["status", "reason"], sort=False).size()
    return [f"{n} of {len(df)} rows {status}: {reason}" for (status, reason), n in counts.items()]


def run(args: argparse.Namespace) -> int:
    from .plots import plot_sweep, summary_table

    fill_defaults(args)
    if getattr(args, "axis", "zoom") == "both" and not args.merge:
        return main_job(args)
    if args.metric not in NUMERIC_COLUMNS:
        raise UserError(
            f"--metric {args.metric!r} is not a column of the sweep table: choose from "
            f"{', '.join(NUMERIC_COLUMNS)}"
        )
    if getattr(args, "metrics", "all") == "binary" and args.metric in SOD_COLUMNS:
        raise UserError(
            f"--metric {args.metric} is left empty by --metrics binary: choose iou, dice or mae, "
            "or run with --metrics all"
        )
    auto = args.shard == "auto" and not args.merge
    shard = shard_from_env() if auto else (0, 1) if args.merge else args.shard
    out = Path(args.out)
    if "{" in args.out and not args.merge:
        try:
            out = Path(args.out.format(k=shard[0], n=shard[1]))
        except (KeyError, IndexError, ValueError):
            raise UserError(
                f"--out {args.out}: only {{k}} and {{n}} (the shard) may stand in braces"
            ) from None
    if not args.no_plot:
        refuse_plot_over_foreign_file(out)
    if args.merge:
        df = merge_shards(
            args.merge, out, allow_partial=args.allow_partial, overwrite=args.overwrite
        )
    else:
        cfg = config_of(args, shard)
        if args.threads:
            torch.set_num_threads(args.threads)
        else:  # a core left to the rest of the machine (basam_lite.threads)
            use_quiet_threads()
        t0 = time.perf_counter()
        df = run_sweep(
            cfg,
            out,
            on_error=args.on_error,
            overwrite=args.overwrite,
            extend=getattr(args, "extend", False),
            random_weights=getattr(args, "random_weights", False),
        )
        if getattr(args, "header", None):  # the main job names each axis's output
            print(args.header)
        print(f"{len(df)} rows in {out} ({time.perf_counter() - t0:.0f} s this run)")
        errors = df[df["status"] == "error"].drop_duplicates("image")
        for _, row in errors.iterrows():
            print(f"skipped (error): {row['image']}: {row['reason']}")
    for line in skipped_summary(df):
        print(line)
    summary = summary_table(df, metric=args.metric)
    if summary.empty:
        print(f"no scored row in {out}: nothing to average (see the lines above)")
    else:
        with pd.option_context("display.width", 160, "display.max_columns", 30):
            print(f"mean {args.metric} per variant x resolution:")
            print(summary.round(3).to_string())
    if not args.no_plot and (df["status"] == "ok").any():
        png = plot_path(out)
        plot_sweep(df, png, metric=args.metric)
        print(f"plot: {png}")
    return 0

"""The model card written beside a trained tiny checkpoint (``python -m basam_lite train``).

:func:`write_card` builds the Markdown from the run's config, command, checkpoint hash, timing,
final metrics and :mod:`basam_lite.evaluation` tables; nothing here trains or scores a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .datasets import SceneMix
from .evaluation import breakdown
from .models import TINY
from .outputs import write_text_atomic
from .provenance import machine

if TYPE_CHECKING:
    from .train_config import TrainConfig


def breakdown_lines(table: pd.DataFrame | None) -> list[str]:
    if table is None or table.empty:
        return []
    lines = ["Where it fails (same scenes, by target shape and by difficulty tag):", ""]
    grid = "token_grid_iou" in table
    columns = {"iou_box": "box IoU", "iou_center": "centre-point IoU"}
    if grid:
        columns["token_grid_iou"] = "mask at token resolution"
    lines += [
        "| by | group | scenes | " + " | ".join(columns.values()) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for (by, group), row in breakdown(table).iterrows():
        values = " | ".join(f"{row[c]:.3f}" for c in columns)
        lines.append(f"| {by} | {group} | {int(row['scenes'])} | {values} |")
    if grid:
        lines += [
            "",
            '"Mask at token resolution" is no model\'s score: it is the IoU of each target '
            "redrawn from its coverage of every token cell, upsampled bilinearly like SAM's "
            f"low-res masks (`basam_lite.metrics.grid_mask_iou`), mean "
            f"{table['token_grid_iou'].mean():.3f} over these scenes: what a model right at "
            "every token and blind below it would score.",
        ]
    return [*lines, ""]


def stress_lines(stress: dict[str, float] | None, n_eval: int) -> list[str]:
    if not stress:
        return []
    return [
        f"Stress test, {n_eval} held-out `SceneMix.hard()` scenes ({SceneMix.hard().summary()}): "
        f"box {stress['iou_box']:.4f}, centre point {stress['iou_center']:.4f}, one random "
        f"click {stress['iou_point']:.4f}.",
        "",
    ]


def precision_line(precision: str) -> str:
    """The card's line naming the precision a run trained at (what reproduces its weights)."""
    what = {
        "bf16": "the image encoder under bfloat16 autocast, everything else in float32",
        "fp32": "everything in float32",
    }[precision]
    return (
        f"Precision: {precision} ({what}). Reproduce it with `--precision {precision}`: the "
        "other precision rounds differently and does not give these weights."
    )


def model_lines(cfg: TrainConfig) -> tuple[str, str, str]:
    """(what the model is, its architecture paragraph, its storage paragraph) for the card."""
    if cfg.model != "tiny":
        return _registered_model_lines(cfg)
    spec = cfg.spec
    spec_name = "`basam_lite.models.TINY`" if spec == TINY else f"`{spec}`"
    grid = spec.grid
    n_params = spec.parameter_count()
    architecture = (
        f"`segment_anything` classes: ViT encoder {spec.img_size} px, {spec.patch_size} px patches "
        f"({grid} x {grid} tokens), embed dim {spec.embed_dim}, {spec.depth} blocks, "
        f"{spec.num_heads} heads, window {spec.window_size}, global blocks "
        f"{list(spec.global_attn_indexes)}, neck {spec.prompt_dim} channels; SAM prompt encoder; "
        f"two-way mask decoder (width {spec.prompt_dim}, depth {spec.decoder_depth}, "
        f"{spec.decoder_heads} heads, MLP {spec.decoder_mlp_dim}; per-pixel mask features of "
        f"{spec.prompt_dim // 8} channels at {4 * grid} x {4 * grid}). "
        f"{n_params / 1e6:.2f} M parameters."
    )
    storage = (
        "A plain `state_dict` with every floating tensor stored in **float16** (fp32 would be "
        f"about {n_params * 4 / 1e6:.0f} MB); `basam_lite.build_sam` casts it back to float32 on "
        "load. No BA-SAM keys (the paper preset adds no parameter)."
    )
    return f"A tiny SAM ({spec_name})", architecture, storage


def _registered_model_lines(cfg: TrainConfig) -> tuple[str, str, str]:
    """:func:`model_lines` for a registered model of another family (``sam2-tiny``)."""
    from .encoders import FAMILIES
    from .encoders.specs import MODELS, meta_model, model_spec

    entry = MODELS[cfg.model]
    spec = model_spec(cfg.model)
    n_params = sum(p.numel() for p in meta_model(cfg.model).parameters())
    grids = sorted({spec.base_side // s for s in _strides(cfg.model)}, reverse=True)
    architecture = (
        f"`{cfg.model}` ({FAMILIES[entry.family].title}, built from the family's own classes): "
        f"{len(spec.heads)} attention blocks, heads {list(spec.heads)}, widths "
        f"{list(spec.dims)}, windows {list(spec.windows)} (0: global), global blocks "
        f"{list(spec.global_blocks)} seeing {spec.base_keys[spec.global_blocks[0]]} keys at "
        f"{spec.base_side} px; token grids per stage at {spec.base_side} px: "
        + ", ".join(f"{g} x {g}" for g in grids)
        + f". {n_params / 1e6:.2f} M parameters."
    )
    container = "a plain `state_dict`" if entry.family != "sam2" else "`{'model': state_dict}`"
    storage = (
        f"{container} with every floating tensor stored in **float16** (fp32 would be about "
        f"{n_params * 4 / 1e6:.0f} MB); `basam_lite.build_sam({cfg.model!r}, checkpoint=...)` "
        "casts it back to float32 on load. No BA-SAM keys (the paper preset adds no parameter)."
    )
    return f"A tiny {FAMILIES[entry.family].title}, `{cfg.model}`,", architecture, storage


def _strides(name: str) -> list[int]:
    """Pixels per token of each attention block's query grid at the base size."""
    from .encoders import adapter_for
    from .encoders.specs import meta_model

    adapter = adapter_for(meta_model(name))
    base = adapter.base_size()
    return [
        base[0] // adapter.block_grids(b.index, base).query[0] for b in adapter.attention_blocks()
    ]


def origin(cfg: TrainConfig) -> str:
    """How the weights began: "trained from scratch" or continued from ``cfg.init``."""
    if cfg.init is None:
        return "trained from scratch"
    return (
        f"initialised from `{cfg.init}` and trained {cfg.steps} steps more (a fresh optimiser "
        "and learning-rate schedule)"
    )


def write_card(
    path: Path,
    cfg: TrainConfig,
    command: str,
    sha256: str,
    seconds: float,
    metrics: dict[str, float],
    n_eval: int,
    history: list[dict[str, float]],
    note: str = "",
    table: pd.DataFrame | None = None,
    stress: dict[str, float] | None = None,
    run_dir: Path | None = None,
) -> None:
    """The model card beside the checkpoint (the sha256 line is checked by the tests).
    ``table``: :func:`evaluation_table`'s rows, for the per-shape and per-difficulty means;
    ``stress``: the mean IoUs on the same number of ``SceneMix.hard()`` scenes; ``run_dir``:
    the folder its resumable state lives in (default ``runs/train-NAME``)."""
    patch = f"`apply_basam(sam, BASAMConfig.preset({cfg.preset!r}))`"
    if cfg.preset == "vanilla":
        trained_with = "plain SAM attention (no BA-SAM patch)"
    elif cfg.preset_from == 0:
        trained_with = f"{patch} active in every step"
    else:
        trained_with = (
            f"plain SAM attention for steps 0-{cfg.preset_from} and {patch} active from step "
            f"{cfg.preset_from} to {cfg.steps}: a branch of the vanilla run (same seed, data, "
            f"schedule and weights up to step {cfg.preset_from}), the way BA-SAM fine-tunes a "
            f"trained SAM, with the same total number of steps as the vanilla checkpoint"
        )
    intro, architecture, storage = model_lines(cfg)
    last = history[-50:]
    loss = float(np.mean([h["loss"] for h in last])) if last else float("nan")
    tiou = float(np.mean([h["train_iou"] for h in last])) if last else float("nan")
    bce_text = "BCE"
    if cfg.pos_weight_max > 1:
        bce_text = (
            "BCE (object pixels weighted by the batch's background/object ratio, capped at "
            f"{cfg.pos_weight_max:g})"
        )
    lines = [
        f"# {cfg.name}",
        "",
        f"{intro} {origin(cfg)} at {cfg.size} px with {trained_with}.",
        "",
        "## Architecture",
        architecture,
        "",
        "## Storage",
        storage,
        "",
        f"sha256: `{sha256}`",
        "",
        "## Training data",
        f"Procedural scenes (`ProceduralScenes(split='train', seed={cfg.seed}, "
        f"mix={cfg.mix!r})`: {SceneMix.named(cfg.mix).summary()}), rendered on the fly at "
        f"{cfg.size} px, single scale: scene index = step x batch + b, never repeated. Up to "
        f"{cfg.masks_per_image} prompts per image, each with its own object's visible mask: the "
        "scene's target and other objects covering at least "
        f"{cfg.min_object_area:.1%} of the image. A prompt is a box (55%, edges jittered by up "
        f"to {cfg.box_jitter:.0%} of the side), 1-3 positive clicks (30%), or a box and a click "
        "(15%). Single-mask output (`multimask_output=False`) for every prompt.",
        "",
        "## Recipe",
        f"AdamW (lr {cfg.lr:g}, weight decay {cfg.weight_decay:g}), {cfg.warmup} warmup steps, "
        f"cosine decay to {cfg.min_lr_ratio:g} x lr, batch {cfg.batch_size}, {cfg.steps} steps, "
        f"gradient clip {cfg.grad_clip:g}; loss = {bce_text} + dice on the logits upsampled to "
        f"{cfg.size} px + {cfg.iou_loss_weight:g} x MSE of the IoU head; all parts trained"
        + (", the image encoder under bfloat16 autocast" if cfg.encoder_bf16 else "")
        + (
            ", the mask decoder run once for all of a step's prompts"
            if cfg.decoder_batched
            else ", the mask decoder run prompt by prompt"
        )
        + ". "
        + f"Seed {cfg.seed}, {cfg.threads} torch thread(s).",
        "",
        precision_line(cfg.precision),
        "",
        "## Reproduce",
        "```",
        command,
        "```",
        "Rerunning the command after an interruption resumes from "
        f"`{(run_dir or Path(f'runs/train-{cfg.name}')).as_posix()}/state.pt` (bit-exact with the "
        "same thread count).",
        "",
        f"Training wall time: {seconds / 60:.1f} min ({seconds:.0f} s of training steps"
        + (
            f", including the {cfg.preset_from} steps shared with the vanilla run"
            if cfg.preset != "vanilla" and cfg.preset_from
            else ""
        )
        + f") on {machine()}. {note}".rstrip(),
        "",
        "## Final metrics",
        f"Mean IoU (probability > 0.5) at {cfg.size} px on {n_eval} held-out scenes "
        f"(`ProceduralScenes(split='test', seed=0, mix={cfg.mix!r})`), the model as trained"
        + ("" if cfg.preset == "vanilla" else f" (preset {cfg.preset} applied)")
        + ":",
        "",
        "| prompt | mean IoU |",
        "|---|---|",
        f"| box | {metrics['iou_box']:.4f} |",
        f"| centre point | {metrics['iou_center']:.4f} |",
        f"| one random click | {metrics['iou_point']:.4f} |",
        "",
        *stress_lines(stress, n_eval),
        *breakdown_lines(table),
        f"Last 50 steps: training loss {loss:.4f}, training IoU {tiou:.4f}.",
        "",
    ]
    write_text_atomic(path, "\n".join(lines))

"""Train (or fine-tune) a tiny SAM on procedural scenes, resumable, with a model card.

``python -m basam_lite train --variant vanilla`` trains ``tiny-vanilla`` (plain SAM attention)
and ``--variant basam`` trains ``tiny-basam`` (the paper preset active during training); both at
256 px, single-scale. Rerunning the same command resumes from ``runs/train-NAME/state.pt``.
The checkpoint and its card go to ``runs/train-NAME/NAME.pt`` (or ``--out``); only
``--write-bundled`` replaces the package's own ``data/checkpoints/NAME.pt``. ``--precision auto``
(the default) runs the image encoder under bf16 autocast only where the CPU does bf16 natively
(:mod:`basam_lite.precision`), says which it picked, and records it in the state and on the card.
A state file holds tensors and plain values only and is read with ``weights_only=True``.
``--init tiny-vanilla --preset paper --steps 30`` fine-tunes instead; :func:`finetune` does the
same from Python (in memory, no files) for notebooks.

Recipe: batch of on-the-fly rendered training scenes (split "train", scene index = step * batch
+ b, so the data depend only on the seed and the step), one prompt per image (a box, 1-3 positive
clicks, or a box and a click), single-mask output, loss = BCE + dice on the logits upsampled to
the image, plus the IoU head's MSE against the true IoU; AdamW with linear warmup and cosine decay.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._pytree import tree_map
from tqdm.auto import tqdm

from .datasets import ProceduralScenes, Prompt, box_from_mask, random_points
from .datasets.procedural import MIX_NAMES, render_layers
from .decoding import decode_each, decode_prompts
from .encoders import adapter_for
from .encoders.specs import MODELS, load_model, meta_model
from .errors import UserError
from .evaluation import evaluate, evaluation_table, image_batch, mean_ious
from .model_card import write_card
from .models import TINY, build_sam, build_tiny_sam, load_safely, tiny_checkpoint_path
from .outputs import (
    hold_folder,
    is_model_card,
    is_torch_checkpoint,
    refuse_foreign,
    write_text_atomic,
)
from .patch import BASAMConfig, apply_basam, is_patched, set_attention_path
from .precision import PRECISIONS, resolve_precision
from .train_config import TrainConfig
from .training import (
    clipped_step,
    config_difference,
    is_weights_file,
    restore,
    save_state,
    schedule,
    warmup_cosine,
)

VARIANTS = {"vanilla": "vanilla", "basam": "paper"}
"""``--variant`` -> the preset active during training (vanilla = no patch)."""

_MAX_SCENES = 10**9  # the training stream is effectively infinite
FINETUNE_BATCH = 2
"""``--batch-size`` of ``train --dataset`` when it is not given (images per micro-batch)."""


@dataclass
class TrainResult:
    model: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    step: int = 0
    precision: str = ""  # "bf16" or "fp32": what the image encoder ran at
    precision_reason: str = ""  # why (asked for, auto's finding, or the resumed run's record)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to 1, then cosine down to ``min_lr_ratio`` at ``cfg.steps``."""
    return warmup_cosine(step, cfg.steps, cfg.warmup, cfg.min_lr_ratio)


def initial_model(cfg: TrainConfig) -> nn.Module:
    """Random ``cfg.model`` (seeded: the tiny SAM 1 of ``cfg.spec``, or a registered model
    such as ``sam2-tiny``) or the ``init`` model (unpatched: see :func:`sync_preset`)."""
    if cfg.init is None and cfg.model != "tiny":
        return load_model(cfg.model, seed=cfg.seed)
    if cfg.init is None:
        sam = build_tiny_sam(cfg.spec, seed=cfg.seed)
    elif is_weights_file(cfg.init):  # weights of the architecture ``cfg.model``
        sam = build_sam(cfg.model, checkpoint=cfg.init)
    else:
        sam = build_sam(cfg.init)
    return sam


def sync_preset(sam: nn.Module, cfg: TrainConfig, step: int) -> None:
    """Apply ``cfg.preset`` once ``step`` reaches ``cfg.preset_from`` (zero-shot presets add no
    parameter, so the optimiser's state carries over unchanged)."""
    if cfg.preset != "vanilla" and step >= cfg.preset_from and not is_patched(sam):
        # The dense bias is tiny at 16 x 16 tokens, and with autograd it beats "auto"'s choice
        # (folded): a whole bf16 training step of 8 scenes took 0.52 s against 0.61 s (median
        # of 8, 1 thread, optimiser_step timed in alternation on both paths).
        apply_basam(sam, BASAMConfig.preset(cfg.preset).with_(path="dense"))


def training_prompt(mask: np.ndarray, rng: np.random.Generator, jitter: float) -> Prompt:
    """A box (55%), 1-3 clicks (30%) or a box and a click (15%) for an (H, W) bool ``mask``."""
    u = rng.random()
    box = None
    if u < 0.55 or u >= 0.85:
        box = box_from_mask(mask)
        side = np.array([box[2] - box[0] + 1, box[3] - box[1] + 1] * 2)
        box = box + rng.uniform(-jitter, jitter, size=4) * side
        h, w = mask.shape
        box = np.clip(box, 0, [w - 1, h - 1, w - 1, h - 1])
    if u >= 0.55:
        n = 1 if u >= 0.85 else int(rng.choice([1, 1, 2, 3]))
        coords, labels = random_points(mask, n, rng)
        return Prompt(coords, labels, box)
    return Prompt(box=box)


def dice_loss(logits: Tensor, target: Tensor) -> Tensor:
    p = logits.sigmoid().flatten(1)
    t = target.flatten(1)
    return (1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)).mean()


@dataclass
class TrainBatch:
    """One step's data: B (H, W, 3) uint8 ``images``; for image i, ``prompts[i][j]`` is paired
    with the (H, W) bool mask ``masks[i][j]`` of the object it points at."""

    images: list[np.ndarray]
    prompts: list[list[Prompt]]
    masks: list[list[np.ndarray]]
    names: list[str]  # the scenes' names, to find a batch's images again

    def pairs(self) -> Iterator[tuple[int, Prompt, np.ndarray]]:
        """(image index, prompt, its object's mask) for every prompt of the batch."""
        for i, (prompts, masks) in enumerate(zip(self.prompts, self.masks, strict=True)):
            for prompt, mask in zip(prompts, masks, strict=True):
                yield i, prompt, mask


def batch_loss(
    sam: nn.Module, batch: TrainBatch, cfg: TrainConfig
) -> tuple[Tensor, dict[str, float]]:
    """Total loss of one batch and its parts (bce, dice, iou_mse, train IoU)."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.encoder_bf16):
        adapter = adapter_for(sam)
        embeddings = adapter.encode(adapter.preprocess(image_batch(batch.images)))
    # the decoder is faster, and exact, in float32 (SAM 2's encoder output is a dict of lists)
    embeddings = tree_map(lambda t: t.float() if isinstance(t, Tensor) else t, embeddings)
    image_index, prompts, targets = zip(*batch.pairs(), strict=True)
    decode = decode_prompts if cfg.decoder_batched else decode_each
    low, iou_pred = decode(sam, embeddings, image_index, prompts)  # [N, 1, 4h, 4w], [N, 1]
    iou_pred = iou_pred[:, 0]
    logits = F.interpolate(low, size=targets[0].shape, mode="bilinear", align_corners=False)
    target = torch.from_numpy(np.stack(targets)).float()[:, None]
    # Plain BCE (pos_weight_max=1) first collapses to "all background" for ~200 steps, then dice
    # pulls it out; weighting object pixels avoids the collapse but learns far slower (measured:
    # box IoU 0.11 against 0.34 after 400 steps at lr 1e-3), so the weight is off by default.
    pos = target.mean().clamp(min=1e-4)
    pos_weight = ((1 - pos) / pos).clamp(1.0, cfg.pos_weight_max)
    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)
    dice = dice_loss(logits, target)
    with torch.no_grad():
        pred = logits > 0
        inter = (pred & (target > 0)).flatten(1).sum(1).float()
        union = (pred | (target > 0)).flatten(1).sum(1).float()
        iou = inter / union.clamp(min=1)
    iou_mse = F.mse_loss(iou_pred, iou)
    loss = bce + dice + cfg.iou_loss_weight * iou_mse
    parts = {
        "loss": float(loss.detach()),
        "bce": float(bce.detach()),
        "dice": float(dice.detach()),
        "iou_mse": float(iou_mse.detach()),
        "train_iou": float(iou.mean()),
    }
    return loss, parts


def scene_targets(
    ds: ProceduralScenes, index: int, cfg: TrainConfig, rng: np.random.Generator
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Scene ``index``'s image and up to ``cfg.masks_per_image`` object masks: its target
    first, then other objects (random order) whose visible area is large enough. Several
    objects of one image, each with its own prompt, are what teach the decoder to follow the
    prompt rather than segment the most salient object."""
    scene = ds.scene(index)
    image, labels = render_layers(scene, ds.size)
    target = scene.target
    min_px = cfg.min_object_area * labels.size
    visible_px = np.bincount(labels.ravel() + 1)[1:]  # labels run from -1 (background)
    others = [k for k, px in enumerate(visible_px) if k != target and px >= min_px]
    rng.shuffle(others)
    return image, [labels == k for k in [target, *others[: cfg.masks_per_image - 1]]]


def batch_at(ds: ProceduralScenes, step: int, cfg: TrainConfig) -> TrainBatch:
    """The training batch of ``step``: depends only on (seed, step)."""
    rng = np.random.default_rng([cfg.seed, step, 0x7A1])
    indices = [step * cfg.batch_size + b for b in range(cfg.batch_size)]
    scenes = [scene_targets(ds, i, cfg, rng) for i in indices]
    prompts = [[training_prompt(m, rng, cfg.box_jitter) for m in masks] for _, masks in scenes]
    return TrainBatch(
        images=[image for image, _ in scenes],
        prompts=prompts,
        masks=[masks for _, masks in scenes],
        names=[ds.name(i) for i in indices],
    )


def optimiser_step(
    sam: nn.Module, opt: torch.optim.Optimizer, batch: TrainBatch, cfg: TrainConfig
) -> dict[str, float]:
    """One training step on ``batch`` (loss, backward, gradient clip, ``opt`` step); returns
    the loss parts of :func:`batch_loss`."""
    loss, parts = batch_loss(sam, batch, cfg)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    clipped_step([p for p in sam.parameters() if p.requires_grad], opt, cfg.grad_clip)
    return parts


STATE_KEYS = ("config", "model", "optimizer", "scheduler", "step", "elapsed", "history")
"""What a training state file holds: tensors, numbers, strings, lists and dicts only."""


def load_state(source: Path) -> dict[str, object]:
    """A training state saved by :func:`train`, read with ``torch.load(weights_only=True)``:
    tensors and plain types only, so a crafted file can never run code. Anything else is
    refused with a :class:`~basam_lite.errors.UserError`."""
    if not source.is_file():
        raise UserError(f"training state {source} does not exist or is not a file")
    state = load_safely(
        source,
        "a training state",
        "a file holding them, even a state saved by an older basam_lite, is refused. Delete it "
        "to start over, or pass another --run-dir / --warm-start.",
    )
    missing = [k for k in STATE_KEYS if not isinstance(state, dict) or k not in state]
    if missing or not isinstance(state["config"], dict) or not isinstance(state["step"], int):
        raise UserError(
            f"{source} is not a basam_lite training state (missing or malformed: "
            f"{', '.join(missing) or 'config/step'}); delete it or pass another --run-dir"
        )
    return state


def train(
    cfg: TrainConfig,
    run_dir: str | os.PathLike | None = None,
    save_every: int = 50,
    stop_after: int | None = None,
    progress: bool = True,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    warm_start: str | os.PathLike | None = None,
) -> TrainResult:
    """Run (or resume) training. With ``run_dir`` the state (model, optimiser, step, elapsed
    time) is saved there every ``save_every`` steps and at the end, and a rerun with the same
    config resumes from it (bit-exact: the data depend only on seed and step). ``stop_after``
    stops after that many steps of this call (to test resuming). ``warm_start``: where
    ``run_dir`` holds no state yet, start from another run's state file instead, which must be
    the same computation: same config up to name/preset/preset_from, at a step before
    ``cfg.preset_from`` (a branch of a vanilla run). Returns the model (train mode off, preset
    still applied), the loss history and the total training seconds.

    ``cfg.precision="auto"`` resumes a saved run at the precision it recorded, and otherwise
    picks bf16 only where the CPU does it natively
    (:func:`~basam_lite.precision.resolve_precision`); the result and the saved state record
    the pick and why."""
    for name, value in (("save_every", save_every), ("stop_after", stop_after)):
        if value is None and name == "stop_after":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{name} must be a positive integer, got {value!r}")
    with torch_threads(cfg.threads):
        return _train(cfg, run_dir, save_every, stop_after, progress, on_step, warm_start)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch threads, then restore the caller's setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run_precision(
    cfg: TrainConfig, saved: dict[str, object] | None, source: Path | None
) -> tuple[str, str]:
    """("bf16" | "fp32", why) for ``cfg``: under "auto" a resumed (or warm-started) run keeps
    the precision its state recorded, else :func:`resolve_precision` decides."""
    if cfg.precision == "auto" and saved is not None and saved["precision"] in ("bf16", "fp32"):
        return str(saved["precision"]), f"auto: resumed at the precision {source} recorded"
    return resolve_precision(cfg.precision)


def _train(
    cfg: TrainConfig,
    run_dir: str | os.PathLike | None,
    save_every: int,
    stop_after: int | None,
    progress: bool,
    on_step: Callable[[int, dict[str, float]], None] | None,
    warm_start: str | os.PathLike | None,
) -> TrainResult:
    state_path = Path(run_dir) / "state.pt" if run_dir is not None else None
    source = state_path if state_path is not None and state_path.exists() else None
    if source is None and warm_start is not None:
        source = Path(warm_start)
    state = load_state(source) if source is not None else None  # before building anything
    saved = None if state is None else TrainConfig.completed(state["config"])  # type: ignore[arg-type]
    precision, why = run_precision(cfg, saved, source)
    cfg = replace(cfg, precision=precision)  # type: ignore[arg-type]
    sam = initial_model(cfg)
    _, opt, sched = schedule(sam, cfg.lr, cfg.weight_decay, lambda s: lr_factor(s, cfg))
    step, elapsed, history = 0, 0.0, []
    if state is not None and saved is not None:
        if source != state_path:
            free = ("name", "preset", "preset_from")
            same = all(saved[k] == v for k, v in cfg.describe().items() if k not in free)
            if not same or saved["preset"] != "vanilla" or state["step"] > cfg.preset_from:
                raise UserError(
                    f"{source} cannot seed this run: it must be a vanilla run of the same "
                    f"config, saved at a step <= preset_from={cfg.preset_from}"
                )
            saved = cfg.describe()
        if saved != cfg.describe():
            raise UserError(
                f"{source} was saved by a different config "
                f"({config_difference(saved, cfg.describe())}); delete {run_dir} to "
                "start over or pass another run directory"
            )
        restore(sam, opt, sched, state)
        step, elapsed, history = state["step"], state["elapsed"], state["history"]
    sync_preset(sam, cfg, step)

    def save() -> None:
        if state_path is None:
            return
        state = {
            "config": cfg.describe(),
            "model": sam.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "step": step,
            "elapsed": elapsed,
            "history": history,
            "precision_reason": why,
        }
        save_state(state, state_path)

    ds = ProceduralScenes(_MAX_SCENES, seed=cfg.seed, size=cfg.size, split="train", mix=cfg.mix)
    sam.train()
    bar = tqdm(
        total=cfg.steps,
        initial=step,
        disable=not progress,
        desc=f"{cfg.name} ({cfg.precision})",
        smoothing=0.05,
    )
    done_here = 0
    while step < cfg.steps and (stop_after is None or done_here < stop_after):
        t0, c0 = time.perf_counter(), time.process_time()
        sync_preset(sam, cfg, step)
        parts = optimiser_step(sam, opt, batch_at(ds, step, cfg), cfg)
        sched.step()
        step += 1
        done_here += 1
        wall = time.perf_counter() - t0
        elapsed += wall
        parts["step"] = step
        # the step's wall and CPU seconds: on a shared machine the CPU time is the stable one
        parts["wall_s"], parts["cpu_s"] = wall, time.process_time() - c0
        history.append(parts)
        if on_step is not None:
            on_step(step, parts)
        bar.update(1)
        bar.set_postfix(loss=f"{parts['loss']:.3f}", iou=f"{parts['train_iou']:.3f}")
        if step % save_every == 0:
            save()
    bar.close()
    save()
    if is_patched(sam):  # trained on the dense path; "auto" runs at any resolution
        set_attention_path(sam, "auto")
    sam.eval()
    return TrainResult(sam, history, elapsed, step, cfg.precision, why)


def finetune(
    init: str = "tiny-vanilla",
    preset: str = "paper",
    steps: int = 30,
    lr: float = 2e-4,
    seed: int = 0,
    progress: bool = True,
    **overrides: object,
) -> nn.Module:
    """Fine-tune ``init`` briefly at 256 px with ``preset`` active (in memory, nothing saved).

    A few dozen steps take well under a minute on two CPU cores. The returned model still has
    ``preset`` applied (``remove_basam`` undoes it)."""
    cfg = TrainConfig(
        name=f"{init}+{preset}",
        init=init,
        preset=preset,
        steps=steps,
        lr=lr,
        warmup=max(1, steps // 10),
        seed=seed,
        **overrides,  # type: ignore[arg-type]
    )
    return train(cfg, run_dir=None, progress=progress).model


def unsavable_keys(state: dict[str, Tensor], model: str = "tiny") -> list[str]:
    """Keys of a model state that the plain registered ``model`` (what ``build_sam(model,
    checkpoint=...)`` loads) lacks."""
    plain = build_tiny_sam() if model == "tiny" else meta_model(model)
    return sorted(set(state) - set(plain.state_dict()))


CHECKPOINT_CONTAINER: dict[str, str | None] = {"segment_anything": None, "sam2": "model"}
"""How a family's trained checkpoint is stored: a plain state dict (None) or inside a dict
under this key, as the family's own releases are (``sam2``: ``{"model": state_dict}``)."""


def check_savable(cfg: TrainConfig) -> None:
    """Refuse, before any training, a config whose trained model could not be saved as a
    loadable tiny checkpoint: a preset that adds parameters (learnable gain, the official
    rel-pos coefficient) or an architecture other than ``models.TINY``."""
    if cfg.model != "tiny":
        check_trainable(cfg)
        return
    named = cfg.init is not None and not is_weights_file(cfg.init)
    if named and not str(cfg.init).startswith("tiny"):
        raise UserError(
            f"--init {cfg.init}: only a tiny SAM (tiny, tiny-vanilla, tiny-basam or a tiny "
            ".pt file) can be fine-tuned and saved as a tiny checkpoint"
        )
    if cfg.init is None and cfg.spec != TINY:
        raise UserError(
            f"{cfg.name}: a model of spec {cfg.spec} cannot be saved as a tiny checkpoint "
            "(build_sam('tiny') loads basam_lite.models.TINY only); train it from Python with "
            "basam_lite.train.train instead"
        )
    sam = build_tiny_sam(cfg.spec)
    if cfg.preset != "vanilla":
        apply_basam(sam, BASAMConfig.preset(cfg.preset))
    extra = unsavable_keys(sam.state_dict())
    if extra:
        raise UserError(
            f"preset {cfg.preset!r} adds parameters a plain tiny SAM lacks ({', '.join(extra[:3])}"
            f"{', ...' if len(extra) > 3 else ''}), so the trained model could not be saved as a "
            "loadable tiny checkpoint: train with a zero-shot preset (vanilla, scale, bias, paper)"
        )


def continues_model(cfg: TrainConfig) -> bool:
    """Whether ``cfg.init`` holds weights of ``cfg.model``'s own architecture: a ``.pt`` file
    (read as that architecture) or a bundled model of it, so that training continues it."""
    if cfg.init is None:
        return False
    if is_weights_file(cfg.init):
        return True
    entry = MODELS.get(cfg.init)
    return entry is not None and entry.bundled and entry.architecture == cfg.model


def check_trainable(cfg: TrainConfig) -> None:
    """Refuse, before any training, a registered model other than ``tiny`` that cannot be
    trained here: an ``init`` that is not its own architecture (:func:`continues_model`), a
    family whose checkpoint layout is not known
    (:data:`CHECKPOINT_CONTAINER`), a preset that adds
    parameters, or a model whose float16 checkpoint would not stay under 10 MB."""
    if cfg.init is not None and not continues_model(cfg):
        bundled = [n for n in MODELS if continues_model(replace(cfg, init=n))]
        raise UserError(
            f"--init {cfg.init}: with --model {cfg.model} give a .pt file of a {cfg.model} or a "
            f"bundled {cfg.model} ({', '.join(bundled) or 'none is bundled'})"
        )
    entry = MODELS[cfg.model]
    model = meta_model(cfg.model)
    if entry.family not in CHECKPOINT_CONTAINER or entry.load is None:
        raise UserError(
            f"--model {cfg.model}: the {entry.family} family cannot be trained here yet (no "
            "checkpoint layout for it in basam_lite.train.CHECKPOINT_CONTAINER); train tiny or "
            "sam2-tiny"
        )
    mb = 2 * sum(p.numel() for p in model.parameters()) / 1e6
    if mb > 10:
        raise UserError(
            f"--model {cfg.model} has {mb / 2:.1f} M parameters: its float16 checkpoint "
            f"({mb:.0f} MB) would exceed the project's 10 MB file limit"
        )
    if cfg.preset != "vanilla":
        patched = load_model(cfg.model)
        apply_basam(patched, BASAMConfig.preset(cfg.preset))
        extra = unsavable_keys(patched.state_dict(), cfg.model)
        if extra:
            raise UserError(
                f"preset {cfg.preset!r} adds parameters ({', '.join(extra[:3])}): train with a "
                "zero-shot preset (vanilla, scale, bias, paper)"
            )


def save_half(sam: nn.Module, path: Path, model: str = "tiny") -> str:
    """Save ``sam``'s state_dict with floating tensors in fp16 (atomically), in the layout
    :data:`CHECKPOINT_CONTAINER` gives its family; returns the file's sha256."""
    import hashlib

    state = sam.state_dict()
    extra = unsavable_keys(state, model)
    if extra:
        raise UserError(
            f"the trained model has keys a plain {model} lacks ({extra[:3]}): its preset adds "
            f"parameters, so it cannot be saved as a loadable checkpoint"
        )
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    key = CHECKPOINT_CONTAINER[MODELS[model].family]
    save_state(half if key is None else {key: half}, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--variant",
        choices=tuple(VARIANTS),
        default="vanilla",
        help="vanilla (plain attention) or basam (paper preset while training)",
    )
    p.add_argument(
        "--preset",
        default=None,
        help="override the preset active in training (vanilla/scale/bias/paper)",
    )
    p.add_argument(
        "--model",
        default="tiny",
        help="architecture trained from scratch: tiny (the tiny SAM 1, default) or sam2-tiny "
        "(the tiny SAM 2: Hiera from the sam2 package); default name tiny-sam2-VARIANT",
    )
    p.add_argument("--init", default=None, help="fine-tune from this model name or .pt file")
    p.add_argument("--name", default=None, help="checkpoint name (default tiny-VARIANT)")
    p.add_argument(
        "--steps", type=int, default=TrainConfig.steps, help=f"default {TrainConfig.steps}"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=TrainConfig.batch_size,
        help=f"scenes per step (default {TrainConfig.batch_size}; with --dataset, images per "
        f"micro-batch, default {FINETUNE_BATCH})",
    )
    lr_help = f"default {TrainConfig.lr:g} (1e-4 with --init)"
    p.add_argument("--lr", type=float, default=None, help=lr_help)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument("--mix", choices=MIX_NAMES, default="standard", help="training scene mix")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="image encoder precision: bf16 autocast or fp32; auto (default) picks bf16 only "
        "where the CPU does bf16 natively (AVX512-BF16, AMX-BF16, Arm BF16) and fp32 elsewhere, "
        "and says which; a resumed run keeps the precision it recorded",
    )
    p.add_argument("--run-dir", default=None, help="resume state folder (default runs/train-NAME)")
    p.add_argument(
        "--out",
        default=None,
        help="checkpoint path, .pt (default RUN_DIR/NAME.pt; its card beside it as .md)",
    )
    p.add_argument(
        "--write-bundled",
        action="store_true",
        help="write the checkpoint and card into the package's data/checkpoints/NAME.pt, "
        "replacing a shipped model of that name (never done without this flag)",
    )
    p.add_argument(
        "--save-every", type=int, default=50, help="steps between saved states (default 50)"
    )
    p.add_argument(
        "--eval-n", type=int, default=200, help="held-out scenes for the card (default 200)"
    )
    p.add_argument(
        "--preset-from",
        type=int,
        default=0,
        help="step at which the preset is switched on (before it: plain attention)",
    )
    p.add_argument(
        "--warm-start",
        default=None,
        help="state file of a vanilla run of the same config at step <= --preset-from: "
        "skips recomputing those steps (identical computation)",
    )
    p.add_argument(
        "--per-prompt-decoder",
        action="store_true",
        help="run the mask decoder once per prompt, as before batching (same result up to "
        "float rounding, 1.2x slower): reproduces checkpoints trained that way bit for bit",
    )
    p.add_argument("--card-note", default="", help="sentence added to the card's timing line")
    p.add_argument(
        "--time-steps",
        type=int,
        default=None,
        metavar="N",
        help="train nothing: time N interleaved training steps of the recipe, of the recipe "
        "with the encoder in fp32 and with the decoder run per prompt (same batch), and print "
        "the medians and their ratios",
    )
    p.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)
    from .finetune import add_arguments as add_finetune_arguments

    add_finetune_arguments(p)  # --dataset and the options of fine-tuning on it


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse counts that are not positive before anything is built."""
    counts = {
        "--steps": args.steps,
        "--batch-size": args.batch_size,
        "--save-every": args.save_every,
        "--eval-n": args.eval_n,
        "--threads": args.threads,
    }
    if args.lr is not None and not args.lr > 0:  # nan and inf are refused by the CLI itself
        raise UserError(f"--lr must be a positive learning rate such as 1e-4, got {args.lr}")
    if args.warmup is not None and args.warmup < 0:
        raise UserError(f"--warmup must be >= 0, got {args.warmup}")
    for flag, value in counts.items():
        if value < 1:
            raise UserError(f"{flag} must be a positive integer, got {value}")
    if args.preset_from < 0:
        raise UserError(f"--preset-from must be >= 0, got {args.preset_from}")


def bundled_dir() -> Path:
    """The package's ``data/checkpoints`` folder, where the shipped tiny SAMs live."""
    return tiny_checkpoint_path("x").parent


def output_path(args: argparse.Namespace, cfg: TrainConfig, run_dir: Path) -> Path:
    """Where ``train`` writes the checkpoint: ``--out``, ``RUN_DIR/NAME.pt``, or with
    ``--write-bundled`` the package's ``data/checkpoints/NAME.pt``; refused up front when it
    would replace a shipped file without the flag, or is not a ``.pt`` file path."""
    if args.write_bundled:
        if args.out:
            raise UserError("--write-bundled writes data/checkpoints/NAME.pt: drop --out")
        return tiny_checkpoint_path(cfg.name)
    out = Path(args.out) if args.out else run_dir / f"{cfg.name}.pt"
    if out.suffix != ".pt":
        raise UserError(f"--out {out}: give a .pt file path (its card is written beside it)")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder: give a .pt file path")
    if out.resolve().parent == bundled_dir().resolve():
        raise UserError(
            f"--out {out} is inside the package's bundled checkpoints ({bundled_dir()}): pass "
            "--write-bundled to replace a shipped model deliberately, or choose another path"
        )
    refuse_foreign(out, is_torch_checkpoint, "a checkpoint", "choose another --out")
    card = out.with_suffix(".md")
    refuse_foreign(card, is_model_card, "a model card", "move it, or choose another --out")
    return out


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    if args.model not in MODELS:
        raise UserError(f"--model {args.model!r}: choose one of {', '.join(MODELS)}")
    stem = "tiny" if args.model == "tiny" else f"tiny-{MODELS[args.model].family}"
    name = args.name or (f"{stem}-{args.variant}" if args.init is None else "tiny-finetuned")
    preset = args.preset or VARIANTS[args.variant]
    lr = args.lr if args.lr is not None else (TrainConfig.lr if args.init is None else 1e-4)
    warmup = args.warmup if args.warmup is not None else min(50, max(1, args.steps // 10))
    return TrainConfig(
        name=name,
        model=args.model,
        preset=preset,
        init=args.init,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=lr,
        warmup=warmup,
        seed=args.seed,
        mix=args.mix,
        threads=args.threads,
        preset_from=args.preset_from,
        decoder_batched=not args.per_prompt_decoder,
        precision=args.precision,
    )


def reproducing_argv() -> list[str]:
    """This process's ``train`` arguments without those that do not change the result."""
    import sys

    argv = sys.argv[1:]
    if argv and argv[0] == "train":
        argv = argv[1:]
    out, skip = [], False
    valued = ("--warm-start", "--card-note", "--stop-after", "--precision")
    for a in argv:
        if skip:
            skip = False
            continue
        if a in valued:
            skip = True
            continue
        if a.startswith(tuple(f"{v}=" for v in valued)) or a == "--write-bundled":
            continue
        out.append(a)
    return out


def reproduce_command(cfg: TrainConfig, argv: list[str]) -> str:
    """The card's command: ``argv`` (from :func:`reproducing_argv`) with the precision the run
    used appended, so that it reproduces the run on any machine."""
    import shlex

    args = [*argv, "--precision", cfg.precision]
    return "python -m basam_lite train " + " ".join(shlex.quote(a) for a in args)


def step_times(cfg: TrainConfig, repeats: int) -> dict[str, float]:
    """Median seconds of one :func:`optimiser_step` on ``cfg``'s first batch for ``cfg`` at
    its resolved precision ("recipe"), for the same step at the other precision (image encoder
    under bf16 autocast or in fp32), and with the mask decoder run prompt by prompt instead of
    batched; measured in alternation so that all three see the same machine load. Keys:
    ``recipe_s``, ``bf16_encoder_s`` or ``fp32_encoder_s`` (the other precision),
    ``per_prompt_decoder_s``, each variant's ``*_over_recipe`` ratio, and ``recipe_bf16``
    (1.0 where the recipe ran bf16)."""
    precision, _ = resolve_precision(cfg.precision)
    recipe = replace(cfg, precision=precision)  # type: ignore[arg-type]
    other = "fp32" if precision == "bf16" else "bf16"
    variants = {
        "recipe": recipe,
        f"{other}_encoder": replace(recipe, precision=other),  # type: ignore[arg-type]
        "per_prompt_decoder": replace(recipe, decoder_batched=False),
    }
    runs = {}
    with torch_threads(cfg.threads):
        scenes = ProceduralScenes(_MAX_SCENES, seed=cfg.seed, split="train", mix=cfg.mix)
        batch = batch_at(scenes, 0, cfg)
        for label, run_cfg in variants.items():
            sam = initial_model(run_cfg).train()
            sync_preset(sam, run_cfg, 0)
            runs[label] = (sam, torch.optim.AdamW(sam.parameters(), lr=1e-6), run_cfg)
        times: dict[str, list[float]] = {label: [] for label in runs}
        for i in range(repeats + 1):
            for label, (sam, opt, run_cfg) in runs.items():
                t0 = time.perf_counter()
                optimiser_step(sam, opt, batch, run_cfg)
                if i:  # the first round warms up
                    times[label].append(time.perf_counter() - t0)
    medians = {f"{k}_s": float(np.median(v)) for k, v in times.items()}
    ratios = {
        f"{k}_over_recipe": medians[f"{k}_s"] / medians["recipe_s"]
        for k in variants
        if k != "recipe"
    }
    return {**medians, **ratios, "recipe_bf16": float(precision == "bf16")}


def print_step_times(cfg: TrainConfig, repeats: int) -> None:
    """``train --time-steps N``: both precisions and both decoder paths, side by side."""
    precision, why = resolve_precision(cfg.precision)
    times = step_times(cfg, repeats)
    other = "fp32" if precision == "bf16" else "bf16"
    print(f"precision: {precision} ({why})")
    print(
        f"{cfg.name} training step (batch {cfg.batch_size}, {cfg.threads} thread(s), median "
        f"of {repeats}, side by side): recipe ({precision} encoder) {times['recipe_s']:.3f} s; "
        f"{other} encoder {times[f'{other}_encoder_s']:.3f} s "
        f"({times[f'{other}_encoder_over_recipe']:.2f}x); prompt-by-prompt decoder "
        f"{times['per_prompt_decoder_s']:.3f} s ({times['per_prompt_decoder_over_recipe']:.2f}x)"
    )


def planned_precision(
    cfg: TrainConfig, run_dir: Path | None, warm_start: str | os.PathLike | None
) -> tuple[str, str]:
    """The precision :func:`train` will run ``cfg`` at, and why: a resumed (or warm-started)
    run's recorded precision under "auto", else :func:`resolve_precision`'s choice."""
    state_path = run_dir / "state.pt" if run_dir is not None else None
    source = state_path if state_path is not None and state_path.exists() else None
    if source is None and warm_start is not None:
        source = Path(warm_start)
    saved = None
    if cfg.precision == "auto" and source is not None:
        saved = TrainConfig.completed(load_state(source)["config"])  # type: ignore[arg-type]
    return run_precision(cfg, saved, source)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "dataset", None) is not None:  # fine-tuning on a dataset
        from .finetune import run as run_finetune

        if args.steps != TrainConfig.steps:
            raise UserError(
                "--steps counts procedural training steps: with --dataset give --epochs"
            )
        if args.variant != "vanilla":
            raise UserError("--variant names a procedural run: with --dataset give --preset")
        if args.batch_size == TrainConfig.batch_size:  # the procedural default: 2 images here
            args.batch_size = FINETUNE_BATCH
        return run_finetune(args)
    check_arguments(args)
    cfg = config_from_args(args)
    if args.time_steps is not None:
        if args.time_steps < 1:
            raise UserError(f"--time-steps must be >= 1, got {args.time_steps}")
        print_step_times(cfg, args.time_steps)
        return 0
    run_dir = Path(args.run_dir or f"runs/train-{cfg.name}")
    out = output_path(args, cfg, run_dir)
    check_savable(cfg)
    precision, why = planned_precision(cfg, run_dir, args.warm_start)  # refuses unsafe states
    lock = hold_folder(run_dir)  # one writer per run folder, held until this function returns
    print(f"precision: {precision} ({why})")
    result = train(
        cfg,
        run_dir=run_dir,
        save_every=args.save_every,
        stop_after=args.stop_after,
        warm_start=args.warm_start,
    )
    cfg = replace(cfg, precision=result.precision)  # type: ignore[arg-type]
    if result.step < cfg.steps:
        print(f"stopped at step {result.step}/{cfg.steps}; rerun the same command to resume")
        return 0
    sha = save_half(result.model, out, cfg.model)
    # Evaluate the saved (fp16 -> fp32) weights, i.e. exactly what build_sam loads.
    sam = build_sam(cfg.model, checkpoint=out)
    if cfg.preset != "vanilla":
        apply_basam(sam, BASAMConfig.preset(cfg.preset))
    with torch_threads(cfg.threads):  # the card's numbers, computed as in training
        table = evaluation_table(sam, n=args.eval_n, mix=cfg.mix)
        stress = evaluate(sam, n=args.eval_n, mix="hard") if cfg.mix != "hard" else None
    metrics = mean_ious(table)
    command = reproduce_command(cfg, reproducing_argv())
    note = args.card_note
    if args.warm_start:
        note += (
            f" This run was started from `{args.warm_start}` (--warm-start: the vanilla run's "
            f"state at step {cfg.preset_from}, the same computation as the command's own first "
            f"{cfg.preset_from} steps)."
        )
    write_card(
        out.with_suffix(".md"),
        cfg,
        command,
        sha,
        result.seconds,
        metrics,
        args.eval_n,
        result.history,
        note=note.strip(),
        table=table,
        stress=stress,
        run_dir=run_dir,
    )
    metrics_json = json.dumps({**metrics, "stress": stress, "precision": cfg.precision}, indent=2)
    write_text_atomic(run_dir / "metrics.json", metrics_json)
    print(f"saved {out} ({out.stat().st_size / 1e6:.1f} MB, sha256 {sha[:12]}...)")
    print("held-out IoU at", cfg.size, "px:", json.dumps(metrics))
    if stress:
        print("stress test (hard mix):", json.dumps(stress))
    lock.release()
    return 0

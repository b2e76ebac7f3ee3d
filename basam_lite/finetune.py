"""Fine-tune a SAM (a real checkpoint, or a tiny one) with BA-SAM active on a dataset.

``python -m basam_lite train --dataset SPEC --init vit_b --checkpoint sam_vit_b_01ec64.pth
--size 512 --tune decoder`` fine-tunes on any dataset :func:`basam_lite.datasets.open_dataset`
opens (a folder, DIS5K, DUTS, ISIC 2016, COD10K, COCO, or procedural scenes), with the BA-SAM
preset ``--preset`` (default ``paper``) active in training and at the size ``--size``.

What trains (``--tune``), by parameter role (:func:`parameter_roles`):

- ``full``: every parameter (image encoder, mask decoder, prompt encoder);
- ``decoder``: the mask decoder only;
- ``basam``: BA-SAM's own parameters only: the learnable mask gain of each global block (presets
  with the ALiBi mask, ``learnable_gain`` switched on) or the official code's rel-pos
  coefficient (``official``);
- ``lora``: LoRA adapters (``peft``) on the ``qkv`` projection of the global-attention blocks
  (``--lora-blocks all``: of every block), rank ``--lora-rank``; merged into the weights on save.

Data: the dataset's images are split once, seeded, into a training and a held-out validation
part (``--val-fraction``); the test split of a benchmark is another ``--dataset`` that training
never opens (``sweep`` it afterwards). Each image is resized to fit ``size`` (SAM's own
longest-side resize), its mask with it; prompts come from the mask as the sweep makes them
(``box``, ``point`` = centre point, ``click`` = seeded random click). Loss: BCE + dice on the
logits upsampled to the resized frame, plus the IoU head's MSE. AdamW, linear warmup and cosine
decay over all optimiser steps, gradient accumulation (``--accumulate``), gradient clipping.
After each epoch the validation IoU is measured; the epoch with the best one is what is saved
(never a test split's).

State: ``RUN_DIR/state.pt`` (tensors and plain values, read with ``weights_only=True``) every
``--save-every`` optimiser steps and at each epoch's end; rerunning the same command resumes and
gives bit-identical weights (data order and prompts depend only on the seed and the epoch).
``RUN_DIR/best.pt`` holds the best epoch's weights. The result, ``NAME.pth``, is a plain
state_dict of the model's own architecture (LoRA merged; BA-SAM's learned parameters, which a
plain SAM lacks, go to ``NAME.basam.pt`` beside it), with a model card ``NAME.md``: load it with
``build_sam(model, checkpoint=...)``, or ``sweep --model vit_b --checkpoint NAME.pth``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .datasets import Prompt, Sample, open_dataset, prompt_for
from .decoding import decode_prompts
from .errors import UserError
from .models import (
    CHECKPOINT_ENV,
    MODEL_NAMES,
    OFFICIAL_NAMES,
    build_sam,
    check_checkpoint,
    load_safely,
)
from .outputs import (
    hold_folder,
    is_model_card,
    is_torch_checkpoint,
    refuse_foreign,
    write_text_atomic,
)
from .patch import BASAMConfig, apply_basam
from .patch_state import parameter_names as basam_parameter_names
from .precision import PRECISIONS, resolve_precision
from .resolution import base_size, set_input_size
from .run_identity import file_sha256
from .sizes import fit_image
from .training import (
    clipped_step,
    config_difference,
    is_weights_file,
    restore,
    save_state,
    schedule,
    warmup_cosine,
)

TUNE_MODES = ("full", "decoder", "basam", "lora")
"""``--tune``: which parameter roles train (see :data:`TRAINED_ROLES`)."""
ROLES = ("image_encoder", "basam", "lora", "mask_decoder", "prompt_encoder")
"""The roles a parameter can have (:func:`parameter_roles`)."""
TRAINED_ROLES: dict[str, tuple[str, ...]] = {
    "full": ("image_encoder", "basam", "mask_decoder", "prompt_encoder"),
    "decoder": ("mask_decoder",),
    "basam": ("basam",),
    "lora": ("lora",),
}
PROMPTS = {"box": "box", "point": "center", "click": "point"}
"""The sweep's prompt names -> :func:`basam_lite.datasets.prompt_for` kinds (as in the sweep)."""
LORA_BLOCKS = ("global", "all")
STATE_KEYS = ("config", "model", "optimizer", "scheduler", "epoch", "step", "history", "best")
SCALE_NOTE = (
    "Scale: a run of this command on a few images and a few epochs shows that the pipeline "
    "works (loss falls, weights move, the file loads); it is not evidence that BA-SAM fine-tuning "
    "helps. The paper's setting trains on thousands of images for tens of epochs on GPUs."
)


@dataclass
class FinetuneConfig:
    """One fine-tuning run (every field is recorded in the state; a resumed run must match).

    ``model``: an official name (``vit_b``, ``vit_l``, ``vit_h``, whose weights come from
    ``checkpoint``) or a tiny one (``tiny``, ``tiny-vanilla``, ``tiny-basam``; ``checkpoint``
    may then be a tiny ``.pt``). ``size``: the training input side (None: the model's base).
    ``prompts``: sweep prompt names, one training prompt each per image. ``limit``: the first N
    images of the dataset. ``accumulate``: micro-batches per optimiser step.
    """

    model: str = "vit_b"
    checkpoint: str | None = None
    dataset: str = ""
    size: int | None = None
    tune: str = "decoder"
    preset: str = "paper"
    epochs: int = 10
    batch_size: int = 2
    accumulate: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup: int = 0
    grad_clip: float = 1.0
    val_fraction: float = 0.2
    prompts: tuple[str, ...] = ("box",)
    seed: int = 0
    precision: str = "auto"
    device: str = "cpu"
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_blocks: str = "global"
    limit: int | None = None
    random_weights: bool = False
    name: str = "finetuned"
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.model not in MODEL_NAMES:
            raise UserError(f"unknown model {self.model!r}: choose {', '.join(MODEL_NAMES)}")
        for name, allowed in (("tune", TUNE_MODES), ("lora_blocks", LORA_BLOCKS)):
            if getattr(self, name) not in allowed:
                raise UserError(
                    f"--{name.replace('_', '-')} {getattr(self, name)!r}: choose "
                    f"{', '.join(allowed)}"
                )
        if self.precision not in PRECISIONS:
            raise UserError(f"--precision {self.precision!r}: choose {', '.join(PRECISIONS)}")
        for p in self.prompts:
            if p not in PROMPTS:
                raise UserError(f"unknown prompt {p!r}: choose {', '.join(PROMPTS)}")
        for name in ("epochs", "batch_size", "accumulate", "lora_rank"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {value!r}")
        if self.warmup < 0:
            raise UserError(f"--warmup must be >= 0, got {self.warmup}")
        if not 0 < self.val_fraction < 1:
            raise UserError(f"--val-fraction {self.val_fraction}: give a fraction in (0, 1)")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"--lr {self.lr}: give a positive learning rate")
        if self.limit is not None and self.limit < 2:
            raise UserError(f"--limit {self.limit}: fine-tuning needs at least 2 images")
        if self.size is not None and (self.size < 16 or self.size % 16):
            raise UserError(f"--size {self.size}: give a positive multiple of 16")
        preset = BASAMConfig.preset(self.preset)  # raises on an unknown name
        if self.tune == "basam" and basam_trainable(preset) is None:
            raise UserError(
                f"--tune basam: preset {self.preset!r} has no parameters of its own to train: "
                "use paper, bias, paper_base (learnable mask gain) or official (rel-pos "
                "coefficient)"
            )
        try:
            torch.device(self.device)
        except RuntimeError:
            raise UserError(f"unknown device {self.device!r}: use cpu, cuda or cuda:N") from None

    def describe(self) -> dict[str, object]:
        d = asdict(self)
        d["prompts"] = list(self.prompts)
        d.pop("threads")  # does not change the numbers
        return d


def basam_trainable(preset: BASAMConfig) -> BASAMConfig | None:
    """The preset with its own parameters switched on (the ALiBi mask's gain learnable), or
    None when it has none to train (``vanilla``, ``scale``)."""
    if preset.bias == "alibi2d":
        return preset.with_(learnable_gain=True)
    if preset.bias == "official_relpos":
        return preset
    return None


# ---------------------------------------------------------------- parameters by role


def parameter_role(name: str) -> str:
    """The role of a parameter of a segment_anything SAM (BA-SAM-patched, LoRA-injected) by
    its name: ``lora``, ``basam``, ``image_encoder``, ``mask_decoder`` or ``prompt_encoder``.
    Another family plugs in through its encoder adapter's own naming (its image encoder's
    prefix); BA-SAM's and LoRA's names are the same for every family."""
    leaf = name.rsplit(".", 1)[-1]
    if "lora_" in name:
        return "lora"
    if leaf in basam_parameter_names():
        return "basam"
    for role in ("image_encoder", "mask_decoder", "prompt_encoder"):
        if name.startswith(role + "."):
            return role
    raise ValueError(f"parameter {name!r} has no known role")


def parameter_roles(model: nn.Module) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """``model``'s named parameters grouped by :func:`parameter_role`."""
    roles: dict[str, list[tuple[str, nn.Parameter]]] = {r: [] for r in ROLES}
    for name, p in model.named_parameters():
        roles[parameter_role(name)].append((name, p))
    return roles


def set_trainable(model: nn.Module, tune: str) -> dict[str, int]:
    """Switch ``requires_grad`` on for the roles ``tune`` trains and off for every other
    parameter; returns the trainable parameter count per role."""
    trained = TRAINED_ROLES[tune]
    counts: dict[str, int] = {}
    for role, params in parameter_roles(model).items():
        for _, p in params:
            p.requires_grad_(role in trained)
        if role in trained:
            counts[role] = sum(p.numel() for _, p in params)
    if not sum(counts.values()):
        raise UserError(f"--tune {tune}: the model has no parameter of role {', '.join(trained)}")
    return counts


def lora_targets(sam: nn.Module, blocks: str) -> list[str]:
    """Module names LoRA wraps: the ``qkv`` of the global-attention blocks (``blocks="all"``:
    of every block)."""
    return [
        f"image_encoder.blocks.{i}.attn.qkv"
        for i, b in enumerate(sam.image_encoder.blocks)
        if blocks == "all" or b.window_size == 0
    ]


def add_lora(sam: nn.Module, cfg: FinetuneConfig) -> list[str]:
    """Inject LoRA adapters (``peft``) into :func:`lora_targets`; returns the targets."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:  # pragma: no cover - peft is a dependency
        raise UserError("--tune lora needs the peft package: pip install 'peft==0.21.2'") from None
    targets = lora_targets(sam, cfg.lora_blocks)
    config = LoraConfig(
        r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, target_modules=targets, lora_dropout=0.0
    )
    inject_adapter_in_model(config, sam)
    return targets


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA adapter into its base layer (W + B A * alpha / r) and put the base layer
    back in its place: a plain model again, whose state_dict a plain SAM loads."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())
    return model


# ---------------------------------------------------------------- data


@dataclass
class Item:
    """One training image at the run's size: ``image`` (h, w, 3) uint8 fit inside size x size,
    ``mask`` (h, w) bool, one prompt per prompt kind in that frame."""

    image: np.ndarray
    mask: np.ndarray
    prompts: list[Prompt]
    name: str


def prepare(sample: Sample, size: int, prompts: Sequence[str], seed: int) -> Item:
    """``sample`` resized to fit ``size`` (SAM's longest-side resize), its mask with it
    (nearest), and its prompts made from the original mask as the sweep makes them, then
    scaled into the resized frame."""
    from PIL import Image

    image = fit_image(sample.image, (size, size))
    h, w = image.shape[:2]
    mask = np.array(Image.fromarray(sample.mask).resize((w, h), Image.Resampling.NEAREST))
    made = [prompt_for(sample, PROMPTS[p], seed).scaled(sample.hw, (h, w)) for p in prompts]
    return Item(image, mask.astype(bool), made, sample.name)


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) image indices: a seeded permutation, ``round(n * fraction)`` (at
    least 1) held out."""
    n_val = max(1, round(n * val_fraction))
    if n_val >= n:
        raise UserError(
            f"{n} image(s) and --val-fraction {val_fraction}: nothing left to train on; give "
            "more images or a smaller fraction"
        )
    order = np.random.default_rng([seed, 0x5A1]).permutation(n)
    return sorted(int(i) for i in order[n_val:]), sorted(int(i) for i in order[:n_val])


def epoch_batches(train: Sequence[int], epoch: int, cfg: FinetuneConfig) -> list[list[list[int]]]:
    """The epoch's optimiser steps, each a list of micro-batches of image indices (the order
    depends only on the seed and the epoch; the last step may hold fewer micro-batches)."""
    order = [
        train[i] for i in np.random.default_rng([cfg.seed, epoch, 0xE9]).permutation(len(train))
    ]
    micro = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    return [micro[i : i + cfg.accumulate] for i in range(0, len(micro), cfg.accumulate)]


# ---------------------------------------------------------------- model


def check_model_file(model: str, checkpoint: str | None) -> None:
    """One line for a checkpoint that does not fit ``model`` (another family, another size, a
    corrupt download), before anything is built or written."""
    if checkpoint is None:
        return
    if model in OFFICIAL_NAMES or model == "tiny":
        check_checkpoint(model if model in OFFICIAL_NAMES else "tiny", checkpoint)
        return
    raise UserError(
        f"--checkpoint with --init {model}: {model} brings its own weights; give --init tiny "
        "to load a tiny .pt, or an official model"
    )


def initial_model(cfg: FinetuneConfig) -> tuple[nn.Module, list[str]]:
    """The model to fine-tune, at ``cfg.size``, with the preset (made trainable for ``--tune
    basam``) applied and LoRA injected for ``--tune lora``; returns it and the LoRA targets."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # random weights (--random-weights) and LoRA's init
        if cfg.checkpoint is None:
            sam = build_sam(cfg.model)
        else:
            sam = build_sam(cfg.model if cfg.model in OFFICIAL_NAMES else "tiny", cfg.checkpoint)
        size = cfg.size or base_size(sam.image_encoder)[0]
        set_input_size(sam, size)
        preset = BASAMConfig.preset(cfg.preset)
        if cfg.tune == "basam":
            preset = basam_trainable(preset)  # type: ignore[assignment]
        if cfg.preset != "vanilla" or cfg.tune == "basam":
            apply_basam(sam, preset)
        targets = add_lora(sam, cfg) if cfg.tune == "lora" else []
    return sam.to(cfg.device), targets


def dice_loss(logits: Tensor, target: Tensor) -> Tensor:
    """1 - (2 |p t| + 1) / (|p| + |t| + 1) with p = sigmoid(logits), per mask, averaged."""
    p = logits.sigmoid().flatten(1)
    t = target.flatten(1)
    return (1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)).mean()


def autocast(cfg: FinetuneConfig, precision: str):
    """bf16 autocast of the image encoder where ``precision`` is bf16, else nothing."""
    if precision != "bf16":
        return nullcontext()
    return torch.autocast(torch.device(cfg.device).type, dtype=torch.bfloat16)


def forward(
    sam: nn.Module, items: Sequence[Item], cfg: FinetuneConfig, precision: str
) -> tuple[list[Tensor], Tensor, list[Tensor]]:
    """Logits of every (image, prompt) pair at its image's resized frame, the predicted IoUs,
    and the target masks (float)."""
    device = torch.device(cfg.device)
    batch = torch.stack(
        [
            sam.preprocess(torch.from_numpy(it.image).permute(2, 0, 1).float().to(device))
            for it in items
        ]
    )
    with autocast(cfg, precision):
        embeddings = sam.image_encoder(batch)
    embeddings = embeddings.float()
    index = [i for i, it in enumerate(items) for _ in it.prompts]
    prompts = [p for it in items for p in it.prompts]
    low, iou_pred = decode_prompts(sam, embeddings, index, prompts)
    side = sam.image_encoder.img_size
    up = F.interpolate(low, size=(side, side), mode="bilinear", align_corners=False)
    logits, targets = [], []
    for n, i in enumerate(index):
        h, w = items[i].mask.shape
        logits.append(up[n, 0, :h, :w])
        targets.append(torch.from_numpy(items[i].mask).float().to(device))
    return logits, iou_pred[:, 0], targets


def loss_of(
    sam: nn.Module, items: Sequence[Item], cfg: FinetuneConfig, precision: str
) -> tuple[Tensor, dict[str, float]]:
    """BCE + dice + the IoU head's MSE over the micro-batch's prompts, and its parts."""
    logits, iou_pred, targets = forward(sam, items, cfg, precision)
    bce = torch.stack(
        [F.binary_cross_entropy_with_logits(lg, t) for lg, t in zip(logits, targets, strict=True)]
    ).mean()
    dice = torch.stack(
        [dice_loss(lg[None], t[None]) for lg, t in zip(logits, targets, strict=True)]
    ).mean()
    with torch.no_grad():
        iou = torch.stack([mask_iou(lg, t) for lg, t in zip(logits, targets, strict=True)])
    iou_mse = F.mse_loss(iou_pred, iou)
    loss = bce + dice + iou_mse
    return loss, {
        "loss": float(loss.detach()),
        "bce": float(bce.detach()),
        "dice": float(dice.detach()),
        "train_iou": float(iou.mean()),
    }


def mask_iou(logits: Tensor, target: Tensor) -> Tensor:
    """|pred & gt| / |pred | gt| with pred = logits > 0 (1 when both are empty)."""
    pred, gt = logits > 0, target > 0.5
    union = (pred | gt).sum()
    one = torch.ones((), device=union.device)
    return torch.where(union > 0, (pred & gt).sum() / union.clamp(min=1), one)


@torch.no_grad()
def validate(sam: nn.Module, items: Sequence[Item], cfg: FinetuneConfig, precision: str) -> float:
    """Mean IoU of every (validation image, prompt) pair."""
    was = sam.training
    sam.eval()
    ious = []
    for i in range(0, len(items), cfg.batch_size):
        logits, _, targets = forward(sam, items[i : i + cfg.batch_size], cfg, precision)
        ious += [float(mask_iou(lg, t)) for lg, t in zip(logits, targets, strict=True)]
    sam.train(was)
    return float(np.mean(ious))


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup over ``warmup`` steps, then cosine from 1 to 0.02 at ``total``."""
    return warmup_cosine(step, total, warmup, 0.02)


# ---------------------------------------------------------------- the run


@dataclass
class FinetuneResult:
    model: nn.Module
    history: list[dict[str, float]]
    best: dict[str, object]
    epoch: int
    step: int
    precision: str
    trainable: dict[str, int]
    lora_targets: list[str]
    split: dict[str, int]
    seconds: float


def load_state(path: Path) -> dict[str, object]:
    """A fine-tuning state (``weights_only=True``: tensors and plain values only)."""
    state = load_safely(
        path, "a fine-tuning state", "delete it to start over, or pass another --run-dir."
    )
    if not isinstance(state, dict) or any(k not in state for k in STATE_KEYS):
        raise UserError(
            f"{path} is not a basam_lite fine-tuning state: delete it or pass another --run-dir"
        )
    return state


def open_items(cfg: FinetuneConfig, size: int) -> tuple[list[Item], list[Item]]:
    """The (train, validation) items of ``cfg.dataset`` at ``size``; a bad dataset is one line."""
    try:
        ds = open_dataset(cfg.dataset, seed=cfg.seed, size=size)
    except (ValueError, OSError) as e:
        if isinstance(e, UserError):
            raise
        raise UserError(f"--dataset {cfg.dataset}: {str(e).splitlines()[0]}") from None
    n = len(ds) if cfg.limit is None else min(cfg.limit, len(ds))
    if n < 2:
        raise UserError(
            f"--dataset {cfg.dataset} holds {len(ds)} image(s): fine-tuning needs at least 2"
        )
    train_idx, val_idx = split_indices(n, cfg.val_fraction, cfg.seed)
    try:
        items = {i: prepare(ds[i], size, cfg.prompts, cfg.seed) for i in range(n)}
    except (ValueError, OSError) as e:
        if isinstance(e, UserError):
            raise
        raise UserError(f"--dataset {cfg.dataset}: {str(e).splitlines()[0]}") from None
    return [items[i] for i in train_idx], [items[i] for i in val_idx]


def finetune(
    cfg: FinetuneConfig,
    run_dir: str | os.PathLike | None = None,
    *,
    save_every: int = 50,
    stop_after: int | None = None,
    progress: bool = True,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    hold: Callable[[], None] | None = None,
) -> FinetuneResult:
    """Run (or resume from ``run_dir/state.pt``) a fine-tuning; returns the model with the
    best epoch's weights loaded (LoRA still injected, BA-SAM applied). ``stop_after``: stop
    after that many optimiser steps of this call (to test resuming). ``run_dir`` has one
    writer: a second run into it is refused once the inputs are checked; ``hold`` takes the
    folder's lock instead of this call (for a caller that goes on writing into it)."""
    check_model_file(cfg.model, cfg.checkpoint)
    state_path = Path(run_dir) / "state.pt" if run_dir is not None else None
    best_path = Path(run_dir) / "best.pt" if run_dir is not None else None
    precision, why = resolve_precision(cfg.precision, cfg.device)
    sam, targets = initial_model(cfg)
    size = sam.image_encoder.img_size
    trainable = set_trainable(sam, cfg.tune)
    train_items, val_items = open_items(cfg, size)
    # One writer per run folder: taken once everything is checked (a refusal writes nothing)
    # and before the saved state is read; held until this call returns, or by ``hold``'s caller.
    held = None
    if run_dir is not None:
        if hold is not None:
            hold()
        else:
            held = hold_folder(run_dir)
    try:
        return _run(cfg, state_path, best_path, precision, why, sam, targets, trainable,
                    train_items, val_items, save_every, stop_after, progress, on_step)  # fmt: skip
    finally:
        if held is not None:
            held.release()


def _run(
    cfg: FinetuneConfig,
    state_path: Path | None,
    best_path: Path | None,
    precision: str,
    why: str,
    sam: nn.Module,
    targets: list[str],
    trainable: dict[str, int],
    train_items: list,
    val_items: list,
    save_every: int,
    stop_after: int | None,
    progress: bool,
    on_step: Callable[[int, dict[str, float]], None] | None,
) -> FinetuneResult:
    """:func:`finetune` once its inputs are checked and its run folder is held."""
    state = load_state(state_path) if state_path is not None and state_path.exists() else None
    if state is not None and state["config"] != cfg.describe():
        differ = config_difference(state["config"], cfg.describe())  # type: ignore[arg-type]
        raise UserError(
            f"{state_path} was saved by another run ({differ}): delete {state_path.parent} or "
            "pass another --run-dir"
        )
    if state is not None:
        precision = str(state["precision"])
    steps_per_epoch = len(epoch_batches([i for i in range(len(train_items))], 0, cfg))
    total = steps_per_epoch * cfg.epochs
    params, opt, sched = schedule(
        sam, cfg.lr, cfg.weight_decay, lambda s: lr_factor(s, total, cfg.warmup)
    )
    epoch, step, history = 0, 0, []
    best: dict[str, object] = {"epoch": -1, "val_iou": -1.0}
    elapsed = 0.0
    if state is not None:
        restore(sam, opt, sched, state)
        epoch, step = int(state["epoch"]), int(state["step"])  # type: ignore[arg-type]
        history, best = list(state["history"]), dict(state["best"])  # type: ignore[arg-type]
        elapsed = float(state.get("elapsed", 0.0))  # type: ignore[union-attr]
    split = {"train": len(train_items), "validation": len(val_items)}

    def save() -> None:
        if state_path is None:
            return
        save_state(
            {
                "config": cfg.describe(),
                "model": sam.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "epoch": epoch,
                "step": step,
                "history": history,
                "best": best,
                "precision": precision,
                "precision_reason": why,
                "elapsed": elapsed,
            },
            state_path,
        )

    sam.train()
    done_here = 0
    while epoch < cfg.epochs and (stop_after is None or done_here < stop_after):
        plan = epoch_batches(list(range(len(train_items))), epoch, cfg)
        while step < len(plan) and (stop_after is None or done_here < stop_after):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            parts_sum: dict[str, float] = {}
            micro = plan[step]
            for batch in micro:
                loss, parts = loss_of(sam, [train_items[i] for i in batch], cfg, precision)
                (loss / len(micro)).backward()
                for k, v in parts.items():
                    parts_sum[k] = parts_sum.get(k, 0.0) + v / len(micro)
            clipped_step(params, opt, cfg.grad_clip)
            sched.step()
            step += 1
            done_here += 1
            elapsed += time.perf_counter() - t0
            record = {**parts_sum, "epoch": epoch, "step": step}
            history.append(record)
            if on_step is not None:
                on_step(len(history), record)
            if progress:
                print(
                    f"epoch {epoch + 1}/{cfg.epochs} step {step}/{len(plan)}: loss "
                    f"{parts_sum['loss']:.4f}, train IoU {parts_sum['train_iou']:.3f}",
                    file=sys.stderr,
                )
            if step % save_every == 0 and step < len(plan):
                save()
        if step < len(plan):
            break  # stopped inside the epoch: the state is saved below
        val = validate(sam, val_items, cfg, precision)
        history.append({"epoch": epoch, "val_iou": val})
        if progress:
            print(
                f"epoch {epoch + 1}: validation IoU {val:.4f} on {len(val_items)} image(s)",
                file=sys.stderr,
            )
        if val > float(best["val_iou"]):  # type: ignore[arg-type]
            best = {"epoch": epoch, "val_iou": val}
            if best_path is not None:
                save_state({k: v.detach().clone() for k, v in sam.state_dict().items()}, best_path)
            else:
                best["weights"] = {k: v.detach().clone() for k, v in sam.state_dict().items()}
        epoch, step = epoch + 1, 0
        save()
    save()
    finished = epoch >= cfg.epochs
    if finished:
        weights = (
            load_safely(best_path, "the best epoch's weights", "rerun the command")
            if best_path is not None
            else best.pop("weights")
        )
        sam.load_state_dict(weights)  # type: ignore[arg-type]
    sam.eval()
    return FinetuneResult(
        sam,
        history,
        {k: v for k, v in best.items() if k != "weights"},
        epoch,
        step,
        precision,
        trainable,
        targets,
        split,
        elapsed,
    )


def export_state(sam: nn.Module) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(the plain SAM state_dict, BA-SAM's own learned parameters) of a fine-tuned model: LoRA
    merged into the weights, BA-SAM's parameters taken out (a plain SAM has no such keys), the
    rel-pos tables as SAM had them (an ``official`` patch zeroes them only while applied)."""
    import copy

    from .patch import remove_basam

    model = merge_lora(copy.deepcopy(sam).cpu())
    learned = {
        k: v.detach().clone() for k, v in model.state_dict().items() if parameter_role(k) == "basam"
    }
    remove_basam(model)
    from .resolution import restore_input_size

    restore_input_size(model)
    return {k: v.detach().contiguous() for k, v in model.state_dict().items()}, learned


def started_from(cfg: FinetuneConfig) -> str:
    """What the run's weights were before it: the checkpoint file, the bundled tiny model, or
    seeded random weights."""
    if cfg.checkpoint is not None:
        return f"`{cfg.checkpoint}`"
    if cfg.model in OFFICIAL_NAMES:
        return f"seeded random {cfg.model} weights (--random-weights, seed {cfg.seed})"
    if cfg.model == "tiny":
        return "the random tiny SAM (build_tiny_sam, seed 0)"
    return f"the bundled {cfg.model} (data/checkpoints/{cfg.model}.pt)"


def is_card(path: Path) -> bool:
    """A card :func:`write_model_card` (or the procedural trainer) wrote."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read(65536)
    first = text.split("\n", 1)[0]
    ours = first.startswith("# ") and " fine-tuned with BA-SAM (" in first
    return (ours and "\n- weights: `" in text) or is_model_card(path)


def write_model_card(
    path: Path, cfg: FinetuneConfig, result: FinetuneResult, sha: str, command: str
) -> None:
    """A markdown card beside the checkpoint: the command, data split, what trained, the
    validation curve and the best epoch, precision, time, and the caveat about scale."""
    vals = [h for h in result.history if "val_iou" in h]
    lines = [
        f"# {cfg.name}: {cfg.model} fine-tuned with BA-SAM ({cfg.preset}) on {cfg.dataset}",
        "",
        f"- command: `{command}`",
        f"- weights: `{path.with_suffix('.pth').name}`, sha256 `{sha}`",
        f"- started from: {started_from(cfg)}",
        f"- input size: {cfg.size or 'the base size'} px; BA-SAM preset `{cfg.preset}` active in "
        "training and validation",
        f"- trained (--tune {cfg.tune}): "
        + ", ".join(f"{role} {n:,} parameters" for role, n in result.trainable.items())
        + (
            f"; LoRA rank {cfg.lora_rank} on {', '.join(result.lora_targets)} (merged into the "
            "weights on save)"
            if result.lora_targets
            else ""
        ),
        f"- data: {result.split['train']} training and {result.split['validation']} held-out "
        f"validation image(s) (seeded split, --val-fraction {cfg.val_fraction}); prompts "
        f"{', '.join(cfg.prompts)}; the best epoch is chosen on validation, never on a test split",
        f"- optimiser: AdamW lr {cfg.lr:g}, weight decay {cfg.weight_decay:g}, batch "
        f"{cfg.batch_size} x {cfg.accumulate} accumulated, cosine schedule, {cfg.epochs} epoch(s)",
        f"- precision: {result.precision} image encoder; device {cfg.device}; "
        f"{result.seconds:.0f} s of training",
        f"- best epoch: {int(result.best['epoch']) + 1} (validation IoU "
        f"{float(result.best['val_iou']):.4f})",
        "",
        "| epoch | validation IoU |",
        "|---|---|",
        *[f"| {int(h['epoch']) + 1} | {h['val_iou']:.4f} |" for h in vals],
        "",
        SCALE_NOTE,
        "",
    ]
    write_text_atomic(path, "\n".join(lines))


# ---------------------------------------------------------------- command line


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``train`` options of fine-tuning on a dataset (``--dataset`` switches them on)."""
    g = p.add_argument_group("fine-tuning on a dataset (with --dataset; basam_lite.finetune)")
    g.add_argument(
        "--dataset",
        default=None,
        help="fine-tune on this dataset spec (as the sweep's --dataset); --init names the model",
    )
    g.add_argument(
        "--checkpoint",
        default=None,
        help=f"weights of --init (an official .pth; default ${CHECKPOINT_ENV})",
    )
    g.add_argument(
        "--random-weights",
        action="store_true",
        help="fine-tune an official model from seeded random weights on purpose",
    )
    g.add_argument(
        "--size",
        type=int,
        default=None,
        help="training input side in px (default: the model's base size)",
    )
    g.add_argument(
        "--tune",
        choices=TUNE_MODES,
        default="decoder",
        help="full, decoder (default), basam (BA-SAM's own parameters) or lora",
    )
    g.add_argument("--epochs", type=int, default=10, help="default 10")
    g.add_argument(
        "--accumulate", type=int, default=1, help="micro-batches per optimiser step (default 1)"
    )
    g.add_argument(
        "--val-fraction", type=float, default=0.2, help="held-out validation share (default 0.2)"
    )
    g.add_argument(
        "--prompt",
        nargs="+",
        default=["box"],
        choices=tuple(PROMPTS),
        help="training prompts per image (default box)",
    )
    g.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    g.add_argument("--lora-rank", type=int, default=8, help="default 8")
    g.add_argument("--lora-alpha", type=float, default=16.0, help="default 16")
    g.add_argument(
        "--lora-blocks",
        choices=LORA_BLOCKS,
        default="global",
        help="qkv of the global blocks (default) or of all blocks",
    )
    g.add_argument("--limit", type=int, default=None, help="the first N images of --dataset")


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    """A :class:`FinetuneConfig` from the ``train`` command line (``--dataset`` given; ``train``
    has already refused its procedural-only options and set ``--batch-size``'s default)."""
    init = args.init or "vit_b"
    checkpoint = args.checkpoint
    if is_weights_file(init):  # a file: its model by name or shapes
        from .models import model_name_from_checkpoint

        checkpoint = init
        try:
            init = model_name_from_checkpoint(init)
        except (ValueError, OSError) as e:
            if isinstance(e, UserError):
                raise
            raise UserError(f"--init {checkpoint}: {str(e).splitlines()[0]}") from None
        if init not in OFFICIAL_NAMES:
            init = "tiny"
    if init not in MODEL_NAMES:
        raise UserError(f"--init {init}: give a model name ({', '.join(MODEL_NAMES)}) or a .pth")
    from .sweep import official_checkpoint

    checkpoint = official_checkpoint([init], checkpoint, args.random_weights)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: this torch sees no CUDA device; use --device cpu")
    return FinetuneConfig(
        model=init,
        checkpoint=checkpoint,
        dataset=args.dataset,
        size=args.size,
        tune=args.tune,
        preset=args.preset or "paper",
        epochs=args.epochs,
        batch_size=args.batch_size,
        accumulate=args.accumulate,
        lr=args.lr if args.lr is not None else 1e-4,
        warmup=args.warmup if args.warmup is not None else 0,
        val_fraction=args.val_fraction,
        prompts=tuple(args.prompt),
        seed=args.seed,
        precision=args.precision,
        device=args.device,
        lora_rank=args.lora_rank,
        lora_alpha=args.lora_alpha,
        lora_blocks=args.lora_blocks,
        limit=args.limit,
        random_weights=args.random_weights,
        name=args.name or f"{init}-{args.tune}-{args.preset or 'paper'}",
        threads=args.threads,
    )


def run(args: argparse.Namespace) -> int:
    """``python -m basam_lite train --dataset ...``: fine-tune, save the best epoch, card."""
    cfg = config_from_args(args)
    run_dir = Path(args.run_dir or f"runs/finetune-{cfg.name}")
    out = Path(args.out) if args.out else run_dir / f"{cfg.name}.pth"
    if out.suffix not in (".pth", ".pt") or out.is_dir():
        raise UserError(f"--out {out}: give a .pth file path (its card is written beside it)")
    bundled = Path(__file__).resolve().parents[1] / "data"
    if out.resolve().is_relative_to(bundled) or out.resolve().is_relative_to(
        bundled.parent / "results"
    ):
        raise UserError(f"--out {out} is inside the project's data or results: choose another path")
    how = "choose another --out"
    refuse_foreign(out, is_torch_checkpoint, "a checkpoint", how)
    refuse_foreign(out.with_suffix(".basam.pt"), is_torch_checkpoint, "a checkpoint", how)
    refuse_foreign(out.with_suffix(".md"), is_card, "a model card", "move it, or " + how)
    check_model_file(cfg.model, cfg.checkpoint)
    precision, why = resolve_precision(cfg.precision, cfg.device)
    print(
        f"fine-tuning {cfg.model} ({cfg.checkpoint or 'random weights'}) on {cfg.dataset} at "
        f"{cfg.size or 'base'} px, --tune {cfg.tune}, preset {cfg.preset}; precision "
        f"{precision} ({why})"
    )
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    held: list[object] = []  # the run folder's lock, held until the card is written
    result = finetune(
        cfg,
        run_dir,
        save_every=args.save_every,
        stop_after=args.stop_after,
        hold=lambda: held.append(hold_folder(run_dir)),
    )
    if result.epoch < cfg.epochs:
        print(
            f"stopped at epoch {result.epoch + 1}, step {result.step}; rerun the same command "
            "to resume"
        )
        return 0
    weights, learned = export_state(result.model)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_state(weights, out)
    if learned:
        save_state(learned, out.with_suffix(".basam.pt"))
    sha = file_sha256(out)
    argv = sys.argv[1:]
    command = "python -m basam_lite " + " ".join(shlex.quote(a) for a in argv)
    write_model_card(out.with_suffix(".md"), cfg, result, sha, command)
    metrics = {"best": result.best, "split": result.split, "precision": result.precision}
    write_text_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    print(
        f"saved {out} (best epoch {int(result.best['epoch']) + 1}, validation IoU "
        f"{float(result.best['val_iou']):.4f}; sha256 {sha[:12]}...)"
    )
    if learned:
        print(
            f"BA-SAM's learned parameters: {out.with_suffix('.basam.pt')} (a plain SAM has no "
            "place for them)"
        )
    if cfg.model in OFFICIAL_NAMES:
        print(
            f"evaluate: python -m basam_lite sweep --model {cfg.model} --checkpoint {out} "
            f"--dataset TEST_SPEC --out runs/{cfg.name}-sweep.csv"
        )
    return 0


__all__ = [
    "TUNE_MODES",
    "FinetuneConfig",
    "FinetuneResult",
    "export_state",
    "finetune",
    "merge_lora",
    "parameter_role",
    "parameter_roles",
    "set_trainable",
]

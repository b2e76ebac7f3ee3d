"""What the two training loops share: :func:`basam_lite.train.train` (procedural scenes, counted
in steps) and :func:`basam_lite.finetune.finetune` (a dataset, counted in epochs).

- :func:`warmup_cosine`: the learning-rate factor, linear warmup then cosine to a floor;
- :func:`schedule`: AdamW over the trainable parameters with that factor per optimiser step;
- :func:`restore`: model, optimiser and scheduler put back from a saved state;
- :func:`clipped_step`: gradient-norm clip, then the optimiser step;
- :func:`save_state`: ``torch.save`` written atomically (a crash never leaves half a file) and
  byte-reproducibly; a full disk is one line;
- :func:`config_difference`: which settings of a saved state differ from this run's;
- :func:`is_weights_file`: whether ``--init`` names a weights file or a registered model.

What each loop does around them (micro-batches and validation epochs, scene batches and a
preset switched on mid-run) stays in its own module.
"""

from __future__ import annotations

import errno
import math
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from .errors import UserError
from .outputs import atomic_write


def warmup_cosine(step: int, total: int, warmup: int, floor: float) -> float:
    r"""The learning-rate factor of optimiser step ``step`` (from 0) of ``total``: linear
    warmup :math:`(s + 1) / w` for :math:`s < w`, then
    :math:`f + (1 - f) \cdot \tfrac12 (1 + \cos(\pi \min(t, 1)))` with
    :math:`t = (s - w) / \max(1, T - w)`, from 1 down to the floor ``f`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def schedule(
    model: nn.Module, lr: float, weight_decay: float, factor: Callable[[int], float]
) -> tuple[list[nn.Parameter], torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """(the trainable parameters, AdamW over them, the scheduler that multiplies ``lr`` by
    ``factor(step)``). Call it after the trainable parameters are chosen."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return params, opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def restore(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    state: Mapping[str, object],
) -> None:
    """Put back ``state["model"]``, ``state["optimizer"]`` and ``state["scheduler"]`` (a state
    the loop saved, already checked to be this run's)."""
    model.load_state_dict(state["model"])  # type: ignore[arg-type]
    opt.load_state_dict(state["optimizer"])  # type: ignore[arg-type]
    sched.load_state_dict(state["scheduler"])  # type: ignore[arg-type]


def clipped_step(params: list[nn.Parameter], opt: torch.optim.Optimizer, clip: float) -> None:
    """Clip the gradients of ``params`` to a total norm of ``clip``, then step ``opt`` (the
    gradients are already accumulated)."""
    torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()


def save_state(obj: object, path: Path) -> None:
    """``torch.save(obj)`` to a temporary file beside ``path`` (its folder made), then renamed
    over ``path``.

    The archive is written through an open file, so torch names its root ``archive`` rather
    than after the temporary file: the same tensors give the same bytes (and sha256). A full
    disk (or quota) raises :class:`UserError` with the path; the temporary file is removed and
    whatever ``path`` held before is untouched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_write(path) as tmp, open(tmp, "wb") as f:
            torch.save(obj, f)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        kept = f"the earlier {path.name} is kept" if path.exists() else "nothing was written"
        raise UserError(
            f"no space left on the device to write {path} ({e.strerror}); {kept}: "
            "free some space and rerun"
        ) from None


def config_difference(saved: Mapping[str, object], now: Mapping[str, object]) -> str:
    """``"key: saved X, now Y; ..."`` for every setting of ``now`` that ``saved`` holds
    otherwise (empty when they agree)."""
    return "; ".join(
        f"{k}: saved {saved.get(k)!r}, now {v!r}" for k, v in now.items() if saved.get(k) != v
    )


def is_weights_file(init: str | Path) -> bool:
    """Whether an ``--init`` names a weights file (``.pt`` / ``.pth``) rather than a
    registered model."""
    return Path(init).suffix in (".pt", ".pth")

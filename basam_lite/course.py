"""The notebooks' model switch: one call near each notebook's top picks the model and the budget.

``course_model(MODEL)`` returns a :class:`CourseModel`: the SAM, what it is, the device it runs
on, and the :class:`Budget` (input sides, image counts) the notebook uses instead of hard-coded
sizes. ``MODEL`` is

- ``"tiny-vanilla"`` (the default): the bundled trained tiny SAM; offline, nothing downloaded;
- a real checkpoint's registry name (``"vit_b"``, ``"vit_l"``, ``"vit_h"``): fetched on first use
  through :func:`basam_lite.weights.fetch` (downloaded, verified, cached), then loaded;
- a local checkpoint file: loaded as it is (its model read from the file name or the shapes).

Every real checkpoint takes the same road: ``weights.fetch(MODEL) -> path`` then
``build_sam(name, path)``. A random-weight ViT-B written by :func:`write_random_checkpoint` and
passed as a path therefore runs exactly the code a downloaded checkpoint runs (tests use it).

Environment (CI switches every notebook without editing it; the first that is set wins):
``BASAM_COURSE_MODEL`` (a name or a path, as ``MODEL``), then ``BASAM_SAM_CHECKPOINT`` (a path).
``BASAM_COURSE_BUDGET`` forces a budget (``full``, ``cpu`` or ``test``).

The budget rule (:func:`budget_for`), stated once here and printed by each notebook:

- ``full``: a model whose base size is at most 256 px (the tiny ones), or any model on a GPU:
  sides ``base/2, base, 2 base`` (and ``4 base`` where a notebook asks for it), every image;
- ``cpu``: a real SAM (base 1024 px) on a CPU: sides ``base/4, base/2`` (256 and 512 px for
  ViT-B/L/H), at most 4 images per study. One encoder pass of a random-weight ViT-B on this
  project's 2-core machine, one thread (``scripts/time_real_sam.py``): 0.9 s at 256 px, 3.4 s at
  512 px, 20 s at 1024 px nearly idle; 3.3, 14.5 and 146 s under a load average of 10. The base
  size and above are left to a GPU;
- ``test``: the ``cpu`` rule cut for a test run: sides ``base/8, base/4`` (128 and 256 px), at
  most 2 images, and at most 2 training steps where a notebook trains (07's tiny fine-tunes: a
  test checks that the code runs, not what it learns).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .errors import UserError

__all__ = [
    "BUDGETS",
    "BUDGET_ENV",
    "MODEL_ENV",
    "Budget",
    "CourseModel",
    "budget_for",
    "course_model",
    "write_random_checkpoint",
]

MODEL_ENV = "BASAM_COURSE_MODEL"
BUDGET_ENV = "BASAM_COURSE_BUDGET"
DEFAULT_MODEL = "tiny-vanilla"
SMALL_BASE = 256  # models up to this base size run the full budget on a CPU


@dataclass(frozen=True)
class Budget:
    """How much a notebook computes with the model that runs.

    Attributes:
        name: ``"full"``, ``"cpu"`` or ``"test"``.
        factors: the input sides as fractions of the base size, ascending (``side = f * base``).
        images: at most this many images per study (``None``: every image the notebook lists).
        rule: the rule in words, for the notebook to print.
        train_steps: at most this many training steps where a notebook trains (``None``: the
            notebook's own number).
    """

    name: str
    factors: tuple[float, ...]
    images: int | None
    rule: str
    train_steps: int | None = None

    def sides(self, base: int, multiple: int = 16, *, extra: float | None = None) -> list[int]:
        """The input sides (px) for a model of base size ``base``: ``f * base`` for each factor,
        rounded down to ``multiple`` (the patch size). ``extra`` (e.g. ``4.0``) adds one larger
        factor, under the full budget only (a CPU run of a real SAM never goes above its base)."""
        factors = list(self.factors)
        if extra is not None and self.name == "full":
            factors.append(extra)
        return [max(multiple, int(f * base) // multiple * multiple) for f in factors]

    def take(self, n: int) -> int:
        """How many of ``n`` images a study uses under this budget."""
        return n if self.images is None else min(n, self.images)

    def steps(self, n: int) -> int:
        """How many of ``n`` training steps a notebook runs under this budget."""
        return n if self.train_steps is None else min(n, self.train_steps)


BUDGETS: dict[str, Budget] = {
    "full": Budget("full", (0.5, 1.0, 2.0), None, "full budget: sides base/2, base, 2 x base"),
    "cpu": Budget(
        "cpu",
        (0.25, 0.5),
        4,
        "a real SAM on a CPU: sides base/4 and base/2 (the base size and above take minutes "
        "per image there: use a GPU for them), at most 4 images per study",
    ),
    "test": Budget(
        "test",
        (0.125, 0.25),
        2,
        "test budget: sides base/8 and base/4, at most 2 images per study and 2 training steps",
        train_steps=2,
    ),
}


def budget_for(base: int, device: torch.device | str, forced: str | None = None) -> Budget:
    """The budget for a model of base size ``base`` on ``device`` (rule: module docstring)."""
    if forced:
        if forced not in BUDGETS:
            raise UserError(
                f"{BUDGET_ENV}={forced!r} is not a budget: choose one of {', '.join(BUDGETS)}"
            )
        return BUDGETS[forced]
    if base <= SMALL_BASE or torch.device(device).type == "cuda":
        return BUDGETS["full"]
    return BUDGETS["cpu"]


@dataclass
class CourseModel:
    """What :func:`course_model` returns (it unpacks as ``sam, name, budget``).

    Attributes:
        sam: the model, in eval mode, on ``device``.
        name: the architecture (``"tiny-vanilla"``, ``"vit_b"``, ...).
        description: where its weights came from, for the notebook to print.
        device: where it runs (the GPU when there is one, else the CPU).
        budget: the sizes and image counts the notebook uses.
        real: whether it is a real-size SAM (not one of the bundled tiny ones).
    """

    sam: nn.Module
    name: str
    description: str
    device: torch.device
    budget: Budget
    real: bool = field(default=False)

    def __iter__(self):
        return iter((self.sam, self.name, self.budget))

    def summary(self) -> str:
        """One paragraph: model, device, budget rule; what the notebook's numbers describe."""
        who = "a real-size SAM" if self.real else "the bundled tiny SAM (its numbers are not SAM's)"
        return (
            f"model: {self.description} ({who}); device: {self.device.type}; "
            f"budget: {self.budget.rule}"
        )


def _resolve(model: str) -> tuple[str, Path | None]:
    """(model name, checkpoint path) for ``model``, with the environment overrides applied: no
    path for a bundled tiny name, else a local file (fetched first for a registry name)."""
    from .models import TINY_NAMES, model_name_from_checkpoint
    from .weights import REGISTRY, fetch

    chosen = os.environ.get(MODEL_ENV) or os.environ.get("BASAM_SAM_CHECKPOINT") or model
    if chosen in TINY_NAMES:
        return chosen, None
    if chosen in REGISTRY and REGISTRY[chosen].family != "segment_anything":
        raise UserError(
            f"{chosen!r} is a {REGISTRY[chosen].family} checkpoint; the course runs "
            f"segment_anything models: {', '.join(TINY_NAMES)}, vit_b, vit_l, vit_h or a local "
            ".pth file (its notebooks use that package's predictor and encoder blocks; other "
            "families run in the sweep and capture: README, 'The SAM family')"
        )
    path = fetch(chosen)  # a registry name: cached or downloaded + verified; a path: as is
    name = chosen if chosen in REGISTRY else model_name_from_checkpoint(path)
    return name, path


def course_model(model: str = DEFAULT_MODEL, *, device: str | None = None) -> CourseModel:
    """The notebook's model and budget (module docstring: names, environment, budget rule).

    Args:
        model: ``"tiny-vanilla"`` (default), ``"tiny-basam"``, ``"tiny"``, ``"vit_b"`` /
            ``"vit_l"`` / ``"vit_h"`` (downloaded on first use) or a local checkpoint path.
            ``BASAM_COURSE_MODEL`` (then ``BASAM_SAM_CHECKPOINT``) overrides it.
        device: ``"cuda"`` or ``"cpu"``; default the GPU when there is one.
    """
    from .models import TINY_NAMES, build_sam
    from .resolution import base_size
    from .threads import use_quiet_threads

    use_quiet_threads()
    name, path = _resolve(model)
    if path is None:
        sam, description = build_sam(name), name
    else:  # a downloaded checkpoint and a local file take this same road
        sam, description = build_sam(name, path), f"{name} from {path}"
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    sam = sam.to(dev).eval()
    base = base_size(sam.image_encoder)[0]
    budget = budget_for(base, dev, os.environ.get(BUDGET_ENV) or None)
    return CourseModel(sam, name, description, dev, budget, real=name not in TINY_NAMES)


def write_random_checkpoint(name: str, path: str | os.PathLike, seed: int = 0) -> Path:
    """Save a random-weight ``name`` (``"vit_b"``, ...) state dict to ``path`` (atomically): a
    stand-in for the official file, to time and test the notebooks offline. Returns the path.

    ``segment_anything`` initialises some tensors to zero (the absolute position embedding, the
    relative-position tables, norm biases) and a trained checkpoint has none at zero, so every
    all-zero floating tensor is drawn from N(0, 0.02^2) here (the tiny model's rule): code that
    reads those tables (smoothness, rel-pos terms) then runs as it does on real weights.

    Name the file something other than the official ``sam_vit_b_01ec64.pth``: an official name
    makes :func:`basam_lite.models.build_sam` check the file's MD5 prefix, which random weights
    cannot match."""
    from .encoders.sam1_build import build_official

    target = Path(path)
    torch.manual_seed(seed)
    state = build_official(name).state_dict()
    for key, value in state.items():
        if value.is_floating_point() and not value.any():
            state[key] = torch.randn_like(value) * 0.02
    tmp = target.with_name(target.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(target)
    return target

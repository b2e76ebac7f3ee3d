"""The notebooks' model switch: one call near each notebook's top picks the model and the budget.

``course_model(MODEL)`` returns a :class:`CourseModel`: the SAM, what it is, the device it runs
on, and the :class:`Budget` (input sides, image counts) the notebook uses instead of hard-coded
sizes. ``MODEL`` is

- ``"tiny-vanilla"`` (the default): the bundled trained tiny SAM; offline, nothing downloaded
  (every bundled tiny model, ``tiny-sam2-vanilla`` included, is taken the same way);
- a real checkpoint's registry name of any family (``"vit_b"``, ``"sam2.1_hiera_tiny"``,
  ``"mobile_sam"``, ``"facebook/sam-vit-base"``; :func:`course_name` gives each family's rule):
  fetched on first use through :func:`basam_lite.weights.fetch` (downloaded, verified, cached),
  then loaded;
- a local checkpoint file of any family: loaded as it is (its family and architecture read from
  its keys and shapes, :func:`model_of_file`).

Every real checkpoint takes the same road: ``weights.fetch(MODEL) -> path`` then
``build_sam(name, path)``; every family then runs through its adapter
(:mod:`basam_lite.encoders`). A notebook section whose lesson reads ``segment_anything``'s own
internals (its position table, its decomposed rel-pos tables, the official code's patch) takes
its model from :meth:`CourseModel.sam1_for`, the stated rule: the chosen model when it is a
``segment_anything`` SAM, else the bundled tiny SAM 1, with one printed line saying so.

A random-weight model written by :func:`write_random_checkpoint` (ViT-B, SAM 2.1, MobileSAM, in
the family's released file layout) and passed as a path therefore runs exactly the code a
downloaded checkpoint runs (tests use it).

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
from typing import TYPE_CHECKING

import torch
from torch import nn

from .errors import UserError

if TYPE_CHECKING:
    from .weights import Checkpoint

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
        real: whether it is a real-size SAM (built for a base size above 256 px, SAM's 1024 px;
            not one of the tiny ones).
        family: its family's registry key (``"segment_anything"``, ``"sam2"``, ``"mobilesam"``,
            ``"hf"``): a notebook whose lesson reads one family's internals prints its rule for
            the others (:func:`family_rule`).
    """

    sam: nn.Module
    name: str
    description: str
    device: torch.device
    budget: Budget
    real: bool = field(default=False)
    family: str = "segment_anything"

    def __iter__(self):
        return iter((self.sam, self.name, self.budget))

    @property
    def heads(self) -> int:
        """Attention heads of the model's (first) global block, else of its last block: the
        heads BA-SAM's mask slopes are drawn for (any family)."""
        from .encoders.specs import spec_of

        return spec_of(self.sam, self.name).global_heads()

    @property
    def global_stride(self) -> int:
        """Pixels per token of the global blocks' grid (else the last block's): 16 for SAM 1,
        SAM 2 (its stage 3) and MobileSAM (its last stage)."""
        from .analysis import block_stride
        from .encoders import adapter_for

        adapter = adapter_for(self.sam)
        blocks = adapter.attention_blocks()
        index = next((b.index for b in blocks if b.is_global), blocks[-1].index)
        return block_stride(adapter, [index])

    @property
    def global_blocks(self) -> list[int]:
        """The blocks BA-SAM's ``blocks="global"`` patches: the global blocks, or every block
        where the family has none (MobileSAM), as :class:`~basam_lite.config.BASAMConfig`
        reads it."""
        from .encoders import adapter_for

        blocks = adapter_for(self.sam).attention_blocks()
        found = [b.index for b in blocks if b.is_global]
        return found or [b.index for b in blocks]

    def sam1_for(self, section: str, reads: str) -> tuple[nn.Module, str]:
        """(model, description) for a section whose lesson reads ``segment_anything``'s own
        internals (``reads``, e.g. ``"image_encoder.pos_embed"``): this model when it is a
        ``segment_anything`` SAM; else, by the course's rule, the bundled tiny SAM 1
        (``tiny-vanilla``), with one printed line saying so, so that the section's numbers
        describe the model that ran."""
        if self.family == "segment_anything":
            return self.sam, self.description
        return self._tiny_sam1(
            f"{section} reads segment_anything's {reads}, which {self.name} ({self.family}) "
            "does not have"
        )

    def global_for(self, section: str) -> CourseModel:
        """The course model for a notebook that studies the global blocks (rows that grow with
        the image): this one when its model has a global block; else (MobileSAM, every block
        windowed) the bundled tiny SAM 1 on the same device, with its own budget, after one
        printed line saying so."""
        from .encoders import adapter_for
        from .models import build_sam
        from .resolution import base_size

        if adapter_for(self.sam).global_blocks():
            return self
        print(
            f"{section} studies the global blocks, and {self.name} ({self.family}) has none "
            "(every block is windowed: no softmax row grows with the image, lambda = 1): it runs "
            "on the bundled tiny SAM 1, tiny-vanilla, and its numbers describe that model."
        )
        sam = build_sam("tiny-vanilla").to(self.device).eval()
        budget = budget_for(base_size(sam)[0], self.device, os.environ.get(BUDGET_ENV) or None)
        return CourseModel(sam, "tiny-vanilla", "tiny-vanilla", self.device, budget)

    def _tiny_sam1(self, why: str) -> tuple[nn.Module, str]:
        from .models import build_sam

        print(f"{why}: this section runs on the bundled tiny SAM 1, tiny-vanilla, and its "
              "numbers describe that model.")  # fmt: skip
        return build_sam("tiny-vanilla").to(self.device).eval(), "tiny-vanilla"

    def summary(self) -> str:
        """One paragraph: model, device, budget rule; what the notebook's numbers describe."""
        from .models import TINY_NAMES, is_tiny

        if self.real:
            who = "a real-size SAM"
        elif self.name in TINY_NAMES:
            who = "the bundled tiny SAM (its numbers are not SAM's)"
        elif is_tiny(self.name):
            who = f"the bundled tiny {self.family} model (its numbers are not SAM's)"
        else:
            who = f"a tiny {self.family} model (its numbers are not SAM's)"
        return (
            f"model: {self.description} ({who}); device: {self.device.type}; "
            f"budget: {self.budget.rule}"
        )


# The Hugging Face ids' names in the model registry (``basam_lite.encoders.specs.MODELS``).
_HF_MODELS = {"base": "hf-vit_b", "large": "hf-vit_l", "huge": "hf-vit_h"}


def course_name(item: Checkpoint) -> tuple[str, Checkpoint]:
    """(model name :func:`~basam_lite.models.build_sam` takes, the entry to fetch) for a registry
    entry of any family.

    The rule per family: ``segment_anything`` and ``sam2`` entries are named as their models
    (``vit_b``, ``sam2.1_hiera_tiny``); ``mobile_sam`` builds ``mobilesam`` (the official
    TinyViT-5M); a Hugging Face ``SamModel`` id builds ``hf-vit_b`` / ``_l`` / ``_h`` from the
    Hub snapshot. A Hugging Face SAM 2.1 id (``facebook/sam2.1-hiera-tiny``, transformers'
    ``Sam2Model``, a class no adapter here takes) fetches the same released SAM 2.1 weights as
    Meta's file of that size (``sam2.1_hiera_tiny``) and runs them through the ``sam2`` package.
    """
    from .weights import REGISTRY

    if item.family in ("segment_anything", "sam2"):
        return item.model, item
    if item.family == "mobilesam":
        return "mobilesam", item
    if item.family == "hf" and item.model == "SamModel":
        return _HF_MODELS[item.name.rsplit("-", 1)[1]], item
    if item.family == "hf" and item.model == "Sam2Model":
        size = item.name.rsplit("hiera-", 1)[1].replace("-", "_")
        twin = REGISTRY[f"sam2.1_hiera_{size}"]
        return twin.model, twin
    raise UserError(f"{item.name!r}: no course model for a {item.family} checkpoint")


def model_of_file(path: Path) -> str:
    """The registered model a local checkpoint holds, recognised from its keys and shapes:
    ``image_encoder.trunk.*`` is SAM 2 (its Hiera width and depth name the architecture), a
    TinyViT stem (``image_encoder.patch_embed.seq.*``) is MobileSAM (the architecture whose
    state dict has the same keys and shapes), anything else SAM 1 (by file name, else shapes).
    A Hugging Face folder (``config.json``) is ``hf-vit_b`` / ``_l`` / ``_h`` by its width.
    One :class:`~basam_lite.errors.UserError` line when nothing matches."""
    from .models import model_name_from_checkpoint, read_checkpoint

    if path.is_dir():
        return _hf_folder_model(path)
    state = read_checkpoint(path)
    if any(k.startswith("image_encoder.trunk.") for k in state):
        from .encoders.sam2_models import sam2_checkpoint_name

        found = sam2_checkpoint_name(state)
        if found is None:
            raise UserError(f"{path} is a SAM 2 checkpoint of no registered architecture")
        return found
    if "image_encoder.patch_embed.seq.0.c.weight" in state:
        from .encoders.mobilesam_build import SPECS
        from .encoders.specs import meta_model

        shapes = {k: tuple(v.shape) for k, v in state.items()}
        for name in SPECS:
            own = {k: tuple(v.shape) for k, v in meta_model(name).state_dict().items()}
            if own == shapes:
                return name
        raise UserError(f"{path} is a MobileSAM checkpoint of no registered architecture")
    try:
        return model_name_from_checkpoint(path)
    except ValueError as e:
        raise UserError(str(e)) from None


def _hf_folder_model(path: Path) -> str:
    import json

    config = path / "config.json"
    if not config.is_file():
        raise UserError(f"{path} is a folder without config.json: give a checkpoint file")
    width = json.loads(config.read_text()).get("vision_config", {}).get("hidden_size")
    by_width = {768: "hf-vit_b", 1024: "hf-vit_l", 1280: "hf-vit_h"}
    if width not in by_width:
        raise UserError(f"{path}: a Hugging Face SamModel of width {width} is not a course model")
    return by_width[width]


def _resolve(model: str) -> tuple[str, Path | None]:
    """(model name, checkpoint path) for ``model``, with the environment overrides applied: no
    path for a bundled tiny name, else a local file (fetched first for a registry name of any
    family: :func:`course_name`; a local file's model: :func:`model_of_file`)."""
    from .models import is_tiny
    from .weights import REGISTRY, fetch

    chosen = os.environ.get(MODEL_ENV) or os.environ.get("BASAM_SAM_CHECKPOINT") or model
    if is_tiny(chosen):  # tiny (random) or a bundled tiny model of any family
        return chosen, None
    if chosen in REGISTRY:
        name, item = course_name(REGISTRY[chosen])
        return name, fetch(item)  # cached, or downloaded and verified
    path = fetch(chosen)  # a local file or folder, as it is (one line when it does not exist)
    return model_of_file(path), path


def course_model(model: str = DEFAULT_MODEL, *, device: str | None = None) -> CourseModel:
    """The notebook's model and budget (module docstring: names, environment, budget rule).

    Args:
        model: ``"tiny-vanilla"`` (default), ``"tiny-basam"``, ``"tiny"`` or another bundled
            tiny model (``"tiny-sam2-vanilla"``), a registry name of any family (``"vit_b"``,
            ``"sam2.1_hiera_tiny"``, ``"mobile_sam"``, ...: downloaded on first use) or a local
            checkpoint path of any family.
            ``BASAM_COURSE_MODEL`` (then ``BASAM_SAM_CHECKPOINT``) overrides it.
        device: ``"cuda"`` or ``"cpu"``; default the GPU when there is one.
    """
    from .encoders import adapter_for
    from .models import build_sam
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
    base = base_size(sam)[0]  # the whole model's (SAM 2: SAM2Base.image_size)
    budget = budget_for(base, dev, os.environ.get(BUDGET_ENV) or None)
    family = adapter_for(sam).family
    real = base > SMALL_BASE
    return CourseModel(sam, name, description, dev, budget, real=real, family=family)


def write_random_checkpoint(name: str, path: str | os.PathLike, seed: int = 0) -> Path:
    """Save a random-weight model ``name`` (``"vit_b"``, ``"sam2.1_hiera_tiny"``,
    ``"mobilesam"``, any registered model) to ``path`` (atomically), in its family's released
    layout (SAM 2: ``{"model": state_dict}``; SAM 1 and MobileSAM: the state dict): a stand-in
    for the official file, to time and test the notebooks offline. Returns the path.

    The families initialise some tensors to zero (SAM's absolute position embedding and
    relative-position tables, Hiera's position embeddings, norm biases) and a trained checkpoint
    has none at zero, so every all-zero floating tensor is drawn from N(0, 0.02^2) here (the tiny
    model's rule): code that reads those tables (smoothness, rel-pos terms) then runs as it does
    on real weights.

    Name the file something other than the official ``sam_vit_b_01ec64.pth``: an official name
    makes :func:`basam_lite.models.build_sam` check the file's MD5 prefix, which random weights
    cannot match."""
    from .encoders.sam1_build import build_official
    from .encoders.specs import MODELS, load_model
    from .models import OFFICIAL_NAMES

    target = Path(path)
    torch.manual_seed(seed)
    if name in OFFICIAL_NAMES:
        model, family = build_official(name), "segment_anything"
    elif name in MODELS:
        model, family = load_model(name, seed=seed), MODELS[name].family
    else:
        raise UserError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")
    state = model.state_dict()
    for key, value in state.items():
        if value.is_floating_point() and not value.any():
            state[key] = torch.randn_like(value) * 0.02
    tmp = target.with_name(target.name + ".tmp")
    torch.save({"model": state} if family == "sam2" else state, tmp)
    tmp.replace(target)
    return target

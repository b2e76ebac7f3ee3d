"""Building SAM models: the official ViT-B/L/H, a tiny CPU configuration, and trained tiny
checkpoints, with checkpoint loading that explains what went wrong.

Official checkpoints come from a local path (``checkpoint=`` or ``BASAM_SAM_CHECKPOINT``: no
network) or, with ``pretrained=True``, from the weights cache (:mod:`basam_lite.weights`:
downloaded and verified on first use). Without either, official models have random weights.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import torch
from torch import nn

from .encoders.sam1_build import TINY, TinySpec, build_official, build_tiny_sam
from .errors import UserError
from .weights import fetch as fetch_weights

__all__ = [
    "MODEL_NAMES",
    "OFFICIAL_NAMES",
    "TINY",
    "TINY_NAMES",
    "TinySpec",
    "build_sam",
    "build_tiny_sam",
    "bundled_names",
    "is_tiny",
    "sam_from_env",
]

CHECKPOINT_ENV = "BASAM_SAM_CHECKPOINT"
DATA_ENV = "BASAM_DATA_DIR"
OFFICIAL_NAMES = ("vit_b", "vit_l", "vit_h")
TINY_NAMES = ("tiny", "tiny-vanilla", "tiny-basam")
MODEL_NAMES = OFFICIAL_NAMES + TINY_NAMES
"""The ``segment_anything`` models; :func:`model_names` adds every registered family's."""

# encoder (embed_dim, depth) of the official models, used to say what a checkpoint looks like.
_OFFICIAL_SHAPES = {(768, 12): "vit_b", (1024, 24): "vit_l", (1280, 32): "vit_h"}
_OFFICIAL_FILE = re.compile(r"sam_(vit_[blh])_([0-9a-f]{6})\.pth$")


def data_dir() -> Path:
    """The project's ``data/`` folder (override with ``BASAM_DATA_DIR``)."""
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[1] / "data"


def tiny_checkpoint_path(name: str) -> Path:
    return data_dir() / "checkpoints" / f"{name}.pt"


def existing_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path, after checking that it is an existing file."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(
            f"checkpoint {p} does not exist: pass the path of a SAM checkpoint (or set "
            f"{CHECKPOINT_ENV}), or use build_sam(name, pretrained=True) to download it"
        )
    if p.is_dir():
        raise IsADirectoryError(f"checkpoint {p} is a folder: pass the .pth file inside it")
    return p


def refusal_reason(error: Exception) -> str:
    """What a ``torch.load(weights_only=True)`` refusal found, in one short line (torch's own
    message suggests turning the safety off, which basam_lite never does)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    for pattern in (r"Unsupported global: GLOBAL (\S+)", r"(Unsupported operand \d+)"):
        m = re.search(pattern, text)
        if m:
            found = m.group(1)
            if "GLOBAL" in pattern:
                return f"it holds a pickled object ({found})"
            return f"{found.lower()}: not a file of tensors that torch.save wrote"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(error).__name__}: {first[:160]}"


def load_safely(path: Path, kind: str, hint: str) -> object:
    """What ``torch.save`` wrote to ``path``, read with ``torch.load(weights_only=True)``:
    tensors and plain values only, so a crafted file can never run code. A refusal is a
    :class:`~basam_lite.errors.UserError` naming the file as ``kind`` (e.g. ``"a training
    state"``) and ending with ``hint``, what to do instead."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types on foreign or crafted bytes
        raise UserError(
            f"{path} is not {kind} that can be loaded safely (weights_only=True: tensors and "
            f"plain values only; {refusal_reason(e)}). basam_lite never unpickles objects; {hint}"
        ) from None


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict of tensors from ``path`` (``torch.load(weights_only=True)``), unwrapped
    from a ``{"model": ...}`` or ``{"state_dict": ...}`` container; clear errors otherwise."""
    p = existing_file(path)
    obj = load_safely(p, "a PyTorch checkpoint", "give the .pth file of a SAM model's state_dict.")
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{p} holds a {type(obj).__name__}, not a state_dict of tensors")
    if not any(k.startswith("image_encoder.") for k in obj):
        raise UserError(
            f"{p} is a state_dict but not of a SAM model (no 'image_encoder.*' keys); "
            f"first keys: {list(obj)[:3]}"
        )
    return obj


def describe_checkpoint(state: dict[str, torch.Tensor]) -> str:
    """What model a SAM state dict looks like, e.g. ``"vit_l (embed_dim 1024, 24 blocks)"``."""
    w = state.get("image_encoder.patch_embed.proj.weight")
    depth = len({k.split(".")[2] for k in state if k.startswith("image_encoder.blocks.")})
    if w is None:
        return f"an unknown SAM ({depth} blocks)"
    dim = int(w.shape[0])
    name = _OFFICIAL_SHAPES.get((dim, depth))
    if name is None and (dim, depth) == (TINY.embed_dim, TINY.depth):
        name = "tiny"
    return f"{name or 'a non-standard SAM'} (embed_dim {dim}, {depth} blocks)"


def file_md5(path: Path, chunk: int = 1 << 24) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_official_name(name: str, path: Path) -> None:
    """Where the file keeps an official name (``sam_vit_b_01ec64.pth``), check that its model
    matches ``name`` and that its MD5 starts with the six hex digits of the name."""
    m = _OFFICIAL_FILE.search(path.name)
    if m is None:
        return
    file_model, prefix = m.groups()
    if file_model != name:
        raise ValueError(
            f"{path.name} is the official {file_model} checkpoint but the model asked for is "
            f"{name!r}: use build_sam({file_model!r}, ...)"
        )
    digest = file_md5(path)
    if not digest.startswith(prefix):
        raise ValueError(
            f"{path.name}: MD5 {digest[:12]}... does not start with {prefix} as the official file "
            f"does: the download is incomplete or corrupted; download it again"
        )


def load_weights(
    model: nn.Module, state: dict[str, torch.Tensor], source: str, name: str
) -> nn.Module:
    """``model.load_state_dict(state)`` with errors that say what the checkpoint looks like."""
    own = model.state_dict()
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape
    ]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if mismatched or missing or unexpected:
        details = (
            mismatched + [f"missing {k}" for k in missing] + [f"unexpected {k}" for k in unexpected]
        )
        raise UserError(
            f"{source} does not fit model {name!r}: it looks like {describe_checkpoint(state)}. "
            f"{len(details)} problem(s), first: {'; '.join(details[:3])}"
        )
    # Tiny checkpoints are stored in fp16 to stay small: cast floats to the model's dtype.
    state = {
        k: v.to(own[k].dtype) if v.is_floating_point() and own[k].is_floating_point() else v
        for k, v in state.items()
    }
    model.load_state_dict(state)
    return model


def model_names() -> tuple[str, ...]:
    """Every model :func:`build_sam` builds: the ``segment_anything`` ones, then the other
    families' named models (:data:`basam_lite.encoders.specs.MODELS`)."""
    from .encoders.specs import MODELS

    return MODEL_NAMES + tuple(n for n in MODELS if n not in MODEL_NAMES)


def bundled_names() -> tuple[str, ...]:
    """The models whose weights ship in ``data/checkpoints`` (every family's tiny-vanilla and
    tiny-basam: :data:`basam_lite.encoders.specs.MODELS`)."""
    from .encoders.specs import bundled_names as names

    return names()


def is_tiny(name: str) -> bool:
    """Whether ``name`` is a tiny model of this project: ``tiny`` (random) or a bundled one."""
    return name == "tiny" or name in bundled_names()


def loads_checkpoint(name: str) -> bool:
    """Whether model ``name`` takes its weights from a checkpoint a user gives (the official
    ViTs and other families' models; the tiny ones bring their own)."""
    return not is_tiny(name)


def bundled_checkpoint(name: str) -> Path:
    """The shipped weights of the bundled model ``name``; a FileNotFoundError naming the command
    that writes them when they are missing."""
    from .encoders.specs import MODELS

    path = tiny_checkpoint_path(name)
    if not path.exists():
        entry = MODELS[name]
        variant = name.rsplit("-", 1)[-1]
        raise FileNotFoundError(
            f"{path} is missing: train it with `python -m basam_lite train --model "
            f"{entry.architecture} --variant {variant} --write-bundled` or use "
            f"build_sam({entry.architecture!r}) (random weights)"
        )
    return path


def build_sam(
    name: str, checkpoint: str | os.PathLike | None = None, *, pretrained: bool = False
) -> nn.Module:
    """A SAM in eval mode.

    Args:
        name: ``"vit_b"``, ``"vit_l"``, ``"vit_h"`` (built exactly as ``segment_anything``
            builds them), ``"tiny"`` (random weights, seed 0) or ``"tiny-vanilla"`` /
            ``"tiny-basam"`` (the trained tiny checkpoints in ``data/checkpoints``); or another
            family's registered model (:func:`model_names`; random weights, seed 0, without a
            checkpoint), such as the bundled tiny SAM 2s ``"tiny-sam2-vanilla"`` and
            ``"tiny-sam2-basam"`` (:func:`bundled_names`).
        checkpoint: local path to weights (official ViTs: without it the weights are random).
        pretrained: official ViTs only: Meta's checkpoint from the weights cache, downloaded
            and verified on first use (``basam_lite.weights.fetch(name)``), as timm does.
    """
    if name not in MODEL_NAMES:
        from .encoders.specs import MODELS, load_model

        if name in MODELS and not pretrained:  # another family's model
            if checkpoint is None and MODELS[name].bundled:
                checkpoint = bundled_checkpoint(name)
            return load_model(name, None if checkpoint is None else str(checkpoint))
        raise UserError(f"unknown model {name!r}: choose one of {', '.join(model_names())}")
    if pretrained:
        if name not in OFFICIAL_NAMES:
            raise UserError(
                f"pretrained=True is for {', '.join(OFFICIAL_NAMES)}; {name!r} is bundled "
                "(tiny-vanilla, tiny-basam) or random (tiny)"
            )
        if checkpoint is not None:
            raise UserError("give checkpoint= (a local file) or pretrained=True, not both")
        checkpoint = fetch_weights(name)
    if name not in OFFICIAL_NAMES and name != "tiny" and checkpoint is None:
        checkpoint = bundled_checkpoint(name)
    state = None
    if checkpoint is not None:  # read (safely) and checked before any model is built
        path = existing_file(checkpoint)
        if name in OFFICIAL_NAMES:
            check_official_name(name, path)
        state = read_checkpoint(path)
    sam = build_official(name) if name in OFFICIAL_NAMES else build_tiny_sam()
    if state is not None:
        load_weights(sam, state, str(path), name)
    return sam.eval()


def model_name_from_checkpoint(path: str | os.PathLike) -> str:
    """The model name an official-looking checkpoint file stands for (by name, else shapes)."""
    p = Path(path)
    m = _OFFICIAL_FILE.search(p.name)
    if m:
        return m.group(1)
    desc = describe_checkpoint(read_checkpoint(p))
    name = desc.split(" ")[0]
    if name not in MODEL_NAMES:
        raise ValueError(f"{p} looks like {desc}: pass the model name explicitly")
    return name


def sam_from_env(default: str = "tiny-vanilla") -> tuple[nn.Module, str]:
    """The notebooks' one switch: a real SAM from ``BASAM_SAM_CHECKPOINT`` when it is set and
    readable, else the ``default`` tiny model. Returns (model, human-readable description).

    It also sets torch's thread count for the notebook's kernel by the project's policy (one core
    left to the rest of the machine, none another runnable process is on:
    :func:`basam_lite.threads.use_quiet_threads`), so that a busy browser or a shared machine
    does not stall every operation."""
    from .threads import use_quiet_threads

    use_quiet_threads()
    path = os.environ.get(CHECKPOINT_ENV)
    if path:
        try:
            name = model_name_from_checkpoint(path)
            return build_sam(name, path), f"{name} from {path}"
        except (OSError, ValueError) as e:
            print(f"{CHECKPOINT_ENV}={path} could not be used ({e}); using {default} instead.")
    try:
        return build_sam(default), default
    except FileNotFoundError as e:
        print(f"{e}; using the untrained 'tiny' model instead.")
        return build_sam("tiny"), "tiny (random weights)"


def check_checkpoint(name: str, path: str | os.PathLike) -> None:
    """Everything :func:`build_sam` would refuse about ``path`` as weights of ``name``, checked
    without building the model (its shapes come from a meta-device build): the file, the
    official name's model and MD5 prefix, safe loading, the keys and shapes. Each problem is
    one :class:`~basam_lite.errors.UserError` line, so a command can check before it writes."""
    try:
        p = existing_file(path)
        if name in OFFICIAL_NAMES:
            check_official_name(name, p)
        state = read_checkpoint(p)
    except UserError:
        raise
    except (OSError, ValueError) as e:
        raise UserError(f"--checkpoint {path}: {str(e).splitlines()[0]}") from None
    with torch.device("meta"):
        model = build_official(name) if name in OFFICIAL_NAMES else None
    if model is None:
        model = build_tiny_sam()
    own = model.state_dict()
    problems = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
                if k in own and own[k].shape != v.shape]  # fmt: skip
    problems += [f"missing {k}" for k in sorted(set(own) - set(state))]
    problems += [f"unexpected {k}" for k in sorted(set(state) - set(own))]
    if problems:
        raise UserError(
            f"--checkpoint {path} does not fit model {name!r}: it looks like "
            f"{describe_checkpoint(state)}; {len(problems)} problem(s), first: {problems[0]}"
        )

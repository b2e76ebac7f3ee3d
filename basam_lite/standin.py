"""Stand-ins for what a researcher brings, to rehearse the real-checkpoint commands without it:
an official model's random weights saved under the official file name (MD5 prefix included), and
a folder dataset of procedural scenes. Used by ``scripts/researcher_path.py`` and the tests;
nothing here is ever mistaken for real weights (the file's sha256 is in every table's identity,
and the numbers it gives say nothing about SAM)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .datasets import ProceduralScenes
from .models import OFFICIAL_NAMES


def write_standin_checkpoint(model: str, folder: str | Path, seed: int = 0) -> Path:
    """Seeded random weights of official ``model`` saved as ``folder/sam_MODEL_XXXXXX.pth``,
    XXXXXX being the first six hex digits of the file's MD5, as the official files are named
    (so :func:`basam_lite.models.check_official_name` accepts it). Returns the path."""
    from .sweep import build_official_random

    if model not in OFFICIAL_NAMES:
        raise ValueError(f"{model!r} is not an official model: {', '.join(OFFICIAL_NAMES)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        state = build_official_random(model).state_dict()
    tmp = folder / f".{model}.standin.pth"
    torch.save(state, tmp)
    h = hashlib.md5()
    with open(tmp, "rb") as f:
        while block := f.read(1 << 24):
            h.update(block)
    path = folder / f"sam_{model}_{h.hexdigest()[:6]}.pth"
    tmp.replace(path)
    return path


def write_scene_folder(root: str | Path, n: int, size: int = 256, seed: int = 0) -> Path:
    """``n`` procedural scenes as a folder dataset (``root/scene_i.jpg`` + ``.png`` masks, the
    layout ``folder:ROOT`` opens). Returns ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    scenes = ProceduralScenes(n, seed=seed, size=size)
    for i in range(n):
        s = scenes[i]
        Image.fromarray(s.image).save(root / f"scene_{i:03d}.jpg", quality=95)
        Image.fromarray((s.mask * 255).astype(np.uint8)).save(root / f"scene_{i:03d}.png")
    return root

"""Datasets (procedural scenes, image folders, COCO instances) and prompts derived from masks.

Every dataset is a ``Sequence[Sample]``: ``Sample.image`` (H, W, 3) uint8 RGB, ``Sample.mask``
(H, W) bool, ``Sample.name`` a stable id. ``open_dataset`` turns a command-line spec string
("synthetic:24", "dis5k:/data/DIS5K:DIS-TE2", ...) into one; ``ExtentView`` shows any of them
along the extent axis (the image at a model's base size inside a larger canvas).
"""

from __future__ import annotations

from .coco import CocoInstances
from .extent import ExtentSample, ExtentView, TargetDoesNotFit
from .folders import (
    DIS5K_SPLITS,
    ConcatDataset,
    FolderDataset,
    cod10k,
    dis5k,
    duts_te,
    isic2016,
)
from .loading import load_image, load_mask
from .procedural import (
    ProceduralScenes,
    Scene,
    SceneMix,
    SceneObject,
    render,
    render_layers,
    sample_scene,
)
from .prompts import (
    PROMPT_KINDS,
    Prompt,
    batch_prompts,
    box_from_mask,
    center_point,
    prompt_for,
    random_points,
)
from .sample import Sample
from .shapes import SHAPE_KINDS
from .spec import DATASET_SPECS, open_dataset
from .textures import TEXTURE_KINDS

__all__ = [
    "DATASET_SPECS",
    "DIS5K_SPLITS",
    "PROMPT_KINDS",
    "SHAPE_KINDS",
    "TEXTURE_KINDS",
    "CocoInstances",
    "ConcatDataset",
    "ExtentSample",
    "ExtentView",
    "FolderDataset",
    "ProceduralScenes",
    "Prompt",
    "Sample",
    "Scene",
    "SceneMix",
    "SceneObject",
    "TargetDoesNotFit",
    "batch_prompts",
    "box_from_mask",
    "center_point",
    "cod10k",
    "dis5k",
    "duts_te",
    "isic2016",
    "load_image",
    "load_mask",
    "open_dataset",
    "prompt_for",
    "random_points",
    "render",
    "render_layers",
    "sample_scene",
]

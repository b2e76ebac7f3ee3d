"""Scoring a model on held-out procedural scenes: the numbers of the model cards and studies.

- :func:`evaluation_table`: IoU of every scene and prompt kind at one input size, with each
  scene's shape, difficulty tags and the token-grid ceiling;
- :func:`evaluate` / :func:`mean_ious`: the mean IoU per prompt kind;
- :func:`breakdown`: the means per target shape and per difficulty tag.

The model is scored as it is (patch and input size untouched; train mode restored).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .datasets import ProceduralScenes, prompt_for
from .decoding import decode_one, image_rows
from .encoders import adapter_for
from .metrics import grid_mask_iou, mask_iou


def image_batch(images: list[np.ndarray]) -> Tensor:
    """B (H, W, 3) uint8 images -> (B, 3, H, W) float32 in [0, 255]."""
    x = torch.from_numpy(np.stack(images))
    return x.permute(0, 3, 1, 2).float()


def padded_to(mask: np.ndarray, multiple: int) -> np.ndarray:
    """An (H, W) mask padded with background at the bottom and right to whole multiples of
    ``multiple``, as SAM pads its input to whole patches."""
    h, w = mask.shape
    return np.pad(mask, ((0, -h % multiple), (0, -w % multiple)))


@torch.no_grad()
def evaluation_table(
    sam: nn.Module,
    n: int = 100,
    kinds: tuple[str, ...] = ("box", "point", "center"),
    size: int = 256,
    seed: int = 0,
    split: str = "test",
    mix: str = "standard",
) -> pd.DataFrame:
    """IoU (probability > 0.5) of every held-out scene and prompt kind at ``size``: one row per
    scene with its shape kind, difficulty tags, object count, visible area and
    ``token_grid_iou`` (:func:`~basam_lite.metrics.grid_mask_iou` of its mask at the model's
    patch size: the ceiling of a mask right at every token), and one ``iou_<kind>`` column per
    prompt kind (those of :func:`basam_lite.datasets.prompt_for`:
    "point" = one random click seeded by the scene name, "center" = the innermost object
    pixel). Group it by ``shape`` or a tag to see where a model fails; ``mix="hard"`` scores
    the stress-test scenes (:class:`~basam_lite.datasets.SceneMix`)."""
    was_training = sam.training
    sam.eval()
    ds = ProceduralScenes(n, seed=seed, size=size, split=split, mix=mix)
    adapter = adapter_for(sam)
    cell = adapter.patch_size()
    rows = []
    for start in range(0, n, 16):
        samples = ds[start : min(n, start + 16)]
        emb = adapter.encode(adapter.preprocess(image_batch([s.image for s in samples])))
        for i, s in enumerate(samples):
            row: dict[str, object] = {
                "scene": s.name,
                "shape": s.meta["shape"],
                "tags": ",".join(s.meta["tags"]) or "plain",
                "n_objects": s.meta["n_objects"],
                "area_fraction": s.meta["area_fraction"],
                # not a model score: the target redrawn from its coverage of each token
                "token_grid_iou": grid_mask_iou(padded_to(s.mask, cell), cell),
            }
            for kind in kinds:
                low, _ = decode_one(sam, image_rows(sam, emb, [i]), prompt_for(s, kind, seed))
                up = F.interpolate(low, size=s.hw, mode="bilinear", align_corners=False)[0, 0]
                row[f"iou_{kind}"] = mask_iou(up > 0, s.mask)
            rows.append(row)
    sam.train(was_training)
    return pd.DataFrame(rows)


def evaluate(
    sam: nn.Module,
    n: int = 100,
    kinds: tuple[str, ...] = ("box", "point", "center"),
    size: int = 256,
    seed: int = 0,
    split: str = "test",
    mix: str = "standard",
) -> dict[str, float]:
    """Mean IoU per prompt kind over :func:`evaluation_table`'s held-out scenes."""
    return mean_ious(evaluation_table(sam, n, kinds, size, seed, split, mix))


def mean_ious(table: pd.DataFrame) -> dict[str, float]:
    """``{"iou_<kind>": mean}`` over the rows of an :func:`evaluation_table`."""
    return {c: float(table[c].mean()) for c in table.columns if c.startswith("iou_")}


def breakdown(table: pd.DataFrame) -> pd.DataFrame:
    """Mean box / centre-point IoU, mean ``token_grid_iou`` and scene count per target shape
    and per difficulty tag (a scene with several tags counts under each)."""
    iou = [c for c in ("iou_box", "iou_center", "token_grid_iou") if c in table]
    tags = table.assign(tag=table["tags"].str.split(",")).explode("tag")
    parts = {
        "shape": table.groupby("shape")[iou].mean().assign(scenes=table.groupby("shape").size()),
        "difficulty": tags.groupby("tag")[iou].mean().assign(scenes=tags.groupby("tag").size()),
    }
    return pd.concat(parts, names=["by", "group"])

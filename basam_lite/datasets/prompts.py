"""Prompts derived from ground-truth masks, in segment_anything's conventions.

Coordinates are pixel coordinates of the image they refer to, **x = column, y = row** (SAM's
``SamPredictor.predict(point_coords=..., box=...)`` and ``Sam.forward``'s ``batched_input``):

- a point is ``(x, y)``; pixel (row r, col c) is the point (c, r); SAM's prompt encoder adds the
  0.5 that moves it to the pixel centre;
- a box is ``XYXY`` = (x0, y0, x1, y1) with **inclusive** ends: x1 is the last object column,
  not one past it (the convention of ``segment_anything.utils.amg.batched_mask_to_box``);
- moving a prompt to a resized image multiplies x by new_W / old_W and y by new_H / old_H
  (``ResizeLongestSide.apply_coords``).

Two defects of the official BA-SAM code are fixed here: it passed (row, col) where SAM expects
(x, y), and it reshaped a batch's clicks so that every image received every image's clicks.
Here a click is (col, row), and ``batch_prompts`` builds one record per image from that image's
prompt only.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from scipy import ndimage

from ..errors import UserError
from .sample import Sample

if TYPE_CHECKING:
    import torch

PromptKind = Literal["box", "point", "center"]
PROMPT_KINDS: tuple[str, ...] = ("box", "point", "center")


def _foreground(mask: np.ndarray, what: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise UserError(f"{what}: mask must be 2-D (H, W), got shape {mask.shape}")
    mask = mask.astype(bool, copy=False)
    if not mask.any():
        raise UserError(f"{what}: the mask is empty (no foreground pixel), so no prompt exists")
    return mask


def box_from_mask(mask: np.ndarray) -> np.ndarray:
    """Tight box around the foreground: float64 (4,) = (x0, y0, x1, y1), inclusive ends."""
    mask = _foreground(mask, "box_from_mask")
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)


def center_point(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The object pixel farthest from the object's border: coords (1, 2) (x, y), labels (1,) = 1.

    Distances are Euclidean (distance transform); the image edge counts as border. Ties (a
    long bar has a whole ridge of innermost pixels) go to the tied pixel nearest the tied
    pixels' mean, then to the first in row-major order: the middle of the ridge, deterministic.
    """
    mask = _foreground(mask, "center_point")
    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    tied = np.argwhere(dist == dist.max())  # row-major order
    row, col = tied[int(np.argmin(((tied - tied.mean(axis=0)) ** 2).sum(axis=1)))]
    return np.array([[col, row]], dtype=np.float64), np.ones(1, dtype=np.int64)


def random_points(
    mask: np.ndarray, n: int, rng_or_seed: np.random.Generator | int
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` foreground pixels drawn uniformly: coords (n, 2) (x, y) and labels (n,) = 1.

    Drawn without replacement while the object has at least ``n`` pixels, with replacement
    otherwise. ``rng_or_seed`` is a Generator or a seed for ``np.random.default_rng``.
    """
    mask = _foreground(mask, "random_points")
    if n < 1:
        raise UserError(f"random_points: n must be >= 1, got {n}")
    rng = (
        rng_or_seed
        if isinstance(rng_or_seed, np.random.Generator)
        else np.random.default_rng(rng_or_seed)
    )
    rows, cols = np.nonzero(mask)
    pick = rng.choice(rows.size, size=n, replace=n > rows.size)
    coords = np.stack([cols[pick], rows[pick]], axis=1).astype(np.float64)
    return coords, np.ones(n, dtype=np.int64)


@dataclass(frozen=True, eq=False)  # arrays inside: compare fields explicitly
class Prompt:
    """A SAM prompt in one image's pixel frame (conventions in the module docstring).

    Attributes:
        point_coords: (N, 2) float (x, y), or None.
        point_labels: (N,) int, 1 = object, 0 = background; None exactly when point_coords is.
        box: (4,) float XYXY with inclusive ends, or None.
    """

    point_coords: np.ndarray | None = None
    point_labels: np.ndarray | None = None
    box: np.ndarray | None = None

    def __post_init__(self) -> None:
        if (self.point_coords is None) != (self.point_labels is None):
            raise UserError("Prompt: point_coords and point_labels must be given together")
        if self.point_coords is not None:
            coords = np.asarray(self.point_coords, dtype=np.float64)
            labels = np.asarray(self.point_labels, dtype=np.int64)
            if coords.ndim != 2 or coords.shape[1] != 2 or labels.shape != (coords.shape[0],):
                raise UserError(
                    f"Prompt: point_coords must be (N, 2) and point_labels (N,), got "
                    f"{coords.shape} and {labels.shape}"
                )
            object.__setattr__(self, "point_coords", coords)
            object.__setattr__(self, "point_labels", labels)
        if self.box is not None:
            box = np.asarray(self.box, dtype=np.float64).reshape(-1)
            if box.shape != (4,):
                raise UserError(f"Prompt: box must have 4 numbers (x0, y0, x1, y1), got {box}")
            object.__setattr__(self, "box", box)
        if self.point_coords is None and self.box is None:
            raise UserError("Prompt: give points, a box, or both")

    def predictor_kwargs(self) -> dict[str, np.ndarray | None]:
        """``point_coords``, ``point_labels`` and ``box`` for ``SamPredictor.predict``."""
        return {
            "point_coords": self.point_coords,
            "point_labels": self.point_labels,
            "box": self.box,
        }

    def scaled(self, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> Prompt:
        """The prompt moved from an image of size ``from_hw`` (H, W) to its resize ``to_hw``."""
        sy = to_hw[0] / from_hw[0]
        sx = to_hw[1] / from_hw[1]
        factor = np.array([sx, sy])
        coords = None if self.point_coords is None else self.point_coords * factor
        box = None if self.box is None else self.box * np.tile(factor, 2)
        return Prompt(coords, self.point_labels, box)


def _stream(seed: int, name: str) -> np.random.Generator:
    # Seeded by the sample's name, not its position: the click does not depend on the order,
    # the batch, or which other samples are in the run.
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def prompt_for(sample: Sample, kind: PromptKind = "box", seed: int = 0) -> Prompt:
    """The prompt of ``kind`` for ``sample``'s mask, in the sample's pixel frame.

    - "box": the tight box (``box_from_mask``);
    - "point": one positive click drawn uniformly on the object, seeded by (seed, sample.name)
      (the official protocol's single click, made reproducible);
    - "center": one positive click at the object's innermost pixel (``center_point``).
    """
    what = f"sample {sample.name!r}"
    if not sample.mask.any():
        raise UserError(f"{what}: the mask is empty, so no {kind} prompt can be made")
    if kind == "box":
        return Prompt(box=box_from_mask(sample.mask))
    if kind == "point":
        return Prompt(*random_points(sample.mask, 1, _stream(seed, sample.name)))
    if kind == "center":
        return Prompt(*center_point(sample.mask))
    raise UserError(f"unknown prompt kind {kind!r}; expected one of {PROMPT_KINDS}")


def batch_prompts(
    prompts: list[Prompt], device: torch.device | str | None = None
) -> list[dict[str, torch.Tensor]]:
    """One ``Sam.forward`` record per prompt: image i's record holds image i's prompt only.

    Keys (only those the prompt has): ``point_coords`` float32 (1, N, 2), ``point_labels`` int32
    (1, N), ``boxes`` float32 (1, 4). The prompts must already be in the model's input frame
    (``Prompt.scaled``); add ``image`` and ``original_size`` to each record before calling SAM.
    """
    import torch

    records = []
    for p in prompts:
        rec: dict[str, torch.Tensor] = {}
        if p.point_coords is not None:
            coords = torch.as_tensor(p.point_coords, dtype=torch.float32, device=device)
            labels = torch.as_tensor(p.point_labels, dtype=torch.int32, device=device)
            rec["point_coords"] = coords[None]
            rec["point_labels"] = labels[None]
        if p.box is not None:
            rec["boxes"] = torch.as_tensor(p.box, dtype=torch.float32, device=device)[None]
        records.append(rec)
    return records

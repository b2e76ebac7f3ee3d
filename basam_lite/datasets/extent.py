"""The extent axis: the same target at the same pixel scale inside a larger (or smaller) canvas.

Changing a ViT's input resolution by *zooming* (the scene drawn with more pixels) changes two
things at once: the detail (each object covers more tokens) and the sequence length (each global
block's softmax runs over more keys). The extent axis changes the length alone. The target
image is first brought to the model's base size ``B`` (the *tile*: a procedural scene rendered
at ``B x B``, a file image resized to ``B x B`` as the official BA-SAM protocol resizes to a
square). Then, for a canvas of side ``S`` (the extent factor is ``S / B``):

- ``S >= B``: the tile is placed inside an ``S x S`` canvas, at an offset that is a multiple of
  the patch size (so every target pixel falls in the same position of the same token as at the
  base size), and the rest of the canvas is a **seeded mosaic of other images of the same
  dataset**, each resized to ``B x B`` as well, on a lattice of ``B x B`` cells around the
  target tile. The neighbour of each cell is fixed by ``(seed, target name, cell)``: cells are
  numbered ring by ring outwards from the target, so a larger canvas shows the same nearer
  neighbours plus a new outer ring.
- ``S < B``: the canvas is a window of the tile, its corner on the patch grid, that keeps the
  target object whole (the window closest to centring the object's box). A target too large for
  the window raises :class:`~basam_lite.errors.UserError` (:class:`TargetDoesNotFit`).

The target's pixels and mask are identical at every extent: ``canvas[region] ==
tile[tile_region]`` exactly, where ``region`` is where the target tile (or, below the base size,
the window of it) lies in the canvas. Metrics compare like with like when they are computed on
``region``; prompts come from the target mask placed in the canvas (``Sample.mask``), so a box or
a click is the same object pixel at every extent.

Why a mosaic of other scenes for the procedural scenes, rather than extending each scene's plane
with more objects: the mosaic is one transform for every dataset (so a study on synthetic scenes
and one on DIS5K with real SAM are the same experiment), and it keeps the target's pixels
exactly: a scene's sensor noise is seeded by the render size, so the same scene rendered on a
larger plane would not reproduce the target tile bit for bit. The seams between tiles lie on
patch boundaries, so no token mixes two images.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import UserError
from .coco import CocoInstances
from .procedural import ProceduralScenes
from .sample import Sample

# Distinguishes the mosaic's random stream from any other user of the same seed and name.
_STREAM_TAG = 0xE87E

Region = tuple[int, int, int, int]
"""(top, left, bottom, right) in pixels, bottom and right exclusive."""


class TargetDoesNotFit(UserError):
    """A window below the base size cannot hold the whole target object."""


@dataclass(eq=False)  # arrays inside
class ExtentSample(Sample):
    """A canvas holding one target at the model's base pixel scale.

    ``image`` and ``mask`` (inherited) are the canvas, ``(S, S, 3)`` and ``(S, S)``; the mask is
    the target object only (True inside the target tile's object, False on the neighbours).

    Attributes:
        region: where the target's pixels lie in the canvas, (top, left, bottom, right): the
            whole ``B x B`` tile for extents >= 1, the whole canvas (a window of the tile)
            below 1.
        tile_region: the same pixels in the tile's own frame (the whole tile for extents >= 1).
        base: ``B``, the model's base side in px (the tile's side).
        extent: ``S / B``.
        neighbours: the names of the images in the mosaic cells, in cell order (ring by ring).
    """

    region: Region = (0, 0, 0, 0)
    tile_region: Region = (0, 0, 0, 0)
    base: int = 0
    extent: float = 1.0
    neighbours: tuple[str, ...] = ()

    def in_region(self, array: np.ndarray) -> np.ndarray:
        """``array[top:bottom, left:right]`` (any array on the canvas's pixel grid)."""
        t, lft, b, r = self.region
        return array[t:b, lft:r]

    @property
    def target_image(self) -> np.ndarray:
        """The target's pixels: ``(h, w, 3)`` uint8, identical at every extent."""
        return self.in_region(self.image)

    @property
    def target_mask(self) -> np.ndarray:
        """The target's mask on its region: ``(h, w)`` bool, identical at every extent."""
        return self.in_region(self.mask)


def resize_to_tile(sample: Sample, base: int) -> Sample:
    """``sample`` resized to ``base x base``: image bilinear (Pillow), mask bilinear on 0/255 and
    thresholded at half (so a mask keeps its area up to boundary pixels). Unchanged if it is
    already that size."""
    if sample.hw == (base, base):
        return sample
    image = np.asarray(
        Image.fromarray(sample.image).resize((base, base), Image.Resampling.BILINEAR)
    )
    grey = Image.fromarray(sample.mask.astype(np.uint8) * 255)
    mask = np.asarray(grey.resize((base, base), Image.Resampling.BILINEAR)) > 127
    return Sample(image=np.ascontiguousarray(image), mask=mask, name=sample.name, meta=sample.meta)


def _ring_cells(rings: int) -> list[tuple[int, int]]:
    """Lattice cells (row, col) relative to the target, ring 1 first, each ring in row-major
    order; the target cell (0, 0) is not included."""
    cells = []
    for ring in range(1, rings + 1):
        cells += [
            (k, m)
            for k in range(-ring, ring + 1)
            for m in range(-ring, ring + 1)
            if max(abs(k), abs(m)) == ring
        ]
    return cells


def _object_box(mask: np.ndarray) -> Region:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _window_start(lo: int, hi: int, side: int, base: int, patch: int) -> int | None:
    """The patch-aligned start ``t`` of a window ``[t, t + side)`` inside ``[0, base)`` holding
    ``[lo, hi)``, closest to centring it; None when none exists."""
    starts = [t for t in range(0, base - side + 1, patch) if t <= lo and t + side >= hi]
    if not starts:
        return None
    centre = (lo + hi - side) / 2
    return min(starts, key=lambda t: (abs(t - centre), t))


class ExtentView:
    """A dataset seen along the extent axis at a model's base size ``base``.

    ``view.sample(i, side)`` is image ``i`` as an :class:`ExtentSample` of ``side x side`` px.
    Tiles (images at ``base x base``) are cached, the ``cache`` most recent ones.

    Args:
        dataset: any ``Sequence[Sample]`` (procedural scenes are rendered at ``base``; file
            images are resized to it). Mosaic neighbours are drawn from the whole dataset.
        base: the model's base input side in px (a multiple of ``patch``).
        seed: seeds the mosaic (with the target's name and the cell).
        patch: the model's patch size: offsets and windows are multiples of it.
    """

    def __init__(
        self, dataset: Sequence[Sample], base: int, seed: int = 0, patch: int = 16, cache: int = 64
    ) -> None:
        if patch < 1 or base < patch or base % patch:
            raise UserError(
                f"base size {base} px must be a positive multiple of the patch size {patch} px"
            )
        if len(dataset) == 0:
            raise UserError("the extent axis needs a dataset with at least one image")
        self.dataset = dataset
        self.base = int(base)
        self.seed = int(seed)
        self.patch = int(patch)
        self._cache: OrderedDict[int, Sample] = OrderedDict()
        self._cache_size = int(cache)

    def __len__(self) -> int:
        return len(self.dataset)

    def name(self, index: int) -> str:
        """The name of image ``index`` (without rendering procedural scenes)."""
        if isinstance(self.dataset, ProceduralScenes):
            return self.dataset.name(index)
        return self.tile(index).name

    def tile(self, index: int) -> Sample:
        """Image ``index`` at ``base x base`` (cached)."""
        index = int(index) % len(self.dataset) if index < 0 else int(index)
        hit = self._cache.get(index)
        if hit is not None:
            self._cache.move_to_end(index)
            return hit
        if isinstance(self.dataset, ProceduralScenes):
            tile = self.dataset.sample(index, size=(self.base, self.base))
        else:
            tile = resize_to_tile(self.dataset[index], self.base)
        self._cache[index] = tile
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return tile

    def _source(self, index: int) -> object:
        """Which picture image ``index`` comes from (COCO: several instances share one)."""
        if isinstance(self.dataset, CocoInstances):
            return self.dataset.coco.anns[self.dataset.ann_ids[index]]["image_id"]
        return index

    def neighbour_indices(self, index: int, name: str, cells: int) -> list[int]:
        """The dataset indices of the first ``cells`` mosaic cells around image ``index``.

        A seeded permutation of the other images (those from another picture), repeated when
        the canvas has more cells than the dataset has other images.
        """
        n = len(self.dataset)
        if isinstance(self.dataset, CocoInstances):
            own = self._source(index)
            others = np.array([j for j in range(n) if j != index and self._source(j) != own])
        else:  # one picture per image: every other index (O(n) in numpy, not in Python)
            others = np.delete(np.arange(n), index)
        if not len(others):
            if cells:
                raise UserError(
                    "the extent axis above 1 needs a mosaic of other images, but the dataset "
                    "holds no other picture: use a dataset of at least two images"
                )
            return []
        rng = np.random.default_rng([_STREAM_TAG, self.seed, zlib.crc32(name.encode())])
        order: list[int] = []
        while len(order) < cells:
            order += [int(others[j]) for j in rng.permutation(len(others))]
        return order[:cells]

    def _offset(self, side: int) -> int:
        """Where the target tile's corner lies in a ``side`` canvas (>= base): centred, on the
        patch grid."""
        return (side - self.base) // 2 // self.patch * self.patch

    def mosaic(self, index: int, side: int) -> dict[tuple[int, int], int]:
        """The mosaic around image ``index`` on a ``side x side`` canvas: lattice cell (row, col
        relative to the target's cell) -> dataset index of the image painted there; empty at or
        below the base size. Procedural scenes are not rendered to find it (their names are
        known); a file dataset's target is loaded for its name."""
        b = self.base
        if side <= b:
            return {}
        offset = self._offset(side)
        # Cells of the lattice that touch the canvas, as ring numbers around the target cell.
        rings = max(-(-offset // b), -(-(side - offset - b) // b))
        all_cells = _ring_cells(rings)
        cells = [
            (k, m)
            for k, m in all_cells
            if offset + k * b < side
            and offset + (k + 1) * b > 0
            and offset + m * b < side
            and offset + (m + 1) * b > 0
        ]
        # Cell numbering is ring by ring over the full lattice, so it does not depend on side.
        picks = self.neighbour_indices(index, self.name(index), len(all_cells))
        return {cell: picks[all_cells.index(cell)] for cell in cells}

    def sample(self, index: int, side: int) -> ExtentSample:
        """Image ``index`` on a ``side x side`` canvas (see the module docstring)."""
        if side < self.patch or side % self.patch:
            raise UserError(
                f"canvas side {side} px must be a positive multiple of the patch size "
                f"{self.patch} px"
            )
        tile = self.tile(index)
        b = self.base
        if side < b:
            return self._window(tile, side)
        offset = self._offset(side)
        chosen = self.mosaic(index, side)
        image = np.zeros((side, side, 3), dtype=np.uint8)
        mask = np.zeros((side, side), dtype=bool)
        names = []
        for (k, m), j in chosen.items():
            other = self.tile(j)
            names.append(other.name)
            self._paste(image, other.image, offset + k * b, offset + m * b)
        self._paste(image, tile.image, offset, offset)
        mask[offset : offset + b, offset : offset + b] = tile.mask
        region = (offset, offset, offset + b, offset + b)
        return ExtentSample(
            image=image,
            mask=mask,
            name=tile.name,
            meta={**tile.meta, "extent": side / b, "canvas": side, "base": b},
            region=region,
            tile_region=(0, 0, b, b),
            base=b,
            extent=side / b,
            neighbours=tuple(names),
        )

    @staticmethod
    def _paste(canvas: np.ndarray, tile: np.ndarray, top: int, left: int) -> None:
        """Copy ``tile`` to ``canvas`` at (top, left), clipped to the canvas."""
        h, w = canvas.shape[:2]
        t0, l0 = max(top, 0), max(left, 0)
        t1, l1 = min(top + tile.shape[0], h), min(left + tile.shape[1], w)
        if t0 < t1 and l0 < l1:
            canvas[t0:t1, l0:l1] = tile[t0 - top : t1 - top, l0 - left : l1 - left]

    def _window(self, tile: Sample, side: int) -> ExtentSample:
        b, p = self.base, self.patch
        if not tile.mask.any():
            raise UserError(f"sample {tile.name!r}: the mask is empty, so no window can hold it")
        y0, x0, y1, x1 = _object_box(tile.mask)
        top = _window_start(y0, y1, side, b, p)
        left = _window_start(x0, x1, side, b, p)
        if top is None or left is None:
            raise TargetDoesNotFit(
                f"sample {tile.name!r}: its object ({y1 - y0} x {x1 - x0} px at the base size "
                f"{b} px) does not fit a {side} px window on the {p} px patch grid; use a larger "
                f"extent for this image"
            )
        window = (top, left, top + side, left + side)
        return ExtentSample(
            image=np.ascontiguousarray(tile.image[top : top + side, left : left + side]),
            mask=np.ascontiguousarray(tile.mask[top : top + side, left : left + side]),
            name=tile.name,
            meta={**tile.meta, "extent": side / b, "canvas": side, "base": b},
            region=(0, 0, side, side),
            tile_region=window,
            base=b,
            extent=side / b,
            neighbours=(),
        )

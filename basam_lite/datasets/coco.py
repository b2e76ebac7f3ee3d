"""COCO-style instance annotations as one ``Sample`` per object instance (via pycocotools)."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np

from ..errors import UserError
from .folders import OnError, Verify
from .loading import READ_MAX_SIDE, check_image, image_size, load_image, read_factor, reduce_mask
from .sample import Problem, Sample, SampleSequence, report_problems

POLYGON_TOLERANCE = 1.0
"""Pixels a polygon vertex may lie beyond the image border (rounding in exported files)."""

DEFAULT_MIN_AREA = 32.0 * 32.0
"""COCO's small/medium boundary: smaller instances are a few dozen pixels at SAM's input size."""


class CocoInstances(SampleSequence):
    """One sample per annotated instance of a COCO annotation file.

    Args:
        annotations_json: an ``instances_*.json`` file.
        images_dir: folder holding the images named by the file's ``file_name`` fields.
        min_area: instances whose annotated ``area`` (pixels) is below this are left out.
        max_instances: keep only the first instances in (image id, annotation id) order.
        max_side: an image whose longest side exceeds it is read reduced, its mask on the same
            grid (``loading``'s rule; ``Sample.meta["read_factor"]``); None: natively.

    Crowd annotations (``iscrowd=1``) are skipped: they mark a group of objects with one region,
    which has no single object for a prompt to select. ``Sample.name`` is
    ``"{image_id}_{ann_id}"``; the mask comes from ``COCO.annToMask`` (polygons and RLE alike).

    Checked when it opens (``verify``; every problem listed at once): each referenced image
    exists, can be read (fully decoded with ``verify=True``, its header with ``"header"``) and
    has the declared width and height; each polygon has at least three finite vertices inside
    the image (within :data:`POLYGON_TOLERANCE` px) and each RLE the image's size; with
    ``verify=True`` no instance's mask is empty. ``on_error="raise"`` refuses the file with one
    :class:`~basam_lite.errors.UserError` listing them; ``"skip"`` leaves those instances out,
    warns, and lists them in :meth:`problems`.

    Raises:
        FileNotFoundError: the annotation file or the images folder is missing.
        UserError: problems above (``on_error="raise"``), or no instance selected.
    """

    def __init__(
        self,
        annotations_json: str | Path,
        images_dir: str | Path,
        min_area: float = DEFAULT_MIN_AREA,
        max_instances: int | None = None,
        *,
        on_error: OnError = "raise",
        verify: Verify = True,
        max_side: int | None = READ_MAX_SIDE,
    ) -> None:
        from pycocotools.coco import COCO

        self.max_side = max_side
        path = Path(annotations_json)
        if not path.is_file():
            raise FileNotFoundError(f"COCO annotation file {path} does not exist")
        self.images_dir = Path(images_dir)
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"COCO images folder {self.images_dir} does not exist")
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            self.coco = COCO(str(path))

        if on_error not in ("raise", "skip"):
            raise UserError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        anns = sorted(
            (a for a in self.coco.dataset.get("annotations", []) if not a.get("iscrowd", 0)),
            key=lambda a: (a["image_id"], a["id"]),
        )
        anns = [a for a in anns if float(a.get("area", 0.0)) >= min_area and a.get("segmentation")]
        if max_instances is not None:
            anns = anns[: int(max_instances)]
        if not anns:
            raise UserError(
                f"{path}: no instance left (crowd annotations skipped, min_area={min_area}, "
                f"max_instances={max_instances}); lower min_area or check the file"
            )
        problems: list[Problem] = []
        bad_images: dict[int, Problem] = {}
        for image_id in sorted({a["image_id"] for a in anns}):
            problem = self._image_problem(image_id, verify)
            if problem is not None:
                bad_images[image_id] = problem
                problems.append(problem)
        kept = []
        for ann in anns:
            if ann["image_id"] in bad_images:
                continue
            problem = self._annotation_problem(ann, verify)
            if problem is None:
                kept.append(ann)
            else:
                problems.append(problem)
        self._problems = problems
        report_problems(problems, on_error, f"COCO annotations {path}")
        self.ann_ids: list[int] = [int(a["id"]) for a in kept]
        if not self.ann_ids:
            raise UserError(f"{path}: no usable instance left (all were skipped)")

    def _image_problem(self, image_id: int, verify: Verify) -> Problem | None:
        info = self.coco.imgs.get(image_id)
        if info is None:
            return f"image id {image_id}", "named by an annotation but absent from 'images'"
        img_path = self.images_dir / info["file_name"]
        if not img_path.is_file():
            return str(img_path), f"missing from {self.images_dir} (check images_dir)"
        if not verify:
            return None
        try:
            h, w = (
                check_image(img_path)
                if verify is True or verify == "full"
                else image_size(img_path)
            )
        except ValueError as exc:
            return str(img_path), str(exc).split("; ")[0].replace(f"{img_path} ", "the file ", 1)
        declared = (info.get("height"), info.get("width"))
        if declared != (h, w):
            return (
                str(img_path),
                f"the file is {w}x{h} (WxH) but the annotations declare "
                f"{declared[1]}x{declared[0]}",
            )
        return None

    def _annotation_problem(self, ann: dict, verify: Verify) -> Problem | None:
        info = self.coco.imgs[ann["image_id"]]
        h, w = int(info["height"]), int(info["width"])
        item = f"annotation {ann['id']} ({info['file_name']})"
        seg = ann["segmentation"]
        if isinstance(seg, list):
            for polygon in seg:
                xy = np.asarray(polygon, dtype=float)
                if xy.ndim != 1 or len(xy) < 6 or len(xy) % 2:
                    return (
                        item,
                        f"a polygon needs at least 3 (x, y) vertices, got {len(xy)} numbers",
                    )
                if not np.isfinite(xy).all():
                    return item, "a polygon has NaN or infinite coordinates"
                x, y = xy[0::2], xy[1::2]
                t = POLYGON_TOLERANCE
                if x.min() < -t or y.min() < -t or x.max() > w + t or y.max() > h + t:
                    return (
                        item,
                        f"a polygon reaches outside the {w}x{h} image (x {x.min():g}..{x.max():g},"
                        f" y {y.min():g}..{y.max():g})",
                    )
        elif isinstance(seg, dict) and list(seg.get("size", [])) != [h, w]:
            return item, f"its RLE is of size {seg.get('size')} but the image is {h}x{w} (HxW)"
        if verify is True or verify == "full":
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", message=".*copy keyword", category=DeprecationWarning
                )
                if not self.coco.annToMask(ann).any():
                    return item, "empty mask (no object pixel): a prompt needs an object"
        return None

    def problems(self) -> list[Problem]:
        """(item, reason) for every image or instance left out when it opened (``"skip"``)."""
        return list(self._problems)

    def __len__(self) -> int:
        return len(self.ann_ids)

    def sample(self, index: int) -> Sample:
        ann = self.coco.anns[self.ann_ids[index]]
        info = self.coco.imgs[ann["image_id"]]
        img_path = self.images_dir / info["file_name"]
        image = load_image(img_path, self.max_side)
        with warnings.catch_warnings():  # pycocotools' Cython decoder vs numpy 2, harmless
            warnings.filterwarnings("ignore", message=".*copy keyword", category=DeprecationWarning)
            mask = self.coco.annToMask(ann).astype(bool)
        factor = read_factor(mask.shape, self.max_side)
        mask = reduce_mask(mask, factor)  # the grid load_image read the image on
        if mask.shape != image.shape[:2]:
            raise UserError(
                f"{img_path} is {image.shape[1]}x{image.shape[0]} (WxH) but its annotation "
                f"{ann['id']} declares {info['width']}x{info['height']}"
            )
        cat = self.coco.cats.get(ann["category_id"], {})
        meta = {
            "dataset": "coco",
            "image_id": int(ann["image_id"]),
            "ann_id": int(ann["id"]),
            "category_id": int(ann["category_id"]),
            "category": cat.get("name", ""),
            "area": float(ann.get("area", np.nan)),
            "image_path": str(img_path),
            "read_factor": factor,
        }
        return Sample(image=image, mask=mask, name=f"{ann['image_id']}_{ann['id']}", meta=meta)

    def __repr__(self) -> str:
        return f"CocoInstances({len(self)} instances, images={str(self.images_dir)!r})"

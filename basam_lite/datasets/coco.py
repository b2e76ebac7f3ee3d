"""COCO-style instance annotations as one ``Sample`` per object instance (via pycocotools)."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np

from .loading import load_image
from .sample import Sample, SampleSequence

DEFAULT_MIN_AREA = 32.0 * 32.0
"""COCO's small/medium boundary: smaller instances are a few dozen pixels at SAM's input size."""


class CocoInstances(SampleSequence):
    """One sample per annotated instance of a COCO annotation file.

    Args:
        annotations_json: an ``instances_*.json`` file.
        images_dir: folder holding the images named by the file's ``file_name`` fields.
        min_area: instances whose annotated ``area`` (pixels) is below this are left out.
        max_instances: keep only the first instances in (image id, annotation id) order.

    Crowd annotations (``iscrowd=1``) are skipped: they mark a group of objects with one region,
    which has no single object for a prompt to select. ``Sample.name`` is
    ``"{image_id}_{ann_id}"``; the mask comes from ``COCO.annToMask`` (polygons and RLE alike).

    Raises:
        FileNotFoundError: the annotation file or any referenced image is missing (all listed).
    """

    def __init__(
        self,
        annotations_json: str | Path,
        images_dir: str | Path,
        min_area: float = DEFAULT_MIN_AREA,
        max_instances: int | None = None,
    ) -> None:
        from pycocotools.coco import COCO

        path = Path(annotations_json)
        if not path.is_file():
            raise FileNotFoundError(f"COCO annotation file {path} does not exist")
        self.images_dir = Path(images_dir)
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"COCO images folder {self.images_dir} does not exist")
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            self.coco = COCO(str(path))

        anns = sorted(
            (a for a in self.coco.dataset.get("annotations", []) if not a.get("iscrowd", 0)),
            key=lambda a: (a["image_id"], a["id"]),
        )
        anns = [a for a in anns if float(a.get("area", 0.0)) >= min_area and a.get("segmentation")]
        if max_instances is not None:
            anns = anns[: int(max_instances)]
        self.ann_ids: list[int] = [int(a["id"]) for a in anns]
        if not self.ann_ids:
            raise ValueError(
                f"{path}: no instance left (crowd annotations skipped, min_area={min_area}, "
                f"max_instances={max_instances}); lower min_area or check the file"
            )

        missing = sorted(
            {
                str(self.images_dir / self.coco.imgs[a["image_id"]]["file_name"])
                for a in anns
                if not (self.images_dir / self.coco.imgs[a["image_id"]]["file_name"]).is_file()
            }
        )
        if missing:
            listed = "\n  ".join(missing[:10])
            more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise FileNotFoundError(
                f"{len(missing)} image(s) named in {path} are missing from {self.images_dir}:\n"
                f"  {listed}{more}\nCheck images_dir (it must hold the files named by 'file_name')."
            )

    def __len__(self) -> int:
        return len(self.ann_ids)

    def sample(self, index: int) -> Sample:
        ann = self.coco.anns[self.ann_ids[index]]
        info = self.coco.imgs[ann["image_id"]]
        img_path = self.images_dir / info["file_name"]
        image = load_image(img_path)
        with warnings.catch_warnings():  # pycocotools' Cython decoder vs numpy 2, harmless
            warnings.filterwarnings("ignore", message=".*copy keyword", category=DeprecationWarning)
            mask = self.coco.annToMask(ann).astype(bool)
        if mask.shape != image.shape[:2]:
            raise ValueError(
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
        }
        return Sample(image=image, mask=mask, name=f"{ann['image_id']}_{ann['id']}", meta=meta)

    def __repr__(self) -> str:
        return f"CocoInstances({len(self)} instances, images={str(self.images_dir)!r})"

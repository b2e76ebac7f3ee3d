"""Dataset spec strings, as the command line takes them: ``scheme[:arguments]``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import UserError
from .coco import CocoInstances
from .folders import FolderDataset, OnError, Verify, cod10k, dis5k, duts_te, isic2016
from .procedural import ProceduralScenes
from .sample import Sample

DEFAULT_SYNTHETIC_N = 24

DATASET_SPECS = {
    "synthetic": (
        "synthetic[:N[:SPLIT[:MIX]]]  procedural scenes (default N=24, split test, "
        "mix standard; MIX=hard for the stress test)"
    ),
    "folder": "folder:PATH  PATH/images + PATH/masks, or image/mask pairs in PATH itself",
    "dis5k": "dis5k:PATH[:SPLIT]  DIS5K folder, split DIS-TE1 (default) .. DIS-TE4, DIS-TE, DIS-VD",
    "duts": "duts:PATH  DUTS-TE folder (or its parent)",
    "isic2016": "isic2016:PATH  folder with the ISIC 2016 Part 1 test data and ground truth",
    "cod10k": "cod10k:PATH  COD10K-v3 folder (or its Test folder)",
    "coco": "coco:ANNOTATIONS.json:IMAGES  one sample per instance",
}
"""Every scheme ``open_dataset`` understands, with its syntax."""


def _usage() -> str:
    return "valid dataset specs:\n  " + "\n  ".join(DATASET_SPECS.values())


def _folder(path: str, **checks: object) -> FolderDataset:
    root = Path(path)
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return FolderDataset(root, **checks)  # type: ignore[arg-type]
    return FolderDataset(root, images=".", masks=".", **checks)  # type: ignore[arg-type]


def open_dataset(
    spec: str,
    *,
    seed: int = 0,
    size: int = 256,
    on_error: OnError = "raise",
    verify: Verify = True,
) -> Sequence[Sample]:
    """Open the dataset a spec string names (syntax in ``DATASET_SPECS``).

    ``seed`` and ``size`` only apply to ``synthetic`` (scenes are rendered at ``size``); file
    datasets are returned at their native resolution. File datasets are checked as they open
    (``verify``, see :class:`FolderDataset` and :class:`CocoInstances`): with
    ``on_error="raise"`` every bad file is listed in one UserError; with ``"skip"`` they are
    left out and listed by the dataset's ``problems()``. A spec that selects nothing
    (``synthetic:0``, a folder without images) is a UserError.
    """
    checks = {"on_error": on_error, "verify": verify}
    scheme, _, rest = spec.partition(":")
    if scheme not in DATASET_SPECS:
        raise UserError(f"unknown dataset scheme {scheme!r} in {spec!r}; {_usage()}")
    if scheme == "synthetic":
        parts = rest.split(":") if rest else []
        if len(parts) > 3:
            raise UserError(f"bad spec {spec!r}; expected {DATASET_SPECS['synthetic']}")
        try:
            n = int(parts[0]) if parts and parts[0] else DEFAULT_SYNTHETIC_N
        except ValueError:
            raise UserError(
                f"bad spec {spec!r}: N must be an integer; expected {DATASET_SPECS['synthetic']}"
            ) from None
        if n < 1:
            raise UserError(
                f"bad spec {spec!r}: it selects {n} scenes; give N >= 1 (e.g. synthetic:24)"
            )
        split = parts[1] if len(parts) >= 2 and parts[1] else "test"
        mix = parts[2] if len(parts) == 3 else "standard"
        return ProceduralScenes(n=n, seed=seed, size=size, split=split, mix=mix)
    if not rest:
        raise UserError(f"spec {spec!r} names no path; expected {DATASET_SPECS[scheme]}")
    if scheme == "folder":
        return _folder(rest, **checks)
    if scheme == "dis5k":
        path, _, split = rest.rpartition(":")
        if path and split.startswith("DIS-"):
            return dis5k(path, split, **checks)  # type: ignore[arg-type]
        if path and split and "/" not in split and "\\" not in split:  # a split, misspelt
            raise UserError(
                f"bad spec {spec!r}: {split!r} is not a DIS5K split; expected "
                f"{DATASET_SPECS['dis5k']}, e.g. dis5k:/data/DIS5K:DIS-TE2"
            )
        return dis5k(rest, **checks)  # type: ignore[arg-type]
    if scheme == "duts":
        return duts_te(rest, **checks)  # type: ignore[arg-type]
    if scheme == "isic2016":
        return isic2016(rest, **checks)  # type: ignore[arg-type]
    if scheme == "cod10k":
        return cod10k(rest, **checks)  # type: ignore[arg-type]
    # coco
    annotations, sep, images = rest.rpartition(":")
    if not sep or not annotations or not images:
        raise UserError(f"bad spec {spec!r}; expected {DATASET_SPECS['coco']}")
    return CocoInstances(annotations, images, **checks)  # type: ignore[arg-type]

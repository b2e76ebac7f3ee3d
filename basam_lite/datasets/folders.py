"""Image/mask pairs stored as files, and the official layouts of the benchmark datasets.

``FolderDataset`` pairs image and mask files by file stem. The index is built (and, by
default, every file's header checked) at construction; pixels are read in ``__getitem__``.
Pixel conventions (RGB conversion, mask binarisation) are those of ``loading``.

Official layouts (thin constructors around ``FolderDataset``):

=============  ===========================================================================
``dis5k``      ``DIS5K/<split>/im/*.jpg`` + ``DIS5K/<split>/gt/*.png``
``duts_te``    ``DUTS-TE/DUTS-TE-Image/*.jpg`` + ``DUTS-TE/DUTS-TE-Mask/*.png``
``isic2016``   ``ISBI2016_ISIC_Part1_Test_Data/<id>.jpg`` +
               ``ISBI2016_ISIC_Part1_Test_GroundTruth/<id>_Segmentation.png``
``cod10k``     ``COD10K-v3/Test/Image/*.jpg`` + ``COD10K-v3/Test/GT_Object/*.png``
=============  ===========================================================================
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from ..errors import UserError
from .loading import (
    READ_MAX_SIDE,
    check_image,
    image_size,
    load_image,
    load_mask,
    read_factor,
    reduce_mask,
)
from .sample import Problem, Sample, SampleSequence, report_problems

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MASK_EXTS = (".png", ".bmp", ".tif", ".tiff", ".gif", ".jpg", ".jpeg")
# When images and masks share one folder (PerSeg style) the extension tells them apart.
SHARED_FOLDER_IMAGE_EXTS = (".jpg", ".jpeg", ".webp")
SHARED_FOLDER_MASK_EXTS = (".png", ".bmp", ".gif", ".tif", ".tiff")

OnError = Literal["raise", "skip"]
Verify = bool | Literal["header", "full"]


def _files(folder: Path, exts: Sequence[str]) -> list[Path]:
    wanted = {e.lower() for e in exts}
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in wanted
    )


def check_pair(
    img_path: Path, mask_path: Path, full: bool = True, max_side: int | None = READ_MAX_SIDE
) -> Problem | None:
    """The problem of one image/mask pair, or None: unreadable (or, with ``full``, truncated)
    files, sizes that differ, and with ``full`` an empty or label mask (also one whose object
    vanishes when a huge image is read reduced to ``max_side``)."""
    try:
        ih, iw = check_image(img_path) if full else image_size(img_path)
        if full:
            mask = load_mask(mask_path)
            mh, mw = mask.shape
        else:
            mh, mw = image_size(mask_path)
    except FileNotFoundError as exc:
        return str(img_path), str(exc)
    except ValueError as exc:  # loading's UserErrors name the file and the problem
        text = str(exc)
        bad = mask_path if str(mask_path) in text else img_path
        text = text.split("; ")[0] if "cannot read" in text else text
        return str(bad), text.replace(f"{bad} ", "the file ", 1)
    if (ih, iw) != (mh, mw):
        return str(img_path), f"the image is {iw}x{ih} (WxH) but its mask {mask_path} is {mw}x{mh}"
    if full and not mask.any():
        return str(mask_path), "empty mask (no object pixel): a prompt needs an object"
    factor = read_factor((ih, iw), max_side)
    if full and factor > 1 and not reduce_mask(mask, factor).any():
        return str(mask_path), (
            f"the object vanishes when this {iw}x{ih} image is read at 1/{factor} of its side "
            f"(images over {max_side} px are reduced; the mask's majority rule leaves no pixel)"
        )
    return None


class FolderDataset(SampleSequence):
    """Image/mask pairs from ``root/images`` and ``root/masks``, paired by file stem.

    Args:
        root: dataset folder.
        images, masks: sub-folders of ``root`` ("." for ``root`` itself). They may be the same
            folder: then images are the ``.jpg/.jpeg/.webp`` files and masks the
            ``.png/.bmp/.gif/.tif`` files, unless ``image_exts``/``mask_exts`` say otherwise.
        mask_suffix: text that ends every mask stem and not the image's (ISIC's
            ``"_Segmentation"``); stripped before pairing.
        image_exts, mask_exts: accepted extensions (case-insensitive); defaults above.
        on_error: "raise" (default) refuses, at construction, a folder with any image without
            a mask, mask without an image, unreadable or truncated file, image/mask size
            mismatch, empty mask or label mask (``loading``'s rule), listing them all in one
            :class:`~basam_lite.errors.UserError`; "skip" leaves those pairs out, warns once
            per file and lists them in :meth:`problems` (never silently).
        verify: ``True`` / ``"full"`` (default) decodes every image and mask once at
            construction (nothing is kept: pixels are read again in ``__getitem__``), so bad
            files show up before a long run rather than in the middle of it; ``"header"`` reads
            only the headers (sizes and unreadable files); ``False`` checks nothing.
        name_prefix: prepended to the file stem to make ``Sample.name``.
        dataset: recorded in ``Sample.meta["dataset"]``.
        max_side: an image whose longest side exceeds it is read reduced, its mask on the same
            grid (``loading``'s rule; ``Sample.meta["read_factor"]`` says by how much); None
            reads every image natively.

    Raises:
        FileNotFoundError: ``root`` or a sub-folder does not exist.
        UserError: no image in the folder, or problems listed above with on_error="raise".
    """

    def __init__(
        self,
        root: str | Path,
        images: str = "images",
        masks: str = "masks",
        *,
        mask_suffix: str = "",
        image_exts: Sequence[str] | None = None,
        mask_exts: Sequence[str] | None = None,
        on_error: OnError = "raise",
        verify: Verify = True,
        name_prefix: str = "",
        dataset: str = "folder",
        max_side: int | None = READ_MAX_SIDE,
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise UserError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if verify not in (True, False, "header", "full"):
            raise UserError(f"verify must be True, False, 'header' or 'full', got {verify!r}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset folder {self.root} does not exist or is not a folder")
        self.image_dir = self.root / images
        self.mask_dir = self.root / masks
        roles = (
            ("image", self.image_dir, "images", images),
            ("mask", self.mask_dir, "masks", masks),
        )
        for role, folder, arg, value in roles:
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"expected the {role} folder {folder} (root {self.root}, "
                    f"{arg}={value!r}); point root at the dataset folder or pass "
                    f"{arg}=<sub-folder>"
                )
        self.name_prefix = name_prefix
        self.dataset = dataset
        self.max_side = max_side
        what = f"{dataset} dataset at {self.root}"

        shared = self.image_dir.resolve() == self.mask_dir.resolve()
        if image_exts is None:
            image_exts = SHARED_FOLDER_IMAGE_EXTS if shared and not mask_suffix else IMAGE_EXTS
        if mask_exts is None:
            mask_exts = SHARED_FOLDER_MASK_EXTS if shared and not mask_suffix else MASK_EXTS

        mask_files = _files(self.mask_dir, mask_exts)
        if mask_suffix:
            mask_files = [p for p in mask_files if p.stem.endswith(mask_suffix)]
        claimed = set(mask_files) if shared else set()
        image_files = [p for p in _files(self.image_dir, image_exts) if p not in claimed]
        if not image_files:
            raise UserError(
                f"{what}: no image files ({', '.join(image_exts)}) in {self.image_dir}; "
                "check the path and the images=/image_exts= arguments"
            )

        problems: list[Problem] = []
        by_stem: dict[str, Path] = {}
        for p in image_files:
            if p.stem in by_stem:
                problems.append(
                    (str(p), f"another image has the same stem ({by_stem[p.stem].name})")
                )
            else:
                by_stem[p.stem] = p
        mask_by_stem: dict[str, Path] = {}
        for p in mask_files:
            stem = p.stem[: len(p.stem) - len(mask_suffix)] if mask_suffix else p.stem
            if stem in mask_by_stem:
                problems.append(
                    (str(p), f"another mask has the same stem ({mask_by_stem[stem].name})")
                )
            else:
                mask_by_stem[stem] = p
        for stem, p in by_stem.items():
            if stem not in mask_by_stem:
                problems.append(
                    (
                        str(p),
                        f"image without a mask (expected {self.mask_dir / stem}{mask_suffix} with "
                        f"one of {', '.join(mask_exts)})",
                    )
                )
        for stem, p in mask_by_stem.items():
            if stem not in by_stem:
                problems.append(
                    (str(p), f"mask without an image (expected {self.image_dir / stem}.*)")
                )

        pairs = [(by_stem[s], mask_by_stem[s]) for s in sorted(by_stem) if s in mask_by_stem]
        if verify:
            checked = []
            for img_path, mask_path in pairs:
                problem = check_pair(
                    img_path, mask_path, full=verify != "header", max_side=max_side
                )
                if problem is None:
                    checked.append((img_path, mask_path))
                else:
                    problems.append(problem)
            pairs = checked
        self._problems = problems
        report_problems(problems, on_error, what)
        if not pairs:
            raise UserError(f"{what}: no usable image/mask pair left (all were skipped)")
        self.pairs: list[tuple[Path, Path]] = pairs

    def problems(self) -> list[Problem]:
        """(file, reason) for every file left out at construction (``on_error="skip"``)."""
        return list(self._problems)

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def names(self) -> list[str]:
        """Every ``Sample.name``, in order, without reading any pixel."""
        return [self.name_prefix + img.stem for img, _ in self.pairs]

    def sample(self, index: int) -> Sample:
        img_path, mask_path = self.pairs[index]
        image = load_image(img_path, self.max_side)
        mask = load_mask(mask_path, self.max_side)
        if image.shape[:2] != mask.shape:
            raise UserError(
                f"{img_path} is {image.shape[1]}x{image.shape[0]} (WxH) but its mask "
                f"{mask_path} is {mask.shape[1]}x{mask.shape[0]}; resize or replace the mask"
            )
        meta = {
            "dataset": self.dataset,
            "image_path": str(img_path),
            "mask_path": str(mask_path),
            "read_factor": read_factor(image_size(img_path), self.max_side),
        }
        return Sample(image=image, mask=mask, name=self.name_prefix + img_path.stem, meta=meta)

    def __repr__(self) -> str:
        return f"FolderDataset({str(self.root)!r}, {len(self)} pairs, dataset={self.dataset!r})"


class ConcatDataset(SampleSequence):
    """Several datasets one after the other (e.g. DIS-TE1..4); sample names must stay unique."""

    def __init__(self, parts: Sequence[Sequence[Sample]]) -> None:
        self.parts = list(parts)
        self._ends: list[int] = []
        total = 0
        for part in self.parts:
            total += len(part)
            self._ends.append(total)

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def sample(self, index: int) -> Sample:
        i = index + len(self) if index < 0 else index
        if not 0 <= i < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        k = bisect.bisect_right(self._ends, i)
        start = self._ends[k - 1] if k else 0
        return self.parts[k][i - start]

    def problems(self) -> list[Problem]:
        """Every part's :meth:`~SampleSequence.problems`, in order."""
        return [p for part in self.parts for p in getattr(part, "problems", list)()]

    def __repr__(self) -> str:
        return f"ConcatDataset({len(self.parts)} parts, {len(self)} samples)"


def _locate(candidates: Sequence[Path], subdirs: Sequence[str]) -> Path | None:
    for folder in candidates:
        if all((folder / s).is_dir() for s in subdirs):
            return folder
    return None


def _layout_error(name: str, root: Path, expected: Path, subdirs: Sequence[str], hint: str):
    wanted = " and ".join(str(expected / s) for s in subdirs)
    return FileNotFoundError(
        f"{name}: no dataset under {root}: expected the folders {wanted} ({hint})"
    )


DIS5K_SPLITS = ("DIS-TR", "DIS-VD", "DIS-TE1", "DIS-TE2", "DIS-TE3", "DIS-TE4")
"""DIS5K's splits; ``dis5k(root, "DIS-TE")`` concatenates DIS-TE1..4."""


def dis5k(
    root: str | Path, split: str = "DIS-TE1", *, on_error: OnError = "raise", verify: Verify = True
) -> FolderDataset | ConcatDataset:
    """DIS5K (``root/<split>/im/*.jpg``, ``root/<split>/gt/*.png``); names are ``<split>/<stem>``.

    ``root`` is the DIS5K folder (or the split folder itself). ``split`` is one of
    ``DIS5K_SPLITS`` or "DIS-TE" for the four test splits together.
    """
    root = Path(root)
    if split == "DIS-TE":
        tests = [s for s in DIS5K_SPLITS if s.startswith("DIS-TE")]
        return ConcatDataset([dis5k(root, s, on_error=on_error, verify=verify) for s in tests])
    if split not in DIS5K_SPLITS:
        raise UserError(
            f"unknown DIS5K split {split!r}; expected one of {DIS5K_SPLITS} or 'DIS-TE'"
        )
    candidates = [root / split, root / "DIS5K" / split] + ([root] if root.name == split else [])
    folder = _locate(candidates, ("im", "gt"))
    if folder is None:
        raise _layout_error(
            "dis5k",
            root,
            root / split,
            ("im", "gt"),
            "layout DIS5K/<split>/im/*.jpg and "
            "DIS5K/<split>/gt/*.png; pass the DIS5K folder as root",
        )
    return FolderDataset(
        folder,
        "im",
        "gt",
        on_error=on_error,
        verify=verify,
        name_prefix=f"{split}/",
        dataset="dis5k",
    )


def duts_te(
    root: str | Path, *, on_error: OnError = "raise", verify: Verify = True
) -> FolderDataset:
    """DUTS-TE (``DUTS-TE-Image/*.jpg``, ``DUTS-TE-Mask/*.png``).

    ``root`` is the DUTS-TE folder or the folder holding it.
    """
    root = Path(root)
    subdirs = ("DUTS-TE-Image", "DUTS-TE-Mask")
    folder = _locate([root, root / "DUTS-TE"], subdirs)
    if folder is None:
        raise _layout_error(
            "duts_te", root, root, subdirs, "pass the DUTS-TE folder, or the folder holding it"
        )
    return FolderDataset(folder, *subdirs, on_error=on_error, verify=verify, dataset="duts_te")


def isic2016(
    root: str | Path, *, on_error: OnError = "raise", verify: Verify = True
) -> FolderDataset:
    """ISIC 2016 Part 1 test set; the mask of ``ISIC_0000003.jpg`` is
    ``ISIC_0000003_Segmentation.png`` (the suffix is stripped for pairing)."""
    root = Path(root)
    subdirs = ("ISBI2016_ISIC_Part1_Test_Data", "ISBI2016_ISIC_Part1_Test_GroundTruth")
    folder = _locate([root, root / "ISIC2016"], subdirs)
    if folder is None:
        raise _layout_error(
            "isic2016",
            root,
            root,
            subdirs,
            "pass the folder where both ISIC 2016 Part 1 test archives were extracted",
        )
    return FolderDataset(
        folder,
        *subdirs,
        mask_suffix="_Segmentation",
        image_exts=(".jpg", ".jpeg"),
        mask_exts=(".png",),
        on_error=on_error,
        verify=verify,
        dataset="isic2016",
    )


def cod10k(
    root: str | Path, *, on_error: OnError = "raise", verify: Verify = True
) -> FolderDataset:
    """COD10K-v3 test set (``Test/Image/*.jpg``, ``Test/GT_Object/*.png``); ``root`` is
    COD10K-v3 or its ``Test`` folder."""
    root = Path(root)
    subdirs = ("Image", "GT_Object")
    folder = _locate([root / "Test", root, root / "COD10K-v3" / "Test"], subdirs)
    if folder is None:
        raise _layout_error(
            "cod10k", root, root / "Test", subdirs, "pass the COD10K-v3 folder or its Test folder"
        )
    return FolderDataset(folder, *subdirs, on_error=on_error, verify=verify, dataset="cod10k")

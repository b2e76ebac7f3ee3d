"""Reading images and binary masks from disk with Pillow, with one documented convention each.

Images become (H, W, 3) uint8 RGB: greyscale is repeated over the three channels, an alpha
channel is dropped (not composited), palette images are looked up, 16-bit data is scaled to 8 bit
(value / 257, rounded) and float data in [0, 1] is scaled by 255. EXIF orientation is ignored on
purpose: dataset masks are drawn on the stored pixel grid, not on the rotated view.

Masks become (H, W) bool, by one rule (never a silently empty mask):

1. 1-bit images (mode "1") are used as they are;
2. a mask with at most one value besides 0 is binary: any non-zero value is the object. This
   covers 0/255 and 0/1 masks, palette PNGs whose indices are {0, 1} (PerSeg's) and 16-bit
   0/65535 masks (colour masks are read by luminance, alpha dropped);
3. a grey-level mask (not a palette) with more values whose top reaches the upper half of the
   8-bit range (16-bit scaled by 1/257) is an anti-aliased or JPEG-compressed 0/255 mask: True
   where the grey value is > 127, which cuts soft edges at half intensity;
4. anything else is a label mask holding several objects (values such as {0, 1, 2}, or palette
   indices beyond {0, v}): it is refused with a :class:`~basam_lite.errors.UserError` naming the
   values found, since no single object can be chosen for it. Save one object as 0/255.

An all-zero mask reads as empty; datasets report it as a problem when they open (a prompt needs
an object).

Huge images are read reduced (``max_side``; datasets use :data:`READ_MAX_SIDE`, 4096 px): an
image whose longest side ``L`` exceeds it is read at ``ceil(H / f) x ceil(W / f)``, ``f``
the smallest power of two with ``L / f <= max_side`` (:func:`read_factor`; a 10000 px side is
read at 2500 px), and its mask on the same grid. The image: a JPEG is decoded by libjpeg's DCT
scaling (1/2, 1/4 or 1/8 of the side, ``Image.draft``, so the full image is never in memory)
and any factor beyond 8 box-filtered (``Image.reduce``); other formats are decoded and
box-filtered. The mask: each reduced pixel
is the majority of its block (:func:`reduce_mask`: object where more than half the block's
pixels are; a tie is background), so every metric of a reduced image is the metric of the
prediction against that majority mask at the reduced size. Nothing is resampled below the
limit: images up to 4096 px (DIS5K's among them) are read and scored natively.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import UserError


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        top = 1.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else 255.0
        return np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
    # 16-bit (and Pillow's 32-bit "I" mode that holds 16-bit PNG data): 65535 -> 255.
    return np.clip(np.rint(arr.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)


MAX_PIXELS = 2 * (Image.MAX_IMAGE_PIXELS or 89_478_485)
"""Largest image read, in pixels (about 179 million, 13,000 x 13,000): Pillow's own
decompression-bomb limit. A larger file is refused in one line (skipped with ``on_error='skip'``),
never decoded."""


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn PIL's many failure types into errors that name the file and what to do."""
    try:
        yield
    except FileNotFoundError:
        raise FileNotFoundError(f"file not found: {path}") from None
    except UserError:
        raise
    except Image.DecompressionBombError:
        raise UserError(
            f"{path} is larger than the {2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixel limit for "
            "one image (Pillow's "
            "decompression-bomb guard); shrink it, remove it, or skip it with --on-error skip"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UserError(
            f"cannot read {path} as an image ({type(exc).__name__}: {exc}); replace or remove "
            "the file (or load the dataset with on_error='skip')"
        ) from exc


def _open(path: Path) -> Image.Image:
    with _reading(path):
        img = Image.open(path)
        img.load()
    return img


def image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) of an image file, from its header only; ValueError naming the file if unreadable."""
    path = Path(path)
    with _reading(path), Image.open(path) as img:
        w, h = img.size
    return int(h), int(w)


READ_MAX_SIDE = 4096
"""Longest side, in px, a dataset reads an image at (larger ones are reduced, see above)."""


def read_factor(hw: tuple[int, int], max_side: int | None) -> int:
    """The factor an image of ``hw`` = (H, W) is reduced by to fit ``max_side``: the smallest
    power of two ``f`` with ``max(H, W) / f <= max_side`` (1: read as it is; ``max_side=None``:
    never reduced). Powers of two let a JPEG decode at the reduced size (DCT scaling)."""
    if max_side is None:
        return 1
    if max_side < 1:
        raise UserError(f"max_side must be a positive number of pixels, got {max_side}")
    return 1 << max(0, math.ceil(math.log2(max(hw) / max_side)))


def reduced_hw(hw: tuple[int, int], factor: int) -> tuple[int, int]:
    """(H, W) after reducing by ``factor``: ``(ceil(H / factor), ceil(W / factor))``."""
    return -(-hw[0] // factor), -(-hw[1] // factor)


def reduce_mask(mask: np.ndarray, factor: int) -> np.ndarray:
    """(H, W) bool ``mask`` on the grid reduced by ``factor``: each pixel is True where more
    than half the pixels of its ``factor x factor`` block (clipped at the border) are
    (``2 * count > block size``; a tie is background)."""
    if factor == 1:
        return mask
    h, w = mask.shape
    rows, cols = np.arange(0, h, factor), np.arange(0, w, factor)
    counts = np.add.reduceat(mask, rows, axis=0, dtype=np.uint32)
    counts = np.add.reduceat(counts, cols, axis=1, dtype=np.uint32)
    heights = np.minimum(rows + factor, h) - rows
    widths = np.minimum(cols + factor, w) - cols
    return 2 * counts.astype(np.int64) > heights[:, None] * widths[None, :]


def _reduced(img: Image.Image, factor: int) -> Image.Image:
    """``img`` (decoded, possibly already DCT-scaled) box-filtered to its reduced size."""
    return img.reduce(factor) if factor > 1 else img


def load_image(path: str | Path, max_side: int | None = None) -> np.ndarray:
    """Read ``path`` as (H, W, 3) uint8 RGB (conventions in the module docstring); with
    ``max_side`` an image larger than it is read reduced by :func:`read_factor` (shape
    :func:`reduced_hw`)."""
    path = Path(path)
    with _reading(path):
        img = Image.open(path)
        factor = read_factor((img.height, img.width), max_side)
        target = reduced_hw((img.height, img.width), factor)
        rest = factor
        if factor > 1 and img.format == "JPEG":
            scale = min(8, factor)  # a power of two: libjpeg scales by 1/2, 1/4, 1/8
            w, h = img.size
            img.draft(img.mode, (w // scale, h // scale))
            # 0: libjpeg chose another scale; what it gave is box-filtered to the target size
            rest = factor // scale if img.size == reduced_hw((h, w), scale)[::-1] else 0
        img.load()
        if rest == 0:
            img = img.convert("RGB").resize(target[::-1], Image.Resampling.BOX)
            rest = 1
        if img.mode in ("RGB", "L"):
            img = _reduced(img, rest)
        arr = _image_array(img)
        if rest > 1 and img.mode not in ("RGB", "L"):
            arr = np.asarray(_reduced(Image.fromarray(arr), rest))
    if arr.shape[:2] != target:  # not reachable: reduce and draft round up alike
        raise RuntimeError(f"{path}: read at {arr.shape[:2]}, expected {target}")
    return np.ascontiguousarray(arr)


def _image_array(img: Image.Image) -> np.ndarray:
    """A decoded image as (H, W, 3) uint8 (conventions in the module docstring)."""
    if img.mode in ("RGB", "L"):
        arr = np.asarray(img)
    elif img.mode == "1":
        arr = np.asarray(img.convert("L"))
    elif img.mode.startswith(("I", "F")):
        arr = _to_uint8(np.asarray(img))
    elif img.mode == "P":
        # Palette with transparency goes through RGBA; the alpha is then dropped like any other.
        arr = np.asarray(img.convert("RGBA" if "transparency" in img.info else "RGB"))[..., :3]
    elif img.mode in ("RGBA", "LA"):
        arr = np.asarray(img)[..., :-1]
    else:  # CMYK, YCbCr, LAB, HSV, ...
        arr = np.asarray(img.convert("RGB"))
    arr = _to_uint8(arr)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return arr


def load_mask(path: str | Path, max_side: int | None = None) -> np.ndarray:
    """Read ``path`` as an (H, W) bool mask (the rule is in the module docstring); with
    ``max_side`` a mask larger than it is reduced by :func:`read_factor` with
    :func:`reduce_mask` (the grid :func:`load_image` reads its image on)."""
    mask = _native_mask(Path(path))
    return reduce_mask(mask, read_factor(mask.shape, max_side))


def _native_mask(path: Path) -> np.ndarray:
    img = _open(path)
    if img.mode == "1":
        return np.asarray(img, dtype=bool).copy()
    if img.mode == "LA":
        img = img.getchannel(0)
    elif img.mode not in ("P", "L", "1") and len(img.getbands()) > 1:
        img = img.convert("RGB").convert("L")  # colour masks by luminance
    values = np.asarray(img)  # P: palette indices are labels, whatever colour they are drawn in
    if img.mode in ("P", "L"):  # Pillow's histogram: no copy of 100 million pixels
        distinct = np.flatnonzero(img.histogram()[:256]).astype(np.uint8)
    else:  # I;16, I, F
        distinct = np.unique(values)
    nonzero = distinct[distinct != 0]
    if len(nonzero) <= 1:
        return values != 0
    if img.mode != "P" and int(_to_uint8(distinct[-1:])[0]) > 127:
        return _to_uint8(values) > 127
    shown = ", ".join(str(v) for v in distinct[:8].tolist())
    more = f", ... ({len(distinct)} values)" if len(distinct) > 8 else ""
    raise UserError(
        f"{path} is a label mask with the values {{{shown}{more}}}: a binary mask has 0 and one "
        "other value (or grey levels reaching above 127); save the object you mean as a 0/255 "
        "mask (e.g. mask == 2), or remove the file"
    )


def check_image(path: str | Path) -> tuple[int, int]:
    """Decode every pixel of ``path`` (a truncated or corrupt file fails here, naming it) and
    return its (H, W); nothing is kept."""
    path = Path(path)
    with _reading(path), Image.open(path) as img:
        w, h = img.size
        factor = min(8, read_factor((h, w), READ_MAX_SIDE))
        if factor > 1 and img.format == "JPEG":  # DCT-scaled: every byte decoded, less memory
            img.draft(img.mode, (w // factor, h // factor))
        img.load()
    return int(h), int(w)

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
"""

from __future__ import annotations

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


def load_image(path: str | Path) -> np.ndarray:
    """Read ``path`` as (H, W, 3) uint8 RGB (conventions in the module docstring)."""
    img = _open(Path(path))
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
    return np.ascontiguousarray(arr)


def load_mask(path: str | Path) -> np.ndarray:
    """Read ``path`` as an (H, W) bool mask (the rule is in the module docstring)."""
    path = Path(path)
    img = _open(path)
    if img.mode == "1":
        return np.asarray(img, dtype=bool).copy()
    raw = np.asarray(img)
    if img.mode == "P":
        values = raw  # palette indices are labels, whatever colour they are drawn in
    elif img.mode == "LA":
        values = raw[..., 0]
    elif raw.ndim == 3:
        values = np.asarray(img.convert("RGB").convert("L"))
    else:  # L, I;16, I, F
        values = raw
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
        img.load()
        w, h = img.size
    return int(h), int(w)

"""Reading images and binary masks from disk with Pillow, with one documented convention each.

Images become (H, W, 3) uint8 RGB: greyscale is repeated over the three channels, an alpha
channel is dropped (not composited), palette images are looked up, 16-bit data is scaled to 8 bit
(value / 257, rounded) and float data in [0, 1] is scaled by 255. EXIF orientation is ignored on
purpose: dataset masks are drawn on the stored pixel grid, not on the rotated view.

Masks become (H, W) bool:

1. 1-bit images (mode "1") and masks whose values are all 0 or 1 (label masks, including palette
   PNGs whose indices are {0, 1}, like PerSeg's) are True where the value is non-zero;
2. anything else is converted to 8-bit grey (palette looked up, colour by luminance, alpha
   dropped, 16-bit scaled by 1/257) and is True where the grey value is > 127, which keeps the
   object of 0/255 masks and binarises anti-aliased or JPEG-compressed edges at half intensity.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


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


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn PIL's many failure types into errors that name the file and what to do."""
    try:
        yield
    except FileNotFoundError:
        raise FileNotFoundError(f"file not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(
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
    """Read ``path`` as an (H, W) bool mask (conventions in the module docstring)."""
    img = _open(Path(path))
    if img.mode == "1":
        return np.asarray(img, dtype=bool).copy()
    raw = np.asarray(img)
    if raw.size and ((raw == 0) | (raw == 1)).all():
        return raw > 0 if raw.ndim == 2 else (raw > 0).any(axis=2)
    if img.mode == "P":
        grey = np.asarray(img.convert("RGB").convert("L"))
    elif img.mode.startswith(("I", "F")):
        grey = _to_uint8(raw)
    elif img.mode == "L":
        grey = raw
    elif img.mode == "LA":
        grey = raw[..., 0]
    else:
        grey = np.asarray(img.convert("RGB").convert("L"))
    return grey > 127

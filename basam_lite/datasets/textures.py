"""Resolution-independent textures for the procedural scenes.

A texture maps normalised scene coordinates (x along the width, y along the height, both in
[0, 1]) to RGB in [0, 1]. Procedural kinds are closed-form functions of (x, y); the "photo" kind
samples one of the natural images shipped inside scikit-image's wheel with bilinear
interpolation, so a scene rendered at 256 px and at 1024 px shows the same picture.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np

TEXTURE_KINDS = ("flat", "gradient", "stripes", "checker", "noise", "photo")

# Images inside the scikit-image wheel itself (no pooch download); checked offline with
# scikit-image 0.22-0.25. Grey ones are tinted between the texture's two colours.
PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "grass",
    "gravel",
    "brick",
    "camera",
    "coins",
    "moon",
)

RGB = tuple[float, float, float]

_TWO_PI_F = 2.0 * math.pi


@dataclass(frozen=True)
class Texture:
    """A texture's parameters. Unused fields keep their defaults for a given kind.

    ``t(x, y)`` in [0, 1] blends ``color_a`` (t = 0) and ``color_b`` (t = 1), except for colour
    photos, which are shown as they are.
    """

    kind: str
    color_a: RGB
    color_b: RGB = (0.0, 0.0, 0.0)
    freq: float = 1.0  # cycles per unit length (stripes, checker) or gradient steepness
    angle: float = 0.0
    phase: float = 0.0
    sharpness: float = 1.0  # 1: sinusoidal; larger: closer to hard-edged stripes/cells
    waves: tuple[tuple[float, float, float, float], ...] = ()  # noise: (fx, fy, phase, amp)
    photo: str = ""
    crop: tuple[float, float, float] = (0.0, 0.0, 1.0)  # photo: (u0, v0, side) in [0, 1]


def _blend(tex: Texture, t: np.ndarray) -> np.ndarray:
    a = np.asarray(tex.color_a, dtype=np.float32)
    b = np.asarray(tex.color_b, dtype=np.float32)
    t = t.astype(np.float32, copy=False)[:, None]
    return a + (b - a) * t


def _squash(s: np.ndarray, sharpness: float) -> np.ndarray:
    """Map s in [-1, 1] to [0, 1]; high sharpness approaches a step without aliasing artefacts."""
    return 0.5 + 0.5 * np.tanh(sharpness * s) / math.tanh(sharpness)


@functools.lru_cache(maxsize=len(PHOTOS))
def _load_photo(name: str) -> np.ndarray | None:
    """The named scikit-image picture as float32 (H, W, C) in [0, 1], or None if unavailable."""
    try:
        from skimage import data

        img = np.asarray(getattr(data, name)())
    except Exception as exc:  # a trimmed or future scikit-image build: fall back, loudly
        warnings.warn(
            f"scikit-image picture {name!r} could not be loaded offline ({exc}); the procedural "
            "scenes use a noise texture in its place, so scenes differ from other machines",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    img = img.astype(np.float32) / 255.0
    if img.ndim == 2:
        img = img[:, :, None]
    return np.ascontiguousarray(img[:, :, :3])


def _photo(tex: Texture, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    img = _load_photo(tex.photo)
    if img is None:
        return _blend(tex, _noise_t(_fallback_waves(tex), x, y))
    h, w = img.shape[:2]
    side = min(h, w)
    u0, v0, crop = tex.crop
    # Source pixel coordinates (pixel centres at integers) of each scene point.
    col = (u0 + x * crop) * side - 0.5
    row = (v0 + y * crop) * side - 0.5
    col = np.clip(col, 0.0, w - 1.0)
    row = np.clip(row, 0.0, h - 1.0)
    c0 = np.minimum(col.astype(np.int32), w - 2)
    r0 = np.minimum(row.astype(np.int32), h - 2)
    fc = (col - c0).astype(np.float32)[:, None]
    fr = (row - r0).astype(np.float32)[:, None]
    top = img[r0, c0] * (1 - fc) + img[r0, c0 + 1] * fc
    bottom = img[r0 + 1, c0] * (1 - fc) + img[r0 + 1, c0 + 1] * fc
    val = top * (1 - fr) + bottom * fr
    if val.shape[1] == 1:
        return _blend(tex, val[:, 0])
    return val


def _fallback_waves(tex: Texture) -> tuple[tuple[float, float, float, float], ...]:
    rng = np.random.default_rng(sum(map(ord, tex.photo)))
    return tuple(_random_waves(rng, 6, 2.0, 10.0))


def _noise_t(waves, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    acc = np.zeros(np.shape(x), dtype=np.float32)
    total = 0.0
    for fx, fy, phase, amp in waves:
        acc += amp * np.cos(_TWO_PI_F * (fx * x + fy * y) + phase).astype(np.float32)
        total += amp
    return 0.5 + 0.5 * acc / max(total, 1e-6)


def evaluate(tex: Texture, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Colour of ``tex`` at points (x, y), each of shape (N,): returns (N, 3) float32 in [0, 1]."""
    if tex.kind == "flat":
        return np.broadcast_to(np.asarray(tex.color_a, dtype=np.float32), (len(x), 3)).copy()
    if tex.kind == "photo":
        return _photo(tex, x, y)
    c, s = math.cos(tex.angle), math.sin(tex.angle)
    u = x * c + y * s
    if tex.kind == "gradient":
        # Centred on the scene, steepness freq: t spans [0, 1] over 1 / freq units.
        t = np.clip(0.5 + tex.freq * ((x - 0.5) * c + (y - 0.5) * s), 0.0, 1.0)
        return _blend(tex, t)
    if tex.kind == "stripes":
        return _blend(tex, _squash(np.sin(_TWO_PI_F * tex.freq * u + tex.phase), tex.sharpness))
    if tex.kind == "checker":
        v = -x * s + y * c
        wave = np.sin(_TWO_PI_F * tex.freq * u + tex.phase) * np.sin(_TWO_PI_F * tex.freq * v)
        return _blend(tex, _squash(wave, tex.sharpness))
    if tex.kind == "noise":
        return _blend(tex, _noise_t(tex.waves, x, y))
    raise ValueError(f"unknown texture kind {tex.kind!r}; expected one of {TEXTURE_KINDS}")


def _random_waves(rng: np.random.Generator, count: int, fmin: float, fmax: float):
    for _ in range(count):
        f = float(np.exp(rng.uniform(math.log(fmin), math.log(fmax))))
        theta = float(rng.uniform(0.0, 2.0 * math.pi))
        # 1/f amplitudes: smooth, natural-looking variation.
        yield (f * math.cos(theta), f * math.sin(theta), float(rng.uniform(0, _TWO_PI_F)), 1.0 / f)


def random_color(rng: np.random.Generator) -> RGB:
    """A random colour, saturation and brightness spread wide."""
    return tuple(float(v) for v in rng.uniform(0.05, 0.95, size=3))  # type: ignore[return-value]


def shifted_color(rng: np.random.Generator, color: RGB, amount: float) -> RGB:
    """``color`` moved by ``amount`` (Euclidean, RGB in [0, 1]) in a random direction."""
    direction = rng.normal(size=3)
    direction /= max(float(np.linalg.norm(direction)), 1e-6)
    moved = np.clip(np.asarray(color) + amount * direction, 0.0, 1.0)
    return tuple(float(v) for v in moved)  # type: ignore[return-value]


def sample_texture(
    rng: np.random.Generator,
    *,
    kinds: tuple[str, ...] = TEXTURE_KINDS,
    colors: tuple[RGB, RGB] | None = None,
) -> Texture:
    """Draw a random texture among ``kinds``; ``colors`` (a, b) fixes the palette if given."""
    kind = str(rng.choice(kinds))
    a, b = colors if colors is not None else (random_color(rng), random_color(rng))
    angle = float(rng.uniform(0.0, math.pi))
    if kind == "flat":
        return Texture("flat", a)
    if kind == "gradient":
        return Texture("gradient", a, b, freq=float(rng.uniform(0.5, 2.0)), angle=angle)
    if kind in ("stripes", "checker"):
        # At most ~24 cycles per unit: >= 10 px per cycle at 256 px, so no aliasing.
        return Texture(
            kind,
            a,
            b,
            freq=float(rng.uniform(3.0, 24.0 if kind == "stripes" else 12.0)),
            angle=angle,
            phase=float(rng.uniform(0.0, 2 * math.pi)),
            sharpness=float(rng.uniform(1.0, 6.0)),
        )
    if kind == "noise":
        waves = tuple(_random_waves(rng, int(rng.integers(4, 9)), 1.5, 16.0))
        return Texture("noise", a, b, waves=waves)
    photo = str(rng.choice(PHOTOS))
    side = float(rng.uniform(0.25, 0.9))
    u0, v0 = (float(v) for v in rng.uniform(0.0, 1.0 - side, size=2))
    return Texture("photo", a, b, photo=photo, crop=(u0, v0, side))


def mean_color(tex: Texture) -> RGB:
    """A rough average colour of ``tex`` (used to make low-contrast objects)."""
    if tex.kind == "flat":
        return tex.color_a
    grid = (np.arange(16) + 0.5) / 16
    x, y = np.meshgrid(grid, grid)
    rgb = evaluate(tex, x.ravel(), y.ravel()).mean(axis=0)
    return tuple(float(v) for v in rgb)  # type: ignore[return-value]

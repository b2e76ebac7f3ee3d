"""Procedural scenes: the same scene at any resolution, with an exact mask of one target object.

A scene is a small parameter record (``Scene``): a background texture and 2-5 objects, each an
analytic shape in normalised coordinates with a texture, painted back to front. One object is
the target; ``Sample.mask`` is its *visible* region (the occluders in front of it removed).
``render`` samples pixel centres of an (H, W) grid, so a scene rendered at 256 px and at
1024 px is the same picture and the masks agree up to boundary pixels.

Scene i of a ``ProceduralScenes(n, seed, split=...)`` depends only on (seed, split, i): it is the
same whatever ``n`` is, and the "train", "val" and "test" splits draw from separate streams.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from .sample import Sample, SampleSequence
from .shapes import SHAPE_KINDS, Shape, sample_shape, shape_area
from .textures import (
    Texture,
    evaluate,
    mean_color,
    sample_texture,
    shifted_color,
)

# Distinguishes this generator's random streams from any other user of the same seed.
_STREAM_TAG = 0xBA5A4

TARGET_AREA_RANGE = (0.015, 0.35)
"""Range of the target's drawn area (fraction of the image; log-uniform, before occlusion)."""

_DISTRACTOR_AREA_RANGE = (0.004, 0.15)
_TWO_PI = 2.0 * math.pi
MODE_PROBS = {"plain": 0.7, "low_contrast": 0.15, "camouflage": 0.15}
"""How often the target is drawn plainly, in low contrast to the background, or camouflaged."""
_MIN_VISIBLE = 0.5  # share of the target's own area that occluders may not hide
_CHECK_SIZE = (128, 128)  # grid for the visibility check at generation (resolution-free)


@dataclass(frozen=True)
class SceneObject:
    """One painted object: an analytic shape filled with a texture and a linear shading."""

    shape: Shape
    texture: Texture
    shading: float = 0.0  # brightness change from the object's centre to its rim, in [-1, 1]
    light_angle: float = 0.0  # direction (radians) in which the object gets brighter


@dataclass(frozen=True)
class Scene:
    """A procedural scene's parameters; ``objects`` run from back to front."""

    background: Texture
    objects: tuple[SceneObject, ...]
    target: int
    noise_sigma: float  # per-pixel Gaussian noise, RGB in [0, 1] units
    noise_seed: int
    tags: tuple[str, ...] = ()  # difficulty flags: low_contrast, camouflage, lookalike, occluded

    @property
    def target_object(self) -> SceneObject:
        return self.objects[self.target]


def _as_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int | np.integer) else size
    if int(h) < 1 or int(w) < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return int(h), int(w)


def _coverage(shape: Shape, hw: tuple[int, int]):
    """Pixels whose centre lies inside ``shape``: (row slice, col slice, inside, x, y) or None."""
    h, w = hw
    x0, y0, x1, y1 = shape.bounds()
    c0 = max(0, math.floor(x0 * w - 0.5))
    c1 = min(w, math.ceil(x1 * w + 0.5))
    r0 = max(0, math.floor(y0 * h - 0.5))
    r1 = min(h, math.ceil(y1 * h + 0.5))
    if c0 >= c1 or r0 >= r1:
        return None
    xs = ((np.arange(c0, c1) + 0.5) / w)[None, :]
    ys = ((np.arange(r0, r1) + 0.5) / h)[:, None]
    x, y = np.broadcast_arrays(xs, ys)
    inside = shape.contains(x, y)
    return slice(r0, r1), slice(c0, c1), inside, x[inside], y[inside]


def label_map(objects: Sequence[SceneObject], size: int | tuple[int, int]) -> np.ndarray:
    """(H, W) int16: index of the front-most object at each pixel, -1 for background."""
    hw = _as_hw(size)
    labels = np.full(hw, -1, dtype=np.int16)
    for k, obj in enumerate(objects):
        cov = _coverage(obj.shape, hw)
        if cov is not None:
            rows, cols, inside, _, _ = cov
            labels[rows, cols][inside] = k
    return labels


def render_layers(scene: Scene, size: int | tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise ``scene`` at ``size`` ((H, W) or an int for square).

    Returns the (H, W, 3) uint8 image and the (H, W) int16 label map (front-most object index,
    -1 for background). Pixel (i, j) samples the scene at ((j + 0.5) / W, (i + 0.5) / H).
    """
    h, w = _as_hw(size)
    xs = (np.arange(w, dtype=np.float64) + 0.5) / w
    ys = (np.arange(h, dtype=np.float64) + 0.5) / h
    gx, gy = np.meshgrid(xs, ys)
    image = evaluate(scene.background, gx.ravel(), gy.ravel()).reshape(h, w, 3)
    labels = np.full((h, w), -1, dtype=np.int16)
    for k, obj in enumerate(scene.objects):
        cov = _coverage(obj.shape, (h, w))
        if cov is None:
            continue
        rows, cols, inside, x, y = cov
        labels[rows, cols][inside] = k
        rgb = evaluate(obj.texture, x, y)
        if obj.shading:
            bx0, by0, bx1, by1 = obj.shape.bounds()
            cx, cy, radius = (bx0 + bx1) / 2, (by0 + by1) / 2, max(bx1 - bx0, by1 - by0) / 2
            along = (x - cx) * math.cos(obj.light_angle) + (y - cy) * math.sin(obj.light_angle)
            rgb *= (1.0 + obj.shading * along / radius).astype(np.float32)[:, None]
        image[rows, cols][inside] = rgb
    if scene.noise_sigma > 0:
        # Sensor noise is the one per-resolution ingredient: seeded by the scene and the size.
        rng = np.random.default_rng([scene.noise_seed, h, w])
        image += scene.noise_sigma * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8), labels


def render(scene: Scene, size: int | tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise ``scene``: (H, W, 3) uint8 RGB image and (H, W) bool mask of the visible target."""
    image, labels = render_layers(scene, size)
    return image, labels == scene.target


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(math.log(lo), math.log(hi))))


def _center_for(rng: np.random.Generator, area: float) -> tuple[float, float]:
    # Large objects stay mostly in frame; small ones may sit anywhere but the very edge.
    margin = min(0.45, max(0.1, 0.6 * math.sqrt(area / math.pi)))
    return float(rng.uniform(margin, 1 - margin)), float(rng.uniform(margin, 1 - margin))


def _variant(rng: np.random.Generator, tex: Texture, amount: float) -> Texture:
    """A texture of the same family as ``tex`` with nudged colours and geometry (camouflage)."""
    a = shifted_color(rng, tex.color_a, amount)
    b = shifted_color(rng, tex.color_b, amount)
    if tex.kind == "photo":
        side = tex.crop[2]
        u0, v0 = (float(v) for v in rng.uniform(0.0, 1.0 - side, size=2))
        return replace(tex, color_a=a, color_b=b, crop=(u0, v0, side))
    if tex.kind == "noise":
        waves = tuple(
            (fx, fy, p + float(rng.uniform(0, _TWO_PI)), amp) for fx, fy, p, amp in tex.waves
        )
        return replace(tex, color_a=a, color_b=b, waves=waves)
    return replace(
        tex,
        color_a=a,
        color_b=b,
        angle=tex.angle + float(rng.uniform(-0.4, 0.4)),
        phase=float(rng.uniform(0, _TWO_PI)),
        freq=tex.freq * float(rng.uniform(0.8, 1.25)),
    )


def _target_texture(rng: np.random.Generator, background: Texture, mode: str) -> Texture:
    if mode == "low_contrast":
        base = mean_color(background)
        colors = (
            shifted_color(rng, base, float(rng.uniform(0.06, 0.14))),
            shifted_color(rng, base, float(rng.uniform(0.08, 0.2))),
        )
        return sample_texture(rng, kinds=("flat", "gradient", "noise", "stripes"), colors=colors)
    if mode == "camouflage":
        return _variant(rng, background, float(rng.uniform(0.08, 0.2)))
    return sample_texture(rng)


def _visible_fraction(objects: Sequence[SceneObject], target: int) -> float:
    labels = label_map(objects, _CHECK_SIZE)
    full = label_map([objects[target]], _CHECK_SIZE) == 0
    if not full.any():
        return 0.0
    return float((labels == target).sum() / full.sum())


def sample_scene(rng: np.random.Generator) -> Scene:
    """Draw one scene's parameters from ``rng`` (the same stream always gives the same scene)."""
    background = sample_texture(rng)
    n_objects = int(rng.integers(2, 6))
    kind = str(rng.choice(SHAPE_KINDS))
    area = _log_uniform(rng, *TARGET_AREA_RANGE)
    target_shape = sample_shape(rng, kind, area, _center_for(rng, area))
    mode = str(rng.choice(list(MODE_PROBS), p=list(MODE_PROBS.values())))
    target = SceneObject(
        target_shape,
        _target_texture(rng, background, mode),
        shading=float(rng.uniform(-0.35, 0.35)),
        light_angle=float(rng.uniform(0, 2 * math.pi)),
    )
    t_radius = math.sqrt(shape_area(target_shape) / math.pi)
    tx0, ty0, tx1, ty1 = target_shape.bounds()
    t_center = ((tx0 + tx1) / 2, (ty0 + ty1) / 2)

    lookalike = False
    for _attempt in range(8):
        distractors = []
        lookalike = False
        for _ in range(n_objects - 1):
            d_kind = str(rng.choice(SHAPE_KINDS))
            d_area = _log_uniform(rng, *_DISTRACTOR_AREA_RANGE)
            if rng.random() < 0.5:  # beside or overlapping the target
                d_radius = math.sqrt(d_area / math.pi)
                theta = float(rng.uniform(0, 2 * math.pi))
                dist = (t_radius + d_radius) * float(rng.uniform(0.5, 1.15))
                center = (
                    float(np.clip(t_center[0] + dist * math.cos(theta), 0.05, 0.95)),
                    float(np.clip(t_center[1] + dist * math.sin(theta), 0.05, 0.95)),
                )
            else:
                center = _center_for(rng, d_area)
            if rng.random() < 0.2:  # same look as the target: the prompt must pick the instance
                texture = _variant(rng, target.texture, 0.04)
                lookalike = True
            else:
                texture = sample_texture(rng)
            distractors.append(
                SceneObject(
                    sample_shape(rng, d_kind, d_area, center),
                    texture,
                    shading=float(rng.uniform(-0.35, 0.35)),
                    light_angle=float(rng.uniform(0, 2 * math.pi)),
                )
            )
        depth = int(rng.integers(0, n_objects))
        objects = (*distractors[:depth], target, *distractors[depth:])
        visible = _visible_fraction(objects, depth)
        if visible >= _MIN_VISIBLE:
            break
    else:  # no acceptable arrangement drawn: bring the target to the front
        objects = (*distractors, target)
        depth = n_objects - 1
        visible = _visible_fraction(objects, depth)

    tags = [mode] if mode != "plain" else []
    if lookalike:
        tags.append("lookalike")
    if visible < 0.98:
        tags.append("occluded")
    return Scene(
        background=background,
        objects=objects,
        target=depth,
        noise_sigma=float(rng.choice([0.0, rng.uniform(0.005, 0.03)])),
        noise_seed=int(rng.integers(0, 2**32)),
        tags=tuple(tags),
    )


class ProceduralScenes(SampleSequence):
    """``n`` procedural scenes rendered at ``size`` ((H, W) or an int for square).

    Scene i is drawn from a random stream seeded by (seed, split, i). ``meta`` of each sample
    holds the target's index among the objects, the number of objects, the target's shape kind,
    its visible area fraction and the difficulty tags.
    """

    def __init__(
        self, n: int, seed: int = 0, size: int | tuple[int, int] = 256, split: str = "test"
    ) -> None:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if not split:
            raise ValueError("split must be a non-empty string such as 'train', 'val' or 'test'")
        self.n = int(n)
        self.seed = int(seed)
        self.size = _as_hw(size)
        self.split = split
        self._scenes: dict[int, Scene] = {}

    def __len__(self) -> int:
        return self.n

    def _index(self, index: int) -> int:
        i = int(index)
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(f"scene index {index} out of range for {self.n} scenes")
        return i

    def scene(self, index: int) -> Scene:
        """The parameters of scene ``index`` (cached)."""
        i = self._index(index)
        if i not in self._scenes:
            stream = [_STREAM_TAG, self.seed, zlib.crc32(self.split.encode()), i]
            self._scenes[i] = sample_scene(np.random.default_rng(stream))
        return self._scenes[i]

    def name(self, index: int) -> str:
        return f"synthetic-{self.split}-s{self.seed}-{self._index(index):05d}"

    def sample(self, index: int, size: int | tuple[int, int] | None = None) -> Sample:
        """Scene ``index`` rendered at ``size`` (default: the dataset's size)."""
        i = self._index(index)
        scene = self.scene(i)
        hw = self.size if size is None else _as_hw(size)
        image, mask = render(scene, hw)
        target = scene.target_object
        meta = {
            "dataset": "synthetic",
            "split": self.split,
            "seed": self.seed,
            "index": i,
            "target_index": scene.target,
            "n_objects": len(scene.objects),
            "shape": target.shape.kind,
            "texture": target.texture.kind,
            "background": scene.background.kind,
            "tags": list(scene.tags),
            "area_fraction": float(mask.mean()),
            "size": list(hw),
        }
        return Sample(image=image, mask=mask, name=self.name(i), meta=meta)

    def __repr__(self) -> str:
        return (
            f"ProceduralScenes(n={self.n}, seed={self.seed}, size={self.size}, "
            f"split={self.split!r})"
        )

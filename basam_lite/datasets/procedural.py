"""Procedural scenes: the same scene at any resolution, with an exact mask of one target object.

A scene is a small parameter record (``Scene``): a background texture and a few objects, each an
analytic shape in normalised coordinates with a texture, painted back to front; how many, how
small, how camouflaged and how occluded is a ``SceneMix`` (``standard`` or the ``hard`` stress
test). One object is the target; ``Sample.mask`` is its *visible* region (the occluders in front
of it removed).
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

from ..errors import UserError
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

_TWO_PI = 2.0 * math.pi
_CHECK_SIZE = (128, 128)  # grid for the visibility check at generation (resolution-free)


@dataclass(frozen=True)
class SceneMix:
    """How hard the scenes are: every knob of :func:`sample_scene`'s random draw.

    ``SceneMix()`` is the standard mix, used to train and score the bundled tiny SAMs: 2-4
    textured objects, mostly plainly drawn targets, some low-contrast or camouflaged ones, a few
    look-alikes, occluders that hide at most a fifth of the target, targets of at least 4% of
    the image. The floor is set by the tiny SAM's token grid: at 256 px its 16 px patches make
    16 x 16 tokens, four times coarser per side than real SAM's 64 x 64 at 1024 px, so a target
    of 2% of the image spans about two tokens (nine in real SAM). Distractors stay as small as
    0.5%. ``SceneMix.hard()`` is a stress test: up to 5 objects, smaller targets, more
    camouflage and look-alikes, targets half hidden, thinner strokes. Both draw from the random
    stream in the same order, so one scene index gives related layouts in both.
    """

    objects: tuple[int, int] = (2, 4)  # objects per scene, target included (inclusive range)
    target_area: tuple[float, float] = (0.04, 0.35)  # drawn area, image fraction, log-uniform
    distractor_area: tuple[float, float] = (0.005, 0.12)
    plain: float = 0.8  # share of targets drawn with an unrelated texture
    low_contrast: float = 0.1  # ... with colours close to the background's mean
    camouflage: float = 0.1  # ... with a nudged copy of the background texture
    camouflage_shift: tuple[float, float] = (0.12, 0.25)  # colour shift of a camouflaged target
    lookalike: float = 0.1  # chance that a distractor copies the target's look
    near_target: float = 0.35  # chance that a distractor is placed beside or over the target
    min_visible: float = 0.8  # share of the target's area that occluders leave visible
    stroke_width: tuple[float, float] = (0.04, 0.07)  # image fraction

    def __post_init__(self) -> None:
        probs = (self.plain, self.low_contrast, self.camouflage)
        if min(probs) < 0 or abs(sum(probs) - 1.0) > 1e-9:
            raise UserError(
                f"plain, low_contrast and camouflage are the shares of target modes and must be "
                f">= 0 and sum to 1, got {probs}"
            )
        if not 1 <= self.objects[0] <= self.objects[1]:
            raise UserError(
                f"objects must be an increasing range starting at >= 1, got {self.objects}"
            )
        fractions = (self.min_visible, self.lookalike, self.near_target)
        if not all(0.0 <= f <= 1.0 for f in fractions):
            raise UserError(
                f"min_visible, lookalike and near_target are fractions in [0, 1], got {fractions}"
            )

    @property
    def mode_probs(self) -> dict[str, float]:
        return {
            "plain": self.plain,
            "low_contrast": self.low_contrast,
            "camouflage": self.camouflage,
        }

    @classmethod
    def hard(cls) -> SceneMix:
        return cls(
            objects=(2, 5),
            target_area=(0.015, 0.35),
            distractor_area=(0.004, 0.15),
            plain=0.7,
            low_contrast=0.15,
            camouflage=0.15,
            camouflage_shift=(0.08, 0.2),
            lookalike=0.2,
            near_target=0.5,
            min_visible=0.5,
            stroke_width=(0.02, 0.04),
        )

    @classmethod
    def named(cls, name: str) -> SceneMix:
        """A mix by name, one of :data:`MIX_NAMES`."""
        if name not in MIX_NAMES:
            expected = " or ".join(repr(k) for k in MIX_NAMES)
            raise UserError(f"unknown scene mix {name!r}; expected {expected}")
        return cls.hard() if name == "hard" else cls()

    @property
    def name(self) -> str:
        """Its name in :data:`MIX_NAMES`, or ``"custom"``."""
        return next((k for k in MIX_NAMES if SceneMix.named(k) == self), "custom")

    def summary(self) -> str:
        """One line on this mix, from its own numbers (model cards quote it)."""
        return (
            f"{self.objects[0]}-{self.objects[1]} textured objects of seven shape kinds, thin "
            f"strokes ({self.stroke_width[0]:.0%}-{self.stroke_width[1]:.0%} of the image wide) "
            f"and rings included; targets cover {self.target_area[0]:.0%}-"
            f"{self.target_area[1]:.0%} of the image before occlusion and are {self.plain:.0%} "
            f"plain, {self.low_contrast:.0%} low-contrast, {self.camouflage:.0%} camouflaged; "
            f"{self.lookalike:.0%} of the distractors look like the target; occluders leave at "
            f"least {self.min_visible:.0%} of the target visible"
        )


MIX_NAMES = ("standard", "hard")


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
        raise UserError(f"size must be positive, got {size!r}")
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


def _target_texture(
    rng: np.random.Generator, background: Texture, mode: str, mix: SceneMix
) -> Texture:
    if mode == "low_contrast":
        base = mean_color(background)
        colors = (
            shifted_color(rng, base, float(rng.uniform(0.06, 0.14))),
            shifted_color(rng, base, float(rng.uniform(0.08, 0.2))),
        )
        return sample_texture(rng, kinds=("flat", "gradient", "noise", "stripes"), colors=colors)
    if mode == "camouflage":
        return _variant(rng, background, float(rng.uniform(*mix.camouflage_shift)))
    return sample_texture(rng)


def _visible_fraction(objects: Sequence[SceneObject], target: int) -> float:
    labels = label_map(objects, _CHECK_SIZE)
    full = label_map([objects[target]], _CHECK_SIZE) == 0
    if not full.any():
        return 0.0
    return float((labels == target).sum() / full.sum())


def sample_scene(rng: np.random.Generator, mix: SceneMix | None = None) -> Scene:
    """Draw one scene's parameters from ``rng`` (the same stream always gives the same scene)."""
    mix = SceneMix() if mix is None else mix
    background = sample_texture(rng)
    n_objects = int(rng.integers(mix.objects[0], mix.objects[1] + 1))
    kind = str(rng.choice(SHAPE_KINDS))
    area = _log_uniform(rng, *mix.target_area)
    target_shape = sample_shape(rng, kind, area, _center_for(rng, area), mix.stroke_width)
    modes = mix.mode_probs
    mode = str(rng.choice(list(modes), p=list(modes.values())))
    target = SceneObject(
        target_shape,
        _target_texture(rng, background, mode, mix),
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
            d_area = _log_uniform(rng, *mix.distractor_area)
            if rng.random() < mix.near_target:  # beside or overlapping the target
                d_radius = math.sqrt(d_area / math.pi)
                theta = float(rng.uniform(0, 2 * math.pi))
                dist = (t_radius + d_radius) * float(rng.uniform(0.5, 1.15))
                center = (
                    float(np.clip(t_center[0] + dist * math.cos(theta), 0.05, 0.95)),
                    float(np.clip(t_center[1] + dist * math.sin(theta), 0.05, 0.95)),
                )
            else:
                center = _center_for(rng, d_area)
            # Same look as the target: the prompt must pick the instance.
            if rng.random() < mix.lookalike:
                texture = _variant(rng, target.texture, 0.04)
                lookalike = True
            else:
                texture = sample_texture(rng)
            distractors.append(
                SceneObject(
                    sample_shape(rng, d_kind, d_area, center, mix.stroke_width),
                    texture,
                    shading=float(rng.uniform(-0.35, 0.35)),
                    light_angle=float(rng.uniform(0, 2 * math.pi)),
                )
            )
        depth = int(rng.integers(0, n_objects))
        objects = (*distractors[:depth], target, *distractors[depth:])
        visible = _visible_fraction(objects, depth)
        if visible >= mix.min_visible:
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
        self,
        n: int,
        seed: int = 0,
        size: int | tuple[int, int] = 256,
        split: str = "test",
        mix: SceneMix | str = "standard",
    ) -> None:
        if n < 0:
            raise UserError(f"n must be >= 0, got {n}")
        if seed < 0:
            raise UserError(f"seed must be >= 0, got {seed}")
        if not split:
            raise UserError("split must be a non-empty string such as 'train', 'val' or 'test'")
        self.n = int(n)
        self.seed = int(seed)
        self.size = _as_hw(size)
        self.split = split
        self.mix = SceneMix.named(mix) if isinstance(mix, str) else mix
        self.mix_name = self.mix.name
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
            self._scenes[i] = sample_scene(np.random.default_rng(stream), self.mix)
        return self._scenes[i]

    def name(self, index: int) -> str:
        mix = "" if self.mix_name == "standard" else f"{self.mix_name}-"
        return f"synthetic-{mix}{self.split}-s{self.seed}-{self._index(index):05d}"

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
            "mix": self.mix_name,
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
            f"split={self.split!r}, mix={self.mix_name!r})"
        )

"""Analytic 2-D shapes in normalised scene coordinates, for the procedural scenes.

A scene lives in the unit square: x in [0, 1] runs along the image width (columns), y in
[0, 1] along the height (rows). Every shape answers ``contains(x, y)`` for arrays of points, so
the same shape can be rasterised at any resolution by sampling pixel centres, and the masks at
two resolutions differ only on boundary pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Bounds = tuple[float, float, float, float]  # (x0, y0, x1, y1), conservative

SHAPE_KINDS = ("ellipse", "rectangle", "polygon", "star", "blob", "ring", "stroke")
"""Every kind ``sample_shape`` can draw."""

_TWO_PI = 2.0 * math.pi


def _local(x: np.ndarray, y: np.ndarray, cx: float, cy: float, angle: float):
    """Point coordinates in a frame centred on (cx, cy) and rotated by ``angle`` (radians)."""
    dx, dy = x - cx, y - cy
    c, s = math.cos(angle), math.sin(angle)
    return dx * c + dy * s, -dx * s + dy * c


def _polar(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rotation: float):
    """Radius and angle in [0, 2*pi) around (cx, cy), the angle measured from ``rotation``."""
    dx, dy = x - cx, y - cy
    r = np.hypot(dx, dy)
    phi = np.mod(np.arctan2(dy, dx) - rotation, _TWO_PI)
    return r, phi


@dataclass(frozen=True)
class Ellipse:
    cx: float
    cy: float
    rx: float
    ry: float
    angle: float
    kind: str = "ellipse"

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        u, v = _local(x, y, self.cx, self.cy, self.angle)
        return (u / self.rx) ** 2 + (v / self.ry) ** 2 <= 1.0

    def bounds(self) -> Bounds:
        r = max(self.rx, self.ry)
        return self.cx - r, self.cy - r, self.cx + r, self.cy + r


@dataclass(frozen=True)
class Rectangle:
    cx: float
    cy: float
    half_w: float
    half_h: float
    angle: float
    kind: str = "rectangle"

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        u, v = _local(x, y, self.cx, self.cy, self.angle)
        return (np.abs(u) <= self.half_w) & (np.abs(v) <= self.half_h)

    def bounds(self) -> Bounds:
        r = math.hypot(self.half_w, self.half_h)
        return self.cx - r, self.cy - r, self.cx + r, self.cy + r


@dataclass(frozen=True)
class StarPolygon:
    """A polygon that is star-shaped around its centre (covers regular stars and random polygons).

    Vertex i sits at angle ``angles[i]`` (sorted, first one 0, every gap < pi) and distance
    ``radii[i]`` from the centre, the whole turned by ``rotation``.
    """

    cx: float
    cy: float
    radii: tuple[float, ...]
    angles: tuple[float, ...]
    rotation: float
    kind: str = "polygon"

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        r, phi = _polar(x, y, self.cx, self.cy, self.rotation)
        angles = np.asarray((*self.angles, _TWO_PI))
        radii = np.asarray((*self.radii, self.radii[0]))
        i = np.clip(np.searchsorted(angles, phi, side="right") - 1, 0, len(self.radii) - 1)
        a1, a2, r1, r2 = angles[i], angles[i + 1], radii[i], radii[i + 1]
        # Distance along the ray at angle phi to the edge joining vertices i and i + 1.
        edge = r1 * r2 * np.sin(a2 - a1) / (r1 * np.sin(phi - a1) + r2 * np.sin(a2 - phi))
        return r <= edge

    def bounds(self) -> Bounds:
        r = max(self.radii)
        return self.cx - r, self.cy - r, self.cx + r, self.cy + r

    def area(self) -> float:
        n = len(self.radii)
        total = 0.0
        for i in range(n):
            a2 = self.angles[i + 1] if i + 1 < n else _TWO_PI
            total += 0.5 * self.radii[i] * self.radii[(i + 1) % n] * math.sin(a2 - self.angles[i])
        return total


@dataclass(frozen=True)
class Blob:
    """A smooth star-shaped outline: r(phi) = r0 * (1 + sum_k amp_k * cos(k * phi + phase_k))."""

    cx: float
    cy: float
    r0: float
    harmonics: tuple[tuple[int, float, float], ...]  # (k, amp, phase); sum of amps < 1
    kind: str = "blob"

    def _radius(self, phi: np.ndarray) -> np.ndarray:
        out = np.ones_like(phi)
        for k, amp, phase in self.harmonics:
            out += amp * np.cos(k * phi + phase)
        return self.r0 * out

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        r, phi = _polar(x, y, self.cx, self.cy, 0.0)
        return r <= self._radius(phi)

    def bounds(self) -> Bounds:
        r = self.r0 * (1.0 + sum(abs(a) for _, a, _ in self.harmonics))
        return self.cx - r, self.cy - r, self.cx + r, self.cy + r

    def area(self) -> float:
        # Integral of r^2 / 2 over the turn: cross terms of distinct harmonics vanish.
        return math.pi * self.r0**2 * (1.0 + 0.5 * sum(a * a for _, a, _ in self.harmonics))


@dataclass(frozen=True)
class Ring:
    """An elliptical annulus (a shape with a hole), optionally cut open by an angular gap."""

    cx: float
    cy: float
    rx: float
    ry: float
    angle: float
    inner: float  # inner radius as a fraction of the outer one, in (0, 1)
    gap_center: float  # radians, in the ring's own frame
    gap_half_width: float  # radians; 0 for a closed ring
    kind: str = "ring"

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        u, v = _local(x, y, self.cx, self.cy, self.angle)
        rho2 = (u / self.rx) ** 2 + (v / self.ry) ** 2
        inside = (rho2 <= 1.0) & (rho2 >= self.inner**2)
        if self.gap_half_width > 0:
            phi = np.arctan2(v / self.ry, u / self.rx)
            off = np.abs(np.mod(phi - self.gap_center + math.pi, _TWO_PI) - math.pi)
            inside &= off > self.gap_half_width
        return inside

    def bounds(self) -> Bounds:
        r = max(self.rx, self.ry)
        return self.cx - r, self.cy - r, self.cx + r, self.cy + r

    def area(self) -> float:
        full = math.pi * self.rx * self.ry * (1.0 - self.inner**2)
        return full * (1.0 - self.gap_half_width / math.pi)


@dataclass(frozen=True)
class Stroke:
    """A thick polyline (thin structures: wires, stems, curved strokes), round caps."""

    points: tuple[tuple[float, float], ...]
    width: float
    kind: str = "stroke"

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        half2 = (0.5 * self.width) ** 2
        best = np.full(np.shape(x), np.inf)
        for (x0, y0), (x1, y1) in zip(self.points[:-1], self.points[1:], strict=True):
            ex, ey = x1 - x0, y1 - y0
            t = ((x - x0) * ex + (y - y0) * ey) / max(ex * ex + ey * ey, 1e-12)
            t = np.clip(t, 0.0, 1.0)
            np.minimum(best, (x - x0 - t * ex) ** 2 + (y - y0 - t * ey) ** 2, out=best)
        return best <= half2

    def bounds(self) -> Bounds:
        xs = [p[0] for p in self.points]
        ys = [p[1] for p in self.points]
        h = 0.5 * self.width
        return min(xs) - h, min(ys) - h, max(xs) + h, max(ys) + h

    def area(self) -> float:
        length = sum(
            math.dist(p, q) for p, q in zip(self.points[:-1], self.points[1:], strict=True)
        )
        return length * self.width


Shape = Ellipse | Rectangle | StarPolygon | Blob | Ring | Stroke


def sample_shape(
    rng: np.random.Generator,
    kind: str,
    area: float,
    center: tuple[float, float],
    stroke_width: tuple[float, float],
) -> Shape:
    """Draw a random shape of ``kind`` whose area is about ``area`` (fraction of the unit square).

    Strokes ignore ``area`` beyond their length: they are thin by design (``stroke_width``, a
    range of fractions of the image side) so their area stays small.
    """
    cx, cy = center
    angle = float(rng.uniform(0.0, math.pi))
    if kind == "ellipse":
        aspect = float(np.exp(rng.uniform(-0.9, 0.9)))
        rx = math.sqrt(area * aspect / math.pi)
        return Ellipse(cx, cy, rx, rx / aspect, angle)
    if kind == "rectangle":
        aspect = float(np.exp(rng.uniform(-1.2, 1.2)))
        half_w = 0.5 * math.sqrt(area * aspect)
        return Rectangle(cx, cy, half_w, half_w / aspect, angle)
    if kind in ("polygon", "star"):
        if kind == "star":
            n = int(rng.integers(4, 8))
            step = _TWO_PI / (2 * n)
            angles = tuple(i * step for i in range(2 * n))
            ratio = float(rng.uniform(0.35, 0.65))
            radii = tuple(1.0 if i % 2 == 0 else ratio for i in range(2 * n))
        else:
            n = int(rng.integers(5, 10))
            # Jittered but ordered angles: every gap stays below pi, so the polygon is
            # star-shaped around its centre and contains() is exact.
            base = np.arange(n) * (_TWO_PI / n)
            jitter = rng.uniform(-0.35, 0.35, size=n) * (_TWO_PI / n)
            jitter[0] = 0.0
            angles = tuple(float(a) for a in np.sort(base + jitter))
            radii = tuple(float(r) for r in rng.uniform(0.55, 1.0, size=n))
        unit = StarPolygon(0.0, 0.0, radii, angles, angle, kind=kind)
        scale = math.sqrt(area / unit.area())
        return StarPolygon(cx, cy, tuple(r * scale for r in radii), angles, angle, kind=kind)
    if kind == "blob":
        count = int(rng.integers(2, 5))
        ks = rng.choice(np.arange(2, 7), size=count, replace=False)
        amps = rng.uniform(0.05, 0.5, size=count)
        amps *= min(1.0, 0.6 / amps.sum())  # keep r(phi) > 0.4 * r0
        harmonics = tuple(
            (int(k), float(a), float(rng.uniform(0, _TWO_PI)))
            for k, a in zip(ks, amps, strict=True)
        )
        unit = Blob(cx, cy, 1.0, harmonics)
        return Blob(cx, cy, math.sqrt(area / unit.area()), harmonics)
    if kind == "ring":
        aspect = float(np.exp(rng.uniform(-0.5, 0.5)))
        inner = float(rng.uniform(0.45, 0.75))
        gap = float(rng.uniform(0.3, 0.9)) if rng.random() < 0.35 else 0.0
        unit = Ring(cx, cy, aspect, 1.0, angle, inner, 0.0, gap)
        ry = math.sqrt(area / unit.area())
        return Ring(cx, cy, ry * aspect, ry, angle, inner, float(rng.uniform(0, _TWO_PI)), gap)
    if kind == "stroke":
        length = float(rng.uniform(0.35, 0.8))
        width = float(rng.uniform(*stroke_width))
        direction = float(rng.uniform(0.0, _TWO_PI))
        dx, dy = 0.5 * length * math.cos(direction), 0.5 * length * math.sin(direction)
        bend = float(rng.uniform(-0.5, 0.5)) * length
        p0 = np.array([cx - dx, cy - dy])
        p2 = np.array([cx + dx, cy + dy])
        # The control point is pushed sideways from the middle: a quadratic Bezier arc.
        p1 = np.array([cx, cy]) + bend * np.array([-math.sin(direction), math.cos(direction)])
        t = np.linspace(0.0, 1.0, 17)[:, None]
        curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
        return Stroke(tuple((float(px), float(py)) for px, py in curve), width)
    raise ValueError(f"unknown shape kind {kind!r}; expected one of {SHAPE_KINDS}")


def shape_area(shape: Shape) -> float:
    """Analytic area of ``shape`` in units of the unit square (ignoring the image border)."""
    if isinstance(shape, Ellipse):
        return math.pi * shape.rx * shape.ry
    if isinstance(shape, Rectangle):
        return 4.0 * shape.half_w * shape.half_h
    return shape.area()

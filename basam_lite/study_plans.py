"""The study's plans: which models, rules, sizes and images one ``python -m basam_lite study``
runs, one entry per committed study in :data:`STUDY_PLANS` (``--plan NAME``; every argument
given on the command line overrides its plan's value).

- ``first``: the committed first study (``results/study/``): both tiny SAM 1 checkpoints, every
  variant of :data:`basam_lite.variants.VARIANTS`, box and point prompts, 240 scenes.
- ``families``: the study across families and temperature rules (``results/families/``): the
  tiny SAM 1 and tiny SAM 2 checkpoints side by side, vanilla, lambda, the paper's preset, the
  three temperature rules of :data:`basam_lite.variants.TEMPERATURE_VARIANTS` and resize, box
  prompt only, plus a base-size table (vanilla at 256 px) from which each family's degradation
  along each axis is measured on the same images.

A plan's sizing (how many images, which sizes) is written beside it with the timings it comes
from, as :data:`FAMILIES_IMAGES` is.
"""

from __future__ import annotations

from dataclasses import dataclass

from .mechanism import MECHANISM_VARIANTS
from .variants import variant_names


@dataclass(frozen=True)
class StudyPlan:
    """One study's defaults.

    Attributes:
        models: the models, each compared with its own ``vanilla``.
        variants: the variants (the sweep's rows), ``vanilla`` first.
        prompts: prompt kinds.
        images: procedural test scenes (both axes).
        zoom: zoom-axis input sides (px).
        extent: extent-axis input sides (px).
        out: the zoom table; the extent (and base) tables go beside it.
        base: also run ``vanilla`` at each model's base size into ``OUT_base`` (the
            degradation's reference).
        mechanism_variants: the attention-entropy study's variants.
        mechanism_zoom: its zoom sides.
        mechanism_extent: its extent sides.
    """

    models: tuple[str, ...]
    variants: tuple[str, ...]
    prompts: tuple[str, ...]
    images: int
    zoom: tuple[int, ...]
    extent: tuple[int, ...]
    out: str
    base: bool
    mechanism_variants: tuple[str, ...]
    mechanism_zoom: tuple[int, ...] = (128, 256, 512, 768, 1024)
    mechanism_extent: tuple[int, ...] = (128, 192, 256, 512, 768)


STUDY_IMAGES = 240
"""Images of the first study. Sized from the per-image SD of the paired differences from vanilla
(SE = SD / sqrt(n), so n = (SD / 0.01)^2 for one IoU point): in the 24-scene zoom pilot the
largest SD was 0.182 (tiny-basam, box, paper at 1024 px: 332 images) and the median cell needs
about 40. 240 images is what two CPU cores run in about an hour at the sizes below; they bring a
cell of SD 0.15 to one point and the largest pilot SD to 1.2 points. The findings table states
each cell's measured SE and the images it would need."""
STUDY_ZOOM = (128, 512, 1024)
"""The first study's key zoom sizes: half, twice and four times the tiny models' 256 px."""
STUDY_EXTENT = (128, 512)
"""The first study's key extent sizes: a window half as wide (targets that fit it), a canvas
twice as wide."""

FAMILIES_MODELS = ("tiny-vanilla", "tiny-basam", "tiny-sam2-vanilla", "tiny-sam2-basam")
"""Both tiny families, each trained plain and with BA-SAM active, on the same scenes at 256 px."""
FAMILIES_VARIANTS = ("vanilla", "scale", "paper", "yarn", "jin", "infoscale", "resize")
"""The rules side by side. Dropped where the first study (``results/study/sweep.findings.md``)
answered the question for SAM 1 and the budget needs the time: ``bias`` (the mask alone; the
``paper`` preset carries the same mask, and the two differed by at most 2.1 points in its 28
cells), ``paper_base`` and ``official`` (this project's and the official code's readings of the
paper, not rules a user of SAM 2 would reach for), and the point prompt (no pair of box and
point cells that both differed from vanilla after Holm's correction disagreed in sign)."""
FAMILIES_SIZING = """Measured (``runs/``-style timing script: one model, one size, one variant,
3 scenes, box prompt, one torch thread, ``nice -n 10``; process CPU time, as the machine's load
average was 5 to 9 beside two trainings and three other engineers), seconds per image:

=========================  ======  ======  ======  =======  ==========  ==========
model                      zoom    zoom    zoom    zoom     extent      extent
                           128 px  256 px  512 px  1024 px  128 px      512 px
=========================  ======  ======  ======  =======  ==========  ==========
tiny SAM 1, a rule         0.04    0.06    0.21    1.2      0.03        0.19
tiny SAM 1, vanilla        0.04    0.06    0.22    3.8 (a)  0.02        0.20
tiny SAM 1, resize         0.06    0.07    0.09    0.15     0.03        0.07
tiny SAM 2, a rule         0.04    0.07    0.22    1.2      0.03        0.18
tiny SAM 2, vanilla        0.04    0.07    0.21    1.05     0.03        0.17
tiny SAM 2, resize         0.08    0.07    0.09    0.18     0.04        0.08
=========================  ======  ======  ======  =======  ==========  ==========

(a) the first study's median ``seconds`` at 1024 px: SAM's own explicit attention path, where
every patched variant runs the fused kernel (the single timed cell, 3.1 s, included the first
call's allocation).

Per image and model, the seven variants cost about 0.2 s at zoom 128 px, 1.4 s at 512 px and
7.5 (SAM 2) to 10.5 s (SAM 1) at 1024 px; 0.1 s in the 128 px extent window and 1.2 s at 512 px;
64 px and the base-size table cost under 0.1 s. With 1024 px, four models on 240 images are
about 11,500 CPU seconds: 95 minutes on both cores, twice the 45 minutes this run has. Without
it, 240 images are about 3,000 CPU seconds (25 minutes on both cores), and the attention study
(16 images, six variants, the sizes of the plan below) about 350 more, on one core.

So the study drops zoom 1024 px (the first study measured it for SAM 1: the mask's harm, a
point for lambda) and keeps the sizes that answer the users' question for SAM 2 (running a
1024 px model at 512 or 256 px: half and a quarter of the base, 128 and 64 px here), twice the
base on both axes, and the 128 px extent window, on the first study's 240 images. Standard
errors expected from the first study's per-image SDs of the same cells (box prompt, tiny SAM 1):
at most 0.8 points for every other cell (the largest, paper at zoom 512 px, SD 11.9 points);
1.16 points for resize in the 128 px window (which only 115 of the 240 targets fit; SD 12.5
points), which would need about 330 images (156 fitting) for one point. The 64 px cells and the
tiny SAM 2 cells have no pilot: the findings state each cell's measured SE and the images it
would need."""
FAMILIES_IMAGES = 240
"""Images of the families study (the first study's 240, from :data:`FAMILIES_SIZING`)."""
FAMILIES_ZOOM = (64, 128, 512)
"""The families study's zoom sizes: a quarter, half and twice the tiny models' 256 px base
(:data:`FAMILIES_SIZING` says why not 1024 px)."""
FAMILIES_EXTENT = (128, 512)
"""The families study's extent sizes: as the first study's."""
FAMILIES_MECHANISM_ZOOM = (128, 256, 512)
FAMILIES_MECHANISM_EXTENT = (128, 192, 256, 512, 768)
"""The attention study's sizes for the families: the extent axis as the first study's (it holds
the question: does any rule keep the entropy flat), the zoom axis up to 512 px (768 and 1024 px
would cost 9 s more per image and model, 10 minutes on one core)."""

STUDY_PLANS: dict[str, StudyPlan] = {
    "first": StudyPlan(
        models=("tiny-vanilla", "tiny-basam"),
        variants=variant_names(),
        prompts=("box", "point"),
        images=STUDY_IMAGES,
        zoom=STUDY_ZOOM,
        extent=STUDY_EXTENT,
        out="results/study/sweep.parquet",
        base=False,
        mechanism_variants=MECHANISM_VARIANTS,
    ),
    "families": StudyPlan(
        models=FAMILIES_MODELS,
        variants=FAMILIES_VARIANTS,
        prompts=("box",),
        images=FAMILIES_IMAGES,
        zoom=FAMILIES_ZOOM,
        extent=FAMILIES_EXTENT,
        out="results/families/sweep.parquet",
        base=True,
        mechanism_variants=("vanilla", "scale", "paper", "yarn", "jin", "infoscale"),
        mechanism_zoom=FAMILIES_MECHANISM_ZOOM,
        mechanism_extent=FAMILIES_MECHANISM_EXTENT,
    ),
}
"""The studies ``python -m basam_lite study --plan NAME`` runs (default ``first``)."""

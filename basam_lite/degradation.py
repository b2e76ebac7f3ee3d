r"""How much a model loses away from its base size: vanilla at size S against vanilla at the base
size, on the same images, per model, axis and size.

For one cell (model, axis, S, prompt) and the images scored at both sizes,
:math:`d_i = m_i(S) - m_i(S_0)`, with :math:`m` the metric (IoU) of the stock model
(``vanilla``) and :math:`S_0` the model's base size, where both axes show the scene itself (the
extent axis's canvas at :math:`S_0` is the scene, scored on its whole frame). The mean, standard
error, paired bootstrap 95% interval and Holm mark are those of
:func:`basam_lite.stats.paired_table` (Holm across every cell of the table). Beside it, per model,
the mean base-size score and the token-grid ceiling of the model's finest mask grid on the same
images (the ``grid_iou`` column: :func:`basam_lite.metrics.grid_mask_iou` with cells of the
model's patch, 16 px in the tiny SAM 1, 4 px in the tiny SAM 2).

The rules' paired differences from vanilla (the findings) say what each rule recovers at a size;
this table says how much there was to recover.
"""

from __future__ import annotations

import pandas as pd

from .errors import UserError
from .stats import paired_table

BASE = "base"
"""The ``variant`` value the base-size rows take inside :func:`degradation` (paired as the
reference)."""


def family_title(model: str) -> str:
    """The family of a registered model in words (``SAM 1 (ViT)``, ``SAM 2 (Hiera)``, ...)."""
    from .encoders import family
    from .encoders.specs import model_spec

    return family(model_spec(model).family).title


def degradation(
    tables: pd.DataFrame,
    base: pd.DataFrame,
    metric: str = "iou",
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """One row per (model, axis, resolution, prompt): ``vanilla`` at the size minus ``vanilla``
    at the base size (``base``: the base table, one resolution per model), paired per image.

    Columns: those of :func:`basam_lite.stats.paired_table` (``images``, ``mean``, ``sd``,
    ``se``, ``ci_low``, ``ci_high``, ``p``, ``p_holm``, ``significant``), with ``variant``
    dropped. Raises a UserError when either table has no ``vanilla`` row with the metric.
    """
    for what, t in (("study", tables), ("base", base)):
        if not ((t["variant"] == "vanilla") & (t["status"] == "ok")).any():
            raise UserError(f"the {what} table has no scored vanilla row to pair against")
    at = tables[tables["variant"] == "vanilla"]
    ref = base[base["variant"] == "vanilla"]
    many = ref.groupby("model")["resolution"].nunique()
    if (many > 1).any():
        raise UserError(f"the base table holds several sizes for {', '.join(many[many > 1].index)}")
    rows = []
    for axis in at["axis"].unique():
        r = ref.assign(axis=axis, variant=BASE)
        r = r[["model", "image", "prompt", "status", "axis", "variant", metric]]
        # the base row stands at every size of the axis, to pair with it
        sizes = at[at["axis"] == axis][["model", "resolution"]].drop_duplicates()
        rows.append(sizes.merge(r, on="model"))
    paired = pd.concat([at, *rows], ignore_index=True)
    t = paired_table(paired, reference=BASE, metric=metric, n_boot=n_boot, seed=seed, alpha=alpha)
    return t.drop(columns="variant")


def base_scores(base: pd.DataFrame, metric: str = "iou") -> pd.DataFrame:
    """Per (model, prompt) at the base size: ``resolution``, ``images``, the mean ``metric``
    and the mean token-grid ceiling ``grid_iou`` of the same images."""
    ok = base[(base["variant"] == "vanilla") & (base["status"] == "ok")]
    g = ok.groupby(["model", "prompt"], sort=False)
    return pd.DataFrame(
        {
            "resolution": g["resolution"].first(),
            "images": g[metric].count(),
            metric: g[metric].mean(),
            "grid_iou": g["grid_iou"].mean(),
        }
    ).reset_index()


def degradation_markdown(
    tables: pd.DataFrame, base: pd.DataFrame, metric: str = "iou", alpha: float = 0.05
) -> str:
    """The base-size scores beside their ceilings, then the degradation table, as Markdown."""
    b = base_scores(base, metric)
    lines = [
        f"Base size: mean {metric} of vanilla and the token-grid ceiling of the same images.",
        "",
        f"| model | family | size (px) | prompt | {metric} | ceiling | images |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in b.itertuples(index=False):
        lines.append(
            f"| {r.model} | {family_title(r.model)} | {r.resolution} | {r.prompt} "
            f"| {getattr(r, metric):.3f} | {r.grid_iou:.3f} | {r.images} |"
        )
    t = degradation(tables, base, metric, alpha=alpha)
    lines += [
        "",
        f"Degradation: vanilla's {metric} at each size minus at the base size, same images.",
        "",
        f"| model | axis | size (px) | prompt | {metric} - base (points) | 95% interval | SE "
        "| images | Holm |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in t.itertuples(index=False):
        lines.append(
            f"| {r.model} | {r.axis} | {r.resolution} | {r.prompt} | {100 * r.mean:+.1f} "
            f"| [{100 * r.ci_low:+.1f}, {100 * r.ci_high:+.1f}] | {100 * r.se:.1f} "
            f"| {r.images} | {'*' if r.significant else ''} |"
        )
    n_sig = int(t["significant"].sum())
    lines += [
        "",
        f"{n_sig} of {len(t)} cells differ from the base size after Holm's correction across "
        f"all {len(t)} (alpha {alpha}); intervals: paired bootstrap, 2000 resamples, seed 0.",
    ]
    return "\n".join(lines)

"""The families study in words and tables, generated from its committed files (never typed).

:func:`families_summary` reads a study's tables (``OUT``, ``OUT_extent``, ``OUT_base``) and its
attention table (``OUT.mechanism.csv``) and writes Markdown in which every number is computed
here: each model's base-size box IoU beside its token-grid ceiling, each model's loss away from
the base size on each axis (:mod:`basam_lite.degradation`), what each rule recovers against the
same model's vanilla (:func:`basam_lite.stats.paired_table`; Holm across every cell), the cells
where no rule differs from vanilla said plainly, and whether any rule keeps the attention
entropy flat on the extent axis (:func:`basam_lite.mechanism.flattest`).

``python -m basam_lite study --plan families --findings-only`` writes it to ``OUT.summary.md``;
the README's families section holds it between ``<!-- families:begin -->`` and
``<!-- families:end -->`` and a test checks that the two are the same text.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

SUMMARY_START = "Every number below is generated from"
BEGIN = "<!-- families:begin -->"
END = "<!-- families:end -->"


def _cell(mean: float, lo: float, hi: float, star: bool = False) -> str:
    """A paired difference in points: ``-5.3 [-6.0, -4.6]``, ``*`` when Holm-significant."""
    return f"{100 * mean:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]{' *' if star else ''}"


def _columns(t: pd.DataFrame) -> list[tuple[str, int]]:
    return sorted(
        {(a, int(r)) for a, r in zip(t["axis"], t["resolution"], strict=True)},
        key=lambda x: (x[0] != "zoom", x[1]),
    )


def _grid(t: pd.DataFrame, index: list[str]) -> list[str]:
    """A Markdown table: one row per ``index`` values, one column per (axis, size)."""
    cols = _columns(t)
    head = "| " + " | ".join(index) + " | " + " | ".join(f"{a} {s} px" for a, s in cols) + " |"
    lines = [head, "|" + "---|" * (len(index) + len(cols))]
    for key, part in t.groupby(index, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        at = {(r.axis, int(r.resolution)): r for r in part.itertuples(index=False)}
        cells = [
            _cell(at[c].mean, at[c].ci_low, at[c].ci_high, at[c].significant) if c in at else ""
            for c in cols
        ]
        lines.append("| " + " | ".join(map(str, key)) + " | " + " | ".join(cells) + " |")
    return lines


def families_summary(out: str | Path, prompt: str = "box") -> str:
    """The Markdown summary of the families study whose zoom table is ``out`` (see the module
    docstring); ``prompt`` selects the rows (the study runs box only)."""
    from .degradation import base_scores, degradation, family_title
    from .mechanism import entropy_change, flattest
    from .stats import paired_table
    from .sweep import base_path, read_table, tables

    out = Path(out)
    df = tables(out)
    df = df[df["prompt"] == prompt]
    base = read_table(base_path(out))
    base = base[base["prompt"] == prompt]
    models = list(dict.fromkeys(df["model"]))
    order = {m: k for k, m in enumerate(models)}
    lines = [
        f"{SUMMARY_START} `{out.parent}/` by "
        "`basam_lite.family_summary` (a test checks this block against it). Points are IoU x 100; "
        "`[low, high]` is the paired bootstrap 95% interval over images; `*` marks a cell that "
        "differs after Holm's correction across every cell of its table.",
        "",
        f"**Base size.** Vanilla's mean {prompt} IoU at the base size, beside the token-grid "
        "ceiling of the same images (the IoU of a mask right at every cell of the model's finest "
        "mask grid):",
        "",
        "| model | family | size (px) | IoU | ceiling | images |",
        "|---|---|---|---|---|---|",
    ]
    b = base_scores(base)
    b = b.sort_values("model", key=lambda s: s.map(order))
    for r in b.itertuples(index=False):
        lines.append(
            f"| {r.model} | {family_title(r.model)} | {r.resolution} | {r.iou:.3f} "
            f"| {r.grid_iou:.3f} | {r.images} |"
        )
    d = degradation(df, base).sort_values("model", key=lambda s: s.map(order), kind="stable")
    lines += [
        "",
        "**Away from the base size.** Vanilla's IoU at each size minus its IoU at the base "
        "size, on the same images (points):",
        "",
        *_grid(d, ["model"]),
    ]
    t = paired_table(df)
    t = t.assign(_m=t["model"].map(order)).sort_values(["_m", "variant"], kind="stable")
    lines += [
        "",
        "**What each rule recovers.** Each rule's IoU minus the same model's vanilla at the "
        "same size, on the same images (points):",
        "",
        *_grid(t.drop(columns="_m"), ["model", "variant"]),
        "",
    ]
    rules = t[t["variant"] != "resize"]
    n_sig = int(rules["significant"].sum())
    lines.append(
        f"Of the {len(rules)} cells of a temperature rule or BA-SAM preset (resize aside), "
        f"{n_sig} differ from vanilla after Holm's correction."
    )
    for model in models:
        part = rules[rules["model"] == model]
        none = [
            f"{a} {s} px"
            for (a, s), cell in part.groupby(["axis", "resolution"], sort=False)
            if not cell["significant"].any()
        ]
        if none:
            lines.append(f"- {model}: no rule differs from vanilla at {', '.join(none)}.")
    mech = out.with_suffix(".mechanism.csv")
    if mech.exists():
        changes = entropy_change(pd.read_csv(mech))
        flat = flattest(changes)
        lines += [
            "",
            "**Attention entropy on the extent axis.** At the largest canvas, the change of the "
            "global blocks' mean attention entropy from the base size (nats), the least-moved "
            "rule's, against vanilla's and uniform attention's:",
            "",
            "| model | size (px) | keys | uniform | vanilla | least moved | its change | flat |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in flat.itertuples(index=False):
            lines.append(
                f"| {r.model} | {r.resolution} | {r.keys} | {r.uniform:+.3f} | {r.vanilla:+.3f} "
                f"| {r.variant} | {r.change:+.3f} [{r.low:+.3f}, {r.high:+.3f}] "
                f"| {'yes' if r.flat else 'no'} |"
            )
        n_flat = int(flat["flat"].sum())
        lines += [
            "",
            f"{'None' if n_flat == 0 else n_flat} of the {len(flat)} models "
            f"{'has' if n_flat <= 1 else 'have'} a rule whose interval holds 0 there: "
            + ("no rule keeps the entropy flat." if n_flat == 0 else "see the table."),
        ]
    return "\n".join(lines)


def write_summary(out: str | Path) -> Path:
    """:func:`families_summary` of ``out``, written to ``OUT.summary.md``; returns the path."""
    from .outputs import write_text_atomic

    path = Path(out).with_suffix(".summary.md")
    write_text_atomic(path, families_summary(out) + "\n")
    return path


def readme_block(readme: str) -> str | None:
    """The text between :data:`BEGIN` and :data:`END` in ``readme`` (stripped), or None."""
    if BEGIN not in readme:
        return None
    return readme.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def check_readme(path: Path) -> str:
    """The text of ``path`` when it is a file with one :data:`BEGIN` and one :data:`END` after
    it; a one-line UserError otherwise."""
    from .errors import UserError

    if not path.is_file():
        raise UserError(f"--readme {path}: no such file")
    text = path.read_text(encoding="utf-8")
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise UserError(
            f"--readme {path}: it needs one {BEGIN} line and one {END} line after it, around "
            "the block the summary replaces; nothing was written"
        )
    return text


def fill_readme(readme: str | Path, summary: str) -> Path:
    """Put ``summary`` between :data:`BEGIN` and :data:`END` of the Markdown file ``readme``
    (written atomically); a UserError, and nothing written, when the file lacks the markers."""
    from .outputs import write_text_atomic

    path = Path(readme)
    text = check_readme(path)
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    write_text_atomic(path, f"{head}{BEGIN}\n{summary.strip()}\n{END}{tail}")
    return path

"""The README's result tables are the committed outputs, not numbers typed by hand: each row
must equal what the sweep table and the model cards say (to the three decimals shown)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from basam_lite.plots import summary_table
from basam_lite.sweep import read_table

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SWEEP = ROOT / "results" / "sweep.csv"
CARDS = ROOT / "data" / "checkpoints"


def section_rows(heading: str, sub: str | None = None) -> list[list[str]]:
    """Body rows (cells stripped) of the tables in the README section ``## heading...`` before
    its first ``###`` subsection, or in its subsection ``### sub...``."""
    text = README.split(f"\n## {heading}")[1].split("\n## ")[0]
    text = text.split("\n### ")[0] if sub is None else text.split(f"\n### {sub}")[1]
    text = text.split("\n### ")[0]
    return [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith("| model")
    ]


def number(cell: str) -> float:
    return float("nan") if cell == "-" else float(cell)


@pytest.mark.parametrize(
    ("table", "sub"), [("sweep.csv", None), ("sweep_extent.csv", "The extent axis")]
)
def test_readme_sweep_table_is_the_committed_sweep(table: str, sub: str | None) -> None:
    path = ROOT / "results" / table
    if not path.exists():
        pytest.skip(f"results/{table} is not committed here")
    summary = summary_table(read_table(path)).round(3)
    rows = section_rows("Results of the main job", sub)
    model = None
    for cells in rows:
        model = cells[0].strip("`") or model
        expected = summary.loc[(model, "box", cells[1].split()[0])].tolist()
        shown = [number(c) for c in cells[2:]]
        assert shown == pytest.approx(expected, abs=5e-4, nan_ok=True), (
            f"README row {cells} disagrees with results/{table}: {expected}"
        )
    assert len(rows) >= 6


def card_scores(name: str) -> dict[str, float]:
    card = (CARDS / f"{name}.md").read_text()
    scores = {
        kind: float(re.search(rf"^\| {label} \| ([0-9.]+) \|$", card, re.M).group(1))
        for kind, label in [
            ("box", "box"),
            ("center", "centre point"),
            ("point", "one random click"),
        ]
    }
    scores["hard_box"] = float(re.search(r"Stress test.*?: box ([0-9.]+),", card).group(1))
    return scores


@pytest.mark.parametrize("name", ["tiny-vanilla", "tiny-basam"])
def test_readme_checkpoint_table_is_the_model_cards(name: str) -> None:
    (row,) = [r for r in section_rows("The bundled tiny SAMs") if r[0] == f"`{name}`"]
    scores = card_scores(name)
    shown = dict(zip(["box", "center", "point", "hard_box"], map(float, row[1:5]), strict=True))
    # The card rounds to 4 decimals and the README to 3: 0.67652 is 0.6765 on the card and 0.677
    # in the README, 5e-4 apart.
    assert shown == pytest.approx(scores, abs=5.5e-4)


FINDINGS = {
    "Results of the main job": ROOT / "results" / "sweep.findings.md",
    "The study": ROOT / "results" / "study" / "sweep.findings.md",
}
MECHANISM = ROOT / "results" / "study" / "sweep.mechanism.md"


def section(heading: str) -> str:
    """The README section ``## heading...``, with every run of white space made one space (a
    quote may break across lines)."""
    return re.sub(r"\s+", " ", README.split(f"\n## {heading}")[1].split("\n## ")[0])


@pytest.mark.parametrize("heading", list(FINDINGS))
def test_readme_findings_quote_the_committed_findings(heading: str) -> None:
    """Every paired difference a README results section quotes, written
    ``+1.2 points [-0.3, +2.7]`` after its model, axis, size, prompt and variant in the form
    ``(tiny-vanilla, zoom, 512 px, box, paper)``, is a row of that section's findings table."""
    findings = FINDINGS[heading]
    if not findings.exists():
        pytest.skip(f"{findings.relative_to(ROOT)} is not committed here")
    quoted = re.findall(
        r"\(([\w-]+), (zoom|extent), (\d+) px, (box|point), (\w+)\): "
        r"([+-]\d+\.\d) points \[([+-]\d+\.\d), ([+-]\d+\.\d)\]",
        section(heading),
    )
    rows = {
        tuple(c.strip() for c in line.strip("|").split("|"))[:7]
        for line in findings.read_text().splitlines()
        if line.startswith("| tiny")
    }
    for model, axis, size, prompt, variant, mean, lo, hi in quoted:
        row = (model, axis, size, prompt, variant, mean, f"[{lo}, {hi}]")
        assert row in rows, f"README quotes {row}, which {findings.name} does not hold"
    assert len(quoted) >= 4, f"the README's {heading!r} section quotes no paired difference"


def test_readme_quotes_the_committed_mechanism() -> None:
    """Every entropy change the study section quotes, ``(tiny-basam, extent, 512 px, scale):
    +1.006 nats [+0.9, +1.1]``, is a row of ``results/study/sweep.mechanism.md``."""
    if not MECHANISM.exists():
        pytest.skip("results/study/sweep.mechanism.md is not committed here")
    quoted = re.findall(
        r"\(([\w-]+), (zoom|extent), (\d+) px, (\w+)\): "
        r"([+-]\d+\.\d{3}) nats \[([+-]\d+\.\d{3}), ([+-]\d+\.\d{3})\]",
        section("The study"),
    )
    rows = {}
    for line in MECHANISM.read_text().splitlines():
        if line.startswith("| tiny"):
            c = [x.strip() for x in line.strip("|").split("|")]
            rows[(c[0], c[1], c[2], c[4])] = (c[5], c[6])
    for model, axis, size, variant, change, lo, hi in quoted:
        key = (model, axis, size, variant)
        assert rows.get(key) == (change, f"[{lo}, {hi}]"), (
            f"README quotes {key}: {change} [{lo}, {hi}]; {MECHANISM.name} holds {rows.get(key)}"
        )
    assert len(quoted) >= 2, "the study section quotes no entropy change"

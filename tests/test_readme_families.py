"""The README's families section quotes only the committed families study: its generated block is
``results/families/sweep.summary.md``, which is what :func:`families_summary` computes from the
committed tables now, and every paired difference or entropy change its prose quotes is a row of
the committed findings or mechanism report."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
OUT = ROOT / "results" / "families" / "sweep.parquet"
HEADING = "Across families"


def _section() -> str | None:
    if f"\n## {HEADING}" not in README:
        return None
    return README.split(f"\n## {HEADING}")[1].split("\n## ")[0]


def _committed() -> bool:
    return OUT.with_suffix(".summary.md").exists()


def test_families_section_and_results_come_together():
    """A README section without the committed results (or results without a section) is an
    unfinished merge, not a state to ship."""
    assert (_section() is None) == (not _committed()), (
        "README's families section and results/families/ must land together"
    )


def test_readme_block_is_the_committed_summary_and_the_summary_is_the_tables():
    from basam_lite.family_summary import families_summary, readme_block

    if not _committed():
        pytest.skip("results/families/ is not committed here (the study has not run)")
    summary = OUT.with_suffix(".summary.md").read_text(encoding="utf-8").strip()
    assert readme_block(_section() or "") == summary
    assert summary == families_summary(OUT).replace(str(OUT.parent), "results/families")


def test_readme_prose_quotes_rows_of_the_committed_files():
    if not _committed():
        pytest.skip("results/families/ is not committed here (the study has not run)")
    prose = re.sub(r"\s+", " ", (_section() or "").split("<!-- families:begin -->")[0])
    findings = OUT.with_suffix(".findings.md").read_text(encoding="utf-8")
    rows = {
        tuple(c.strip() for c in line.strip("|").split("|"))[:7]
        for line in findings.splitlines()
        if line.startswith("| tiny")
    }
    for model, axis, size, prompt, variant, mean, lo, hi in re.findall(
        r"\(([\w-]+), (zoom|extent), (\d+) px, (box|point), (\w+)\): "
        r"([+-]\d+\.\d) points \[([+-]\d+\.\d), ([+-]\d+\.\d)\]",
        prose,
    ):
        row = (model, axis, size, prompt, variant, mean, f"[{lo}, {hi}]")
        assert row in rows, f"README quotes {row}, which {OUT.with_suffix('.findings.md')} lacks"
    mechanism = OUT.with_suffix(".mechanism.md").read_text(encoding="utf-8")
    changes = {}
    for line in mechanism.splitlines():
        if line.startswith("| tiny"):
            c = [x.strip() for x in line.strip("|").split("|")]
            changes[(c[0], c[1], c[2], c[4])] = (c[5], c[6])
    for model, axis, size, variant, change, lo, hi in re.findall(
        r"\(([\w-]+), (zoom|extent), (\d+) px, (\w+)\): "
        r"([+-]\d+\.\d{3}) nats \[([+-]\d+\.\d{3}), ([+-]\d+\.\d{3})\]",
        prose,
    ):
        key = (model, axis, size, variant)
        assert changes.get(key) == (change, f"[{lo}, {hi}]"), f"README quotes {key}"

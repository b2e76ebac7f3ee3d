"""What every notebook's learner-facing text must hold (issue 23): it opens with the paper's
claim it tests and a one-line run time, ends with a summary and its new terms, and carries no
maintainer vocabulary (CI, golden outputs, nbval markers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MAINTAINER_WORDS = ("NBVAL", "nbval", "golden", "fails CI", " CI ", "CI.", "CI,")


def cells(path: Path) -> list[tuple[str, str]]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [(c["cell_type"], "".join(c["source"])) for c in nb["cells"]]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_the_notebook_opens_with_its_claim_and_a_short_run_time(path: Path) -> None:
    first = cells(path)[0][1]
    opening = first + cells(path)[1][1]  # notebook 01 states the claims in a section of their own
    assert "**The paper's claim" in opening or "## What the paper claims" in opening, path.name
    (line,) = [ln for ln in first.splitlines() if ln.startswith("**Run time:**")]
    assert len(line) <= 100, line


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_the_notebook_ends_with_a_summary_and_its_new_terms(path: Path) -> None:
    markdown = [s for kind, s in cells(path) if kind == "markdown"]
    summary = [s for s in markdown[-3:] if s.startswith("## Summary")]
    assert summary, f"{path.name}: no '## Summary' among its last markdown cells"
    assert "**New terms:**" in summary[0] and "glossary" in summary[0], path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_no_maintainer_vocabulary_in_learner_text(path: Path) -> None:
    for kind, source in cells(path):
        text = (
            source
            if kind == "markdown"
            else "\n".join(
                ln
                for ln in source.splitlines()
                if ln.lstrip().startswith("#")  # code comments
            )
        )
        found = [w for w in MAINTAINER_WORDS if w in text]
        assert not found, f"{path.name}: {found} in {text[:120]!r}"

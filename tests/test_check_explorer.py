"""scripts/check_explorer.py: the parts that decide where the browser clicks and what it expects.

The browser run itself (JupyterLab and Chromium, minutes) is in CI (.ci/run); these tests check
its state cell against a real explorer and its canvas geometry against matplotlib's own transform
and the explorer's click handler.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest

import basam_lite as bl
from basam_lite import explorer
from basam_lite.datasets import ProceduralScenes
from tests.test_site import _load

ROOT = Path(__file__).resolve().parents[1]


check = _load(ROOT / "scripts" / "check_explorer.py", "check_explorer")


class Click:
    """A matplotlib ``button_press_event`` as the canvas passes it to the handler."""

    def __init__(self, ax, x: float, y: float) -> None:
        self.inaxes, self.xdata, self.ydata, self.button = ax, x, y, 1


@pytest.fixture(scope="module")
def widget():
    sam = bl.build_sam("tiny")
    image = ProceduralScenes(1, seed=0).sample(0, size=128).image
    atlas = explorer.AttentionAtlas(
        sam, image, [128, 256], ["vanilla", "paper"], {"centre": (0.5, 0.5), "flag": (0.22, 0.08)}
    )
    return explorer.attention_explorer(sam, image, atlas=atlas)


def _state(widget) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(check.STATE_CELL, {"Out": {3: 1.0, 7: widget}})
    line = out.getvalue().strip()
    assert line.startswith(check.STATE_MARK)
    return json.loads(line[len(check.STATE_MARK) :])


def test_state_cell_reads_the_explorer(widget):
    ex = widget.explorer
    state = _state(widget)
    assert state["figure_id"] == id(ex.figure) and state["query"] == "centre"
    assert state["side"] == 256 and state["patch"] == 16 and state["token"] == [8, 8]
    assert state["queries"]["flag"] == [0.22, 0.08]
    assert "token (8, 8)" in state["title"]
    assert len(state["maps"]) == 2
    assert state["size_px"] == [ex.figure.bbox.width, ex.figure.bbox.height]


@pytest.mark.parametrize("css_scale", [1.0, 0.5])  # 0.5: a screen with 2 device px per CSS px
def test_click_geometry_matches_matplotlib_and_the_handler(widget, css_scale):
    ex = widget.explorer
    state = _state(widget)
    w, h = state["size_px"]
    css = {"width": w * css_scale, "height": h * css_scale}
    g = state["side"] // state["patch"]
    for panel in range(len(ex.images)):
        for token in [(0, 0), (3, 12), (g - 1, g - 1), (10, 2)]:
            state = _state(widget)  # each click redraws: new axes, same figure
            ax = ex.images[panel].axes
            pos = check.click_point(state, panel, token, css)
            assert check.token_at(state, panel, pos, css) == token
            # the point the browser reports, in matplotlib's display px (origin bottom left)
            display = (pos[0] / css_scale, h - pos[1] / css_scale)
            x, y = ax.transData.inverted().transform(display)
            assert ax.contains_point(display)
            name = ex.on_click(Click(ax, x, y))
            assert ex.atlas.token(state["side"], name) == token


def test_prepare_copies_and_never_touches_the_notebook(tmp_path):
    before = check.NOTEBOOK.read_bytes()
    copy = check.prepare(check.NOTEBOOK, tmp_path)
    assert check.NOTEBOOK.read_bytes() == before
    cells = json.loads(copy.read_text())["cells"]
    original = json.loads(before)["cells"]
    assert cells[:-1] == original and "".join(cells[-1]["source"]) == check.STATE_CELL
    other = tmp_path / "other.ipynb"
    other.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    with pytest.raises(check.CheckFailed, match="no cell that calls"):
        check.prepare(other, tmp_path / "x")

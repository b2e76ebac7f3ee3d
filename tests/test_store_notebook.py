"""scripts/store_notebook.py: golden cells are tagged out of the learner's sight, and only their
outputs are stored."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import store_notebook  # noqa: E402


def _cell(source: str, text: str, tags: list[str] | None = None):
    cell = nbformat.v4.new_code_cell(source)
    cell.outputs = [nbformat.v4.new_output("stream", text=text)]
    cell.execution_count = 7
    if tags:
        cell.metadata["tags"] = tags
    return cell


def test_tag_golden_moves_the_comment_into_the_tag_and_strip_keeps_only_golden_outputs() -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        _cell("# NBVAL_CHECK_OUTPUT\nprint(1)", "1\n"),
        _cell("print(2)", "2\n", tags=["nbval-check-output"]),
        _cell("print(3)", "3\n"),
        _cell("# NBVAL_CHECK_OUTPUT  and more\nprint(4)", "4\n"),  # not the bare marker: left
    ]
    assert store_notebook.tag_golden(nb) == 1
    assert nb.cells[0].source == "print(1)"
    assert nb.cells[0].metadata["tags"] == ["nbval-check-output"]
    assert store_notebook.tag_golden(nb) == 0  # idempotent
    assert [store_notebook.is_golden(c) for c in nb.cells] == [True, True, False, True]
    store_notebook.strip(nb)
    assert [len(c.outputs) for c in nb.cells] == [1, 1, 0, 1]
    assert [c.execution_count for c in nb.cells] == [1, 2, None, 3]


def test_every_stored_notebook_uses_the_tag_not_the_comment() -> None:
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        assert not any(c.source.lstrip().startswith(store_notebook.GOLDEN) for c in nb.cells), path
        assert any(store_notebook.is_golden(c) for c in nb.cells), path

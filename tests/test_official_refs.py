"""The references of notebook 08 to the official BA-SAM code: well formed, and every id the
notebook cites exists. No network: the official source is not read here (see
``scripts/check_official_refs.py`` for the check against a clone); ``check_against`` is tested on
synthetic files written for the test."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import nbformat
import pytest

from basam_lite import official
from basam_lite.errors import UserError

NB08 = Path(__file__).parents[1] / "notebooks" / "08_auditing_the_official_code.ipynb"
HEX40 = re.compile(r"[0-9a-f]{40}")


def notebook_text() -> str:
    nb = nbformat.read(NB08, as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def test_every_reference_is_well_formed() -> None:
    ids = [r.claim_id for r in official.REFERENCES]
    assert len(ids) == len(set(ids)), "claim ids must be unique"
    for r in official.REFERENCES:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", r.claim_id), r.claim_id
        assert HEX40.fullmatch(r.commit), (r.claim_id, r.commit)
        assert r.commit in official.STORED_COMMITS, (r.claim_id, "commit not among the stored")
        first, last = r.lines
        assert isinstance(first, int) and isinstance(last, int)
        assert 1 <= first <= last, (r.claim_id, r.lines)
        assert r.path and not r.path.startswith("/") and ".." not in r.path
        # a token is a few characters of their code, never a copied block
        assert 0 < len(r.token) <= 40 and "\n" not in r.token, r.claim_id
        assert all(0 < len(a) <= 40 for a in r.absent)
        assert r.claim.strip(), r.claim_id
        assert r.repository == "github.com/zongzi13545329/BA-SAM"
    assert all(HEX40.fullmatch(c) for c in official.STORED_COMMITS)
    assert not any(c.startswith(official.HEAD_SHORT) for c in official.STORED_COMMITS)


def test_every_id_the_notebook_cites_exists() -> None:
    cited = official.cited_ids(notebook_text())
    assert len(cited) >= 20, "notebook 08 cites its claims about the official code"
    known = {r.claim_id for r in official.REFERENCES}
    assert set(cited) <= known, sorted(set(cited) - known)
    # and every reference is used by the notebook (no stale entries)
    assert known <= set(cited), sorted(known - set(cited))


def test_notebook_prints_the_reference_table() -> None:
    nb = nbformat.read(NB08, as_version=4)
    table_cells = [c for c in nb.cells if "official.table_rows()" in c.source]
    assert len(table_cells) == 1
    assert "nbval-check-output" in table_cells[0].metadata.get("tags", [])
    printed = "".join(o.get("text", "") for o in table_cells[0].outputs)
    for r in official.REFERENCES:
        assert r.cite() in printed, r.claim_id


def test_cited_ids_parses_single_and_grouped_citations() -> None:
    text = "x [ref: abs-pos-off] y [ref: click-row-col, click-unseeded] [ref:bad] [ref: A-b]"
    assert official.cited_ids(text) == ["abs-pos-off", "click-row-col", "click-unseeded"]


def test_cite_format() -> None:
    r = official.ref("optimizer-scheduler")
    assert r.cite() == f"train.py:{r.lines[0]}-{r.lines[1]} @ {r.commit[:7]}"
    one = next(x for x in official.REFERENCES if x.lines[0] == x.lines[1])
    assert one.cite().endswith(f":{one.lines[0]} @ {one.commit[:7]}")


def test_unknown_id_is_a_user_error() -> None:
    with pytest.raises(UserError, match="no reference with id 'nope'"):
        official.ref("nope")


def synthetic_sources(shift: int = 0, plant_absent: bool = False) -> dict[tuple[str, str], str]:
    """Files with each token placed on the first cited line (plus ``shift`` blank lines above)."""
    files: dict[tuple[str, str], list[str]] = {}
    for r in official.REFERENCES:
        lines = files.setdefault((r.commit, r.path), [])
        need = max(r.lines[1], len(lines))
        lines.extend(["# filler"] * (need - len(lines)))
        lines[r.lines[0] - 1] += f"  {r.token}"
        if plant_absent and r.absent:
            lines[r.lines[1] - 1] += f"  {r.absent[0]}"
    return {k: "\n" * shift + "\n".join(v) + "\n" for k, v in files.items()}


def test_check_against_accepts_sources_that_match() -> None:
    sources = synthetic_sources()
    assert official.check_against(lambda c, p: sources[(c, p)]) == []


def test_check_against_reports_shifted_lines_and_present_absences() -> None:
    shifted = synthetic_sources(shift=3)
    problems = official.check_against(lambda c, p: shifted[(c, p)])
    single_line = [r for r in official.REFERENCES if r.lines[0] == r.lines[1]]
    for r in single_line:
        assert any(p.startswith(f"{r.claim_id}: ") for p in problems), r.claim_id
    planted = synthetic_sources(plant_absent=True)
    problems = official.check_against(lambda c, p: planted[(c, p)])
    for r in official.REFERENCES:
        if r.absent:
            assert f"{r.claim_id}: {r.absent[0]!r} occurs on {r.cite()}" in problems


def test_check_against_reports_a_file_too_short() -> None:
    sources = {k: "x\n" for k in synthetic_sources()}
    problems = official.check_against(lambda c, p: sources[(c, p)])
    assert len(problems) == sum(1 for r in official.REFERENCES if r.lines[1] > 1)
    assert all("but the file has 1 lines" in p for p in problems)


def _script():
    path = Path(__file__).parents[1] / "scripts" / "check_official_refs.py"
    spec = importlib.util.spec_from_file_location("check_official_refs", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_script_refuses_a_folder_that_is_not_a_clone(tmp_path, capsys) -> None:
    assert _script().main([str(tmp_path)]) == 2
    assert "is not a git clone" in capsys.readouterr().out


def test_script_names_a_commit_the_clone_lacks(tmp_path, capsys) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert _script().main([str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert out.startswith("error: ") and official.REFERENCES[0].path in out

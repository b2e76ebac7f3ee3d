"""`python -m basam_lite grade`: small students' notebooks built here, executed by nbclient."""

from __future__ import annotations

import csv
import importlib
import json
import math
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from basam_lite import exercises, grade
from basam_lite.__main__ import main as cli_main
from basam_lite.errors import UserError
from basam_lite.exercises import answers, nb03

ROOT = Path(__file__).resolve().parents[1]
LAMBDA_512 = math.log(32 * 32) / math.log(16 * 16)  # tiny model at 512 px: the formula written out
OFFICIAL_2560 = math.log(2**2 * 4096) / math.log(4096)
IMPORT = "from basam_lite.exercises import nb03"


def main(argv: list[str]) -> int:
    """The CLI with ``--debug``, so a refusal surfaces as its UserError."""
    return cli_main(["--debug", *argv])


def student(tmp_path: Path, name: str, *cells: str) -> Path:
    """A student's notebook: a title, then one code cell per string."""
    nb = new_notebook(cells=[new_markdown_cell("# Exercises"), *map(new_code_cell, cells)])
    path = tmp_path / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


def by_exercise(rows: list[grade.Row]) -> dict[str, grade.Row]:
    return {r.exercise: r for r in rows}


def test_kernel_records_answers_and_the_grader_rechecks_them(tmp_path, monkeypatch) -> None:
    """The log holds what each checker was given; the verdict is recomputed from it here."""
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv(exercises.GRADE_LOG, str(log))
    nb03.check_tiny_lambda_512(LAMBDA_512)
    nb03.check_official_2560(1.0)
    nb03.check_lambda(lambda n, n_train: math.log(n) / math.log(n_train))  # a function answer
    nb03.check_lambda(lambda n, n_train: n / n_train)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["checker"] for r in records] == [
        "nb03.check_tiny_lambda_512",
        "nb03.check_official_2560",
        "nb03.check_lambda",
        "nb03.check_lambda",
    ]
    assert "correct" not in json.dumps(records)  # answers, not verdicts
    assert [bool(answers.recheck(r)) for r in records] == [True, False, True, False]
    assert [r["kernel_said"] for r in records] == [True, False, True, False]
    # a nested checker call is one answer: check_lambda calls check_with_mistakes inside
    assert len(records[2]["calls"]) == 1 and len(records[2]["calls"][0]) == 9


def test_no_log_without_the_variable(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(exercises.GRADE_LOG, raising=False)
    monkeypatch.chdir(tmp_path)
    assert nb03.check_tiny_lambda_512(LAMBDA_512)
    assert list(tmp_path.iterdir()) == []


def test_expected_exercises_from_source(tmp_path) -> None:
    path = student(
        tmp_path,
        "s",
        IMPORT,
        "# nb03.check_lambda(f)\nnb03.check_tiny_lambda_512(x)",
        "nb03.check_official_2560 (y); nb03.check_tiny_lambda_512(z)",
    )
    nb = nbformat.read(path, as_version=4)
    assert grade.expected_exercises(nb) == [
        ("nb03.check_tiny_lambda_512", 3),
        ("nb03.check_official_2560", 4),
    ]


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_every_real_notebook_calls_existing_checkers(path: Path) -> None:
    """The scan finds the real notebooks' exercises, and each names a checker that exists."""
    found = grade.expected_exercises(nbformat.read(path, as_version=4))
    assert found, f"{path.name}: no nbNN.check_*( call found"
    for name, _ in found:
        module, func = name.split(".")
        assert callable(getattr(importlib.import_module(f"basam_lite.exercises.{module}"), func))


@pytest.mark.slow
def test_right_wrong_and_raising_copies(tmp_path, capsys) -> None:
    right = student(
        tmp_path,
        "alice",
        IMPORT,
        f"nb03.check_tiny_lambda_512({LAMBDA_512!r})",
        f"nb03.check_official_2560({OFFICIAL_2560!r})",
    )
    wrong = student(
        tmp_path,
        "bob",
        IMPORT,
        "nb03.check_tiny_lambda_512(0.75)",
        "nb03.check_official_2560(1.25)",
    )
    raising = student(
        tmp_path,
        "carol",
        IMPORT,
        "answer = undefined_name\nnb03.check_tiny_lambda_512(answer)",
        f"nb03.check_official_2560({OFFICIAL_2560!r})",
    )
    out = tmp_path / "grades.csv"
    assert (
        main(["grade", str(right), str(wrong), str(raising), "--csv", str(out), "--timeout", "300"])
        == 0
    )
    printed = capsys.readouterr().out
    with out.open() as f:
        table = list(csv.DictReader(f))
    assert [(Path(r["student"]).stem, r["exercise"], r["result"]) for r in table] == [
        ("alice", "nb03.check_tiny_lambda_512", "correct"),
        ("alice", "nb03.check_official_2560", "correct"),
        ("bob", "nb03.check_tiny_lambda_512", "wrong"),
        ("bob", "nb03.check_official_2560", "wrong"),
        ("carol", "nb03.check_tiny_lambda_512", "not done"),
        ("carol", "nb03.check_official_2560", "correct"),
    ]
    assert "ratio of their logarithms" in table[2]["detail"]  # the checker's hint
    assert table[4]["detail"] == "cell 3 raised NameError: name 'undefined_name' is not defined"
    for r in table:  # the printed table holds every CSV row
        assert r["exercise"] in printed and r["result"] in printed
    assert f"{right}: 2 of 2 correct" in printed and f"{raising}: 1 of 2 correct" in printed


@pytest.mark.slow
def test_hanging_cell_stops_the_notebook_and_is_named(tmp_path) -> None:
    path = student(
        tmp_path,
        "dave",
        "import time",
        "while True:\n    time.sleep(0.05)",
        f"{IMPORT}\nnb03.check_tiny_lambda_512({LAMBDA_512!r})",
    )
    rows = grade.grade_notebook(path, timeout=3)
    assert [(r.exercise, r.result, r.cell) for r in rows] == [
        ("nb03.check_tiny_lambda_512", "not done", 4)
    ]
    assert rows[0].detail == (
        "stopped at cell 3 ('while True:'): it ran past the 3 s per-cell limit"
    )


@pytest.mark.slow
def test_notebook_timeout(tmp_path) -> None:
    path = student(
        tmp_path,
        "erin",
        "import time",
        "time.sleep(30)",
        "time.sleep(30)",
        f"{IMPORT}\nnb03.check_tiny_lambda_512(1)",
    )
    (row,) = grade.grade_notebook(path, timeout=60, notebook_timeout=3)
    assert (row.result, row.cell) == ("not done", 5)
    assert row.detail == "stopped at cell 3 ('time.sleep(30)'): the notebook passed its 3 s limit"


def test_bad_input(tmp_path) -> None:
    with pytest.raises(UserError, match="no such notebook"):
        main(["grade", str(tmp_path / "missing.ipynb")])
    (tmp_path / "broken.ipynb").write_text("not json")
    with pytest.raises(UserError, match="not a readable notebook"):
        grade.grade_notebook(tmp_path / "broken.ipynb")
    ok = student(tmp_path, "s", "1")
    with pytest.raises(UserError, match="must be positive"):
        main(["grade", str(ok), "--timeout", "0"])
    with pytest.raises(UserError, match="does not exist"):
        grade.write_csv([], tmp_path / "no" / "g.csv")

"""`grade` treats students' notebooks as untrusted: hostile notebooks change nothing outside
their temporary copy, cannot forge a verdict, leave no process behind, and the CSV holds every
gradable notebook.

The isolation tests need bubblewrap (Debian's ``bubblewrap``, installed by ``.ci/run``); where
it cannot run they are skipped with the reason the probe gives. The fallback (``--sandbox
none``) is tested everywhere.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

import basam_lite
from basam_lite import grade, sandbox
from basam_lite.__main__ import main as cli_main
from basam_lite.errors import UserError
from basam_lite.exercises import GRADE_LOG, answers, nb03

LAMBDA_512 = math.log(32 * 32) / math.log(16 * 16)  # the formula written out
OFFICIAL_2560 = math.log(2**2 * 4096) / math.log(4096)
IMPORT = "from basam_lite.exercises import nb03"
PROJECT = Path(basam_lite.__file__).resolve().parents[1]
BWRAP, WHY_NOT = sandbox.probe_bwrap()
needs_bwrap = pytest.mark.skipif(BWRAP is None, reason=f"no isolation tool: {WHY_NOT}")


def main(argv: list[str]) -> int:
    return cli_main(["--debug", *argv])


def write_notebook(path: Path, *cells: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nb = new_notebook(cells=[new_markdown_cell("# Exercises"), *map(new_code_cell, cells)])
    nbformat.write(nb, path)
    return path


def tree_hash(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file (and the folder list) under ``folder``."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            out[os.path.relpath(os.path.join(root, d), folder) + "/"] = "dir"
        for name in files:
            p = Path(root, name)
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def source_names() -> list[str]:
    """The library's file names (bytecode caches left out: this process may write them)."""
    return sorted(n for n in tree_hash(PROJECT / "basam_lite") if "__pycache__" not in n)


def running_with(marker: str) -> list[int]:
    """Pids of processes whose command line holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline:
                found.append(int(entry.name))
    return found


def detach(marker: str) -> str:
    """A cell that starts a process in a new session, meant to outlive grading."""
    return (
        "import subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', {marker!r}],\n"
        "                 start_new_session=True, stdin=subprocess.DEVNULL,\n"
        "                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)"
    )


def forge(checker: str) -> str:
    """A cell that writes forged 'correct' verdicts into every channel it can name."""
    old_style = {"checker": checker, "correct": True, "message": "forged"}
    new_style = {"checker": checker, "args": [1.0], "kwargs": {}, "calls": [], "kernel_said": True}
    return (
        "import json, os\n"
        f"log = os.environ[{GRADE_LOG!r}]\n"
        "with open(log, 'a') as f:\n"
        f"    f.write(json.dumps({old_style!r}) + '\\n')\n"
        f"    f.write(json.dumps({new_style!r}) + '\\n')\n"
        "    f.write('not json\\n')\n"
        f"os.environ[{GRADE_LOG!r}] = log + '.other'\n"
        "print('Correct: forged')"
    )


def attack(targets: dict[str, Path]) -> str:
    """A cell that tries to delete, overwrite and create files outside its copy; it records
    which attempts the sandbox refused (printed, for the test to read from the kernel)."""
    return (
        "import os, shutil\n"
        f"targets = { ({k: str(v) for k, v in targets.items()})!r}\n"
        "refused = []\n"
        "for how, path in targets.items():\n"
        "    try:\n"
        "        if how.startswith('delete'):\n"
        "            os.remove(path)\n"
        "        elif how.startswith('rmtree'):\n"
        "            shutil.rmtree(path)\n"
        "        else:\n"
        "            with open(path, 'w') as f:\n"
        "                f.write('pwned')\n"
        "    except OSError as e:\n"
        "        refused.append(how)\n"
        "open('made_in_my_copy.txt', 'w').write('fine')\n"
        "print(sorted(refused))"
    )


@needs_bwrap
@pytest.mark.slow
def test_hostile_class_changes_nothing_and_forges_nothing(tmp_path, capsys) -> None:
    marker = f"basam-detached-{os.getpid()}-{time.time_ns()}"
    cls = tmp_path / "class"
    teacher = write_notebook(tmp_path / "teacher" / "solution.ipynb", "print('teacher')")
    alice = write_notebook(
        cls / "alice" / "03.ipynb",
        IMPORT,
        f"nb03.check_tiny_lambda_512({LAMBDA_512!r})",
        f"nb03.check_official_2560({OFFICIAL_2560!r})",
    )
    (cls / "alice" / "notes.txt").write_text("alice's notes")
    bob = cls / "bob" / "03.ipynb"
    bob.parent.mkdir(parents=True)
    bob.write_text("{ not a notebook")
    targets = {
        "delete classmate": alice,
        "rmtree classmate folder": cls / "alice",
        "overwrite teacher": teacher,
        "create beside the class": tmp_path / "pwned.txt",
        "create in the project": PROJECT / "basam_lite" / "pwned.py",
        "overwrite the project": PROJECT / "basam_lite" / "grade.py",
        "create in home": Path.home() / f"pwned-{marker}",
    }
    mallory = write_notebook(
        cls / "mallory" / "03.ipynb",
        IMPORT,
        attack(targets),
        detach(marker),
        "nb03.check_tiny_lambda_512(0.75)",
        "nb03.check_official_2560(1.0)",
        forge("nb03.check_official_2560"),
        forge("nb03.check_tiny_lambda_512"),
    )
    out = tmp_path / "out" / "grades.csv"
    out.parent.mkdir()
    before = tree_hash(tmp_path)
    project_before = source_names()  # names only: other engineers may edit files meanwhile
    grade_py = (PROJECT / "basam_lite" / "grade.py").read_bytes()
    twice = cls / "alice" / ".." / "alice" / "03.ipynb"  # alice again, by another spelling
    rc = main(
        [
            "grade",
            str(alice),
            str(bob),
            str(mallory),
            str(twice),
            "--csv",
            str(out),
            "--timeout",
            "300",
            "--sandbox",
            "bwrap",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 1  # bob's file is not a notebook: graded as such, the others still graded

    after = tree_hash(tmp_path)
    assert after.pop("out/grades.csv") and after == {**before, "out/": "dir"}
    assert source_names() == project_before
    assert (PROJECT / "basam_lite" / "grade.py").read_bytes() == grade_py
    assert not (Path.home() / f"pwned-{marker}").exists()
    assert running_with(marker) == []  # the detached process ended with its kernel

    with out.open() as f:
        table = [
            (Path(r["student"]).parent.name, r["exercise"], r["result"]) for r in csv.DictReader(f)
        ]
    assert table == [
        ("alice", "nb03.check_tiny_lambda_512", "correct"),
        ("alice", "nb03.check_official_2560", "correct"),
        ("bob", "-", "not done"),
        ("mallory", "nb03.check_tiny_lambda_512", "wrong"),  # its last record: forged, on 1.0
        ("mallory", "nb03.check_official_2560", "wrong"),
    ]
    assert "isolation: bubblewrap" in captured.err
    assert "the same notebook as" in captured.err and "not a readable notebook" in captured.err
    assert "said correct" in captured.out  # the forged 'kernel_said' is pointed out


@pytest.mark.slow
def test_fallback_copy_forgery_and_leftover_processes(tmp_path, capsys) -> None:
    """Without bubblewrap: own copy and working folder, no forged verdict, no process left."""
    marker = f"basam-detached-{os.getpid()}-{time.time_ns()}"
    eve = write_notebook(
        tmp_path / "eve" / "03.ipynb",
        IMPORT,
        "open('made_here.txt', 'w').write('x')\nimport os\nprint(os.getcwd())",
        detach(marker),
        "nb03.check_official_2560(1.0)",
        forge("nb03.check_official_2560"),
        forge("nb03.check_tiny_lambda_512"),
    )
    (tmp_path / "eve" / "data.txt").write_text("eve's data")
    write_notebook(tmp_path / "eve" / "other.ipynb", "1")
    before = tree_hash(tmp_path)
    iso = sandbox.choose("none")
    assert iso.bwrap is None and "can read and write any file you can" in iso.note
    rows = grade.grade_notebook(
        eve, timeout=300, isolation=iso, hidden=[tmp_path / "eve" / "other.ipynb"]
    )
    assert tree_hash(tmp_path) == before  # the file it made is in its copy, gone with it
    assert running_with(marker) == []
    got = {r.exercise: (r.result, r.detail) for r in rows}
    assert got["nb03.check_official_2560"][0] == "wrong"
    # the second forgery wrote to the file the notebook itself named: never read
    assert "nb03.check_tiny_lambda_512" not in got


def test_forged_records_are_rechecked_not_believed(tmp_path) -> None:
    """What a notebook can write into the channel: each forgery gets the true verdict."""

    def judge(record: dict) -> str:
        return grade._judge(record)[0]

    assert judge({"checker": "nb03.check_official_2560", "correct": True}) == "not done"
    assert (
        judge({"checker": "nb03.check_official_2560", "args": [1.0], "kernel_said": True})
        == "wrong"
    )
    assert judge({"checker": "nb03.check_official_2560", "args": [OFFICIAL_2560]}) == "correct"
    for name in ("os.system", "nb03.lambda_cases", "nb99.check_x", "nb03.__class__", ""):
        result, detail = grade._judge({"checker": name, "args": ["rm -rf /"]})
        assert result == "not done" and "could not re-check" in detail, name
    # a function answer whose recorded results are right but whose arguments are not the
    # checker's: the replay diverges and is not believed
    log = tmp_path / "log.jsonl"
    os.environ[GRADE_LOG] = str(log)
    try:
        nb03.check_lambda(lambda n, n_train: math.log(n) / math.log(n_train))
    finally:
        del os.environ[GRADE_LOG]
    record = json.loads(log.read_text())
    assert judge(record) == "correct"
    record["calls"][0][0]["args"] = [5, 7]
    result, detail = grade._judge(record)
    assert result == "not done" and "other arguments" in detail
    record = json.loads(log.read_text())
    record["calls"][0] = record["calls"][0][:3]  # fewer calls than the checker makes
    assert "more often" in grade._judge(record)[1]
    for bad in (
        {"$nd": "O", "shape": [1], "data": ""},
        {"$dc": "os:system", "fields": {}},
        {"$float": "1e999999"},
        {"$what": 1},
    ):
        with pytest.raises(answers.Unreplayable):
            answers.decode(bad)


def test_every_solution_is_rechecked_correct(tmp_path, monkeypatch) -> None:
    """Every teacher's solution, recorded as a kernel would and re-checked in this process."""
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from test_exercises_solutions import FILES, exercise_sections, run_block
    finally:
        sys.path.pop(0)
    import importlib
    import io
    from contextlib import redirect_stdout

    import numpy as np
    import torch

    log = tmp_path / "log.jsonl"
    monkeypatch.setenv(GRADE_LOG, str(log))
    called = []
    for path in FILES:
        module = importlib.import_module(f"basam_lite.exercises.nb{path.name[:2]}")
        ns = {
            "bl": basam_lite,
            "np": np,
            "math": math,
            "torch": torch,
            module.__name__.rsplit(".", 1)[1]: module,
        }
        for heading, blocks in exercise_sections(path.read_text(encoding="utf-8")):
            with redirect_stdout(io.StringIO()):
                for i, code in enumerate(blocks):
                    run_block(code, ns, f"{path.name}:{heading}:{i}")
            called.append(heading)
    monkeypatch.delenv(GRADE_LOG)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) >= len(called)
    for record in records:
        assert grade._judge(record)[0] == "correct", record["checker"]
    # a model argument is passed through untouched in the kernel, and re-checked without it
    (model,) = [r for r in records if r["checker"] == "nb02.check_basam_attention"]
    assert model["args"][1] == {"$opaque": "Sam"} and model["kernel_said"] is True
    assert "re-checked without sam (Sam)" in grade._judge(model)[1]


def test_inputs_checked_before_any_runs(tmp_path, monkeypatch, capsys) -> None:
    good = write_notebook(tmp_path / "a" / "03.ipynb", "1")
    other = write_notebook(tmp_path / "b" / "03.ipynb", "2")
    ran: list[str] = []

    def fake(path, *a, **k):
        ran.append(str(path))
        return [grade.Row(k["student"], "nb03.check_x", grade.CORRECT, 2, "")]

    monkeypatch.setattr(grade, "grade_notebook", fake)
    for bad_csv, why in (
        (good, "one of the notebooks"),
        (tmp_path / "g.ipynb", "a notebook's name"),
        (tmp_path / "no" / "g.csv", "does not exist"),
    ):
        with pytest.raises(UserError, match=why):
            main(["grade", str(good), "--csv", str(bad_csv)])
    report = tmp_path / "report.csv"
    report.write_text("a student's own data\n")
    with pytest.raises(UserError, match="not a grades table"):
        main(["grade", str(good), "--csv", str(report)])
    assert report.read_text() == "a student's own data\n"
    with pytest.raises(UserError, match="no such notebook"):  # a typo: refused before any runs
        main(["grade", str(good), str(tmp_path / "missing.ipynb")])
    with pytest.raises(UserError, match="not a finite number|must be positive"):
        main(["grade", str(good), "--timeout", "nan"])
    assert ran == []
    # the same file by two spellings and through a symlink: graded once
    link = tmp_path / "link.ipynb"
    link.symlink_to(good)
    out = tmp_path / "grades.csv"
    assert (
        main(
            [
                "grade",
                str(good),
                str(tmp_path / "a" / ".." / "a" / "03.ipynb"),
                str(link),
                str(other),
                "--csv",
                str(out),
                "--sandbox",
                "none",
            ]
        )
        == 0
    )
    assert ran == [str(good), str(other)]
    assert main(["grade", str(good), "--csv", str(out), "--sandbox", "none"]) == 0  # ours: replaced


def test_rows_so_far_are_written_when_a_later_notebook_fails(tmp_path, monkeypatch) -> None:
    first = write_notebook(tmp_path / "a" / "03.ipynb", "1")
    second = write_notebook(tmp_path / "b" / "03.ipynb", "2")

    def fake(path, *a, **k):
        if Path(path) == second:
            raise OSError(28, "No space left on device")
        return [grade.Row(k["student"], "nb03.check_x", grade.CORRECT, 2, "")]

    monkeypatch.setattr(grade, "grade_notebook", fake)
    out = tmp_path / "grades.csv"
    with pytest.raises(OSError):
        main(["grade", str(first), str(second), "--csv", str(out), "--sandbox", "none"])
    with out.open() as f:
        assert [(r["student"], r["result"]) for r in csv.DictReader(f)] == [(str(first), "correct")]


@needs_bwrap
def test_sandbox_refuses_writes_outside_the_copy_as_an_unprivileged_user() -> None:
    """The same bubblewrap command line, run as root and (when root) as ``nobody``, in an
    unprivileged user namespace: the copy is writable, the rest read-only, a hidden file empty,
    no network, its own pid namespace."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="basam-sandbox-test-", dir="/var/tmp"))
    try:
        copy = base / "copy"
        (copy / "work").mkdir(parents=True)
        secret = base / "secret.txt"
        secret.write_text("other student's answer")
        for p in (base, copy, copy / "work"):
            os.chmod(p, 0o777)
        probe = (
            "import os, socket, pathlib\n"
            "pathlib.Path('mine.txt').write_text('ok')\n"
            "try:\n"
            f"    hidden = repr(pathlib.Path({str(secret)!r}).read_text())\n"
            "except OSError as e:  # a device node on a nodev mount (user namespace)\n"
            "    hidden = type(e).__name__\n"
            "try:\n"
            f"    pathlib.Path({str(base / 'escape.txt')!r}).write_text('x'); esc = 'wrote'\n"
            "except OSError as e:\n"
            "    esc = type(e).__name__\n"
            "try:\n"
            "    socket.create_connection(('1.1.1.1', 53), timeout=2); net = 'up'\n"
            "except OSError:\n"
            "    net = 'none'\n"
            "print(hidden, esc, net, os.getpid())"
        )
        iso = sandbox.Isolation(BWRAP, "")
        runs = [[sys.executable]]
        system_python = shutil.which("python3", path="/usr/bin:/bin")
        if os.geteuid() == 0 and shutil.which("setpriv") and system_python:
            nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
            runs.append([*nobody, system_python])  # our venv's python may sit under /root
        for run in runs:
            *user, python = run
            if user:  # nobody runs the system python: nothing of ours in /tmp to re-bind (and
                # a 0700 clone folder there, as CI's, is one nobody may not even look into)
                with mock.patch.object(sandbox, "_under_tmp", lambda paths, writable: []):
                    cmd = iso.command([python, "-c", probe], copy, copy / "work", hidden=[secret])
            else:
                cmd = iso.command([python, "-c", probe], copy, copy / "work", hidden=[secret])
            done = subprocess.run([*user, *cmd], capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, (user, done.stderr)
            hidden, esc, net, pid = done.stdout.split()
            assert hidden in ("''", "PermissionError") and net == "none", user
            assert esc in ("OSError", "PermissionError") and int(pid) < 10, user
            assert (copy / "work" / "mine.txt").read_text() == "ok"
            assert not (base / "escape.txt").exists()
            (copy / "work" / "mine.txt").unlink()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_every_exercise_checker_records_its_answers() -> None:
    """A new checker module must end with ``instrument(globals())``, or grade gets no answer."""
    import importlib
    import pkgutil

    import basam_lite.exercises as package

    names = [
        m.name for m in pkgutil.iter_modules(package.__path__) if answers.MODULE.fullmatch(m.name)
    ]
    assert len(names) >= 9
    for name in names:
        module = importlib.import_module(f"basam_lite.exercises.{name}")
        for attr, value in vars(module).items():
            if (
                attr.startswith("check_")
                and callable(value)
                and value.__module__ == module.__name__
            ):
                assert getattr(value, "__basam_checker__", None) == f"{name}.{attr}", (name, attr)


def test_the_teachers_guide_quotes_what_grade_says() -> None:
    """The guide's 'how you would notice' lines are the grader's own words, and its account of
    the fallback matches the one line grade prints there."""
    guide = " ".join((PROJECT / "site" / "teacher_guide.md").read_text().split())
    _, detail = grade._judge(
        {"checker": "nb03.check_official_2560", "args": [1.0], "kernel_said": True}
    )
    quoted = "[the notebook's own checker said correct: its kernel was changed;"
    assert quoted in guide and quoted in detail
    note = sandbox.choose("none").note
    for claim in ("read and write any file you can", "reach the network"):
        assert claim in note
    assert "can read and write every file you can and reach the network" in guide
    assert (
        "printed a 'Correct:' line but no answer reached the grader"
        in (PROJECT / "basam_lite" / "grade.py").read_text()
    )
    assert "printed a `Correct:` line that the grader never received" in guide

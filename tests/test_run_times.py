"""Run times: every notebook states the run time measured in notebooks/run_times.json (with the
machine's own kernels and with AVX2-only kernels), meets its budget in both modes, and the
script that measures and writes the lines edits one line and nothing else. Nothing here
executes a notebook."""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

from basam_lite import run_times as rt
from basam_lite.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
NAMES = [p.stem for p in NOTEBOOKS]

sys.path.insert(0, str(ROOT / "scripts"))
import time_notebooks  # noqa: E402

MEASURE = "python scripts/time_notebooks.py && python scripts/time_notebooks.py --write-lines"


def committed() -> dict:
    try:
        return rt.load(rt.DEFAULT_PATH)
    except UserError as e:
        pytest.fail(f"{e} (on a quiet machine: {MEASURE})")


# --- the committed measurement -------------------------------------------------------------------


def test_the_record_measures_every_notebook_in_both_modes() -> None:
    record = committed()
    assert sorted(record["notebooks"]) == NAMES, f"measure again: {MEASURE}"
    for name, runs in record["notebooks"].items():
        assert sorted(runs) == sorted(rt.MODES), name
    assert record["modes"] == rt.MODES
    flags = record["machine"]["flags"]
    assert {"avx512f", "avx512_bf16", "amx_bf16"} <= set(flags) and record["machine"]["cores"] >= 1


def test_the_avx2_runs_had_avx2_kernels_and_the_fp32_path() -> None:
    record = committed()
    for name, runs in record["notebooks"].items():
        assert runs["avx2"]["cpu_capability"] == "AVX2", name
        assert runs["avx2"]["auto_precision"] == "fp32", name
        if record["machine"]["flags"]["avx512f"]:  # else the two modes would be the same
            assert runs["native"]["cpu_capability"] == "AVX512", name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_each_notebook_states_its_measured_run_time(path: Path) -> None:
    stated = rt.notebook_line(path.read_text(encoding="utf-8"), path)
    assert stated == rt.run_time_line(committed(), path.stem), (
        "run `python scripts/time_notebooks.py --write-lines`"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_each_notebook_meets_its_budget_in_both_modes(path: Path) -> None:
    runs = committed()["notebooks"][path.stem]
    limit = 120 if path.stem == "05_attention_maps" else 180
    assert rt.budget(path.stem) == limit
    for mode in rt.MODES:
        assert runs[mode]["seconds"] <= limit, f"{path.stem} {mode}: {runs[mode]['seconds']} s"


# --- rendering -----------------------------------------------------------------------------------


def record(**seconds: tuple[float, float]) -> dict:
    """A record of the form the script writes: name -> (native s, avx2 s)."""

    def run(s: float, capability: str, day: int) -> dict:
        return {
            "seconds": s,
            "cpu_seconds": s * 0.9,
            "date": f"2026-12-0{day}T10:00:00+00:00",
            "load_before": [0.1, 0.2, 0.3],
            "load_after": [0.9, 0.5, 0.4],
            "cpu_capability": capability,
            "torch_threads": 2,
            "auto_precision": "fp32",
        }

    return {
        "schema": 1,
        "date": "2026-12-03T10:00:00+00:00",
        "command": "python scripts/...",
        "machine": {
            "cpu_model": "AMD EPYC",
            "cores": 2,
            "flags": {
                "avx2": True,
                "avx512f": True,
                "avx512_bf16": True,
                "amx_bf16": False,
                "amx_tile": False,
            },
        },
        "modes": rt.MODES,
        "notebooks": {
            n: {"native": run(a, "AVX512", 2), "avx2": run(b, "AVX2", 3)}
            for n, (a, b) in seconds.items()
        },
    }


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.2, "5 s"),
        (5.0, "5 s"),
        (5.01, "10 s"),
        (24.9, "25 s"),
        (59.5, "1 min"),
        (60.0, "1 min"),
        (61.0, "1 min 5 s"),
        (177.0, "3 min"),
        (181.0, "3 min 5 s"),
    ],
)
def test_durations_are_rounded_up_to_five_seconds(seconds: float, text: str) -> None:
    assert rt.format_duration(seconds) == text


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_a_bad_duration_is_a_user_error(bad: float) -> None:
    with pytest.raises(UserError, match="finite number of seconds"):
        rt.round_up(bad)


def test_the_line_written_out() -> None:
    line = rt.run_time_line(record(a=(21.3, 37.0)), "a")
    assert line == "**Run time:** about 40 s on a 2-core CPU."  # the slower mode, one short line
    avx2_machine = record(a=(1, 2))
    avx2_machine["machine"]["flags"].update(avx512f=False, avx512_bf16=False)
    assert rt.machine_phrase(avx2_machine["machine"]) == "2-core AMD EPYC (AVX2, no native bf16)"
    with pytest.raises(UserError, match="notebook b is not in the run-times record"):
        rt.run_time_line(record(a=(1, 2)), "b")


def test_budgets_are_three_minutes_and_two_for_notebook_05() -> None:
    ok = record(**{"05_attention_maps": (119.0, 120.0), "07_train": (100.0, 180.0)})
    assert rt.over_budget(ok) == []
    slow = record(**{"05_attention_maps": (90.0, 120.5), "07_train": (180.2, 10.0)})
    assert rt.over_budget(slow) == [
        "05_attention_maps avx2: 120 s, over its budget of 120 s",
        "07_train native: 180 s, over its budget of 180 s",
    ]


def test_the_guide_table_has_one_row_per_notebook() -> None:
    table = rt.guide_table(record(a=(21.3, 37.0), b=(61.0, 70.0))).splitlines()
    assert table[0] == (
        "| notebook | native (wall) | avx2 (wall) | native (kernel CPU) | "
        "avx2 (kernel CPU) | load average before / after (1 min) |"
    )
    assert table[2] == "| a | 25 s | 40 s | 19 s | 33 s | native 0.1 / 0.9; avx2 0.1 / 0.9 |"
    assert table[3].startswith("| b | 1 min 5 s | 1 min 10 s |") and len(table) == 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("machine"), "has no 'machine'"),
        (lambda r: r.update(schema=2), "not a run-times record of schema 1"),
        (lambda r: r["notebooks"]["a"]["native"].update(seconds=-3), "'seconds' must be"),
        (lambda r: r["notebooks"]["a"]["native"].update(seconds="12"), "'seconds' must be"),
        (lambda r: r["notebooks"]["a"].update(fast={"seconds": 1, "date": "x"}), "mode 'fast'"),
        (lambda r: r["machine"].pop("cores"), "'cores'"),
    ],
)
def test_a_malformed_record_is_refused(tmp_path: Path, change, message: str) -> None:
    bad = record(a=(1.0, 2.0))
    change(bad)
    path = tmp_path / "run_times.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(UserError, match=message):
        rt.load(path)


def test_a_missing_or_unreadable_record_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file; measure again with"):
        rt.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(UserError, match="not valid JSON"):
        rt.load(tmp_path / "bad.json")


# --- the one line inside a stored notebook -------------------------------------------------------


def changed_lines(a: str, b: str) -> list[str]:
    return [d for d in difflib.ndiff(a.splitlines(), b.splitlines()) if d[:1] in "+-"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_each_stored_notebook_has_one_line_that_edits_alone(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    stated = rt.notebook_line(text, path)
    assert rt.replace_line(text, stated, path) == text
    new = rt.replace_line(text, f"{rt.LINE_START}7 s, a test's line.", path)
    diff = changed_lines(text, new)
    assert (
        len(diff) == 2
        and "a test's line." in diff[1]
        and stated in json.loads(diff[0][2:].strip().rstrip(","))
    )
    assert rt.notebook_line(new) == f"{rt.LINE_START}7 s, a test's line."


def notebook_text(*markdown: str) -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(m) for m in markdown]
    nb.cells.append(nbformat.v4.new_code_cell("print('**Run time:** in code is not the line')"))
    return nbformat.writes(nb)


def test_the_line_must_be_there_once_and_be_one_line() -> None:
    with pytest.raises(UserError, match="exactly one markdown line .* found 0"):
        rt.notebook_line(notebook_text("# Title\n\nNo time stated."))
    with pytest.raises(UserError, match="found 2"):
        rt.notebook_line(notebook_text("**Run time:** 5 s\n", "**Run time:** 10 s"))
    with pytest.raises(UserError, match="not a notebook"):
        rt.notebook_line("{")
    text = notebook_text("# T\n\n**Run time:** old\n\nMore.")
    assert rt.notebook_line(text) == "**Run time:** old"
    with pytest.raises(UserError, match="one line starting with"):
        rt.replace_line(text, "**Run time:** two\nlines")
    with pytest.raises(UserError, match="one line starting with"):
        rt.replace_line(text, "Run time: 5 s")
    new = rt.replace_line(text, "**Run time:** new")
    assert changed_lines(text, new) == [
        '-     "**Run time:** old\\n",',
        '+     "**Run time:** new\\n",',
    ]


# --- the script ----------------------------------------------------------------------------------


@pytest.fixture
def copy(tmp_path: Path) -> tuple[Path, Path]:
    """Two real notebooks copied into a folder, and a record of them."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for path in NOTEBOOKS[:2]:
        shutil.copy(path, folder / path.name)
    out = tmp_path / "run_times.json"
    out.write_text(json.dumps(record(**{p.stem: (30.0, 44.0) for p in NOTEBOOKS[:2]})))
    return folder, out


def test_check_then_write_lines_then_check(copy, capsys) -> None:
    folder, out = copy
    before = {p.name: p.read_text(encoding="utf-8") for p in folder.iterdir()}
    args = ["--dir", str(folder), "--out", str(out)]
    assert time_notebooks.main([*args, "--check"]) == 1
    assert "its line differs" in capsys.readouterr().out
    assert time_notebooks.main([*args, "--write-lines"]) == 0
    assert "2 of 2 notebook line(s) changed" in capsys.readouterr().out
    for p in folder.iterdir():
        diff = changed_lines(before[p.name], p.read_text(encoding="utf-8"))
        assert len(diff) == 2 and "about 45 s on a 2-core CPU" in diff[1], p.name
    assert time_notebooks.main([*args, "--check"]) == 0
    assert "2 notebook(s) agree" in capsys.readouterr().out
    assert time_notebooks.main([*args, "--write-lines"]) == 0
    assert "0 of 2 notebook line(s) changed" in capsys.readouterr().out
    slow = json.loads(out.read_text())
    slow["notebooks"][NOTEBOOKS[0].stem]["avx2"]["seconds"] = 400.0
    out.write_text(json.dumps(slow))
    assert time_notebooks.main([*args, "--check", "--only", NOTEBOOKS[1].stem]) == 0
    assert time_notebooks.main([*args, "--check"]) == 1
    assert "over its budget of" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--only", "99_nothing"], "no notebook 99_nothing in"),
        (["--modes", "native", "fast"], "--modes takes distinct names among native, avx2"),
        (["--modes", "avx2", "avx2"], "--modes takes distinct names"),
        (["--timeout", "0"], "--timeout must be a positive number"),
        (["--dir", "/nonexistent/notebooks"], "no such folder"),
        (["--out", "/nonexistent/dir/rt.json", "--check"], "its folder does not exist"),
        (["--write-lines", "--out", "MISSING"], "no such file; measure again"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(copy, capsys, argv, message) -> None:
    folder, out = copy
    base = ["--dir", str(folder), "--out", str(out)]
    argv = [a.replace("MISSING", str(out.with_name("missing.json"))) for a in argv]
    assert time_notebooks.main([*base, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_write_lines_writes_nothing_when_one_notebook_is_not_measured(copy, capsys) -> None:
    folder, out = copy
    shutil.copy(NOTEBOOKS[2], folder / NOTEBOOKS[2].name)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert time_notebooks.main(["--dir", str(folder), "--out", str(out), "--write-lines"]) == 2
    assert f"notebook {NOTEBOOKS[2].stem} is not in the run-times record" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_check_and_write_lines_exclude_each_other(copy) -> None:
    with pytest.raises(SystemExit) as e:
        time_notebooks.main(["--check", "--write-lines"])
    assert e.value.code == 2


def test_a_record_from_another_machine_is_not_added_to(copy) -> None:
    _, out = copy
    here = time_notebooks.machine()
    assert time_notebooks.starting_record(out.with_name("new.json"), here)["notebooks"] == {}
    other = json.loads(out.read_text())
    other["machine"] = {**here, "cores": here["cores"] + 1}
    out.write_text(json.dumps(other))
    with pytest.raises(UserError, match="was measured on another machine"):
        time_notebooks.starting_record(out, here)
    other["machine"] = here
    out.write_text(json.dumps(other))
    assert time_notebooks.starting_record(out, here)["notebooks"] == other["notebooks"]


def test_the_avx2_mode_sets_and_restores_its_environment(monkeypatch) -> None:
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    with time_notebooks.environment("avx2") as env:
        assert {k: env[k] for k in rt.AVX2_ENV} == rt.AVX2_ENV
        assert env["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)
    assert os.environ["ATEN_CPU_CAPABILITY"] == "default"
    with time_notebooks.environment("native") as env:
        assert not set(rt.AVX2_ENV) & set(env)  # a native run inherits no cap
    assert os.environ["ATEN_CPU_CAPABILITY"] == "default"


def test_a_kernel_that_is_not_on_avx2_is_refused() -> None:
    with pytest.raises(UserError, match="reports CPU capability AVX512 .* not AVX2"):
        time_notebooks.check_probe("avx2", {"cpu_capability": "AVX512", "auto_precision": "fp32"})
    with pytest.raises(UserError, match="picked bf16, not fp32"):
        time_notebooks.check_probe("avx2", {"cpu_capability": "AVX2", "auto_precision": "bf16"})
    time_notebooks.check_probe("native", {"cpu_capability": "AVX512", "auto_precision": "bf16"})
    assert time_notebooks.parse_probe(f"noise\n{time_notebooks.PROBE_TAG}" + '{"a": 1}\n') == {
        "a": 1
    }
    with pytest.raises(UserError, match="printed no RUN_TIMES_PROBE line"):
        time_notebooks.parse_probe("nothing")


def test_a_tiny_notebook_is_timed_in_both_modes_and_checked_inside_its_kernel(tmp_path, capsys):
    # The one test that starts kernels: a two-cell notebook, not a project notebook.
    folder = tmp_path / "nbs"
    folder.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("**Run time:** unknown"),
        nbformat.v4.new_code_cell("x = sum(range(10))"),
    ]
    (folder / "a.ipynb").write_text(nbformat.writes(nb))
    stored = (folder / "a.ipynb").read_bytes()
    out = tmp_path / "rt.json"
    modes = list(rt.MODES) if time_notebooks.machine()["flags"]["avx2"] else ["native"]
    assert time_notebooks.main(["--dir", str(folder), "--out", str(out), "--modes", *modes]) == 0
    assert (folder / "a.ipynb").read_bytes() == stored  # executed in memory only
    runs = rt.load(out)["notebooks"]["a"]
    assert sorted(runs) == sorted(modes)
    for run in runs.values():
        assert run["seconds"] > 0 and run["cpu_seconds"] > 0 and len(run["load_before"]) == 3
        assert run["torch_threads"] >= 1
    if "avx2" in runs:  # checked inside the kernel: torch's kernels and basam_lite's precision
        assert (runs["avx2"]["cpu_capability"], runs["avx2"]["auto_precision"]) == ("AVX2", "fp32")
    else:  # a CPU without AVX2 cannot be timed in that mode, and the script says so
        argv = ["--dir", str(folder), "--out", str(out), "--modes", "avx2"]
        assert time_notebooks.main(argv) == 2
        assert "cannot be timed in that mode" in capsys.readouterr().err
    # a notebook that fails is reported in one line and leaves the record as it was
    nb.cells.append(nbformat.v4.new_code_cell("raise RuntimeError('broken on purpose')"))
    (folder / "b.ipynb").write_text(nbformat.writes(nb))
    before = out.read_text()
    argv = ["--dir", str(folder), "--out", str(out), "--only", "b", "--modes", "native"]
    assert time_notebooks.main(argv) == 1
    assert "error: b native: the notebook failed (RuntimeError: broken on purpose)" in (
        capsys.readouterr().err
    )
    assert out.read_text() == before


# --- under load: alone and beside one busy process -----------------------------------------------


def loaded(idle: float, competing: float) -> dict:
    def run(s: float, load: float) -> dict:
        return {
            "seconds": s,
            "date": "2026-12-04T10:00:00+00:00",
            "load_before": [load, 0.5, 0.4],
            "runnable_before": 0 if load < 1 else 1,
        }

    return {
        "idle": run(idle, 0.2),
        "competing": run(competing, 1.1),
        "ratio": rt.load_ratio(idle, competing),
    }


def with_load(rec: dict, **pairs: tuple[float, float]) -> dict:
    runs = {n.replace("_", "-") if n == "main_job" else n: loaded(*p) for n, p in pairs.items()}
    return {**rec, "under_load": {"date": "x", "command": "c", "competitor": "p", "runs": runs}}


def test_the_line_states_the_time_beside_a_busy_process_when_measured() -> None:
    rec = with_load(record(a=(21.3, 37.0), b=(5.0, 6.0)), a=(20.0, 24.2))
    assert rt.run_time_line(rec, "a") == (
        "**Run time:** about 40 s on a 2-core CPU, 25 s beside one busy process."
    )
    assert rt.run_time_line(rec, "b") == "**Run time:** about 10 s on a 2-core CPU."


def test_ratios_over_the_target_are_listed() -> None:
    assert rt.load_ratio(20.0, 26.0) == 1.3 and rt.load_ratio(3.0, 1.0) == 0.333
    rec = with_load(record(a=(1, 2)), a=(20.0, 26.0), main_job=(100.0, 140.0))
    assert rt.over_ratio(rec) == [
        "main-job: 140 s beside one busy process against 100 s idle (1.40x, over 1.3x)"
    ]
    assert rt.over_ratio(record(a=(1, 2))) == []


def test_the_load_table_has_one_row_per_run() -> None:
    rec = with_load(record(a=(1, 2)), a=(20.0, 24.0), main_job=(300.0, 310.0))
    table = rt.load_table(rec, link="notebooks").splitlines()
    assert table[0].startswith("| run | idle | beside one busy process | ratio |")
    assert table[2] == "| [a](notebooks/a.ipynb) | 20.0 s | 24.0 s | 1.20 | 0.2 / 1.1 | 0 / 1 |"
    assert table[3] == "| main-job | 300.0 s | 310.0 s | 1.03 | 0.2 / 1.1 | 0 / 1 |"
    assert rt.load_table(record(a=(1, 2))) == ""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["under_load"].pop("runs"), "needs 'runs'"),
        (lambda r: r["under_load"]["runs"]["a"].update(ratio=1.0), "competing / idle is 1.2"),
        (lambda r: r["under_load"]["runs"]["a"].pop("competing"), "a competing: 'seconds'"),
        (lambda r: r["under_load"]["runs"]["a"]["idle"].update(seconds=0), "a idle: 'seconds'"),
        (lambda r: r["under_load"]["runs"]["a"]["idle"].pop("date"), "a idle: no 'date'"),
    ],
)
def test_a_malformed_load_section_is_refused(tmp_path: Path, change, message: str) -> None:
    bad = with_load(record(a=(1.0, 2.0)), a=(20.0, 24.0))
    change(bad)
    path = tmp_path / "run_times.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(UserError, match=message):
        rt.load(path)


def test_the_committed_load_section_covers_everything_and_holds() -> None:
    """Once measured (``--under-load``, run of everything), every notebook and the main job are
    in it, each within the target; each notebook's line then states both times (above)."""
    section = committed().get("under_load")
    if section is None:  # not measured yet: the lines state the idle time only, as checked above
        assert all(
            "beside" not in rt.notebook_line(p.read_text(encoding="utf-8")) for p in NOTEBOOKS
        )
        return
    assert sorted(section["runs"]) == sorted([*NAMES, rt.MAIN_JOB]), f"measure: {MEASURE_LOAD}"
    assert rt.over_ratio(committed()) == []


MEASURE_LOAD = "python scripts/time_notebooks.py --under-load && ... --write-lines"


def test_the_readme_quotes_the_measured_main_job() -> None:
    """Once the main job is measured under load, the README states both times as the record has
    them (rt.main_job_phrase); the phrase itself, on a record built here."""
    rec = with_load(record(a=(1, 2)), main_job=(409.2, 415.01))
    assert rt.main_job_phrase(rec) == (
        "410 s alone and 416 s beside one busy process on a 2-core CPU"
    )
    assert rt.main_job_phrase(record(a=(1, 2))) is None
    phrase = rt.main_job_phrase(committed())
    if phrase is not None:
        assert phrase in (ROOT / "README.md").read_text(encoding="utf-8"), (
            f"the README's main-job sentence should say: {phrase}"
        )


def test_under_load_times_a_notebook_and_the_main_job_beside_one_busy_process(
    tmp_path, capsys, monkeypatch
) -> None:
    # A two-cell notebook and a stand-in main job (a quick Python command given --out), so the
    # test starts two kernels and two short processes, not the real main job.
    folder = tmp_path / "nbs"
    folder.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("**Run time:** unknown"),
        nbformat.v4.new_code_cell("x = sum(range(10))"),
    ]
    (folder / "a.ipynb").write_text(nbformat.writes(nb))
    stored = (folder / "a.ipynb").read_bytes()
    job = (
        "import os, sys; assert sys.argv[-2] == '--out'; open(sys.argv[-1], 'w').write(os.getcwd())"
    )
    monkeypatch.setattr(rt, "MAIN_JOB_ARGS", ("-c", job))
    pids: list[int] = []
    real = time_notebooks.competitor

    @contextlib.contextmanager
    def watched():
        with real() as pid:
            pids.append(pid)
            assert pid_alive(pid)
            yield pid

    monkeypatch.setattr(time_notebooks, "competitor", watched)
    out = tmp_path / "rt.json"
    argv = ["--dir", str(folder), "--out", str(out), "--under-load"]
    assert time_notebooks.main([*argv, "--only", "a", "main-job"]) == 0
    assert (folder / "a.ipynb").read_bytes() == stored
    assert len(pids) == 2 and not any(pid_alive(p) for p in pids)  # one per run, then stopped
    section = rt.load(out)["under_load"]
    assert sorted(section["runs"]) == ["a", "main-job"]
    for pair in section["runs"].values():
        assert pair["ratio"] == rt.load_ratio(pair["idle"]["seconds"], pair["competing"]["seconds"])
        assert pair["competing"]["runnable_before"] >= 1  # the competitor was running
        assert len(pair["idle"]["load_before"]) == 3
    assert section["runs"]["a"]["idle"]["torch_threads"] >= 1
    assert "a: " in capsys.readouterr().out
    # a main job that fails: one line, exit 1, the record as it was
    monkeypatch.setattr(rt, "MAIN_JOB_ARGS", ("-c", "raise SystemExit('broken on purpose')"))
    before = out.read_text()
    assert time_notebooks.main([*argv, "--only", "main-job"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: main-job idle: the main job exited with status 1")
    assert "broken on purpose" in err and "\n" not in err
    assert out.read_text() == before


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # a zombie not yet reaped counts as stopped
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return False


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--under-load", "--main-job-timeout", "0"], "--main-job-timeout must be a positive"),
        (["--under-load", "--only", "99_nothing"], "no notebook 99_nothing in"),
    ],
)
def test_under_load_bad_input_is_one_line(copy, capsys, argv, message) -> None:
    folder, out = copy
    before = out.read_text()
    assert time_notebooks.main(["--dir", str(folder), "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert out.read_text() == before


def test_check_reports_a_ratio_over_the_target(copy, capsys) -> None:
    folder, out = copy
    args = ["--dir", str(folder), "--out", str(out)]
    assert time_notebooks.main([*args, "--write-lines"]) == 0
    rec = json.loads(out.read_text())
    out.write_text(json.dumps(with_load(rec, main_job=(100.0, 131.0))))
    capsys.readouterr()
    assert time_notebooks.main([*args, "--check"]) == 1
    assert "main-job: 131 s beside one busy process against 100 s idle" in capsys.readouterr().out

"""The course site's staging (site/stage.py) and its link check (scripts/check_site.py).

The full build and the browser check run in CI (.ci/run), where they take minutes; these tests
check the parts that decide what the site holds and whether a broken link is caught.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


stage = _load(ROOT / "site" / "stage.py", "site_stage")
check_site = _load(ROOT / "scripts" / "check_site.py", "check_site")


def test_student_site_holds_every_notebook_and_no_solution(tmp_path) -> None:
    staged = stage.stage(tmp_path, teacher=False)
    notebooks = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert sorted(Path(p).name for p in staged if p.endswith(".ipynb")) == notebooks
    assert not any(p.startswith("notebooks/solutions/") for p in staged)
    for page in ("README.md", "index.md", "teacher_guide.md", "api/index.md", "conf.py"):
        assert (tmp_path / page).is_file(), page
    index = (tmp_path / "index.md").read_text()
    for nb in notebooks:  # every notebook in the front page's table of contents
        assert f"notebooks/{nb.removesuffix('.ipynb')}\n" in index
    assert "teacher_guide" in index and "api/index" in index
    assert "solutions/" not in index
    # the README's link to the solutions folder points at the repository in a student build
    readme = (tmp_path / "README.md").read_text()
    assert f"({stage.REPO_URL}/tree/main/notebooks/solutions)" in readme
    assert "(notebooks/01_quickstart.ipynb)" in readme  # a staged page keeps its relative link
    assert (tmp_path / "results" / "sweep.png").is_file() or "results/sweep.png" not in readme
    # nothing is written into the project's notebooks
    for nb in notebooks:
        staged_nb = json.loads((tmp_path / "notebooks" / nb).read_text())
        assert all(
            not c.get("outputs")
            for c in staged_nb["cells"]
            if c["cell_type"] == "code"
            and "nbval-check-output" not in c.get("metadata", {}).get("tags", [])
        )


def test_teacher_site_adds_the_solutions(tmp_path) -> None:
    staged = stage.stage(tmp_path, teacher=True)
    solutions = sorted(p.name for p in (ROOT / "notebooks" / "solutions").glob("*.md"))
    assert sorted(Path(p).name for p in staged if p.startswith("notebooks/solutions/")) == solutions
    index = (tmp_path / "index.md").read_text()
    assert all(f"notebooks/solutions/{s.removesuffix('.md')}\n" in index for s in solutions)
    readme = (tmp_path / "README.md").read_text()
    assert f"{stage.REPO_URL}/tree/main/notebooks/solutions" in readme  # a folder, not a page


def test_api_pages_cover_every_module() -> None:
    pages = stage.api_pages()
    for module in (
        "basam_lite.masks",
        "basam_lite.scaling",
        "basam_lite.grade",
        "basam_lite.exercises.nb03",
        "basam_lite.datasets",
    ):
        assert (
            f"api/{module}.md" in pages
            and f".. automodule:: {module}\n" in pages[f"api/{module}.md"]
        )
    assert "basam_lite.__main__" not in "".join(pages)


def test_restaging_keeps_unchanged_files_and_drops_removed_pages(tmp_path) -> None:
    stage.stage(tmp_path, teacher=True)
    readme = tmp_path / "README.md"
    before = readme.stat().st_mtime_ns
    stale = tmp_path / "notebooks" / "99_gone.ipynb"
    stale.write_text("{}")
    stage.stage(tmp_path, teacher=False)
    assert readme.stat().st_mtime_ns == before  # unchanged: Sphinx will not re-read it
    assert not stale.exists()
    assert not (tmp_path / "notebooks" / "solutions" / "01_quickstart.md").exists()


def test_link_check_finds_broken_links_and_fragments(tmp_path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "img.png").write_bytes(b"png")
    (tmp_path / "index.html").write_text(
        '<a href="sub/page.html#here">ok</a> <a href="https://example.org/x">external</a>'
        '<img src="img.png"> <a href="#top" id="top">self</a> <a href="sub/">folder</a>'
    )
    (tmp_path / "sub" / "index.html").write_text("<p>folder page</p>")
    (tmp_path / "sub" / "page.html").write_text(
        '<h1 id="here">x</h1><a href="../missing.html">gone</a><a href="../index.html#nope">f</a>'
        '<img src="../nothing.png">'
    )
    failures = check_site.check_links(tmp_path)
    assert failures == [
        "sub/page.html: broken link ../missing.html",
        "sub/page.html: ../index.html#nope: no id 'nope' in the target",
        "sub/page.html: broken link ../nothing.png",
    ]


def test_the_guide_reads_its_run_times_from_the_record(tmp_path) -> None:
    # The measured record, written as scripts/time_notebooks.py writes it.
    from basam_lite import run_times as rt

    record = {
        "schema": 1,
        "date": "2026-12-03T10:00:00+00:00",
        "command": "python scripts/...",
        "machine": {
            "cpu_model": "AMD EPYC",
            "cores": 2,
            "flags": {"avx512f": True, "avx512_bf16": True},
        },
        "modes": rt.MODES,
        "notebooks": {
            "01_quickstart": {
                m: {
                    "seconds": s,
                    "cpu_seconds": 20.0,
                    "date": "2026-12-03T10:00:00+00:00",
                    "load_before": [0.2, 0.1, 0.1],
                    "load_after": [0.8, 0.3, 0.1],
                }
                for m, s in (("native", 31.0), ("avx2", 44.0))
            }
        },
    }
    path = tmp_path / "run_times.json"
    path.write_text(json.dumps(record))
    section = stage.run_times_section(path)
    assert "2-core AMD EPYC (AVX-512, native bf16), last on 2026-12-03" in section
    assert (
        "| [01_quickstart](notebooks/01_quickstart.ipynb) | 35 s | 45 s | 20 s | 20 s | "
        "native 0.2 / 0.8; avx2 0.2 / 0.8 |"
    ) in section
    assert "Not measured yet" in stage.run_times_section(tmp_path / "missing.json")
    assert "beside one competing" not in section  # no load section measured in this record
    pair = {
        c: {"seconds": s, "date": "d", "load_before": [0.3, 0.2, 0.1], "runnable_before": n}
        for c, s, n in (("idle", 10.0, 0), ("competing", 11.0, 1))
    }
    record["under_load"] = {
        "command": "python scripts/time_notebooks.py --under-load",
        "runs": {"main-job": {**pair, "ratio": 1.1}},
    }
    path.write_text(json.dumps(record))
    section = stage.run_times_section(path)
    assert "`python scripts/time_notebooks.py --under-load`" in section
    assert "| main-job | 10.0 s | 11.0 s | 1.10 | 0.3 / 0.3 | 0 / 1 |" in section
    guide = (ROOT / "site" / "teacher_guide.md").read_text()
    assert guide.count(stage.RUN_TIMES_MARKER) == 1
    stage.stage(tmp_path / "site", teacher=False)
    staged = (tmp_path / "site" / "teacher_guide.md").read_text()
    assert stage.RUN_TIMES_MARKER not in staged
    assert stage.run_times_section() in staged

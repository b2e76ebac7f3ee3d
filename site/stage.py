"""Stage the course site's sources into a work folder, for sphinx-build (see scripts/site.sh).

The staged tree mirrors the repository (``README.md``, ``notebooks/``, ``docs/``, ...) so that
the links between its files resolve as they do on the repository's web page. A relative link to
a file the site does not hold (a CSV, a folder, the solutions in a student build) is pointed at
the repository instead; an image it shows is copied. Nothing is written outside the work folder.
Files are rewritten only when their content changes, so Sphinx rebuilds only what changed.

    python site/stage.py WORK_DIR [--teacher]
"""

from __future__ import annotations

import argparse
import json
import pkgutil
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "site"
REPO_URL = "https://github.com/basam-lab/basam-lab"
TOC_MARKER = "<!-- toctrees -->"
RUN_TIMES_MARKER = "<!-- run-times -->"
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
PAGE_SUFFIXES = (".md", ".ipynb")


def pages(teacher: bool) -> dict[str, Path]:
    """Staged path -> source file of every page (site/ pages land at the root)."""
    out: dict[str, Path] = {"README.md": ROOT / "README.md"}
    for pattern in ("docs/*.md", "data/checkpoints/*.md", "notebooks/*.ipynb"):
        out.update({str(p.relative_to(ROOT)): p for p in sorted(ROOT.glob(pattern))})
    if teacher:
        solutions = sorted(ROOT.glob("notebooks/solutions/*.md"))
        out.update({str(p.relative_to(ROOT)): p for p in solutions})
    for p in sorted(SITE.glob("*.md")):
        out[p.name] = p
    return out


def title(path: Path) -> str:
    """The first level-1 heading of a page (markdown or notebook), else its name."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    else:
        text = path.read_text(encoding="utf-8")
    m = re.search(r"^# (.+)$", text, flags=re.M)
    return m.group(1).strip() if m else path.stem


def rewrite_links(text: str, source: Path, staged: dict[str, Path], copies: dict[str, Path]) -> str:
    """Relative links of ``source``'s markdown: kept when the site holds the target, images
    copied, anything else pointed at the repository."""
    here = source.parent if source.parent != SITE else ROOT

    def fix(m: re.Match) -> str:
        bang, label, target = m.groups()
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", target):
            return m.group(0)
        path, _, anchor = target.partition("#")
        resolved = (here / path).resolve()
        try:
            rel = resolved.relative_to(ROOT).as_posix()
        except ValueError:
            return m.group(0)
        if rel in staged:
            return m.group(0)
        if bang and resolved.is_file():
            copies[rel] = resolved
            return m.group(0)
        kind = "tree" if resolved.is_dir() else "blob"
        url = f"{REPO_URL}/{kind}/main/{rel}" + (f"#{anchor}" if anchor else "")
        return f"{bang}[{label}]({url})"

    return LINK.sub(fix, text)


def api_pages() -> dict[str, str]:
    """One reference page per module of basam_lite, from its docstrings (autodoc)."""
    sys.path.insert(0, str(ROOT))
    import basam_lite

    names = [
        "basam_lite",
        *sorted(
            m.name
            for m in pkgutil.walk_packages(basam_lite.__path__, "basam_lite.")
            if not m.name.endswith("__main__")
        ),
    ]
    out = {}
    for name in names:
        out[f"api/{name}.md"] = f"# `{name}`\n\n```{{eval-rst}}\n.. automodule:: {name}\n```\n"
    toc = "\n".join(f"{name}" for name in names)
    out["api/index.md"] = (
        "# Library reference\n\nBuilt from the docstrings of `basam_lite`, one page per module.\n\n"
        f"```{{toctree}}\n:maxdepth: 1\n\n{toc}\n```\n"
    )
    return out


def run_times_section(path: Path | None = None) -> str:
    """The teacher's guide's table of measured run times, from ``notebooks/run_times.json`` (the
    file each notebook's "Run time" line is written from); a note when it is missing."""
    sys.path.insert(0, str(ROOT))
    from basam_lite import run_times as rt

    path = rt.DEFAULT_PATH if path is None else path
    if not path.is_file():
        return (
            "*Not measured yet: `python scripts/time_notebooks.py`, run on a quiet machine, "
            "writes `notebooks/run_times.json`.*\n"
        )
    record = rt.load(path)
    return (
        f"Measured on the {rt.machine_phrase(record['machine'])}, last on "
        f"{record['date'][:10]}: the wall time of each mode rounded up to 5 s (as each notebook "
        f"states it), the kernel process's CPU time, and the 1-minute load average before and "
        f"after each run, which shows whether the machine was quiet.\n\n"
        + rt.guide_table(record, link="notebooks")
        + load_section(record, rt)
    )


def load_section(record: dict, rt) -> str:
    """The record's runs alone and beside one busy process (``--under-load``), if measured."""
    table = rt.load_table(record, link="notebooks")
    if not table:
        return ""
    return (
        f"\nAlone and beside one competing CPU-bound process (a Python process spinning on one "
        f"core), measured side by side by `{record['under_load']['command']}`: each run's wall "
        f"time, their ratio (the target is at most {rt.LOAD_RATIO}), and the 1-minute load "
        f"average and the other runnable processes seen before each run.\n\n" + table
    )


def toctrees(staged: dict[str, Path], teacher: bool) -> str:
    """The front page's tables of contents, from what is staged."""

    def toc(caption: str, docs: list[str]) -> str:
        lines = "\n".join(d.rsplit(".", 1)[0] for d in docs)
        return f"```{{toctree}}\n:caption: {caption}\n:maxdepth: 1\n\n{lines}\n```\n"

    notebooks = sorted(
        d
        for d in staged
        if d.startswith("notebooks/") and d.endswith(".ipynb") and "/solutions/" not in d
    )
    teachers = ["teacher_guide.md"] if "teacher_guide.md" in staged else []
    if teacher:
        teachers += sorted(d for d in staged if d.startswith("notebooks/solutions/"))
    project = ["README.md", *sorted(d for d in staged if d.startswith(("docs/", "data/")))]
    course = ["glossary.md"] if "glossary.md" in staged else []
    parts = [
        toc("The notebooks", notebooks + course),
        toc("For teachers", teachers),
        toc("Reference", ["api/index.md"]),
        toc("The project", project),
    ]
    return "\n".join(p for p in parts if "\n\n\n" not in p)


def write(path: Path, content: str | bytes) -> None:
    """Write only when the content differs (keeps mtimes, so Sphinx skips unchanged pages)."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    if path.is_file() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def stage(work: Path, teacher: bool) -> list[str]:
    """Stage every page into ``work``; returns the staged paths."""
    staged = pages(teacher)
    copies: dict[str, Path] = {}
    written: dict[str, str | bytes] = {}
    for rel, src in staged.items():
        if src.suffix == ".ipynb":
            nb = json.loads(src.read_text(encoding="utf-8"))
            for cell in nb["cells"]:
                if cell["cell_type"] == "markdown":
                    text = rewrite_links("".join(cell["source"]), src, staged, copies)
                    cell["source"] = text.splitlines(keepends=True)
            written[rel] = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
        else:
            text = src.read_text(encoding="utf-8")
            if RUN_TIMES_MARKER in text:
                text = text.replace(RUN_TIMES_MARKER, run_times_section())
            text = rewrite_links(text, src, staged, copies)
            if rel == "index.md":
                text = text.replace(TOC_MARKER, toctrees({**staged, **api_pages()}, teacher))
            written[rel] = text
    written.update(api_pages())
    for rel, src in copies.items():
        written[rel] = src.read_bytes()
    written["conf.py"] = (SITE / "conf.py").read_bytes()
    for rel, content in written.items():
        write(work / rel, content)
    for old in work.rglob("*"):  # pages removed from the repository leave the site too
        rel = old.relative_to(work).as_posix()
        if (
            old.is_file()
            and old.suffix in PAGE_SUFFIXES
            and rel not in written
            and not rel.startswith(("_build", "."))
            and "/runs/" not in rel
        ):
            old.unlink()
    return sorted(written)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work", type=Path, help="the folder to stage the sources into")
    parser.add_argument("--teacher", action="store_true", help="include notebooks/solutions/")
    args = parser.parse_args()
    work = args.work.resolve()
    if work == ROOT or (
        ROOT in work.parents
        and work.relative_to(ROOT).parts[0] in ("notebooks", "site", "basam_lite")
    ):
        print(
            f"error: {args.work}: stage outside the project's sources (e.g. build/site)",
            file=sys.stderr,
        )
        return 2
    staged = stage(args.work, args.teacher)
    print(f"staged {len(staged)} files into {args.work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

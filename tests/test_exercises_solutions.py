"""Every teacher's solution in ``notebooks/solutions/NN_*.md`` passes its checker.

The format of a solution file (the same for every notebook):

- one ``## Exercise K: ...`` section per exercise of the notebook, in order;
- in each section, one or more fenced code blocks opened with a line that is exactly
  ```` ```python ````; the blocks of a file run in order, in one namespace, so a section may
  use names an earlier block defined (as a learner's notebook would);
- the **last statement of the last block of a section is the checker call**, e.g.
  ``nb03.check_lambda(my_lambda)``; the harness evaluates it and requires a truthy
  :class:`basam_lite.exercises.Verdict`;
- the namespace starts with ``bl`` (``basam_lite``), ``np``, ``math``, ``torch`` and the
  notebook's checker module (``nb01`` for ``01_*.md``); anything else is imported in a block;
- blocks opened with another info string (```` ```text ````, ```` ```py ```` ...) are not run:
  use them for wrong answers or output shown to the teacher.

A solution that needs a slow notebook computation defines a small stand-in in its block.
"""

from __future__ import annotations

import ast
import importlib
import io
import math
import re
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch

import basam_lite as bl
from basam_lite.exercises import Verdict

SOLUTIONS = Path(__file__).resolve().parents[1] / "notebooks" / "solutions"
# Solutions still written against the notebook's own variables (a sweep table, STEPS): their
# owner gives them stand-ins and removes them from this tuple. Nothing else is left out.
NOT_YET_SELF_CONTAINED: tuple[str, ...] = ()
FILES = [
    p for p in sorted(SOLUTIONS.glob("[0-9][0-9]_*.md")) if p.name[:2] not in NOT_YET_SELF_CONTAINED
]
SECTION = re.compile(r"^## Exercise\b.*$", re.MULTILINE)
BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def exercise_sections(text: str) -> list[tuple[str, list[str]]]:
    """``(heading, [python block, ...])`` for every ``## Exercise`` section of a solution file."""
    heads = list(SECTION.finditer(text))
    sections = []
    for k, head in enumerate(heads):
        end = heads[k + 1].start() if k + 1 < len(heads) else len(text)
        body = text[head.end() : end]
        nxt = re.search(r"^## ", body, re.MULTILINE)  # a non-exercise section ends it too
        body = body[: nxt.start()] if nxt else body
        sections.append((head.group(0), BLOCK.findall(body)))
    return sections


def run_block(code: str, namespace: dict, where: str) -> object:
    """Execute ``code``; return the value of its last statement if it is an expression."""
    tree = ast.parse(code, filename=where)
    last = tree.body[-1] if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    if last is not None:
        tree.body.pop()
    exec(compile(tree, where, "exec"), namespace)
    if last is None:
        return None
    return eval(compile(ast.Expression(last.value), where, "eval"), namespace)


def test_solution_files_exist() -> None:
    assert FILES, f"no solution files under {SOLUTIONS}"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_solution_passes_its_checker(path: Path) -> None:
    checker = importlib.import_module(f"basam_lite.exercises.nb{path.name[:2]}")
    namespace: dict = {
        "bl": bl,
        "np": np,
        "math": math,
        "torch": torch,
        checker.__name__.rsplit(".", 1)[1]: checker,
    }
    sections = exercise_sections(path.read_text(encoding="utf-8"))
    assert sections, f"{path.name}: no '## Exercise' sections"
    for heading, blocks in sections:
        assert blocks, f"{path.name}, {heading}: no ```python block"
        out = io.StringIO()
        with redirect_stdout(out):
            for i, code in enumerate(blocks):
                value = run_block(code, namespace, f"{path.name}:{heading}:block{i}")
        assert isinstance(value, Verdict), (
            f"{path.name}, {heading}: the last statement must be the checker call (got {value!r})"
        )
        assert value, f"{path.name}, {heading}: {value!r}\n{out.getvalue()}"
        assert "Not yet" not in out.getvalue(), f"{path.name}, {heading}: {out.getvalue()}"


def test_harness_reads_sections_and_blocks() -> None:
    text = (
        "# t\n\n## Exercise 1: a\n\n```python\nx = 1\n```\n\n```text\nnot run\n```\n\n"
        "## Exercise 2: b\n\n```python\ny = x + 1\n```\n\n```python\nv = y\nv\n```\n\n"
        "## Notes\n\n```python\nraise SystemExit\n```\n"
    )
    sections = exercise_sections(text)
    assert [h for h, _ in sections] == ["## Exercise 1: a", "## Exercise 2: b"]
    assert [len(b) for _, b in sections] == [1, 2]
    ns: dict = {}
    assert run_block(sections[0][1][0], ns, "t") is None
    assert [run_block(b, ns, "t") for b in sections[1][1]] == [None, 2]

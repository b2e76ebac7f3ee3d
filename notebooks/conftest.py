"""While nbval runs the notebooks (``pytest --nbval-lax notebooks``), check what every cell
prints: no cell before an exercise may put that exercise's expected answer on screen
(:mod:`basam_lite.exercises.hidden`). The stored notebooks keep only the golden cells' outputs,
so this is where the other cells' run-time outputs are seen. A cell that calls an exercise's
checker fails when an earlier cell, before the exercise's prompt, printed a form of its answer.
"""

from __future__ import annotations

import pytest

from basam_lite.exercises.hidden import checkers_called, forms_shown, output_text, prompt_index

_printed: dict[str, dict[int, str]] = {}
"""Notebook path -> cell index -> what that cell printed in this run."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    outputs = getattr(item, "test_outputs", None)
    nb = getattr(item.parent, "nb", None)
    if call.when != "call" or outputs is None or nb is None:
        return
    path = str(item.parent.fspath)
    index = next(i for i, c in enumerate(nb.cells) if c is item.cell)
    seen = _printed.setdefault(path, {})
    seen[index] = output_text(outputs)
    name = item.parent.fspath.purebasename
    for checker in checkers_called(item.cell.source):
        try:
            start = prompt_index(nb.cells, checker, name)
        except ValueError:
            continue  # not an exercise with a prompt: tests/test_answers_hidden.py says so
        for cell, text in sorted(seen.items()):
            if cell < start and (forms := forms_shown(name, checker, text)):
                report.outcome = "failed"
                report.longrepr = (
                    f"{name}: cell {cell} printed {forms[0]!r} when it ran, the answer of "
                    f"{checker}'s exercise (prompt in cell {start}), before the learner gives it"
                )
                return

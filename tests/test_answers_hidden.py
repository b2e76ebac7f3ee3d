"""No notebook shows an exercise's expected answer before the learner gives it.

For every exercise whose answer is a number or a short phrase
(:data:`basam_lite.exercises.hidden.ANSWERS`, computed, not typed from the notebooks), the
answer's printed forms must not appear in any markdown cell or stored output before the
exercise's prompt (the markdown cell that opens it). Stored outputs are the golden cells'
(``scripts/store_notebook.py`` keeps only those); what every other cell prints when the notebook
runs is checked by ``notebooks/conftest.py`` during the nbval run, which the last test here
proves on a small notebook.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from basam_lite.exercises.hidden import ANSWERS, PROMPT, output_text, prompt_index

ROOT = Path(__file__).resolve().parents[1]


def shown_before(path: Path, checker: str) -> tuple[int, str]:
    """The exercise's prompt cell and the text on screen before it: markdown and stored outputs."""
    nb = nbformat.read(path, as_version=4)
    try:
        start = prompt_index(nb.cells, checker, path.name)
    except ValueError as e:
        pytest.fail(str(e))
    prompt = nb.cells[start].source
    texts = [prompt[: prompt.index(PROMPT)]]
    for c in nb.cells[:start]:
        if c.cell_type == "markdown":
            texts.append(c.source)
        texts.append(output_text(c.get("outputs", [])))
    return start, "\n".join(texts)


@pytest.mark.parametrize(
    ("name", "checker"), sorted(ANSWERS), ids=[f"{n[:3]}{c}" for n, c in sorted(ANSWERS)]
)
def test_no_answer_on_screen_before_its_exercise(name: str, checker: str) -> None:
    path = ROOT / "notebooks" / f"{name}.ipynb"
    start, text = shown_before(path, checker)
    for form in ANSWERS[(name, checker)]:
        assert form not in text, (
            f"{name}: {form!r} is on screen before the exercise of {checker} (cell {start})"
        )


def test_the_scan_sees_stored_outputs_and_markdown(tmp_path: Path) -> None:
    """The scan catches an answer in a stored output and in a markdown cell before the prompt."""
    nb = nbformat.v4.new_notebook()
    printed = nbformat.v4.new_code_cell("print(42)")
    printed.outputs = [nbformat.v4.new_output("stream", text="the answer is 42\n")]
    nb.cells = [
        nbformat.v4.new_markdown_cell("One row down is 64 tokens away."),
        printed,
        nbformat.v4.new_markdown_cell("**Exercise 1.** What is it?"),
        nbformat.v4.new_code_cell("nb99.check_it(x)"),
    ]
    path = tmp_path / "t.ipynb"
    nbformat.write(nb, path)
    start, text = shown_before(path, "check_it")
    assert start == 2 and "answer is 42" in text and "64 tokens" in text


def test_prediction_checkers_never_print_the_measured_value(capsys) -> None:
    """A wrong prediction's verdict (and a right one's) names the reason, not the measurement."""
    import pandas as pd

    from basam_lite.exercises import nb02, nb03, nb04, nb07, nb08

    nb02.check_keys_prediction((36, 144), (16, 144), 192)  # windowed count wrong
    nb02.check_keys_prediction((16, 12), (16, 144), 192)  # global count wrong
    out = capsys.readouterr().out
    assert "Not yet" in out and "144" not in out.replace("(16, 144)", "")
    stats = pd.DataFrame(
        {"variant": ["plain SAM", "with lambda"] * 2, "normalised_entropy": [0.913, 0.801] * 2}
    )
    nb03.check_scale_prediction("softer", stats)
    nb03.check_scale_prediction("sharper", stats)
    out = capsys.readouterr().out
    assert "0.913" not in out and "0.801" not in out
    nb04.check_mask_prediction(2.5, -2.5)
    nb04.check_mask_prediction(-5.0, -2.5)
    nb04.check_mask_prediction(-1.234, -2.5)
    out = capsys.readouterr().out
    assert "-2.5" not in out and "2.500" not in out
    evals = pd.DataFrame(
        {
            "stage": ["zero-shot", "fine-tuned"],
            "preset": ["paper", "paper"],
            "size": [768, 768],
            "iou_box": [0.7123, 0.6871],
        }
    )
    nb07.check_finetune_prediction("higher", evals)
    out = capsys.readouterr().out
    assert "0.712" not in out and "0.687" not in out and "0.025" not in out
    nb08.check_position_prediction("yes", 0.8312, 0.8329)
    out = capsys.readouterr().out
    assert "0.831" not in out and "0.833" not in out


def test_the_nbval_run_fails_a_cell_that_printed_an_answer_at_run_time(tmp_path: Path) -> None:
    """notebooks/conftest.py, on two small notebooks named as notebook 08 (its click exercise):
    one prints the answer at run time in a cell with no stored output (the static scan cannot see
    it), the other prints something else. nbval runs both; only the first fails, naming the cell."""
    (tmp_path / "conftest.py").write_text((ROOT / "notebooks" / "conftest.py").read_text())
    checker = "check_click"
    answer = ANSWERS[("08_auditing_the_official_code", checker)][0]
    for folder, printed in (("leaks", answer), ("quiet", "(1, 2)")):
        nb = nbformat.v4.new_notebook()
        nb.cells = [
            nbformat.v4.new_code_cell(f"print('the click is at {printed}')"),
            nbformat.v4.new_markdown_cell("**Exercise 1.** Where is the click?"),
            nbformat.v4.new_code_cell(
                textwrap.dedent(f"""\
                class nb08:
                    def {checker}(*args):
                        return None
                nb08.{checker}(None)""")
            ),
        ]
        (tmp_path / folder).mkdir()
        nbformat.write(nb, tmp_path / folder / "08_auditing_the_official_code.ipynb")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    runs = {}
    for folder in ("leaks", "quiet"):
        runs[folder] = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "--nbval-lax",
                "-p",
                "no:cacheprovider",
                "-q",
                "--rootdir",
                str(tmp_path),
                "-c",
                os.devnull,
                str(tmp_path / folder),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    leaks, quiet = runs["leaks"], runs["quiet"]
    assert leaks.returncode == 1, leaks.stdout[-2000:]
    assert f"cell 0 printed {answer!r} when it ran" in leaks.stdout
    assert "1 failed, 1 passed" in leaks.stdout
    assert quiet.returncode == 0, quiet.stdout[-2000:]

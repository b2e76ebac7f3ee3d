"""No notebook shows an exercise's expected answer before the learner gives it.

For every exercise whose answer is a number or a short phrase, the answer's printed forms must not
appear in any markdown cell or stored output before the exercise's prompt (the markdown cell that
opens it). Stored outputs are the checked cells' (``scripts/store_notebook.py`` keeps only
those), so a number that a sentence quotes before an exercise is caught here; the expected values
are computed, for the bundled tiny model (base size 256 px, 16 px patches), not typed from the
notebooks.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
BASE, PATCH = 256, 16
CHECK_CALL = re.compile(r"\b(nb\d\d[a-z]?)\.(check_\w+)\s*\(")


def _tokens(side: int) -> int:
    return (side // PATCH) ** 2


def _self_weight() -> float:
    return 1 / (1 + 4 * math.exp(-1) + 4 * math.exp(-math.sqrt(2)))


# (notebook, checker) -> the forms in which its answer would appear on screen
ANSWERS: dict[tuple[str, str], list[str]] = {
    ("01_quickstart", "check_tokens_prediction"): [
        f"{_tokens(4 * BASE)} keys",
        f"= {_tokens(4 * BASE)}",
    ],
    ("01_quickstart", "check_scaled_box"): ["64, 96, 192, 320", "(64, 96, 192, 320)"],
    ("02_resolution_is_sequence_length", "check_keys_prediction"): [
        f"{_tokens(3 * BASE // 4)} keys per row"
    ],
    ("04_bias_mode_mask", "check_mask_prediction"): ["-2.500", "-2.50 ", "= -2.5"],
    ("05_attention_maps", "check_self_weight"): [f"{_self_weight():.3f}", f"{_self_weight():.4f}"],
    ("05_attention_maps", "check_fading_prediction"): [
        "does not fade",
        "more concentrated than a stretched map",
        ": as a stretched map",
    ],
    ("05b_detail_or_length", "check_target_token_ratios"): ["target_tokens", "4.00x"],
    ("08_auditing_the_official_code", "check_click"): ["(200, 10)", "x = 200"],
}


def shown_before(path: Path, checker: str) -> tuple[int, str]:
    """The exercise's prompt cell and the text on screen before it: markdown and stored outputs."""
    nb = nbformat.read(path, as_version=4)
    calls = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code"
        and any(m.group(2) == checker for m in CHECK_CALL.finditer(c.source))
    ]
    assert calls, f"{path.name}: no call of {checker}"
    prompts = [
        i
        for i, c in enumerate(nb.cells[: calls[0]])
        if c.cell_type == "markdown" and "**Exercise" in c.source
    ]
    assert prompts, f"{path.name}: {checker} has no '**Exercise' prompt before it"
    start = prompts[-1]
    prompt = nb.cells[start].source
    before = prompt[: prompt.index("**Exercise")]
    texts = [before]
    for c in nb.cells[:start]:
        if c.cell_type == "markdown":
            texts.append(c.source)
        for o in c.get("outputs", []):
            texts.append(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")))
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

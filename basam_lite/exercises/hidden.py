"""The forms in which an exercise's expected answer would appear on screen, and where a notebook
shows text before an exercise: what keeps the course's promise that no answer is on screen before
the learner gives it.

Two checks use it: ``tests/test_answers_hidden.py`` scans the stored notebooks (markdown and the
golden cells' outputs), and ``notebooks/conftest.py`` scans the outputs every cell produces when
the notebooks run under nbval, so a cell that prints an answer at run time (a value the stored
file does not keep) fails too. The expected values are computed here for the bundled tiny model
(base size 256 px, 16 px patches), as the checkers compute them, not typed from the notebooks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

BASE, PATCH = 256, 16
CHECK_CALL = re.compile(r"\b(nb\d\d[a-z]?)\.(check_\w+)\s*\(")
PROMPT = "**Exercise"


def _tokens(side: int) -> int:
    return (side // PATCH) ** 2


def _self_weight() -> float:
    return 1 / (1 + 4 * math.exp(-1) + 4 * math.exp(-math.sqrt(2)))


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
    ("05c_sam2_and_input_size", "check_loss_prediction"): [
        "plain interpolation loses",
        "plain interpolation gains",
        "plain loses",
    ],
    ("08_auditing_the_official_code", "check_click"): ["(200, 10)", "x = 200"],
}
"""(notebook stem, checker) -> the printed forms of its expected answer."""


def checkers_called(source: str) -> list[str]:
    """The exercise checkers a code cell's ``source`` calls (``nbNN.check_x(``)."""
    return [m.group(2) for m in CHECK_CALL.finditer(source)]


def prompt_index(cells: Sequence[dict], checker: str, where: object = "notebook") -> int:
    """The index of the markdown cell that opens the exercise ``checker`` belongs to: the last
    ``**Exercise`` cell before the first cell that calls it. A ValueError names what is missing."""
    calls = [
        i
        for i, c in enumerate(cells)
        if c["cell_type"] == "code" and checker in checkers_called(_source(c))
    ]
    if not calls:
        raise ValueError(f"{where}: no call of {checker}")
    prompts = [
        i
        for i, c in enumerate(cells[: calls[0]])
        if c["cell_type"] == "markdown" and PROMPT in _source(c)
    ]
    if not prompts:
        raise ValueError(f"{where}: {checker} has no '{PROMPT}' prompt before it")
    return prompts[-1]


def output_text(outputs: Iterable[dict]) -> str:
    """What a cell's outputs put on screen as text: streams, results' and displays' plain text,
    errors' names and values."""
    parts = []
    for o in outputs:
        parts.append(_text(o.get("text", "")))
        parts.append(_text(o.get("data", {}).get("text/plain", "")))
        if o.get("output_type") == "error":
            parts.append(f"{o.get('ename', '')}: {o.get('evalue', '')}")
    return "\n".join(p for p in parts if p)


def forms_shown(name: str, checker: str, text: str) -> list[str]:
    """The forms of ``checker``'s answer (notebook ``name``) that ``text`` contains."""
    return [form for form in ANSWERS.get((name, checker), []) if form in text]


def _source(cell: dict) -> str:
    return _text(cell.get("source", ""))


def _text(value: object) -> str:
    return "".join(value) if isinstance(value, list) else str(value)

"""The notebooks on a real-size SAM (issue 27): each converted notebook executes with its model
switch (``BASAM_COURSE_MODEL``) set to a random-weight ViT-B checkpoint file, at the ``test``
budget (``BASAM_COURSE_BUDGET=test``: sides 128 and 256 px, at most 2 images per study).

The checkpoint goes through the same road as a downloaded one: ``weights.fetch(path)`` returns
the local file, ``build_sam("vit_b", path)`` reads it with ``torch.load(weights_only=True)`` and
loads it (:func:`basam_lite.course.course_model`). Downloads are forbidden (``BASAM_OFFLINE=1``).
The file is named ``random_vit_b.pth``, not the official ``sam_vit_b_01ec64.pth``, whose MD5
prefix random weights cannot match.

``BASAM_NOTEBOOK_TEST_BUDGET=cpu`` runs them at the budget a learner's CPU gets instead (256 and
512 px, 4 images): how the README's CPU times were measured.

CI cost (all nine notebooks, test budget, one torch thread, this project's shared 2-core
machine under a load average of 9 to 12 from other work, 2026-12-07:
``pytest tests/test_notebooks_real_sam.py -s --durations=0``): 01 52 s, 02 75 s, 03 30 s,
04 29 s, 05 53 s, 05b 66 s, 06 43 s, 07 103 s (its two tiny fine-tunes: 2 steps under this
budget), 08 127 s (the official rule's two encoder passes at 1024 px, which it cannot run
below); 578 s of notebook runs, 582 s for the file: within the 10 minutes the issue allows, and
less on a quieter machine (01 to 04 took 121 s together at a load average of 2 to 4).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

from basam_lite.course import write_random_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9]*.ipynb"))
"""Every notebook of the course: each has the switch."""

EXPECTED = {
    "05_attention_maps": ["These lines describe vit_b, a real-size SAM"],
    "05b_detail_or_length": ["vit_b, zoom: vanilla"],
    "05c_sam2_and_input_size": ["vit_b, zoom: plain interpolation"],
    "06_zero_shot_experiments": ["rows: vit_b", "these rows describe"],
    "07_train_short_test_long": ["section 3b: vit_b with and without BA-SAM", "paper - vanilla ="],
    "08_auditing_the_official_code": ["base input size 1024 x 1024 px; segmentations at"],
}
"""Lines a notebook prints only when the switch took the real-size model: the sentences that
say which model a result describes (section 3b of 07 runs the chosen model, 06 names the models
of the committed tables, ...)."""

pytestmark = pytest.mark.slow
BUDGET = os.environ.get("BASAM_NOTEBOOK_TEST_BUDGET", "test")


@pytest.fixture(scope="module")
def random_vit_b(tmp_path_factory) -> Path:
    return write_random_checkpoint("vit_b", tmp_path_factory.mktemp("weights") / "random_vit_b.pth")


def run_notebook(name: str, env: dict[str, str], timeout: int = 600) -> tuple[object, float]:
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    old = dict(os.environ)
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        start = time.perf_counter()
        nbclient.NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(ROOT / "notebooks")}},
        ).execute()
        return nb, time.perf_counter() - start
    finally:
        os.environ.clear()
        os.environ.update(old)


def text_of(nb) -> str:
    return "\n".join(
        out.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_on_random_vit_b(name: str, random_vit_b: Path) -> None:
    env = {
        "BASAM_COURSE_MODEL": str(random_vit_b),
        "BASAM_COURSE_BUDGET": BUDGET,
        "BASAM_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    nb, seconds = run_notebook(name, env)
    text = text_of(nb)
    assert f"model: vit_b from {random_vit_b}" in text  # the switch took the checkpoint
    assert ("test budget" if BUDGET == "test" else "a real SAM on a CPU") in text
    for line in EXPECTED.get(name, []):
        assert line in text, f"{name} did not print {line!r}"
    print(f"{name}: {seconds:.0f} s on a random-weight ViT-B, {BUDGET} budget")


FAMILY_NOTEBOOKS = {
    "sam2.1_hiera_tiny": ("01_quickstart", "03_scaling_factor"),
    "mobilesam": ("01_quickstart",),
}
"""The notebooks run on the other families' random-weight checkpoints (the test budget), chosen
where the code a notebook runs differs per family and within CI's 4 extra minutes:

- 01 segments through the family's own predictor and decoding (``predictor_for``, SAM 2's
  ``Sam2Predictor`` and its stride-16 image embedding, MobileSAM's TinyViT), counts its patch
  tokens and sizes lambda on the global blocks' grid: the whole prompt-to-mask road of a family;
- 03 (SAM 2 only) measures attention statistics on the global blocks' 16 px grid while the
  patch grid is 4 px (``analysis.block_stride``, ``on_first_grid``): the capture road.

Left out, and why: 02, 04 and 08 run their ``segment_anything``-only sections on the bundled
tiny SAM 1 under the stated rule (``CourseModel.sam1_for``, unit-tested in test_course.py), the
road the default run already takes, and their other cells are the capture road of 03; 05, 05b,
06 and 07 run the capture, sweep and fine-tuning roads through the same adapters and cost
50-160 s each here. All nine ran on the SAM 2.1 checkpoint when this was written (the
``BASAM_NOTEBOOK_FAMILIES=all`` setting runs them).

CI cost, measured 2026-12-07 with one torch thread under ``nice -n 10`` on this shared 2-core
machine while two trainings ran at ``nice -n -10`` (load average 11 to 15; niced processes got
a few percent of a core): SAM 2.1 tiny 01 199 s, 03 310 s; MobileSAM 01 285 s; 794 s in all,
over the 4 minutes the issue allows under that load. Not re-measured on a quiet machine (none
was free before the deadline): the ViT-B runs above took 52 s (01) and 30 s (03) at a load of
9 to 12 without higher-priority work; the coordinator's CI run gives the real figure, and
``-k "not other_families"`` leaves these out if it is over budget.
"""

FAMILY_RUN = {
    model: NOTEBOOKS if os.environ.get("BASAM_NOTEBOOK_FAMILIES") == "all" else names
    for model, names in FAMILY_NOTEBOOKS.items()
}


@pytest.fixture(scope="module")
def random_family(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("family-weights")
    return {m: write_random_checkpoint(m, folder / f"random_{m}.pt") for m in FAMILY_NOTEBOOKS}


@pytest.mark.parametrize(
    ("model", "name"), [(m, n) for m, names in FAMILY_RUN.items() for n in names]
)
def test_notebook_runs_on_other_families(model: str, name: str, random_family) -> None:
    pytest.importorskip("sam2" if model.startswith("sam2") else "mobile_sam")
    path = random_family[model]
    env = {
        "BASAM_COURSE_MODEL": str(path),
        "BASAM_COURSE_BUDGET": "test",
        "BASAM_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    nb, seconds = run_notebook(name, env)
    text = text_of(nb)
    assert f"model: {model} from {path} (a real-size SAM)" in text  # recognised from its keys
    assert "test budget" in text
    print(f"{name}: {seconds:.0f} s on a random-weight {model}, test budget")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_has_the_switch_defaulting_to_tiny(name: str) -> None:
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert code[0].startswith("# Colab only") and "import google.colab" in code[0]
    assert 'MODEL = "tiny-vanilla"' in code[1] and "bl.course_model(MODEL)" in code[1]
    assert not any("sam_from_env" in c for c in code)

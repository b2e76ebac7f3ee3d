"""The sweep's memory estimate (basam_lite.memory) against measured peaks, for every variant.

One subprocess (so the measurement sees no other test's allocations) runs each cell after
resetting the kernel's peak-RSS counter (``/proc/self/clear_refs``: 5), and reports the peak
(``VmHWM``) minus the resident size just before the cell: the memory the cell itself took.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from basam_lite.errors import UserError
from basam_lite.memory import (
    STOCK_BUDGET,
    cell_bytes,
    runs_stock,
    shape_of,
    stock_fits,
)
from basam_lite.variants import variant_names

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import gc, json, sys
from basam_lite.datasets import ProceduralScenes
from basam_lite.models import build_sam
from basam_lite.sweep import run_variant

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

sam = build_sam("tiny")
out = []
for size, variants in json.loads(sys.argv[1]):
    sample = ProceduralScenes(1, seed=0, size=size)[0]
    for variant in variants:
        gc.collect()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = status("VmRSS")
        run_variant(sam, sample, variant, size, ["box"], 0)
        out.append([variant, size, status("VmHWM") - before])
print(json.dumps(out))
"""


def _can_reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _can_reset_peak(), reason="needs Linux /proc/self/clear_refs (peak RSS)")
def test_estimate_is_not_below_the_measured_peak_for_every_variant() -> None:
    # 512 px: dense fused path, stock vanilla; 1024 px: chunked fused path, stock vanilla at its
    # largest (three 6 x 4096^2 fp32 tensors); 1344 px: vanilla beyond the stock budget (fused).
    every = list(variant_names())
    cells = [[512, every], [1024, every], [1344, ["vanilla"]]]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(cells)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(measured) == sum(len(v) for _, v in cells)
    report = []
    for variant, size, peak in measured:
        estimate = cell_bytes("tiny", variant, size)
        report.append(f"{variant}@{size}: measured {peak >> 20} MiB, estimate {estimate >> 20} MiB")
        assert estimate >= peak, "\n".join(report)
    # The estimate is an estimate, not a refusal of everything: within 4x of the measurement
    # where the cell takes real memory.
    for variant, size, peak in measured:
        if peak > 300 << 20:
            assert cell_bytes("tiny", variant, size) < 4 * peak, (variant, size)


def test_stock_budget_rule() -> None:
    """vanilla runs segment_anything's own attention while one H x N^2 score tensor fits."""
    tiny, vit_b, vit_h = shape_of("tiny"), shape_of("vit_b"), shape_of("vit_h")
    assert (vit_b.heads, vit_b.dim, vit_b.window, vit_b.windowed) == (12, 768, 14, 8)
    assert vit_b.base == 1024 and 90e6 < vit_b.parameters < 95e6
    for shape, size in ((tiny, 1024), (vit_b, 1024), (vit_b, 512)):
        n = (size // 16) ** 2
        assert stock_fits(shape, size) == (4 * shape.heads * n * n <= STOCK_BUDGET)
        assert stock_fits(shape, size)
    assert stock_fits(vit_h, 1024) and not stock_fits(vit_h, 1040)  # 16 x 4096^2 x 4 = 1 GiB
    assert not stock_fits(vit_b, 2048) and not stock_fits(tiny, 1344)
    assert runs_stock("vanilla", vit_b, 1024) and not runs_stock("vanilla", vit_b, 1536)
    assert runs_stock("resize", vit_b, 4096)  # resize runs at the base size
    assert not runs_stock("paper", vit_b, 512)  # a BA-SAM variant is always fused


def test_stock_vanilla_at_2048_would_not_fit_24_gb_but_the_sweep_estimate_does() -> None:
    """The README's 2048 px ViT-B run: stock attention alone would be three 12 x 16384^2 fp32
    tensors (38 GiB); the sweep's vanilla there runs fused and is estimated under 8 GiB."""
    n = (2048 // 16) ** 2
    assert 3 * 4 * 12 * n * n > 24 << 30
    assert cell_bytes("vit_b", "vanilla", 2048) < 8 << 30


def test_fused_vanilla_equals_stock_vanilla() -> None:
    """Above the budget the sweep runs vanilla on the fused path: same masks as the stock model
    (checked at a size where both fit, by forcing the switch)."""
    import numpy as np

    from basam_lite.config import BASAMConfig
    from basam_lite.datasets import ProceduralScenes
    from basam_lite.models import build_sam
    from basam_lite.predictor import predictor_for
    from basam_lite.variants import variant_at

    sam = build_sam("tiny")
    sample = ProceduralScenes(1, seed=0, size=384)[0]
    feats = []
    for config in (None, BASAMConfig.vanilla()):
        with variant_at(sam, config if config is not None else "vanilla", 384):
            p = predictor_for(sam)
            p.set_image(sample.image)
            feats.append(p.features.clone())
    assert float((feats[0] - feats[1]).abs().max()) < 1e-4
    assert np.isfinite(feats[0].numpy()).all()


def test_sweep_refuses_a_run_that_cannot_fit_with_the_sizes_that_would(monkeypatch, tmp_path):
    from basam_lite import sweep

    monkeypatch.setattr(sweep, "available_bytes", lambda device: 3 << 30)
    cfg = sweep.SweepConfig(
        models=("vit_b",), variants=("vanilla", "paper"), resolutions=(512, 2048), limit=1
    )
    with pytest.raises(UserError) as e:
        sweep.run_sweep(cfg, tmp_path / "t.csv", progress=False, random_weights=True)
    msg = str(e.value)
    assert "resolution 2048" in msg and "sizes up to" in msg and "\n" not in msg
    fits = int(msg.split("sizes up to ")[1].split(" px")[0])
    assert sweep.run_bytes("vit_b", cfg.variants, fits) <= 3 << 30
    assert not list(tmp_path.iterdir())  # nothing written

"""Attention statistics on a family whose global blocks run on a coarser grid than its patch
embedding (SAM 2: 4 px patches, global blocks on the 16 px grid of Hiera's stage 3): the rows
of :func:`basam_lite.analysis.attention_statistics` against the formula written out on maps
captured for every query, with no query placement of its own."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import basam_lite as bl
from basam_lite import analysis
from basam_lite.datasets import ProceduralScenes
from basam_lite.encoders import adapter_for

pytest.importorskip("sam2")


def test_sam2_statistics_match_the_formula_on_the_global_grid():
    sam = bl.build_sam("sam2-tiny")
    adapter = adapter_for(sam)
    side, block, n_queries = 256, adapter.global_blocks()[0], 5
    image = ProceduralScenes(1, seed=0).sample(0, size=side).image
    configs = {"vanilla": bl.BASAMConfig.vanilla()}
    stats = analysis.attention_statistics(sam, image, [side], configs, [block], n_queries)
    assert adapter.patch_size() == 4 and analysis.block_stride(adapter, [block]) == 16

    rows, cols = adapter.block_grids(block, (side, side)).query
    x = adapter.preprocess(torch.as_tensor(image).permute(2, 0, 1).float())[None]
    with bl.capture_attention(sam, blocks=[block]) as cap, torch.no_grad():
        adapter.encode(x)
    probs = cap.maps[block][0]  # [heads, N, N]: every query of the 16 x 16 grid
    assert probs.shape[-1] == rows * cols == 256
    # the queries the function draws (its documented rule: seed + side, on the blocks' grid)
    flat = np.random.default_rng(side).choice(rows * cols, size=n_queries, replace=False)
    pos = torch.stack(torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij"), -1)
    pos = pos.reshape(-1, 2).double()
    for head in range(probs.shape[0]):
        p = probs[head, torch.as_tensor(flat)].double()  # [Q, N]
        dist = (p * torch.cdist(pos[torch.as_tensor(flat)], pos)).sum(-1) * 16  # px
        ent = -(p * p.clamp_min(1e-30).log()).sum(-1)
        row = stats[stats["head"] == head].iloc[0]
        assert row["distance_px"] == pytest.approx(dist.mean().item(), rel=1e-4)
        assert row["entropy"] == pytest.approx(ent.mean().item(), rel=1e-4)
        assert row["below_uniform"] == pytest.approx(np.log(256) - ent.mean().item(), abs=1e-5)

"""Notebook 05b's checkers: right answers pass, usual mistakes get their hint."""

from __future__ import annotations

import math

import torch

import basam_lite as bl
from basam_lite.exercises import nb05b
from basam_lite.masks import grid_distances


def learner_mask(grid, heads, base_grid, flip=False, invert=False):
    """An independent base-unit mask: -m_h * (base_rows / rows) * euclidean distance."""
    s = base_grid[0] / grid[0] if not invert else grid[0] / base_grid[0]
    m = bl.alibi_slopes(heads)
    rows, cols = grid
    pos = [(r, c) for r in range(rows) for c in range(cols)]
    d = torch.tensor([[math.dist(a, b) for b in pos] for a in pos])
    mask = -(m[:, None, None] * s * d[None])[None]
    return -mask if flip else mask


def test_base_unit_mask_checker(capsys):
    assert nb05b.check_base_unit_mask(learner_mask)
    assert not nb05b.check_base_unit_mask(lambda g, h, b: learner_mask(g, h, b, flip=True))
    assert "sign is flipped" in capsys.readouterr().out
    assert not nb05b.check_base_unit_mask(lambda g, h, b: learner_mask(g, h, b, invert=True))
    assert "base grid / current grid" in capsys.readouterr().out
    assert not nb05b.check_base_unit_mask(lambda g, h, b: grid_distances(g))
    assert not nb05b.check_base_unit_mask(lambda g, h, b: 1 / 0)


def test_prediction_checkers():
    assert nb05b.check_target_token_ratios(1.0, 4.0)
    assert not nb05b.check_target_token_ratios(4.0, 4.0)
    assert not nb05b.check_target_token_ratios(1.0, 2.0)
    assert not nb05b.check_target_token_ratios(None, "four")

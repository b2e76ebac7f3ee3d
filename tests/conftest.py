"""Shared fixtures: small SAM models and the optional real-photo folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import basam_lite as bl

PERSEG = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "perseg"


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


@pytest.fixture
def tiny_sam():
    """A fresh random-weight tiny SAM (seeded): cheap enough to build per test."""
    return bl.build_sam("tiny")


@pytest.fixture(scope="session")
def perseg_dir() -> Path:
    if not PERSEG.is_dir():
        pytest.skip(
            f"real photos not available: {PERSEG} is absent (only CI and developers have it)"
        )
    return PERSEG

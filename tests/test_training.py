"""What train and finetune share (basam_lite.training): the schedule against its formula written
out, both loops' schedules through it, the config comparison, the atomic state save."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from basam_lite import finetune as ft
from basam_lite.train import TrainConfig, lr_factor
from basam_lite.training import (
    clipped_step,
    config_difference,
    restore,
    save_state,
    schedule,
    warmup_cosine,
)


def written_out(step: int, total: int, warmup: int, floor: float) -> float:
    if step < warmup:
        return (step + 1) / warmup
    t = min((step - warmup) / max(1, total - warmup), 1.0)
    return floor + (1 - floor) * (1 + math.cos(math.pi * t)) / 2


@pytest.mark.parametrize("total,warmup,floor", [(10, 0, 0.0), (20, 5, 0.02), (7, 7, 0.1)])
def test_warmup_cosine_is_the_formula(total, warmup, floor):
    for step in range(total + 3):  # past the end it stays at the floor
        got = warmup_cosine(step, total, warmup, floor)
        assert got == pytest.approx(written_out(step, total, warmup, floor), abs=1e-12)
    if warmup:
        assert warmup_cosine(warmup - 1, total, warmup, floor) == 1.0
    if total > warmup:
        assert warmup_cosine(total, total, warmup, floor) == pytest.approx(floor)


def test_both_loops_schedule_through_it():
    cfg = TrainConfig(steps=30, warmup=4, min_lr_ratio=0.05)
    assert [lr_factor(s, cfg) for s in range(32)] == [
        warmup_cosine(s, 30, 4, 0.05) for s in range(32)
    ]
    assert [ft.lr_factor(s, 12, 2) for s in range(14)] == [
        warmup_cosine(s, 12, 2, 0.02) for s in range(14)
    ]


def test_schedule_restore_and_step_round_trip(tmp_path):
    """AdamW over the trainable parameters only, the factor applied per step; a copy restored
    from the saved state takes the same next step as the original."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    model[0].bias.requires_grad_(False)
    params, opt, sched = schedule(model, 0.1, 0.0, lambda s: warmup_cosine(s, 4, 2, 0.0))
    assert [p is model[0].bias for p in params] == [False] * 3
    x = torch.randn(5, 3)

    def step(m, o, s):
        o.zero_grad()
        m(x).pow(2).sum().backward()
        clipped_step([p for p in m.parameters() if p.requires_grad], o, 0.5)
        s.step()

    step(model, opt, sched)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * warmup_cosine(1, 4, 2, 0.0))
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(),
             "scheduler": sched.state_dict()}  # fmt: skip
    save_state(state, tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    copy = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    copy[0].bias.requires_grad_(False)
    _, opt2, sched2 = schedule(copy, 0.1, 0.0, lambda s: warmup_cosine(s, 4, 2, 0.0))
    restore(copy, opt2, sched2, state)
    step(model, opt, sched)
    step(copy, opt2, sched2)
    for a, b in zip(model.parameters(), copy.parameters(), strict=True):
        assert torch.equal(a, b)


def test_clipped_step_clips_the_total_norm():
    w = nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([w], lr=1.0)
    w.grad = torch.tensor([3.0, 4.0])  # norm 5
    clipped_step([w], opt, 1.0)
    torch.testing.assert_close(w.detach(), torch.tensor([-0.6, -0.8]))


def test_config_difference_names_each_changed_setting():
    saved = {"seed": 0, "lr": 1e-4, "name": "a"}
    assert config_difference(saved, dict(saved)) == ""
    now = {"seed": 1, "lr": 1e-4, "name": "a", "new": True}
    assert config_difference(saved, now) == "seed: saved 0, now 1; new: saved None, now True"


def test_save_state_makes_the_folder_and_never_leaves_half_a_file(tmp_path, monkeypatch):
    path = tmp_path / "run" / "state.pt"
    save_state({"step": 1, "w": torch.ones(2)}, path)
    assert torch.load(path, weights_only=True)["step"] == 1
    before = path.read_bytes()

    def dies_mid_write(obj, f, *args, **kwargs):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(OSError, match="disk full"):
        save_state({"step": 2}, path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["state.pt"]


def test_save_state_is_byte_reproducible(tmp_path):
    """The same tensors saved twice under different names give the same bytes (torch names the
    archive after the file it is given a path to; save_state gives it an open file)."""
    state = {"step": 3, "w": torch.arange(6.0).reshape(2, 3), "h": torch.ones(2, dtype=torch.half)}
    save_state(state, tmp_path / "a.pt")
    save_state(state, tmp_path / "other" / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "other" / "b.pt").read_bytes()


def test_save_state_on_a_full_disk_is_one_line_and_keeps_the_earlier_file(tmp_path, monkeypatch):
    """A real ENOSPC (writing to /dev/full) becomes a UserError naming the path; the file saved
    before is untouched and no temporary file is left."""
    import contextlib

    from basam_lite import training
    from basam_lite.errors import UserError

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system to produce a real ENOSPC")
    path = tmp_path / "state.pt"
    save_state({"step": 1}, path)
    before = path.read_bytes()

    @contextlib.contextmanager
    def onto_a_full_disk(target):
        yield Path("/dev/full")

    monkeypatch.setattr(training, "atomic_write", onto_a_full_disk)
    with pytest.raises(UserError, match=r"no space left on the device to write .*state\.pt") as e:
        save_state({"step": 2, "w": torch.randn(1 << 16)}, path)
    assert "\n" not in str(e.value) and "earlier state.pt is kept" in str(e.value)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]


@pytest.mark.parametrize(
    ("init", "want"),
    [
        ("runs/a.pt", True),
        ("b.pth", True),
        ("tiny-basam", False),
        ("vit_b", False),
        ("x.pt.json", False),
    ],
)
def test_is_weights_file(init, want):
    from basam_lite.training import is_weights_file

    assert is_weights_file(init) is want

"""Training precision: bf16 only where the CPU does it natively, recorded in the run state and
on the card; the shipped cards name the precision that reproduces them."""

from __future__ import annotations

import re

import pytest

from basam_lite import precision as prec
from basam_lite.errors import UserError
from basam_lite.model_card import precision_line
from basam_lite.models import tiny_checkpoint_path
from basam_lite.train import TrainConfig, load_state, reproduce_command, train

AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma\n"
SAPPHIRE = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


def tiny_config(**changes) -> TrainConfig:
    return TrainConfig(**{**dict(steps=2, batch_size=1, warmup=1, threads=1), **changes})


def test_native_bf16_is_read_from_the_cpu_flags():
    assert prec.native_bf16_from_cpuinfo(SAPPHIRE) == (
        True,
        "the CPU has avx512_bf16, amx_bf16",
    )
    assert prec.native_bf16_from_cpuinfo(GRAVITON3) == (True, "the CPU has bf16")
    native, why = prec.native_bf16_from_cpuinfo(AVX2_ONLY)
    assert not native and "no native bf16" in why and "avx2" in why
    assert prec.native_bf16_from_cpuinfo("")[0] is False


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_picks_bf16_only_where_native(monkeypatch, native, expected):
    monkeypatch.setattr(prec, "_cpu_native_bf16", lambda: (native, "the test says so"))
    assert prec.resolve_precision("auto") == (expected, "auto: the test says so")
    assert prec.resolve_precision("fp32") == ("fp32", "asked for explicitly")
    assert prec.resolve_precision("bf16") == ("bf16", "asked for explicitly")
    assert TrainConfig(precision="auto").encoder_bf16 is (expected == "bf16")


def test_bad_precision_and_cuda_without_cuda_are_user_errors(monkeypatch):
    with pytest.raises(UserError, match="precision must be one of auto, bf16, fp32, got 'fp16'"):
        TrainConfig(precision="fp16")  # type: ignore[arg-type]
    monkeypatch.setattr(prec.torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="CUDA is not available"):
        prec.resolve_precision("auto", device="cuda")


def test_the_run_records_its_precision_and_resumes_at_it(tmp_path, monkeypatch):
    monkeypatch.setattr(prec, "_cpu_native_bf16", lambda: (False, "no bf16 here"))
    first = train(tiny_config(), run_dir=tmp_path, progress=False, stop_after=1)
    assert (first.precision, first.precision_reason) == ("fp32", "auto: no bf16 here")
    state = load_state(tmp_path / "state.pt")
    assert state["config"]["precision"] == "fp32"
    assert state["precision_reason"] == "auto: no bf16 here"
    # On a machine with native bf16, "auto" resumes the run at the precision it recorded ...
    monkeypatch.setattr(prec, "_cpu_native_bf16", lambda: (True, "bf16 here"))
    rest = train(tiny_config(), run_dir=tmp_path, progress=False)
    assert rest.step == 2 and rest.precision == "fp32"
    assert "resumed" in rest.precision_reason
    # ... and an explicit other precision is a different run.
    with pytest.raises(UserError, match="precision: saved 'fp32', now 'bf16'"):
        train(tiny_config(precision="bf16"), run_dir=tmp_path, progress=False)


def test_a_run_saved_before_precision_existed_reads_as_bf16():
    saved = TrainConfig(precision="fp32").describe()
    del saved["precision"]
    assert TrainConfig.completed(saved)["precision"] == "bf16"  # every earlier run used bf16
    saved["encoder_bf16"] = False
    completed = TrainConfig.completed(saved)
    assert completed["precision"] == "fp32" and "encoder_bf16" not in completed


@pytest.mark.parametrize(
    ("name", "variant"), [("tiny-vanilla", "vanilla"), ("tiny-basam", "basam")]
)
def test_shipped_cards_name_the_precision_the_generator_writes(name, variant):
    card = tiny_checkpoint_path(name).with_suffix(".md").read_text()
    assert precision_line("bf16") in card.splitlines()
    command = re.search(r"## Reproduce\n```\n(.*)\n```", card).group(1)
    cfg = TrainConfig(precision="bf16")
    argv = ["--variant", variant, "--threads", "1", "--per-prompt-decoder"]
    assert command == reproduce_command(cfg, argv)
    assert command.endswith("--precision bf16")


def test_time_steps_times_both_precisions_side_by_side(capsys, monkeypatch):
    from basam_lite.__main__ import main

    for native, other in ((True, "fp32"), (False, "bf16")):
        monkeypatch.setattr(prec, "_cpu_native_bf16", lambda native=native: (native, "test"))
        args = ["train", "--time-steps", "1", "--batch-size", "1", "--threads", "1"]
        assert main(args) == 0
        out = capsys.readouterr().out
        recipe = "bf16" if native else "fp32"
        assert f"precision: {recipe} (auto: test)" in out
        assert f"recipe ({recipe} encoder)" in out and f"{other} encoder" in out


@pytest.mark.parametrize(("value", "expected"), [("0", "fp32"), ("1", "bf16")])
def test_the_environment_overrides_the_cpu_flags(monkeypatch, value, expected):
    # A run with its kernels capped at AVX2 (scripts/time_notebooks.py) sets BASAM_NATIVE_BF16=0
    # on a CPU whose flags show avx512_bf16; "auto" must then take the fp32 path.
    monkeypatch.setattr(prec, "_cpu_native_bf16", lambda: (value == "0", "the flags say so"))
    monkeypatch.setenv(prec.OVERRIDE_ENV, value)
    precision, why = prec.resolve_precision("auto")
    assert precision == expected and why.startswith(f"auto: BASAM_NATIVE_BF16={value}")
    assert prec.resolve_precision("bf16") == ("bf16", "asked for explicitly")
    monkeypatch.setenv(prec.OVERRIDE_ENV, "")
    assert prec.resolve_precision("auto") == (
        "bf16" if value == "0" else "fp32",
        "auto: the flags say so",
    )
    monkeypatch.setenv(prec.OVERRIDE_ENV, "no")
    with pytest.raises(UserError, match="BASAM_NATIVE_BF16 must be 0 or 1 .* got 'no'"):
        prec.resolve_precision("auto")

"""The temperature rules beside lambda (basam_lite.scaling), each against its formula written
out here from the paper, plus Scalable-Softmax's identity with lambda and the rule variants.

Formulas (written out independently of basam_lite/scaling.py):
- YaRN (arXiv 2309.00071, Eq. 21-22): logits q.k / (t sqrt(d)), sqrt(1/t) = 0.1 ln s + 1,
  s = L'/L, and 1 for s <= 1 (the official get_mscale); on a token grid s = n / n_train.
- Jin et al. (arXiv 2306.08645): 1/sqrt(d) -> sqrt(log_T N / d), a multiplier sqrt(log_T N).
- InfoScale (arXiv 2501.08570, the authors' layer.py): sqrt(1 - N^(-2/d)) / sqrt(1 - T^(-2/d)).
- Scalable-Softmax (arXiv 2501.19399): z_i -> n^(s z_i) / sum_j n^(s z_j).
"""

from __future__ import annotations

import math

import pytest
import torch

import basam_lite as bl
from basam_lite import scaling
from basam_lite import variants as vr
from basam_lite.patch import is_patched

RULES = ("yarn", "jin", "infoscale")
PATCHED = ("yarn", "jin", "infoscale")
# (train keys, head dim): SAM ViT-B (64 x 64 grid, 768 / 12 heads) and the tiny SAM (16 x 16, 32)
SETTINGS = [(4096, 64), (256, 32)]
RATIOS = (0.0625, 0.25, 0.5, 0.9, 1.0, 1.1, 2.0, 4.0, 16.0)  # n / n_train, below and above


def _yarn(n: int, t: int) -> float:
    s = n / t
    root_inv_t = 0.1 * math.log(s) + 1 if s > 1 else 1.0  # sqrt(1/t)
    return root_inv_t * root_inv_t  # q and k are each scaled by sqrt(1/t)


def _jin(n: int, t: int) -> float:
    return math.sqrt(math.log(n, t))


def _infoscale(n: int, t: int, d: int) -> float:
    return math.sqrt(1 - n ** (-2 / d)) / math.sqrt(1 - t ** (-2 / d))


def written_out(mode: str, n: int, t: int, d: int) -> float:
    return {"yarn": _yarn(n, t), "jin": _jin(n, t), "infoscale": _infoscale(n, t, d)}[mode]


@pytest.mark.parametrize("train, d", SETTINGS)
@pytest.mark.parametrize("mode", RULES)
def test_each_rule_matches_its_formula(mode: str, train: int, d: int) -> None:
    for ratio in RATIOS:
        n = round(ratio * train)
        got = bl.attention_scale(n, train, mode, head_dim=d)
        assert got == pytest.approx(written_out(mode, n, train, d), rel=1e-12), (mode, n)


@pytest.mark.parametrize("train, d", SETTINGS)
@pytest.mark.parametrize("mode", ("log_ratio", "official", *RULES))
def test_one_at_the_training_length(mode: str, train: int, d: int) -> None:
    assert bl.attention_scale(train, train, mode, head_dim=d) == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("train, d", SETTINGS)
def test_below_and_above_the_training_length(train: int, d: int) -> None:
    """YaRN leaves shorter inputs alone (s clamped at 1); the others soften them; all sharpen
    longer ones (jin is lambda's square root, so milder than lambda)."""
    short, long = train // 4, train * 4
    assert bl.attention_scale(short, train, "yarn") == 1.0
    for mode in ("log_ratio", "jin", "infoscale"):
        assert bl.attention_scale(short, train, mode, head_dim=d) < 1.0
    lam = bl.attention_scale(long, train)
    assert bl.attention_scale(long, train, "jin") == pytest.approx(math.sqrt(lam), rel=1e-12)
    for mode in RULES:
        assert bl.attention_scale(long, train, mode, head_dim=d) > 1.0
    assert bl.attention_scale(long, train, "jin") < lam


def test_yarn_s_is_the_ratio_of_key_counts() -> None:
    """At 2048 px on SAM (128 x 128 keys vs 64 x 64): s = 4, not the side ratio 2."""
    n, t = 128 * 128, 64 * 64
    assert bl.attention_scale(n, t, "yarn") == pytest.approx((0.1 * math.log(4) + 1) ** 2)
    assert bl.attention_scale(n, t, "yarn") != pytest.approx((0.1 * math.log(2) + 1) ** 2)


def test_registry_is_the_scale_modes() -> None:
    assert tuple(scaling.SCALE_RULES) == scaling.SCALE_MODES
    for name, rule in scaling.SCALE_RULES.items():
        assert rule.name == name and rule.rule.__doc__
        assert bl.BASAMConfig(scale=name).scale == name  # type: ignore[arg-type]
    assert [r.name for r in scaling.SCALE_RULES.values() if r.needs_head_dim] == ["infoscale"]


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((4096, 4096, "infoscale"), {}, "infoscale rule needs head_dim"),
        ((4096, 4096, "infoscale"), {"head_dim": 0}, "head_dim must be a positive integer"),
        ((4096, 4096, "jin"), {"head_dim": 2.5}, "head_dim must be a positive integer"),
        ((0, 4096, "yarn"), {}, "num_keys must be a positive integer"),
        ((16, 1, "jin"), {}, "train_keys must be an integer >= 2"),
        ((16, 256, "yarn2"), {}, "unknown scale mode 'yarn2'.*'yarn', 'jin', 'infoscale'"),
    ],
)
def test_bad_input_is_one_line(args: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        bl.attention_scale(*args, **kwargs)
    assert "\n" not in str(err.value)


def test_bad_scale_mode_in_a_config_is_one_line() -> None:
    with pytest.raises(ValueError, match="unknown scale mode 'ssmax'") as err:
        bl.BASAMConfig(scale="ssmax")  # type: ignore[arg-type]
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("train", [256, 4096])
@pytest.mark.parametrize("n", [64, 256, 1000, 4096, 16384])
def test_scalable_softmax_with_s_fixed_is_lambda(n: int, train: int) -> None:
    """SSMax, z_i -> n^(s z_i) / sum_j n^(s z_j), with s = 1 / ln n_train equals softmax of
    lambda * z: lambda is Scalable-Softmax with s fixed to give 1 at the training length."""
    z = torch.randn(3, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    s = 1.0 / math.log(train)
    powers = torch.full_like(z, float(n)) ** (s * (z - z.max(-1, keepdim=True).values))
    ssmax = powers / powers.sum(-1, keepdim=True)
    lam = bl.attention_scale(n, train, "log_ratio")
    torch.testing.assert_close(ssmax, torch.softmax(lam * z, -1), rtol=1e-12, atol=1e-15)
    if n == train:
        torch.testing.assert_close(ssmax, torch.softmax(z, -1), rtol=1e-12, atol=1e-15)


# --- the rules on a patched tiny SAM ----------------------------------------------------------


@pytest.mark.parametrize("mode", PATCHED)
@pytest.mark.parametrize("grid", [(8, 8), (16, 16), (24, 20)])
def test_patched_global_block_equals_explicit_softmax(tiny_sam, mode: str, grid) -> None:
    """A global block under each rule equals SAM's attention written out with the rule's
    multiplier on q.k alone (rel-pos unscaled); a windowed block is left as it was."""
    from reference import reference_attention

    enc = tiny_sam.image_encoder
    with torch.no_grad():
        for name, p in enc.named_parameters():
            if "rel_pos" in name:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(len(name)))
    bl.apply_basam(tiny_sam, bl.BASAMConfig(scale=mode))  # type: ignore[arg-type]
    glob, win = enc.blocks[2], enc.blocks[0]
    assert glob.window_size == 0 and win.window_size > 0
    d = glob.attn.qkv.in_features // glob.attn.num_heads  # the q.k dimension per head
    x = torch.randn(2, *grid, glob.attn.qkv.in_features)
    lam = written_out(mode, grid[0] * grid[1], 256, d)
    with torch.no_grad():
        torch.testing.assert_close(
            glob.attn(x), reference_attention(glob.attn, x, lam), atol=1e-4, rtol=0
        )
        xw = torch.randn(2, win.window_size, win.window_size, win.attn.qkv.in_features)
        torch.testing.assert_close(
            win.attn(xw), reference_attention(win.attn, xw), atol=1e-4, rtol=0
        )


@pytest.mark.parametrize("mode", PATCHED)
def test_rule_leaves_the_mask_unscaled(tiny_sam, mode: str) -> None:
    """With the 2-D ALiBi mask too, the rule multiplies q.k alone: the mask enters as it is."""
    from reference import reference_attention

    config = bl.BASAMConfig(scale=mode, bias="alibi2d")  # type: ignore[arg-type]
    bl.apply_basam(tiny_sam, config)
    attn = tiny_sam.image_encoder.blocks[2].attn
    x = torch.randn(1, 20, 20, attn.qkv.in_features)
    lam = written_out(mode, 400, 256, attn.qkv.in_features // attn.num_heads)
    slopes = bl.alibi_slopes(attn.num_heads)
    with torch.no_grad():
        want = reference_attention(attn, x, lam, slopes, "euclidean")
        torch.testing.assert_close(attn(x), want, atol=1e-4, rtol=0)


# --- the rule variants ------------------------------------------------------------------------


def test_rule_variants_are_selectable_but_not_in_the_main_list() -> None:
    from basam_lite.sweep import SweepConfig

    main = ("vanilla", "scale", "bias", "paper", "paper_base", "official", "resize")
    assert vr.variant_names() == main
    assert SweepConfig().variants == main  # the main job's default rows are unchanged
    assert vr.known_variant_names() == (*main, *RULES)
    for name in RULES:
        v = vr.get_variant(name)
        assert v.name == name and v.config is not None and v.transform == "none"
        assert v.config == bl.BASAMConfig(scale=name)  # type: ignore[arg-type]
        assert v.config.name == name and v.config.bias == "none" and v.config.blocks == "global"
        assert not v.own and v.note
    assert not {v.name for v in vr.VARIANTS} & set(RULES)


def test_unknown_variant_lists_the_rules_too() -> None:
    from basam_lite.errors import UserError

    with pytest.raises(UserError, match="unknown variant 'ssmax'.*resize, yarn, jin, infoscale"):
        vr.get_variant("ssmax")


@pytest.mark.parametrize("mode", PATCHED)
def test_rule_variant_runs_then_restores(tiny_sam, mode: str) -> None:
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = tiny_sam.image_encoder(x)
    with vr.variant_at(tiny_sam, mode, 384) as sam:
        assert is_patched(sam) and bl.input_size(sam) == (384, 384)
        with torch.no_grad():
            out = sam.image_encoder(torch.rand(1, 3, 384, 384))
        assert torch.isfinite(out).all()
    assert not is_patched(tiny_sam) and bl.input_size(tiny_sam) == (256, 256)
    with torch.no_grad():
        assert torch.equal(tiny_sam.image_encoder(x), before)


def test_sweep_accepts_a_rule_by_name_but_keeps_its_default_variants() -> None:
    """``sweep --variants yarn`` is a valid request; the default grid stays the main list."""
    from basam_lite.sweep import SweepConfig
    from basam_lite.variants import variant_names

    assert SweepConfig(variants=("vanilla", "yarn", "jin", "infoscale")).variants[1] == "yarn"
    assert SweepConfig().variants == variant_names()

"""The variant registry: one list, and variant_at restores the model exactly."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch

import basam_lite as bl
from basam_lite import variants as vr
from basam_lite.errors import UserError
from basam_lite.patch import is_patched

ROOT = Path(__file__).resolve().parents[1]


def test_registry_names_order_and_presets() -> None:
    assert vr.variant_names() == ("vanilla", "scale", "bias", "paper", "official", "resize")
    for v in vr.VARIANTS:
        assert vr.get_variant(v.name) is v
        if v.config is not None:
            assert v.config == bl.BASAMConfig.preset(v.name)
            assert v.config.name == v.name
    assert vr.get_variant("resize").transform == "resize_to_base"
    assert [v.name for v in vr.VARIANTS if v.own] == ["resize"]


def test_unknown_variant_names_the_known_ones() -> None:
    with pytest.raises(UserError, match="unknown variant 'fancy'.*vanilla.*resize"):
        vr.get_variant("fancy")
    with pytest.raises(UserError, match="unknown variant"):
        with vr.variant_at(bl.build_sam("tiny"), "fancy", 256):
            pass


def test_every_preset_name_has_a_variant_and_a_method() -> None:
    """Preset names are variant names; the method is the name, or name + '_only' where the
    name is a config field (``scale``, ``bias``)."""
    fields = set(bl.BASAMConfig.__dataclass_fields__)
    for v in vr.VARIANTS:
        if v.config is None:
            continue
        method = v.name + "_only" if v.name in fields else v.name
        assert getattr(bl.BASAMConfig, method)() == v.config


def _encode(sam, size: int) -> torch.Tensor:
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return sam.image_encoder(x)


def test_variant_at_runs_the_variant_then_restores(tiny_sam) -> None:
    base = bl.input_size(tiny_sam)
    before = _encode(tiny_sam, base[0])
    for v in vr.VARIANTS:
        with vr.variant_at(tiny_sam, v.name, 384) as sam:
            assert sam is tiny_sam
            assert is_patched(sam) == (v.config is not None)
            expect = base if v.transform == "resize_to_base" else (384, 384)
            assert bl.input_size(sam) == expect
        assert not is_patched(tiny_sam) and bl.input_size(tiny_sam) == base
    assert torch.equal(_encode(tiny_sam, base[0]), before)


def test_variant_at_matches_a_direct_patch(tiny_sam) -> None:
    with vr.variant_at(tiny_sam, "paper", 384):
        inside = _encode(tiny_sam, 384)
    bl.set_input_size(tiny_sam, 384)
    bl.apply_basam(tiny_sam, bl.BASAMConfig.paper())
    assert torch.equal(_encode(tiny_sam, 384), inside)


def test_variant_at_restores_a_learned_patch_and_size(tiny_sam) -> None:
    bl.set_input_size(tiny_sam, 320)
    bl.apply_basam(tiny_sam, bl.BASAMConfig.official())
    with torch.no_grad():  # as if fine-tuned: coefficients and rel-pos tables moved
        for name, p in tiny_sam.image_encoder.named_parameters():
            if "rel_pos" in name:
                p.add_(0.25)
    state = {k: v.clone() for k, v in tiny_sam.state_dict().items()}
    before = _encode(tiny_sam, 320)
    with vr.variant_at(tiny_sam, "vanilla", 128):
        assert not is_patched(tiny_sam)
    assert bl.input_size(tiny_sam) == (320, 320)
    after = tiny_sam.state_dict()
    assert state.keys() == after.keys()
    assert all(torch.equal(state[k], after[k]) for k in state)
    assert torch.equal(_encode(tiny_sam, 320), before)


def test_variant_at_refuses_official_below_base_and_restores(tiny_sam) -> None:
    with pytest.raises(ValueError, match="official"):
        with vr.variant_at(tiny_sam, "official", 128):
            pass
    assert not is_patched(tiny_sam) and bl.input_size(tiny_sam) == (256, 256)


def test_variant_at_takes_a_config(tiny_sam) -> None:
    config = bl.BASAMConfig.bias_only().with_(gain=2.0)
    with vr.variant_at(tiny_sam, config, 256):
        assert is_patched(tiny_sam)
    assert not is_patched(tiny_sam)


# --- one list: nobody else spells the variants out ------------------------------------------


def _lists_of_variant_names(source: str) -> list[list[str]]:
    """Tuple, list and set literals naming all variants, or all but one (a copy of the list;
    a selection of a few is fine)."""
    names = set(vr.variant_names())
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Tuple | ast.List | ast.Set) and len(node.elts) >= len(names) - 1:
            values = [e.value for e in node.elts if isinstance(e, ast.Constant)]
            if len(values) == len(node.elts) and all(v in names for v in values):
                found.append(values)
    return found


def _code_cells(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    lines = []
    for cell in cells:
        if cell["cell_type"] == "code":
            src = "".join(cell["source"])
            lines.append(
                "\n".join(ln for ln in src.splitlines() if not ln.lstrip().startswith(("%", "!")))
            )
    return "\n".join(lines)


def test_no_other_list_of_variant_names() -> None:
    sources = {p: p.read_text() for p in (ROOT / "basam_lite").rglob("*.py")}
    sources.update({p: p.read_text() for p in (ROOT / "scripts").glob("*.py")})
    sources.update({p: _code_cells(p) for p in (ROOT / "notebooks").rglob("*.ipynb")})
    owner = ROOT / "basam_lite" / "variants.py"
    offenders = {
        str(p.relative_to(ROOT)): lists
        for p, src in sources.items()
        if p != owner and (lists := _lists_of_variant_names(src))
    }
    assert not offenders, f"variant lists outside basam_lite/variants.py: {offenders}"
    for module in ("sweep", "plots", "quickstart"):
        text = (ROOT / "basam_lite" / f"{module}.py").read_text()
        assert "VARIANT" not in text.replace("variant_", ""), module


def test_plots_keep_an_unknown_variant(tmp_path) -> None:
    import pandas as pd

    from basam_lite.plots import summary_table, variant_order

    df = pd.DataFrame(
        {
            "model": "tiny",
            "prompt": "box",
            "image": ["a", "a", "a"],
            "variant": ["mine", "paper", "vanilla"],
            "resolution": 256,
            "status": "ok",
            "iou": [0.1, 0.2, 0.3],
        }
    )
    assert variant_order(df["variant"]) == ["vanilla", "paper", "mine"]
    table = summary_table(df)
    assert list(table.index.get_level_values("variant")) == ["vanilla", "paper", "mine"]

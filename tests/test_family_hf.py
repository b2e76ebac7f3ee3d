"""Hugging Face ``transformers`` ``SamModel``: BA-SAM against HF's own forward and written-out
references.

Model: the project's tiny random model (``basam_lite.models.TINY``: 256 px, 16 px patches, embed
dim 192, 6 layers, 6 heads, windows of 4, global layers 2 and 5, prompt dim 128, 2-layer mask
decoder) built as a ``SamModel`` from ``SamConfig`` with the weights of ``build_sam("tiny")``
renamed into HF's layout. Other size: 384 px (24 x 24 tokens; windows of 4 tile it, so windowed
layers pad nothing), 160 px (10 x 10 tokens: windowed layers pad to 12 x 12) and 512 px (the
official preset runs only above the base size). Both of HF's attention classes are covered
(``attn_implementation="sdpa"``, HF's default, and ``"eager"``).

HF's unpatched model at another size is built the HF way: a ``SamConfig`` with
``image_size`` changed (vision and prompt encoder), ``pos_embed`` resampled bicubically and the
global layers' rel-pos tables resampled linearly to ``2 * grid - 1`` (exactly what HF's
``get_rel_pos`` does at run time), loaded with ``load_state_dict``.
"""

from __future__ import annotations

import copy
import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers", reason="the [hf] extra (transformers) is not installed")

import pickle

from reference import reference_mask
from transformers import SamModel
from transformers.models.sam.modeling_sam import (
    SamVisionAttention,
    SamVisionEncoder,
    SamVisionSdpaAttention,
)

import basam_lite as bl
from basam_lite.config import BASAMConfig
from basam_lite.encoders import FAMILIES, adapter_for, global_blocks, require
from basam_lite.encoders.hf import (
    HFBASAMAttention,
    HFSamPredictor,
    SizedSamModel,
    SizedSamVisionEncoder,
    default_processor,
    processor_for_size,
)
from basam_lite.encoders.hf_weights import build_tiny_hf_sam, load_hf_sam, require_transformers
from basam_lite.encoders.specs import model_spec
from basam_lite.errors import UserError
from basam_lite.masks import alibi_slopes
from basam_lite.patch_state import block_patch

IMPLS = ("sdpa", "eager")
BASE = 256
PATCH = 16


def hf_reference_at(model: SamModel, size: int) -> SamModel:
    """HF's own unpatched ``SamModel`` built for ``size`` with ``model``'s weights."""
    cfg = copy.deepcopy(model.config)
    grid = size // PATCH
    cfg.vision_config.image_size = size
    cfg.prompt_encoder_config.image_size = size
    cfg.prompt_encoder_config.image_embedding_size = grid
    ref = SamModel(cfg).eval()
    state = dict(model.state_dict())
    pe = state["vision_encoder.pos_embed"].permute(0, 3, 1, 2)
    pe = F.interpolate(pe, size=(grid, grid), mode="bicubic", align_corners=False)
    state["vision_encoder.pos_embed"] = pe.permute(0, 2, 3, 1)
    for i in cfg.vision_config.global_attn_indexes:
        for axis in "hw":
            key = f"vision_encoder.layers.{i}.attn.rel_pos_{axis}"
            table = state[key]  # [2 g - 1, d]
            state[key] = F.interpolate(table.T[None], size=2 * grid - 1, mode="linear")[0].T
    ref.load_state_dict(state)
    return ref


def prompts(size: int) -> dict[str, torch.Tensor]:
    """One point and one box in the model's input frame (as the processor would give them)."""
    return {
        "input_points": torch.tensor([[[[0.4 * size, 0.3 * size]]]]),
        "input_labels": torch.tensor([[[1]]]),
        "input_boxes": torch.tensor([[[0.1 * size, 0.2 * size, 0.6 * size, 0.7 * size]]]),
    }


def image(size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 3, size, size, generator=g)


def attention_modules(model: SamModel) -> list:
    return [layer.attn for layer in model.vision_encoder.layers]


@pytest.fixture(params=IMPLS)
def hf_model(request) -> SamModel:
    return build_tiny_hf_sam(attn_implementation=request.param)


# ---------------------------------------------------------------- the model and its weights


def test_tiny_hf_config_and_classes(hf_model):
    vc = hf_model.config.vision_config
    assert (vc.image_size, vc.patch_size, vc.hidden_size, vc.num_hidden_layers) == (256, 16, 192, 6)
    assert (vc.num_attention_heads, vc.window_size, list(vc.global_attn_indexes)) == (6, 4, [2, 5])
    layers = hf_model.vision_encoder.layers
    assert global_blocks(hf_model) == [2, 5]
    assert [b.window for b in adapter_for(hf_model).attention_blocks()] == [4, 4, 0, 4, 4, 0]
    impl = hf_model.config._attn_implementation
    expected = SamVisionSdpaAttention if impl == "sdpa" else SamVisionAttention
    assert all(type(layer.attn) is expected for layer in layers)


@pytest.mark.parametrize("size", [BASE, 384])
def test_hf_matches_segment_anything_with_the_same_weights(size):
    """Cross-check of two libraries: HF's SamModel holding ``build_sam("tiny")``'s weights
    gives segment_anything's embeddings, masks and IoU scores (at 384 px both run through
    basam_lite's own size handling, each in its family's way)."""
    sam = bl.build_sam("tiny")
    hf = build_tiny_hf_sam()
    bl.set_input_size(sam, size)
    bl.set_input_size(hf, size)
    x = image(size)
    p = prompts(size)
    with torch.no_grad():
        emb = sam.image_encoder(x)
        sparse, dense = sam.prompt_encoder(
            points=(p["input_points"][:, 0], p["input_labels"][:, 0]),
            boxes=p["input_boxes"][:, 0],
            masks=None,
        )
        low, iou = sam.mask_decoder(emb, sam.prompt_encoder.get_dense_pe(), sparse, dense, True)
        out = hf(pixel_values=x, **p)
        hf_emb = hf.get_image_embeddings(x)
    assert torch.allclose(hf_emb, emb, atol=1e-4, rtol=0)
    assert out.pred_masks.shape == (1, 1, 3, size // 4, size // 4)
    assert torch.allclose(out.pred_masks[:, 0], low, atol=1e-4, rtol=0)
    assert torch.allclose(out.iou_scores[:, 0], iou, atol=1e-4, rtol=0)


# ---------------------------------------------------------------- vanilla = HF's own forward


@pytest.mark.parametrize("size", [BASE, 384, 160])
def test_vanilla_equals_hf_unpatched_forward(hf_model, size):
    """vanilla (and the bare size change) equal HF's unpatched SamModel built for the size:
    masks and IoU within 1e-5 (fp32)."""
    ref = hf_reference_at(hf_model, size)
    x, p = image(size), prompts(size)
    with torch.no_grad():
        expected = ref(pixel_values=x, **p)
        bl.set_input_size(hf_model, size)
        sized = hf_model(pixel_values=x, **p)
        bl.apply_basam(hf_model, BASAMConfig.vanilla())
        vanilla = hf_model(pixel_values=x, **p)
    for out in (sized, vanilla):
        assert torch.allclose(out.pred_masks, expected.pred_masks, atol=1e-5, rtol=0)
        assert torch.allclose(out.iou_scores, expected.iou_scores, atol=1e-5, rtol=0)


def test_native_size_unpatched_model_keeps_hf_classes(hf_model):
    bl.set_input_size(hf_model, 384)
    assert type(hf_model.vision_encoder) is SizedSamVisionEncoder
    assert type(hf_model) is SizedSamModel
    assert hf_model.prompt_encoder.image_embedding_size == (24, 24)
    bl.set_input_size(hf_model, BASE)
    assert type(hf_model.vision_encoder) is SamVisionEncoder
    assert type(hf_model) is SamModel
    assert hf_model.prompt_encoder.image_embedding_size == (16, 16)
    assert hf_model.prompt_encoder.input_image_size == BASE


# ---------------------------------------------------------------- presets = written-out formula


@functools.cache
def grid_distance(rows: int, cols: int) -> torch.Tensor:
    """``[N, N]`` euclidean distances of the token grid, from the explicit loops of
    ``tests/reference.py`` (cached: the loops are slow at 24 x 24 tokens)."""
    return -reference_mask(rows, cols, torch.ones(1, dtype=torch.float64), "euclidean")[0]


def explicit_attention(attn, x, lam: float, slopes, distance_scale: float = 1.0):
    """``softmax(lam * q.k / sqrt(d) + HF's rel-pos + mask) @ v``, then HF's output projection.

    ``x [B, rows, cols, C]`` is the attention module's input; HF's own
    ``get_decomposed_rel_pos`` gives the rel-pos term; the mask is ``-m_h * s * ||p_i - p_j||``
    from explicit loops (``tests/reference.py``).
    """
    b, rows, cols, _ = x.shape
    n, h = rows * cols, attn.num_attention_heads
    qkv = attn.qkv(x).reshape(b, n, 3, h, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, b * h, n, -1).unbind(0)
    d = q.shape[-1]
    logits = lam * (q @ k.transpose(-2, -1)) / math.sqrt(d)
    rel = attn.get_decomposed_rel_pos(q, attn.rel_pos_h, attn.rel_pos_w, (rows, cols), (rows, cols))
    logits = logits + rel.reshape(b * h, n, n)
    if slopes is not None:
        dist = grid_distance(rows, cols)
        mask = (-slopes.double()[:, None, None] * distance_scale * dist[None]).float()
        logits = (logits.reshape(b, h, n, n) + mask[None]).reshape(b * h, n, n)
    out = torch.softmax(logits, dim=-1) @ v
    out = out.reshape(b, h, rows, cols, d).permute(0, 2, 3, 1, 4).reshape(b, rows, cols, -1)
    return attn.proj(out)


@pytest.mark.parametrize("preset", ["scale", "bias", "paper", "paper_base"])
@pytest.mark.parametrize("size", [BASE, 384])
def test_presets_equal_explicit_reference_block_by_block(hf_model, preset, size):
    """Each layer's attention output equals the written-out formula on the same input: lambda
    = ln n / ln n_train and Press's slopes in the global layers; windowed layers (16 keys, as
    at training) are plain HF attention."""
    bl.set_input_size(hf_model, size)
    bl.apply_basam(hf_model, BASAMConfig.preset(preset))
    cfg = BASAMConfig.preset(preset)
    inputs, outputs = {}, {}

    def record(i: int):
        def hook(module, args, kwargs, out) -> None:
            inputs[i], outputs[i] = kwargs["hidden_states"], out[0]

        return hook

    hooks = [
        layer.attn.register_forward_hook(record(i), with_kwargs=True)
        for i, layer in enumerate(hf_model.vision_encoder.layers)
    ]
    with torch.no_grad():
        hf_model.get_image_embeddings(image(size))
    for hook in hooks:
        hook.remove()
    grid = size // PATCH
    for i, layer in enumerate(hf_model.vision_encoder.layers):
        glob = i in (2, 5)
        n_keys = grid * grid if glob else 16
        lam = math.log(n_keys) / math.log(256 if glob else 16) if cfg.scale != "none" else 1.0
        slopes = alibi_slopes(6) if (cfg.bias == "alibi2d" and glob) else None
        dscale = 16 / grid if (cfg.mask_units == "base" and glob) else 1.0
        with torch.no_grad():
            expected = explicit_attention(layer.attn, inputs[i], lam, slopes, dscale)
        assert torch.allclose(outputs[i], expected, atol=2e-5, rtol=0), (preset, size, i)
        assert block_patch(layer.attn).is_global is glob


def test_official_preset_at_a_larger_size_and_refused_below(hf_model):
    """official: integer scale in every block with its rel-pos coefficient, positions dropped;
    below the base size it is refused in one line, with the model left unpatched."""
    bl.set_input_size(hf_model, 160)
    with pytest.raises(ValueError, match="official BA-SAM scale cannot run"):
        bl.apply_basam(hf_model, BASAMConfig.official())
    assert bl.patch_config(hf_model) is None
    assert all(type(m) is not HFBASAMAttention for m in attention_modules(hf_model))
    bl.set_input_size(hf_model, 512)
    bl.apply_basam(hf_model, BASAMConfig.official())
    with torch.no_grad():
        out = hf_model(pixel_values=image(512), **prompts(512))
    assert torch.isfinite(out.pred_masks).all()
    keys = [k for k in hf_model.state_dict() if "basam_rel_pos_coef" in k]
    assert len(keys) == 6
    with pytest.raises(ValueError, match="official BA-SAM scale cannot run"):
        bl.set_input_size(hf_model, 160)


# ---------------------------------------------------------------- undo, save, copy


@pytest.mark.parametrize("preset", ["paper", "official"])
def test_remove_basam_restores_exactly(hf_model, preset):
    before = {k: v.clone() for k, v in hf_model.state_dict().items()}
    classes = [type(m) for m in hf_model.modules()]
    x, p = image(BASE), prompts(BASE)
    with torch.no_grad():
        expected = hf_model(pixel_values=x, **p).pred_masks
        bl.set_input_size(hf_model, 384)
        bl.apply_basam(hf_model, BASAMConfig.preset(preset))
        hf_model(pixel_values=image(384), **prompts(384))
        bl.remove_basam(hf_model)
        bl.set_input_size(hf_model, BASE)
        after = hf_model(pixel_values=x, **p).pred_masks
    assert torch.equal(after, expected)
    assert [type(m) for m in hf_model.modules()] == classes
    state = hf_model.state_dict()
    assert state.keys() == before.keys()
    assert all(torch.equal(state[k], before[k]) for k in before)
    assert hf_model.__dict__.get("basam_encoder") is None


def test_state_dict_round_trip_with_learned_gain(hf_model):
    cfg = BASAMConfig.paper().with_(learnable_gain=True)
    bl.apply_basam(hf_model, cfg)
    with torch.no_grad():
        for i in (2, 5):
            hf_model.vision_encoder.layers[i].attn.basam_gain.fill_(0.5 + i)
    state = hf_model.state_dict()
    assert {k for k in state if "basam_gain" in k} == {
        f"vision_encoder.layers.{i}.attn.basam_gain" for i in (2, 5)
    }
    impl = hf_model.config._attn_implementation
    other = bl.apply_basam(build_tiny_hf_sam(seed=1, attn_implementation=impl), cfg)
    other.load_state_dict(state)
    bl.set_input_size(hf_model, 384)
    bl.set_input_size(other, 384)
    x, p = image(384), prompts(384)
    with torch.no_grad():
        assert torch.equal(
            other(pixel_values=x, **p).pred_masks, hf_model(pixel_values=x, **p).pred_masks
        )


def test_deepcopy_keeps_patch_and_size(hf_model):
    bl.set_input_size(hf_model, 384)
    bl.apply_basam(hf_model, BASAMConfig.paper())
    clone = copy.deepcopy(hf_model)
    x, p = image(384), prompts(384)
    with torch.no_grad():
        expected = hf_model(pixel_values=x, **p).pred_masks
        assert torch.equal(clone(pixel_values=x, **p).pred_masks, expected)
    assert bl.input_size(clone) == (384, 384)
    bl.remove_basam(clone)
    bl.set_input_size(clone, BASE)
    assert bl.patch_config(hf_model) is not None  # the original is untouched
    with torch.no_grad():
        assert torch.equal(hf_model(pixel_values=x, **p).pred_masks, expected)


def test_pickle_round_trip_of_a_patched_resized_model(hf_model):
    bl.set_input_size(hf_model, 384)
    bl.apply_basam(hf_model, BASAMConfig.paper().with_(learnable_gain=True))
    clone = pickle.loads(pickle.dumps(hf_model))  # in memory: our own object
    x, p = image(384), prompts(384)
    with torch.no_grad():
        assert torch.equal(
            clone(pixel_values=x, **p).pred_masks, hf_model(pixel_values=x, **p).pred_masks
        )
    assert type(clone) is SizedSamModel and bl.input_size(clone) == (384, 384)


def test_model_spec_reads_the_model(hf_model):
    spec = model_spec("hf-tiny")
    vc = hf_model.config.vision_config
    assert spec.family == "hf"
    assert spec.base_hw == (vc.image_size, vc.image_size) and spec.patch_size == vc.patch_size
    assert spec.heads == (vc.num_attention_heads,) * vc.num_hidden_layers
    assert spec.dims == (vc.hidden_size,) * vc.num_hidden_layers
    assert spec.global_blocks == tuple(vc.global_attn_indexes)
    assert spec.base_keys == tuple(
        256 if i in vc.global_attn_indexes else vc.window_size**2 for i in range(6)
    )
    assert "square" in spec.size_rule
    assert model_spec("hf-vit_b").global_blocks == (2, 5, 8, 11)
    assert model_spec("hf-vit_h").heads[0] == 16


def test_save_pretrained_keeps_the_checkpoint_size(hf_model, tmp_path):
    """A model saved while resized and patched (zero-shot preset) reloads as HF's own model at
    its base size: the config is never changed."""
    x, p = image(BASE), prompts(BASE)
    with torch.no_grad():
        expected = hf_model(pixel_values=x, **p).pred_masks
    bl.set_input_size(hf_model, 384)
    bl.apply_basam(hf_model, BASAMConfig.paper())
    hf_model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()  # no pickle
    loaded = load_hf_sam(tmp_path)
    assert loaded.config.vision_config.image_size == BASE
    assert loaded.config.architectures == ["SamModel"]
    with torch.no_grad():
        assert torch.allclose(loaded(pixel_values=x, **p).pred_masks, expected, atol=1e-6)


def test_load_hf_sam_refuses_what_is_not_a_saved_model(tmp_path):
    with pytest.raises(UserError, match="has no config.json"):
        load_hf_sam(tmp_path)
    (tmp_path / "weights.pt").write_bytes(b"x")
    with pytest.raises(UserError, match="not a folder saved by SamModel.save_pretrained"):
        load_hf_sam(tmp_path / "weights.pt")
    with pytest.raises(UserError, match="facebook/sam-vit-base"):
        load_hf_sam(tmp_path / "missing")
    with pytest.raises(UserError, match="not a Hugging Face SamModel"):
        load_hf_sam("vit_b")  # a registered segment_anything .pth


def test_registered_hf_id_is_fetched_offline_in_one_line(monkeypatch, tmp_path):
    """A registered id goes through basam_lite.weights (no download here: offline switch)."""
    monkeypatch.setenv("BASAM_OFFLINE", "1")
    monkeypatch.setenv("BASAM_CACHE_DIR", str(tmp_path))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(UserError) as err:
        load_hf_sam("facebook/sam-vit-base")
    assert "\n" not in str(err.value) and "facebook/sam-vit-base" in str(err.value)


# ---------------------------------------------------------------- sizes, processor, predict


@pytest.mark.parametrize(
    ("size", "match"),
    [
        (200, "multiple of the patch size 16: use 192 or 208"),
        ((256, 384), "square sizes only"),
        (8, "smaller than one 16 px patch"),
        (256.0, "float"),
    ],
)
def test_bad_sizes_are_refused_in_one_line(hf_model, size, match):
    with pytest.raises(UserError, match=match) as err:
        bl.set_input_size(hf_model, size)
    assert "\n" not in str(err.value)
    assert bl.input_size(hf_model) == (BASE, BASE)


def test_processor_follows_the_size_and_predicts_with_box_and_point(hf_model):
    """At 384 px: the image is resized so its longest side is 384 and padded to 384 x 384,
    the prompts are rescaled into that frame, and post_process_masks returns masks of the
    original image size (300 x 200 here)."""
    processor = processor_for_size(default_processor(), 384)
    img = (np.random.default_rng(0).random((200, 300, 3)) * 255).astype(np.uint8)
    inputs = processor(
        images=img,
        input_points=[[[150, 100]]],
        input_boxes=[[[30, 40, 200, 150]]],
        return_tensors="pt",
    )
    assert inputs["pixel_values"].shape == (1, 3, 384, 384)
    assert inputs["reshaped_input_sizes"].tolist() == [[256, 384]]
    assert torch.allclose(inputs["input_points"].float(), torch.tensor([[[[192.0, 128.0]]]]))
    assert torch.allclose(
        inputs["input_boxes"].float(), torch.tensor([[[38.4, 51.2, 256.0, 192.0]]])
    )
    bl.set_input_size(hf_model, 384)
    bl.apply_basam(hf_model, BASAMConfig.paper())
    with torch.no_grad():
        out = hf_model(
            pixel_values=inputs["pixel_values"],
            input_points=inputs["input_points"].float(),
            input_boxes=inputs["input_boxes"].float(),
        )
    assert out.pred_masks.shape == (1, 1, 3, 96, 96)
    masks = processor.post_process_masks(
        out.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"]
    )
    assert masks[0].shape == (1, 3, 200, 300) and masks[0].dtype == torch.bool
    # The same, written out: upsample to the padded input, crop the padding, resize.
    up = F.interpolate(out.pred_masks[0], (384, 384), mode="bilinear", align_corners=False)
    up = F.interpolate(up[..., :256, :384], (200, 300), mode="bilinear", align_corners=False)
    assert torch.equal(masks[0], up > 0)


def test_predictor_for_follows_the_size_and_matches_hf_pipeline(hf_model):
    """``predictor_for(model)`` at 384 px with a box and a point equals HF's documented pipeline
    (processor -> model -> post_process_masks) with the processor made for 384 px."""
    img = (np.random.default_rng(1).random((200, 300, 3)) * 255).astype(np.uint8)
    predictor = bl.predictor_for(hf_model)
    assert isinstance(predictor, HFSamPredictor)
    bl.set_input_size(hf_model, 384)  # after the predictor was made: it follows
    bl.apply_basam(hf_model, BASAMConfig.paper())
    predictor.set_image(img)
    point, box = np.array([[150.0, 100.0]]), np.array([30.0, 40.0, 200.0, 150.0])
    masks, scores, low = predictor.predict(point_coords=point, point_labels=np.array([1]), box=box)
    assert masks.shape == (3, 200, 300) and masks.dtype == bool
    assert scores.shape == (3,) and low.shape == (3, 96, 96)
    processor = processor_for_size(default_processor(), 384)
    inputs = processor(
        images=img,
        input_points=[[[150, 100]]],
        input_boxes=[[[30, 40, 200, 150]]],
        return_tensors="pt",
    )
    with torch.no_grad():
        out = hf_model(
            pixel_values=inputs["pixel_values"],
            input_points=inputs["input_points"].float(),
            input_labels=torch.ones(1, 1, 1, dtype=torch.long),
            input_boxes=inputs["input_boxes"].float(),
        )
    expected = processor.post_process_masks(
        out.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"]
    )[0][0]
    assert np.array_equal(masks, expected.numpy())
    assert np.allclose(scores, out.iou_scores[0, 0].numpy(), atol=1e-6)
    with pytest.raises(UserError):
        predictor.predict(box=np.array([0.0, 0.0, 400.0, 150.0]))  # outside the 300 px width


def test_non_square_processor_refused():
    with pytest.raises(UserError, match="pads to a square"):
        processor_for_size(default_processor(), (256, 384))


def test_missing_transformers_is_one_line_naming_the_extra(monkeypatch):
    import sys

    assert FAMILIES["hf"].extra == "hf"
    monkeypatch.setitem(sys.modules, "transformers", None)
    for call in (lambda: require("hf"), require_transformers):
        with pytest.raises(UserError, match=r"pip install 'basam-lite\[hf\]'") as err:
            call()
        assert "\n" not in str(err.value)


# ---------------------------------------------------------------- attention maps


def test_captured_maps_equal_hf_eager_attention_weights():
    """HF's eager attention returns its probabilities: ``capture_attention`` on the (unpatched)
    model at 384 px gives the same maps, global layers ``[B, heads, N, N]`` and windowed ones
    ``[B * windows, heads, 16, 16]``, within 1e-6."""
    hf_model = build_tiny_hf_sam(attn_implementation="eager")
    ref = hf_reference_at(hf_model, 384)
    x = image(384)
    with torch.no_grad():
        expected = ref.vision_encoder(x, output_attentions=True).attentions
    bl.set_input_size(hf_model, 384)
    with bl.capture_attention(hf_model) as cap, torch.no_grad():
        hf_model.get_image_embeddings(x)
    assert bl.patch_config(hf_model) is None  # capture's vanilla patch is gone again
    assert len(expected) == 6 and sorted(cap.maps) == list(range(6))
    for i in range(6):
        got = cap.maps[i]
        heads = 6
        assert got.shape == ((1, heads, 576, 576) if i in (2, 5) else (36, heads, 16, 16))
        assert torch.allclose(got.reshape(expected[i].shape), expected[i], atol=1e-6, rtol=0), i
    assert cap.grid_maps(2).shape == (1, 6, 576, 24, 24)


def test_capture_with_queries_on_a_patched_model():
    hf_model = build_tiny_hf_sam()
    bl.set_input_size(hf_model, 384)
    bl.apply_basam(hf_model, BASAMConfig.paper())
    with bl.capture_attention(hf_model, blocks=[1, 5], queries=[(3, 4), (20, 10)]) as cap:
        with torch.no_grad():
            hf_model.get_image_embeddings(image(384))
    assert cap.maps[5].shape == (1, 6, 2, 576)
    assert torch.allclose(cap.maps[5].sum(-1), torch.ones(1, 6, 2))
    windowed = cap.grid_maps(1)  # [1, 6, 2, 24, 24], zero outside each query's 4 x 4 window
    assert windowed.shape == (1, 6, 2, 24, 24)
    assert torch.allclose(windowed[0, :, 0, 0:4, 4:8].sum((-1, -2)), torch.ones(6))
    assert bl.patch_config(hf_model).name == "paper"


def test_build_by_name_and_checkpoint_formats(tmp_path):
    """``hf-tiny`` is ``tiny``'s weights; ``hf-vit_b`` loads a save_pretrained folder or an
    official segment_anything .pth, and refuses a checkpoint of another architecture."""
    from basam_lite.encoders.hf import build

    tiny = build("hf-tiny")
    reference = build_tiny_hf_sam()
    assert all(
        torch.equal(a, b)
        for a, b in zip(tiny.state_dict().values(), reference.state_dict().values(), strict=True)
    )
    with pytest.raises(UserError, match="loads no checkpoint"):
        build("hf-tiny", tmp_path)
    with pytest.raises(UserError, match="unknown Hugging Face model"):
        build("hf-vit_x")
    tiny.save_pretrained(tmp_path / "tiny")
    with pytest.raises(UserError, match="not hf-vit_b: pass the matching --model"):
        build("hf-vit_b", tmp_path / "tiny")
    torch.save(bl.build_sam("tiny").state_dict(), tmp_path / "sam_tiny.pth")
    with pytest.raises(UserError):  # segment_anything's loader explains the mismatch
        build("hf-vit_b", tmp_path / "sam_tiny.pth")


def test_hf_output_recording_survives_the_size_change():
    """``output_hidden_states`` (and, while unpatched, ``output_attentions``) keep working at
    another size: equal to HF's own model built for 384 px."""
    hf_model = build_tiny_hf_sam(attn_implementation="eager")
    ref = hf_reference_at(hf_model, 384)
    bl.set_input_size(hf_model, 384)
    x = image(384)
    kwargs = {"output_hidden_states": True, "output_attentions": True}
    with torch.no_grad():
        expected = ref.vision_encoder(x, **kwargs)
        got = hf_model.vision_encoder(x, **kwargs)
        # A fresh model: HF installs its recording hooks twice when the encoder is called alone
        # before the whole model (stock transformers 5.23.0 does the same, at any size).
        other = bl.apply_basam(build_tiny_hf_sam(), BASAMConfig.paper())
        bl.set_input_size(other, 384)
        patched = other(pixel_values=x, **prompts(384), **kwargs)
    assert len(got.hidden_states) == 7 and len(got.attentions) == 6
    for a, b in zip(
        got.hidden_states + got.attentions,
        expected.hidden_states + expected.attentions,
        strict=True,
    ):
        assert torch.allclose(a, b, atol=1e-5, rtol=0)
    # Patched attention never forms its probabilities (capture_attention recomputes them).
    assert len(patched.vision_hidden_states) == 7 and patched.vision_attentions == ()


def test_explorer_draws_hf_maps_equal_to_segment_anything_ones():
    """The attention explorer on the HF model (same weights as ``tiny``) at 128 and 256 px:
    every captured map equals the segment_anything model's (1e-6), and it draws a figure."""
    import matplotlib

    matplotlib.use("Agg")
    from basam_lite import explorer
    from basam_lite.datasets import ProceduralScenes

    image = ProceduralScenes(1, seed=0).sample(0, size=128).image
    queries = {"centre": (0.5, 0.5), "corner": (0.1, 0.9)}
    args = (image, [128, 256], ["vanilla", "paper"], queries)
    hf_atlas = explorer.AttentionAtlas(build_tiny_hf_sam(), *args)
    sam_atlas = explorer.AttentionAtlas(bl.build_sam("tiny"), *args)
    assert hf_atlas.global_blocks == [2, 5]
    for side in (128, 256):
        for variant in ("vanilla", "paper"):
            got, expected = hf_atlas.capture(side, variant), sam_atlas.capture(side, variant)
            for block in range(6):
                np.testing.assert_allclose(got.maps[block], expected.maps[block], atol=1e-6)
    fig = hf_atlas.across_sides(5, 0, "centre")
    assert sum(1 for ax in fig.axes if ax.get_title()) == 4
    assert not bl.is_patched(hf_atlas.sam) and type(hf_atlas.sam) is SamModel


def test_use_abs_pos_false_equals_hf_with_a_zero_position_embedding():
    """``use_abs_pos=False`` (the official code's choice) leaves the position embedding out:
    HF's own model with ``pos_embed`` zeroed gives the same embeddings, bit for bit."""
    hf_model = build_tiny_hf_sam()
    x = image(BASE)
    bl.apply_basam(hf_model, BASAMConfig.vanilla().with_(use_abs_pos=False))
    with torch.no_grad():
        without = hf_model.get_image_embeddings(x)
        bl.remove_basam(hf_model)
        hf_model.vision_encoder.pos_embed.zero_()
        expected = hf_model.get_image_embeddings(x)
    assert type(hf_model.vision_encoder) is SamVisionEncoder
    assert torch.equal(without, expected)


def test_sweep_cli_runs_hf_tiny_two_images_two_sizes(tmp_path):
    """``python -m basam_lite sweep --model hf-tiny``: 2 images x 2 sizes x 2 variants x 2
    prompts, all ok; scores within 2e-3 of ``--model tiny`` (the same weights; HF's processor
    resizes the image itself, so pixels differ slightly from segment_anything's resize)."""
    from basam_lite.__main__ import main
    from basam_lite.sweep import read_table

    common = ["--variants", "vanilla", "paper", "--resolutions", "128", "384"]
    common += ["--dataset", "synthetic:2", "--axis", "zoom", "--prompt", "box", "point"]
    tables = {}
    for name in ("hf-tiny", "tiny"):
        out = tmp_path / f"{name}.csv"
        assert main(["sweep", "--model", name, *common, "--out", str(out)]) == 0
        tables[name] = read_table(out)
    hf, sam = tables["hf-tiny"], tables["tiny"]
    assert len(hf) == 16 and (hf["status"] == "ok").all() and set(hf["model"]) == {"hf-tiny"}
    assert sorted(set(hf["resolution"])) == [128, 384]
    keys = ["image", "variant", "resolution", "prompt"]
    joined = hf.merge(sam, on=keys, suffixes=("_hf", "_sam"))
    assert len(joined) == 16
    assert np.abs(joined["iou_hf"] - joined["iou_sam"]).max() < 2e-3


def test_predictor_mask_input_at_another_size(hf_model):
    """A low-res mask from a first prediction feeds the next one (SAM's refinement loop), at the
    size of the model's input (96 x 96 at 384 px); another shape is refused in one line."""
    img = (np.random.default_rng(2).random((240, 320, 3)) * 255).astype(np.uint8)
    bl.set_input_size(hf_model, 384)
    predictor = bl.predictor_for(hf_model)
    predictor.set_image(img)
    box = np.array([40.0, 30.0, 200.0, 180.0])
    _, scores, low = predictor.predict(box=box)
    best = low[int(np.argmax(scores))][None]  # (1, 96, 96)
    masks, _, _ = predictor.predict(box=box, mask_input=best, multimask_output=False)
    assert masks.shape == (1, 240, 320)
    with pytest.raises(UserError, match=r"mask_input must be \(1, 96, 96\)") as err:
        predictor.predict(box=box, mask_input=np.zeros((1, 64, 64), dtype=np.float32))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("path", ["dense", "chunked", "folded"])
def test_every_preset_runs_on_every_attention_path(path):
    """All presets (official at 512 px, the others at 384 px) on each attention path give
    finite masks, and each path equals the default one (1e-4)."""
    hf_model = build_tiny_hf_sam()
    for name in ("vanilla", "scale", "bias", "paper", "paper_base", "official"):
        size = 512 if name == "official" else 384
        bl.set_input_size(hf_model, size)
        x, p = image(size), prompts(size)
        with torch.no_grad():
            bl.apply_basam(hf_model, BASAMConfig.preset(name))
            auto = hf_model(pixel_values=x, **p).pred_masks
            bl.apply_basam(hf_model, BASAMConfig.preset(name).with_(path=path))
            out = hf_model(pixel_values=x, **p).pred_masks
            bl.remove_basam(hf_model)
        assert torch.isfinite(out).all()
        assert torch.allclose(out, auto, atol=1e-4, rtol=0), (name, path)


def test_predictor_reads_bgr_and_grayscale(hf_model):
    img = (np.random.default_rng(3).random((120, 160, 3)) * 255).astype(np.uint8)
    predictor = bl.predictor_for(hf_model)
    box = np.array([10.0, 20.0, 100.0, 90.0])
    predictor.set_image(img)
    rgb = predictor.predict(box=box)[0]
    predictor.set_image(img[..., ::-1], image_format="BGR")
    assert np.array_equal(predictor.predict(box=box)[0], rgb)
    predictor.set_image(img[..., 0])  # (H, W) grayscale is accepted as three equal channels
    assert predictor.predict(box=box)[0].shape == (3, 120, 160)
    with pytest.raises(ValueError, match="image_format"):
        predictor.set_image(img, image_format="HSV")

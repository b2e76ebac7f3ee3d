r"""Numbers the notebooks plot: token counts, lambda tables, softmax entropy, attention statistics.

Entropy of one attention row :math:`p` over :math:`n` keys is
:math:`H(p) = -\sum_j p_j \ln p_j`, at most :math:`\ln n` (uniform attention); the mean attention
distance of a query at :math:`p_i` is :math:`\sum_j p_j \lVert p_i - p_j \rVert`, in pixels.

A map that simply *stretches* with the image (each key's weight shared evenly by the
:math:`k \times k` keys that replace it when the side grows by :math:`k`,
:func:`stretch_map`) has entropy :math:`H + \ln k^2` over :math:`k^2 n` keys: its distance from
uniform, :math:`\ln n - H` (:func:`below_uniform`), stays put while :math:`H / \ln n` rises.
So :math:`\ln n - H` falling is fading beyond stretching, rising is sharpening.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from .capture import capture_attention
from .config import BASAMConfig
from .datasets import Prompt
from .encoders import EncoderAdapter, adapter_for
from .encoders import global_blocks as _global_blocks
from .masks import Metric, alibi_slopes, grid_positions, pairwise_distance
from .resolution import input_size, patch_size
from .scaling import attention_scale
from .variants import variant_at


def lambda_table(sides: Iterable[int], patch: int = 16, train_side: int = 1024) -> pd.DataFrame:
    """lambda per input side: the paper's rule and the official integer rule (None: it fails)."""
    train_keys = (train_side // patch) ** 2
    rows = []
    for side in sides:
        n = (side // patch) ** 2
        try:
            official: float | None = attention_scale(n, train_keys, "official")
        except ValueError:
            official = None
        rows.append(
            {
                "side": side,
                "tokens": n,
                "log_ratio": attention_scale(n, train_keys),
                "official": official,
            }
        )
    return pd.DataFrame(rows)


def token_table(
    sides: Iterable[int], patch: int = 16, window: int = 14, heads: int = 12
) -> pd.DataFrame:
    """What resolution does to sequence length, per square input side (SAM ViT-B defaults).

    Columns: grid side, tokens, keys per softmax row in global and in windowed blocks, number
    of windows (with padding), and the size of one dense fp32 ``[heads, N, N]`` attention tensor.
    """
    rows = []
    for side in sides:
        g = side // patch
        n = g * g
        wins = (-(-g // window)) ** 2
        rows.append(
            {
                "side": side,
                "grid": g,
                "tokens": n,
                "global_keys": n,
                "window_keys": window * window,
                "windows": wins,
                "dense_attention_GiB": heads * n * n * 4 / 2**30,
            }
        )
    return pd.DataFrame(rows)


def entropy(probs: Tensor | np.ndarray) -> Tensor:
    """Entropy in nats of each row of ``probs [..., n]`` (a tensor or a numpy array); of one
    ``(rows, cols)`` map: ``float(entropy(p.reshape(-1)))``."""
    probs = torch.as_tensor(probs)
    p = probs.clamp_min(1e-30)
    return -(probs * p.log()).sum(-1)


def below_uniform(probs: Tensor | np.ndarray) -> Tensor:
    """``ln n - H`` of each row of ``probs [..., n]`` (nats): 0 for uniform attention, unchanged
    when a map stretches with the image (:func:`stretch_map`)."""
    probs = torch.as_tensor(probs)
    return np.log(probs.shape[-1]) - entropy(probs)


def stretch_map(p: Tensor | np.ndarray, k: int) -> Tensor:
    """The attention map ``p [..., rows, cols]`` of an image ``k`` times larger per side, if
    attention simply stretched with it: every key's weight shared evenly by the ``k x k`` keys
    that replace it, ``[..., k rows, k cols]`` (still summing to the same total)."""
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive whole number, got {k!r}")
    p = torch.as_tensor(p)
    k = int(k)
    return p.repeat_interleave(k, -2).repeat_interleave(k, -1) / (k * k)


def softmax_fading(
    lengths: Sequence[int],
    head_dim: int = 64,
    train_keys: int = 4096,
    queries: int = 64,
    seed: int = 0,
    logit_std: float = 3.0,
) -> pd.DataFrame:
    """Entropy and largest weight of softmax rows over ``n`` random keys, with and without the
    BA-SAM scale (``lambda = ln n / ln train_keys``).

    Keys are i.i.d. Gaussian and the query is correlated with one "relevant" key, so there is a
    winner whose weight fades as distractor keys are added. ``logit_std`` sets the spread of
    q.k/sqrt(d).
    """
    g = torch.Generator().manual_seed(seed)
    rows = []
    for n in lengths:
        k = torch.randn(queries, n, head_dim, generator=g)
        q = k[:, 0] + 0.5 * torch.randn(queries, head_dim, generator=g)
        logits = logit_std * torch.einsum("qd,qnd->qn", q, k) / head_dim
        for mode in ("none", "log_ratio"):
            lam = attention_scale(n, train_keys, mode)  # type: ignore[arg-type]
            p = (lam * logits).softmax(-1)
            rows.append(
                {
                    "keys": n,
                    "scale": mode,
                    "lambda": lam,
                    "entropy": entropy(p).mean().item(),
                    "normalised_entropy": (entropy(p) / np.log(n)).mean().item(),
                    "max_weight": p.max(-1).values.mean().item(),
                    "relevant_weight": p[:, 0].mean().item(),
                }
            )
    return pd.DataFrame(rows)


def mean_attention_distance(
    probs: Tensor | np.ndarray,
    grid_hw: tuple[int, int],
    query_pos: Tensor | Sequence[tuple[int, int]],
    patch: int = 16,
) -> Tensor:
    """Expected query-key distance in pixels (euclidean, token centres): ``probs [..., Q, N]``
    over the ``grid_hw`` keys, ``query_pos [Q, 2]`` the queries' (row, col) -> ``[..., Q]``.
    Tensors or numpy arrays; of one ``(rows, cols)`` map from query ``token``:
    ``float(mean_attention_distance(p.reshape(1, -1), p.shape, [token], patch)[0])``."""
    probs = torch.as_tensor(probs)
    query_pos = torch.as_tensor(query_pos)
    keys = grid_positions(grid_hw, device=probs.device)
    d = torch.cdist(query_pos.float().to(probs.device), keys)  # [Q, N] in tokens
    return (probs * d).sum(-1) * patch


def attention_statistics(
    sam: nn.Module,
    image: Tensor | np.ndarray,
    sides: Sequence[int],
    configs: dict[str, BASAMConfig],
    blocks: Sequence[int] | None = None,
    num_queries: int = 32,
    seed: int = 0,
) -> pd.DataFrame:
    """Entropy and mean attention distance of global blocks, per input side and variant.

    ``image`` is an ``(H, W, 3)`` uint8 array; it is resized to each side (square). Queries are
    ``num_queries`` token positions drawn once per side (seeded). Returns one row per
    (side, variant, block, head) with the mean over queries of the entropy, the normalised
    entropy ``H / ln N``, the distance from uniform ``ln N - H`` (``below_uniform``) and the
    distance (px).
    """
    from .predictor import to_rgb_uint8

    adapter = adapter_for(sam)
    blocks = list(adapter.global_blocks() if blocks is None else blocks)
    patch = block_stride(adapter, blocks)  # px per token of the blocks' grid (SAM 2: 16, not 4)
    rgb = torch.as_tensor(to_rgb_uint8(np.asarray(image))).permute(2, 0, 1).float()[None]
    rows = []
    for side in sides:
        resized = torch.nn.functional.interpolate(
            rgb, size=(side, side), mode="bilinear", antialias=True, align_corners=False
        )
        g = side // patch
        rng = np.random.default_rng(seed + side)
        flat = rng.choice(g * g, size=min(num_queries, g * g), replace=False)
        queries = [(int(i // g), int(i % g)) for i in flat]  # on the blocks' grid
        qpos = torch.tensor(queries)
        queries = on_first_grid(adapter, queries, patch)  # where capture_attention reads them
        for name, config in configs.items():
            with ExitStack() as stack:
                try:
                    stack.enter_context(variant_at(sam, config, side))
                except ValueError:
                    continue  # the official rule below its training size
                x = adapter.preprocess(resized[0])[None]
                with capture_attention(sam, blocks=blocks, queries=queries) as cap:
                    with torch.no_grad():
                        adapter.encode(x)
            for b in blocks:
                probs = cap.maps[b]
                ent = entropy(probs)[0]  # [heads, Q]
                dist = mean_attention_distance(probs, cap.grids[b], qpos, patch)[0]
                for h in range(probs.shape[1]):
                    rows.append(
                        {
                            "side": side,
                            "variant": name,
                            "block": b,
                            "head": h,
                            "entropy": ent[h].mean().item(),
                            "normalised_entropy": (ent[h] / np.log(g * g)).mean().item(),
                            "below_uniform": (np.log(g * g) - ent[h]).mean().item(),
                            "distance_px": dist[h].mean().item(),
                        }
                    )
    return pd.DataFrame(rows)


def block_stride(adapter: EncoderAdapter, blocks: Sequence[int]) -> int:
    """Pixels per token of the query grid of ``blocks`` (the first of them; all share one grid
    in every family's global blocks): SAM 1's patch size, 16 px in SAM 2's stage 3 (its patch
    embedding is 4 px). The patch size when ``blocks`` is empty."""
    if not blocks:
        return adapter.patch_size()
    hw = adapter.base_size()
    return hw[0] // adapter.block_grids(blocks[0], hw).query[0]


def on_first_grid(
    adapter: EncoderAdapter, tokens: Sequence[tuple[int, int]], stride: int
) -> list[tuple[int, int]]:
    """``(row, col)`` tokens of a grid of ``stride`` px per token, placed on the first block's
    grid (the patch grid, where :func:`~basam_lite.capture.capture_attention` reads queries):
    ``(r, c) * stride / patch``, which capture maps back to ``(r, c)`` on the coarser grid.
    The identity where the two grids agree (SAM 1)."""
    k = stride // adapter.patch_size()
    return [(r * k, c * k) for r, c in tokens]


def current_grid(sam: nn.Module) -> tuple[int, int]:
    """The token grid ``sam`` runs at now."""
    h, w = input_size(sam)
    p = patch_size(sam)
    return h // p, w // p


# --- Architecture: which blocks are global, how many keys each softmax row sees --------------


def global_blocks(model: nn.Module) -> list[int]:
    """Indexes of the global-attention blocks of a model or encoder of any family (the
    project's one answer: :func:`basam_lite.encoders.global_blocks`)."""
    return _global_blocks(model)


@torch.no_grad()
def keys_per_row(sam: nn.Module, side: int) -> tuple[int, int]:
    """Keys per softmax row of the first windowed and the first global block at ``side`` px,
    counted from the attention maps captured for one query on a blank image (measured, not
    computed from a rule). ``sam`` is returned to the size it had."""
    from .resolution import restore_input_size, set_input_size

    adapter = adapter_for(sam)
    windowed = next(b.index for b in adapter.attention_blocks() if not b.is_global)
    first_global = adapter.global_blocks()[0]
    before = input_size(sam)
    set_input_size(sam, side)
    try:
        with capture_attention(sam, blocks=[windowed, first_global], queries=[(0, 0)]) as cap:
            adapter.encode(torch.zeros(1, 3, side, side))
    finally:
        if tuple(before) == tuple(adapter.base_size()):
            restore_input_size(sam)
        else:
            set_input_size(sam, before)
    return int(cap.maps[windowed].shape[-1]), int(cap.maps[first_global].shape[-1])


def architecture_table(names: Sequence[str] = ("vit_b", "vit_l", "vit_h", "tiny")) -> pd.DataFrame:
    """Encoder layout of models by name, from the model-spec registry
    (:func:`basam_lite.encoders.specs.model_spec`: read off models built on PyTorch's ``meta``
    device, no memory, no weights: the numbers depend on the architecture only).

    Columns: base side (px), token grid, depth, heads, head dim, window size, keys per softmax
    row in windowed and in global blocks at the base size, and the global block indexes.
    """
    from .encoders.specs import model_spec

    rows = []
    for name in names:
        spec = model_spec(name)  # a UserError (a ValueError) for an unknown name
        side = spec.base_hw[0]
        grid = side // spec.patch_size
        window = max(spec.windows)
        rows.append(
            {
                "model": name,
                "base_side": side,
                "grid": grid,
                "depth": spec.depth,
                "heads": spec.heads[0],
                "head_dim": spec.dims[0] // spec.heads[0],
                "window": window,
                "windowed_keys": window * window,
                "global_keys": grid * grid,
                "global_blocks": ", ".join(map(str, spec.global_blocks)),
            }
        )
    return pd.DataFrame(rows)


def family_keys_table(
    names: Sequence[str] = ("vit_b", "hf-vit_b", "sam2.1_hiera_tiny", "mobilesam"),
    sides: Sequence[int] = (256, 512, 1024, 2048),
) -> pd.DataFrame:
    """Keys per softmax row of every block of registered models, per square input side: where
    length extrapolation bites in each family.

    Read off weightless (meta-device) builds through each family's adapter
    (``block_grids(index, (side, side)).keys_per_row``), never typed again. Blocks whose kind
    (global, or the window side) and key counts agree share one row.

    Columns: ``model``, ``family``, ``blocks`` (indexes, comma separated), ``attention``
    (``"global"`` or ``"window w x w"``), ``stride_px`` (px of image per key token),
    ``base_keys`` (keys at the model's base size: the lambda's training keys for a global
    block), then one column per side, ``"{side} px"`` (missing where the family refuses that
    size). A model whose family's optional package cannot
    be imported is one row whose ``attention`` names the extra to install.
    """
    from .encoders import FAMILIES
    from .encoders.specs import MODELS, meta_model
    from .errors import UserError

    columns = [f"{side} px" for side in sides]
    rows: list[dict[str, object]] = []
    for name in names:
        if name not in MODELS:
            raise UserError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")
        fam = MODELS[name].family
        try:
            adapter = adapter_for(meta_model(name))
        except UserError:
            extra = FAMILIES[fam].extra
            rows.append(
                {
                    "model": name,
                    "family": fam,
                    "blocks": "",
                    "attention": f"package missing: pip install 'basam-lite[{extra}]'",
                    "stride_px": None,
                    "base_keys": None,
                    **dict.fromkeys(columns),
                }
            )
            continue
        hws: list[tuple[int, int] | None] = []
        for side in sides:
            try:
                hws.append(adapter.check_size(side))
            except UserError:
                hws.append(None)
        base = adapter.base_size()
        groups: dict[tuple, list[int]] = {}
        for b in adapter.attention_blocks():
            keys = tuple(
                None if hw is None else adapter.block_grids(b.index, hw).keys_per_row for hw in hws
            )
            kind = "global" if b.is_global else f"window {b.window} x {b.window}"
            grids = adapter.block_grids(b.index, base)
            stride = base[0] // grids.key[0]  # px per key token
            groups.setdefault((kind, stride, grids.keys_per_row, keys), []).append(b.index)
        for (kind, stride, base_keys, keys), indexes in groups.items():
            rows.append(
                {
                    "model": name,
                    "family": fam,
                    "blocks": ", ".join(map(str, indexes)),
                    "attention": kind,
                    "stride_px": stride,
                    "base_keys": base_keys,
                    **dict(zip(columns, keys, strict=True)),
                }
            )
    return pd.DataFrame(
        rows, columns=["model", "family", "blocks", "attention", "stride_px", "base_keys", *columns]
    )


# --- The bias-mode mask alone: how far does a content-free softmax reach? --------------------


def mask_receptive_field(
    grid_hw: tuple[int, int],
    num_heads: int,
    gains: Sequence[float],
    metric: Metric = "euclidean",
    patch: int = 16,
    query: tuple[int, int] | str | None = None,
) -> pd.DataFrame:
    r"""Locality imposed by the bias-mode mask on its own, per gain and head.

    With content-free logits (:math:`q \cdot k = 0`) the attention of query :math:`i` is
    :math:`p = \mathrm{softmax}_j(M_h(i, j))`. Returns one row per (gain, head): the slope, the
    mean attention distance :math:`\sum_j p_j \lVert p_i - p_j \rVert` in pixels, the entropy
    and the entropy over :math:`\ln N` (1 = uniform). ``query``: a (row, col) token, the grid
    centre when None, or ``"all"`` to average over every query token (rows built in chunks, so
    memory stays small on large grids). Weight-free: the numbers depend only on the grid, the
    slopes and the gain.
    """
    n_rows, n_cols = grid_hw
    pos = grid_positions(grid_hw).double()
    if query == "all":
        queries = pos
    else:
        q = (n_rows // 2, n_cols // 2) if query is None else tuple(query)  # type: ignore[arg-type]
        if len(q) != 2 or not (0 <= q[0] < n_rows and 0 <= q[1] < n_cols):
            raise ValueError(f"query {query!r} is not a (row, col) token of the {grid_hw} grid")
        queries = torch.tensor([q], dtype=torch.float64)
    slopes = alibi_slopes(num_heads).double()
    n = n_rows * n_cols
    rows = []
    for gain in gains:
        if not np.isfinite(gain) or gain < 0:
            raise ValueError(f"gains must be finite and >= 0, got {gain!r}")
        dist_sum = torch.zeros(num_heads, dtype=torch.float64)
        ent_sum = torch.zeros(num_heads, dtype=torch.float64)
        for start in range(0, len(queries), 256):
            d = pairwise_distance(queries[start : start + 256], pos, metric, cols=n_cols)
            probs = (-float(gain) * slopes[:, None, None] * d[None]).softmax(-1)  # [H, Q, N]
            dist_sum += (probs * d[None]).sum(-1).sum(-1)
            ent_sum += entropy(probs).sum(-1)
        for h in range(num_heads):
            ent = ent_sum[h].item() / len(queries)
            rows.append(
                {
                    "gain": float(gain),
                    "head": h,
                    "slope": slopes[h].item(),
                    "distance_px": dist_sum[h].item() / len(queries) * patch,
                    "entropy": ent,
                    "normalised_entropy": ent / float(np.log(n)),
                }
            )
    return pd.DataFrame(rows)


# --- Running SAM on images: features, one prompt, or a batch ---------------------------------


@contextmanager
def configured(sam: nn.Module, config: BASAMConfig | None) -> Iterator[nn.Module]:
    """``sam`` with ``config`` applied inside the ``with`` block (None: leave it as it is);
    the previous patch, or none, is restored afterwards."""
    if config is None:
        yield sam
        return
    with variant_at(sam, config, input_size(sam)):
        yield sam


@torch.no_grad()
def encoder_outputs(
    sam: nn.Module, images: Tensor, configs: dict[str, BASAMConfig | None]
) -> dict[str, Tensor]:
    """The image encoder's output for ``images [B, 3, H, W]`` (at the model's input size,
    already normalised or not: the encoder does not care) under each named config (None: the
    model as it is). Each config is applied for its own forward only."""
    outputs = {}
    for name, config in configs.items():
        with configured(sam, config):
            outputs[name] = adapter_for(sam).encode(images)
    return outputs


@torch.no_grad()
def segment(
    sam: nn.Module, image: np.ndarray, prompt: Prompt, config: BASAMConfig | None = None
) -> dict[str, object]:
    """One image and one :class:`~basam_lite.datasets.Prompt` (in the image's pixel frame)
    through the family's predictor (:func:`~basam_lite.predictor.predictor_for`) at the model's
    current input size.

    Returns ``features`` (the encoder output ``[1, C, rows, cols]``), ``logits`` (``(H, W)``
    mask logits at the image's size), ``mask`` (``logits > sam.mask_threshold``) and ``score``
    (the IoU head's prediction). ``config`` is applied for this call only.
    """
    from .predictor import predictor_for

    with configured(sam, config):
        predictor = predictor_for(sam)
        predictor.set_image(image)
        logits, scores, _ = predictor.predict(
            **prompt.predictor_kwargs(),
            multimask_output=False,
            return_logits=True,
        )
        features = _image_features(predictor).clone()
    threshold = getattr(predictor, "mask_threshold", getattr(sam, "mask_threshold", 0.0))
    return {
        "features": features,
        "logits": logits[0],
        "mask": logits[0] > threshold,
        "score": float(scores[0]),
    }


def _image_features(predictor: object) -> Tensor:
    """The image embedding ``[1, C, rows, cols]`` a predictor's ``set_image`` computed: SAM 1's
    and MobileSAM's ``features``, SAM 2's ``_features["image_embed"]`` (the stride-16 level the
    mask decoder attends to)."""
    if hasattr(predictor, "features"):
        return predictor.features
    return predictor._features["image_embed"]


def official_batch_prompts(prompts: Sequence[Prompt]) -> list[dict[str, Tensor]]:
    """The official BA-SAM code's batch defect, reproduced for teaching: the clicks of the
    whole batch are reshaped into one group, so image i's record holds *every* image's click.

    Same record format as :func:`basam_lite.datasets.batch_prompts` (which is the correct
    version: image i's record holds image i's prompt only). Points only.
    """
    from .datasets import batch_prompts

    own = batch_prompts(list(prompts))
    if any("point_coords" not in r for r in own):
        raise ValueError("official_batch_prompts reproduces the click defect: give point prompts")
    coords = torch.cat([r["point_coords"] for r in own], dim=1)  # (1, B * N, 2)
    labels = torch.cat([r["point_labels"] for r in own], dim=1)
    return [{"point_coords": coords, "point_labels": labels} for _ in own]


@torch.no_grad()
def segment_batch(
    sam: nn.Module, images: Sequence[np.ndarray], records: Sequence[dict[str, Tensor]]
) -> list[dict[str, Tensor]]:
    """``Sam.forward`` on a batch: image i with prompt record i (single-mask output).

    Images must already be ``(H, W, 3)`` uint8 at the model's input size, so the prompts need
    no rescaling (render procedural scenes at ``input_size(sam)``). Returns SAM's per-image
    dicts (``masks``, ``iou_predictions``, ``low_res_logits``).
    """
    from .predictor import to_rgb_uint8

    if len(images) != len(records):
        raise ValueError(f"got {len(images)} images but {len(records)} prompt records")
    hw = input_size(sam)
    batch = []
    for image, rec in zip(images, records, strict=True):
        rgb = to_rgb_uint8(image)
        if rgb.shape[:2] != hw:
            raise ValueError(
                f"image of {rgb.shape[0]}x{rgb.shape[1]} px: segment_batch needs images at the "
                f"model's input size {hw[0]}x{hw[1]} (render or resize them first)"
            )
        tensor = torch.as_tensor(rgb).permute(2, 0, 1).float()
        batch.append({"image": tensor, "original_size": hw, **rec})
    return sam(batch, multimask_output=False)


@torch.no_grad()
def perturb_rel_pos(model: nn.Module, std: float = 0.3, seed: int = 0) -> None:
    """Overwrite every rel-pos table of the encoder with seeded Gaussian values (in place).

    A stand-in for tables that fine-tuning moved away from zero, used to show what happens when
    they are dropped; not part of any BA-SAM variant.
    """
    g = torch.Generator().manual_seed(seed)
    adapter = adapter_for(model)
    for block in adapter.attention_blocks():
        for table in adapter.position_tables(block).values():
            table.copy_(std * torch.randn(table.shape, generator=g).to(table))

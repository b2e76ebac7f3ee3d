"""Short training runs that ask why the tiny SAMs stop short of 0.85 box IoU.

Each study trains tiny-vanilla's setup (plain attention, seed 0, one torch thread unless
``--threads`` says otherwise) with a few
``TrainConfig`` fields and/or ``TinySpec`` fields changed, for ``--steps`` steps, then scores box
and centre-point IoU on the first 100 held-out standard scenes
(``basam_lite.evaluation.evaluate(n=100)``). Runs
are deterministic: rerunning a study reproduces its numbers exactly. Two can run at once on two
cores; each appends one JSON line to ``--out``.

    python scripts/recipe_study.py --list
    python scripts/recipe_study.py old-recipe --steps 1000
    python scripts/recipe_study.py --table            # every result collected so far
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch

import basam_lite.train as training
from basam_lite.evaluation import evaluation_table, mean_ious
from basam_lite.models import TinySpec

# The first tiny SAM (3.8 M parameters), the base every study's "spec" changes are applied to,
# so that a study keeps its meaning when models.TINY moves on. Its mask decoder is 128 wide, so
# its per-pixel mask features have 128 / 8 = 16 channels.
FIRST_TINY = TinySpec(
    embed_dim=192, num_heads=6, prompt_dim=128, decoder_mlp_dim=512, decoder_heads=4
)

# The recipe before the current TrainConfig defaults (learning rate 1e-3, five prompts per scene
# down to objects of 0.2% of the image).
OLD = {"lr": 1e-3, "masks_per_image": 5, "min_object_area": 0.002}

STUDIES: dict[str, dict[str, dict[str, object]]] = {
    "old-recipe": {"train": OLD},
    "old-recipe-lr-2e-3": {"train": {**OLD, "lr": 2e-3, "warmup": 200}},
    "fewer-larger-targets": {"train": {**OLD, "masks_per_image": 3, "min_object_area": 0.01}},
    "fewest-largest-targets": {"train": {**OLD, "masks_per_image": 2, "min_object_area": 0.02}},
    "recipe": {"train": {}},
    "recipe-lr-2.5e-4": {"train": {"lr": 2.5e-4}},
    "old-recipe-wide-encoder": {
        "train": OLD,
        "spec": {"embed_dim": 256, "num_heads": 8, "depth": 8, "global_attn_indexes": (3, 7)},
    },
    "old-recipe-wide-decoder": {
        "train": OLD,
        "spec": {"prompt_dim": 256, "decoder_mlp_dim": 1024, "decoder_heads": 8},
    },
    # Same scenes per second, spent differently: twice the updates on half the batch (compare
    # --steps 2000 with recipe --steps 1000), or more prompts per encoder pass.
    "batch-4": {"train": {"batch_size": 4}},
    "six-prompts-per-scene": {"train": {"masks_per_image": 6}},
    # Loss weights: object pixels weighted up to 4x in the BCE (thin targets have few of them),
    # or a lighter IoU-head term.
    "object-weighted-bce": {"train": {"pos_weight_max": 4.0}},
    "iou-loss-0.1": {"train": {"iou_loss_weight": 0.1}},
    # Wider decoders that fit the 10 MB cap in float16.
    "decoder-192": {"train": {}, "spec": {"prompt_dim": 192, "decoder_heads": 6}},
    # 32-channel mask features, paid for by a narrower encoder (4.88 M parameters, 9.8 MB in fp16).
    "decoder-256-encoder-160": {
        "train": {},
        "spec": {
            "prompt_dim": 256,
            "decoder_mlp_dim": 256,
            "decoder_heads": 8,
            "embed_dim": 160,
            "num_heads": 5,
        },
    },
    # A token grid twice as fine (8 px patches: 32 x 32 tokens at 256 px, windows of the same
    # quarter side), to ask whether the 16 px grid is what holds thin strokes and rings back.
    # Diagnostic only: it makes every encoder pass about four times dearer, and the sweep's
    # 1024 px inputs 16 384 tokens long.
    "patch-8": {"train": {}, "spec": {"patch_size": 8, "window_size": 8}},
}


def study_spec(name: str) -> TinySpec:
    """The ``TinySpec`` of study ``name``: ``FIRST_TINY`` with the study's changes."""
    return dataclasses.replace(FIRST_TINY, **STUDIES[name].get("spec", {}))


def study_config(
    name: str, steps: int, threads: int = 1, decoder_batched: bool = True
) -> training.TrainConfig:
    """The ``TrainConfig`` of study ``name``: with ``threads=2`` and the same ``steps`` it is
    the config ``python -m basam_lite train --variant vanilla`` runs for that model spec
    (``decoder_batched=False``: with ``--per-prompt-decoder``)."""
    return training.TrainConfig(
        threads=threads,
        steps=steps,
        spec=study_spec(name),
        decoder_batched=decoder_batched,
        **STUDIES[name]["train"],  # type: ignore[arg-type]
    )


def score(model: torch.nn.Module) -> dict[str, float]:
    """Box and centre-point IoU on the first 100 held-out standard scenes (one thread), and the
    box IoU of the two hardest target shapes, strokes and rings."""
    with training.torch_threads(1):
        table = evaluation_table(model, n=100, kinds=("box", "center"))
    by_shape = table.groupby("shape")["iou_box"].mean()
    return {
        **mean_ious(table),
        "box_strokes": float(by_shape["stroke"]),
        "box_rings": float(by_shape["ring"]),
    }


def run_study(
    name: str, steps: int, threads: int = 1, decoder_batched: bool = True
) -> dict[str, object]:
    """Train study ``name`` for ``steps`` steps and score it; returns one result row."""
    study = STUDIES[name]
    cfg = study_config(name, steps, threads, decoder_batched)
    result = training.train(cfg, progress=True)
    scores = score(result.model)
    return {
        "study": name,
        "steps": steps,
        "threads": threads,
        "decoder": "batched" if decoder_batched else "per-prompt",
        "changes": json.dumps({**study["train"], **study.get("spec", {})}),
        "params_M": round(cfg.spec.parameter_count() / 1e6, 2),
        "s_per_step": round(result.seconds / max(1, result.step), 3),
        "box": round(scores["iou_box"], 3),
        "centre": round(scores["iou_center"], 3),
        "box_strokes": round(scores["box_strokes"], 3),
        "box_rings": round(scores["box_rings"], 3),
        "finished": time.strftime("%Y-%m-%d %H:%M"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("study", nargs="?", choices=sorted(STUDIES))
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1, help="torch threads while training")
    p.add_argument(
        "--per-prompt-decoder",
        action="store_true",
        help="decode prompt by prompt, as every study before patch-8 was run (reproduces their "
        "numbers exactly; batched decoding agrees up to float rounding's drift)",
    )
    p.add_argument("--out", type=Path, default=Path("runs/recipe_study.jsonl"))
    p.add_argument("--list", action="store_true", help="print the studies and their changes")
    p.add_argument("--table", action="store_true", help="print the results collected in --out")
    args = p.parse_args(argv)
    if args.list:
        for name, study in STUDIES.items():
            print(f"{name:26s} {json.dumps(study)}")
        return 0
    if args.table:
        if not args.out.exists():
            print(f"no results yet in {args.out}: run a study first", file=sys.stderr)
            return 1
        rows = [json.loads(line) for line in args.out.read_text().splitlines() if line.strip()]
        print(pd.DataFrame(rows).drop(columns="finished").to_string(index=False))
        return 0
    if args.study is None:
        p.error("name a study (see --list), or pass --list or --table")
    row = run_study(args.study, args.steps, args.threads, not args.per_prompt_decoder)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

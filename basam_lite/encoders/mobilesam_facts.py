"""What changes in MobileSAM with the input size: windows, keys per row, lambda, reach.

For each TinyViT attention block at each input size: the stage grid, the window, the keys each
softmax row sees (always ``w^2``), the number of windows, the project's lambda (1) and the
official code's, and how much of the image one window and the convolutions reach. Run
``python -m basam_lite.encoders.mobilesam_facts`` for the table (random weights are enough:
nothing here depends on them).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

from torch import nn

from ..errors import UserError
from .mobilesam_build import stage_grids, tiny_vit_blocks, tiny_vit_of
from .mobilesam_official import official_mobile_scale


def conv_reach(encoder: nn.Module) -> int:
    """Receptive field in pixels of TinyViT's convolutions alone (stem, MBConv, every block's
    3x3 ``local_conv``, the merges), walked in forward order: ``rf += (k - 1) * jump`` and
    ``jump *= stride`` for each convolution (the neck's included). Fixed in pixels at every
    input size."""
    rf, jump = 1, 1
    for module in tiny_vit_of(encoder).modules():
        if isinstance(module, nn.Conv2d):
            k, s = module.kernel_size[0], module.stride[0]
            rf += (k - 1) * jump
            jump *= s
    return rf


def window_rows(model: nn.Module, sizes: Sequence[int]) -> list[dict[str, object]]:
    """One row per (size, attention block): what a softmax row sees and how far it reaches."""
    enc = tiny_vit_of(model)
    blocks = tiny_vit_blocks(enc)
    stage_of = [i for i, layer in enumerate(enc.layers) if i > 0 for _ in layer.blocks]
    rows = []
    for side in sizes:
        grids = stage_grids(enc, (side, side))
        try:
            official = round(official_mobile_scale((side, side)), 4)
        except UserError:
            official = None
        for index, (blk, stage) in enumerate(zip(blocks, stage_of, strict=True)):
            grid = grids[stage]
            w = blk.window_size
            stride = side // grid[0]
            windows = math.ceil(grid[0] / w) * math.ceil(grid[1] / w)
            rows.append(
                {
                    "size": side,
                    "block": index,
                    "stage": stage,
                    "grid": f"{grid[0]}x{grid[1]}",
                    "window": w,
                    "keys_per_row": w * w,
                    "windows": windows,
                    "lambda_log_ratio": math.log(w * w) / math.log(w * w),
                    "lambda_official": official,
                    "window_px": w * stride,
                    "window_share": round(w * stride / side, 4),
                }
            )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    import pandas as pd

    from .mobilesam_build import build_mobilesam

    sizes = [int(a) for a in (argv if argv is not None else sys.argv[1:])] or [
        256,
        512,
        1024,
        2048,
    ]
    sam = build_mobilesam("mobilesam")
    reach = conv_reach(sam)
    df = pd.DataFrame(window_rows(sam, sizes))
    first = df.groupby("size").first()
    print(df.to_string(index=False))
    print(
        f"\nconvolutions' receptive field: {reach} px "
        + ", ".join(f"({reach / s:.0%} of a {s} px side)" for s in first.index)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

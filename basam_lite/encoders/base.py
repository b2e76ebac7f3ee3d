"""The encoder interface: what the project asks of one member of the SAM family.

Everything above the core (patching, input sizes, capture, the predictor, analysis, sweeps) talks
to a model through an :class:`EncoderAdapter` (one subclass per family, registered in
:mod:`basam_lite.encoders`), never through the family's own classes. An adapter is a thin view
bound to one model: building one is cheap and it holds no state of its own (the patch state lives
on the modules, :mod:`basam_lite.patch_state`).

The BA-SAM attention itself is shared: a family's patched attention module computes its own q, k,
v and position terms and hands them to :func:`basam_lite.encoders.attend.basam_attend`, which
applies lambda, the mask, the official coefficient and the capture hook, and runs
:func:`basam_lite.attention.attend`.

Words used throughout:

- *block*: one attention layer of the image encoder, numbered 0.. in forward order
  (:class:`AttentionBlock`);
- *global block*: a block whose every query sees every token of its grid, so the number of keys
  per softmax row grows with the input size (``window == 0``); a *windowed* block sees a fixed
  ``window x window`` window at every size;
- *grid*: a (rows, cols) token grid. A block's *image grid* is the grid of its tokens over the
  whole image; its *call grid* is the grid of one attention call (the window for windowed
  blocks, the image grid for global ones). Query and key grids differ where a block pools its
  queries (SAM 2's stage transitions).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
from torch import Tensor, nn

from ..sizes import Size, parse_size

if TYPE_CHECKING:
    from ..config import BASAMConfig

Grid = tuple[int, int]


@dataclass(frozen=True)
class AttentionBlock:
    """One attention block of an image encoder.

    Attributes:
        index: the block's number, 0.. in forward order over the whole encoder (all stages).
        block: the transformer block holding it (capture watches its input).
        attn: the attention module BA-SAM patches (its class is swapped for the family's
            patched subclass; its parameters stay).
        heads: attention heads.
        dim: the block's channel width (its input tokens' size).
        window: side of its attention window in key tokens, the same at every input size; 0 for
            a global block.
    """

    index: int
    block: nn.Module
    attn: nn.Module
    heads: int
    dim: int
    window: int

    @property
    def is_global(self) -> bool:
        """Every query sees the whole grid (the keys per row grow with the input size)."""
        return self.window == 0


@dataclass(frozen=True)
class BlockGrids:
    """A block's token grids over the whole image at one input size.

    Attributes:
        query: (rows, cols) of the block's queries (its output grid).
        key: (rows, cols) of its keys (its input grid; larger than ``query`` in a pooling block).
        window: the block's key window side (0: global).
        query_window: the query window side (``window`` unless the block pools its queries).
    """

    query: Grid
    key: Grid
    window: int = 0
    query_window: int = 0

    @property
    def keys_per_row(self) -> int:
        """Keys one softmax row sees: the whole key grid (global) or one window."""
        if self.window == 0:
            return self.key[0] * self.key[1]
        return self.window * self.window


@dataclass(frozen=True)
class PositionTerms:
    r"""A family's own additive position terms for one attention call, before BA-SAM's.

    The logit of query i and key j gets ``rel_h[i, row_j] + rel_w[i, col_j] + table[i, j]``
    (each term optional), times the official preset's coefficient when it has one.

    Attributes:
        rel_h: ``[B, H, Nq, key rows]`` SAM's decomposed height term (MViTv2 rel-pos), or None.
        rel_w: ``[B, H, Nq, key cols]`` its width term, or None.
        table: ``[B or 1, H, Nq, Nk]`` a dense term (MobileSAM's learned per-head bias table,
            gathered for the window), or None.
        coefficient: whether the official preset's learned coefficient multiplies these terms
            in this call (MobileSAM: in training only, as the official code).
        rel_rows: ``rel_h`` and ``rel_w`` on demand instead (``rel_rows(first, last)``: the
            terms of the queries in grid rows ``first .. last - 1``); see
            :attr:`basam_lite.attention.AttentionBias.rel_rows`.
    """

    rel_h: Tensor | None = None
    rel_w: Tensor | None = None
    table: Tensor | None = None
    coefficient: bool = True
    rel_rows: Callable[[int, int], tuple[Tensor, Tensor]] | None = None


class Predictor(Protocol):
    """What :func:`basam_lite.predictor.predictor_for` returns for any family: SAM's predictor
    interface, in the pixel coordinates of the image given to ``set_image``."""

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None: ...

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def reset_image(self) -> None: ...


class EncoderAdapter(ABC):
    """One family's answers to what the project asks of a model, bound to one model.

    Construct it with the thing a user holds: the whole model, its image encoder, or the family's
    predictor (:attr:`model`, :attr:`encoder`, :attr:`predictor` say which parts exist).
    :meth:`accepts` says whether a target is this family's; :func:`basam_lite.encoders.adapter_for`
    picks the adapter.

    Subclasses set :attr:`family` and :attr:`checkpoint_format` and implement the abstract
    methods; the others have defaults that fit most families.
    """

    family: ClassVar[str]
    """The registry key (``"segment_anything"``, ``"hf"``, ``"sam2"``, ``"mobilesam"``)."""
    checkpoint_format: ClassVar[str]
    """How the family's checkpoints are stored, in words (e.g. ``"segment_anything state_dict
    (.pth)"``): what :class:`~basam_lite.encoders.specs.ModelSpec` reports."""

    model: nn.Module | None
    """The whole model (encoder, prompt encoder, decoder), or None when only an encoder was
    given."""
    encoder: nn.Module
    """The image encoder BA-SAM patches."""
    predictor: Any | None
    """The family's predictor object when that is what was given, else None."""

    def __init__(self, target: object) -> None:
        self.model, self.encoder, self.predictor = self.unwrap(target)

    # ------------------------------------------------------------ recognising a target

    @classmethod
    @abstractmethod
    def accepts(cls, target: object) -> bool:
        """Whether ``target`` (a model, an encoder or a predictor) is this family's."""

    @classmethod
    @abstractmethod
    def unwrap(cls, target: object) -> tuple[nn.Module | None, nn.Module, Any | None]:
        """(whole model or None, image encoder, predictor or None) of an accepted target."""

    # ------------------------------------------------------------ facts about the encoder

    @abstractmethod
    def attention_blocks(self) -> list[AttentionBlock]:
        """Every attention block of the encoder, in forward order (index = position)."""

    @abstractmethod
    def patch_size(self) -> int:
        """Pixels per token of the encoder's first token grid (the patch embedding's stride)."""

    @abstractmethod
    def base_size(self) -> Grid:
        """The (height, width) in pixels the encoder was built (and trained) for; unchanged by
        :meth:`resize`."""

    @abstractmethod
    def input_size(self) -> Grid:
        """The (height, width) in pixels the model runs at now."""

    @abstractmethod
    def block_grids(self, index: int, input_hw: Grid) -> BlockGrids:
        """Block ``index``'s image-level query and key grids at input size ``input_hw``."""

    def block_input_grid(self, index: int, args: tuple) -> Grid:
        """The image-level query grid of block ``index`` from the positional ``args`` its
        ``forward`` received (capture reads the size a forward really ran at). The default
        takes ``args[0]`` as ``[B, rows, cols, C]``, as SAM 1 and Hiera blocks get it."""
        x = args[0]
        return int(x.shape[1]), int(x.shape[2])

    def check_size(self, size: Size) -> Grid:
        """``size`` as a (height, width) this family can run at, or a
        :class:`~basam_lite.errors.UserError` in one line saying which sizes it takes. The
        default: multiples of :meth:`patch_size`."""
        return parse_size(size, self.patch_size())

    def size_rule(self) -> str:
        """The sizes :meth:`check_size` takes, in words (for docs and tables)."""
        return f"any height and width that are multiples of {self.patch_size()} px"

    # ------------------------------------------------------------ patching

    @abstractmethod
    def attention_class(self, block: AttentionBlock) -> type[nn.Module]:
        """The patched subclass of ``block.attn``'s class (module level, so patched models
        pickle): its ``forward`` computes q, k, v and :class:`PositionTerms` and calls
        :func:`basam_lite.encoders.attend.basam_attend`."""

    def position_tables(self, block: AttentionBlock) -> dict[str, nn.Parameter]:
        """The parameters that hold the block's own position terms (SAM's ``rel_pos_h`` and
        ``rel_pos_w``, MobileSAM's bias table), by name; empty when it has none. The official
        preset multiplies their terms by a learned coefficient and zeroes them
        (``drop_rel_pos``; :func:`basam_lite.remove_basam` restores them)."""
        return {}

    @abstractmethod
    def encoder_class(self) -> type[nn.Module] | None:
        """The subclass the encoder gets while it is patched or away from its base size (it
        reads :class:`~basam_lite.patch_state.EncoderPatch` at each forward: the input size,
        ``use_abs_pos``), or None when the family's own encoder needs no change."""

    drops_position_tables: ClassVar[bool] = True
    """Whether a config's ``drop_rel_pos`` zeroes :meth:`position_tables` (MobileSAM: False,
    the official code keeps TinyViT's loaded bias table)."""

    def check_config_at(self, config: BASAMConfig, hw: Grid) -> None:
        """Refuse (ValueError, one line) a config that cannot run at input size ``hw``. The
        default: the ``"official"`` scale where a global block would see fewer keys than at
        training (the official rule is undefined there)."""
        if config.scale != "official":
            return
        from ..scaling import attention_scale

        base = self.base_size()
        for index in self.global_blocks():
            train_keys = config.train_keys or self.block_grids(index, base).keys_per_row
            attention_scale(self.block_grids(index, hw).keys_per_row, train_keys, "official")

    def uses_abs_pos(self) -> bool:
        """Whether the encoder has an absolute position embedding that a config's
        ``use_abs_pos=False`` can leave out."""
        return False

    # ------------------------------------------------------------ input size

    @abstractmethod
    def resize(self, hw: Grid) -> None:
        """Make the whole model run at ``hw`` (already checked): the encoder's size record, its
        position embeddings, the prompt encoder's grids and pre/post-processing. ``hw`` equal to
        :meth:`base_size` must restore the stock behaviour exactly (stock classes back where
        nothing else needs ours)."""

    @abstractmethod
    def refresh_predictor(self) -> None:
        """Bring :attr:`predictor` (when one was given) in line with the model's input size
        (drops its image); nothing when :attr:`predictor` is None."""

    # ------------------------------------------------------------ running

    @abstractmethod
    def preprocess(self, images: Tensor) -> Tensor:
        """``[B, 3, h, w]`` images in 0-255, already resized to fit :meth:`input_size` ->
        the normalised, padded ``[B, 3, H, W]`` the encoder takes."""

    @abstractmethod
    def encode(self, pixels: Tensor) -> Tensor:
        """Run the image encoder on :meth:`preprocess`'s output; returns what the family's mask
        decoder takes (``[B, C, h, w]`` for SAM 1)."""

    @abstractmethod
    def first_grid(self, pixels: Tensor) -> Grid:
        """The (rows, cols) token grid the encoder's patch embedding (stem) makes of ``pixels
        [B, 3, H, W]``, measured by running it (no size rule assumed)."""

    @abstractmethod
    def make_predictor(self) -> Predictor:
        """A predictor on :attr:`model` that follows its input size (box and point prompts)."""

    # ------------------------------------------------------------ decoding (prompts -> masks)

    @abstractmethod
    def embed_prompts(
        self, points: tuple[Tensor, Tensor] | None, boxes: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """The family's prompt encoder on N prompts of one structure, as its own predictor
        calls it (no mask prompt).

        Args:
            points: ``(coords [N, P, 2], labels [N, P])``: (x, y) in the pixels of the model's
                input (after its resize), labels 1 (object) or 0 (background); or None.
            boxes: ``[N, 4]`` (x0, y0, x1, y1) in the same pixels, or None.

        Returns:
            sparse ``[N, T, C]`` prompt tokens (T depends on the family: SAM 1 adds a padding
            point when there is no box, SAM 2 always) and dense ``[N, C, h, w]``, the learned
            "no mask" embedding on the decoder's grid.
        """

    @abstractmethod
    def image_rows(self, features: Any, index: Tensor) -> Any:
        """Rows ``index [N]`` (image numbers, repeats allowed) of :meth:`encode`'s output for a
        batch: the same structure with batch N."""

    @abstractmethod
    def decode_masks(
        self, features: Any, sparse: Tensor, dense: Tensor, multimask: bool = False
    ) -> tuple[Tensor, Tensor]:
        """The family's mask decoder on N prompts.

        Args:
            features: :meth:`encode`'s output with either N rows (row n is prompt n's image,
                :meth:`image_rows`) or one row shared by all prompts (the family's own
                decoder call, as its predictor makes it).
            sparse: ``[N, T, C]`` and dense ``[N, C, h, w]`` from :meth:`embed_prompts`.
            multimask: the decoder's three masks (``multimask_output=True``) or its single one.

        Returns:
            low-resolution logits ``[N, K, 4h, 4w]`` and predicted IoU ``[N, K]`` (K = 3 or 1),
            exactly what the family's predictor computes before upsampling.
        """

    # ------------------------------------------------------------ derived

    def global_blocks(self) -> list[int]:
        """Indexes of the global blocks."""
        return [b.index for b in self.attention_blocks() if b.is_global]

    def watch_block_input(self, index: int, callback: Callable[[Grid], None]) -> Any:
        """Call ``callback(image grid)`` before each forward of block ``index``; returns a handle
        with ``.remove()``."""
        block = self.attention_blocks()[index]

        def hook(module: nn.Module, args: tuple) -> None:
            callback(self.block_input_grid(index, args))

        return block.block.register_forward_pre_hook(hook)

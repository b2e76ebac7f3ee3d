"""The unit every dataset yields: one image, one binary object mask, a stable name."""

from __future__ import annotations

import warnings
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np

from ..errors import UserError

Problem = tuple[str, str]
"""A bad item found when a dataset opens: (file or item name, reason)."""

MAX_LISTED = 10


def report_problems(problems: Sequence[Problem], on_error: str, what: str) -> None:
    """Raise one :class:`UserError` listing every problem (``on_error="raise"``), or warn once
    per problem (``"skip"``: the caller leaves those items out and keeps the list)."""
    if not problems:
        return
    if on_error == "skip":
        for item, reason in problems:
            warnings.warn(f"{what}: skipping {item}: {reason}", UserWarning, stacklevel=4)
        return
    lines = [f"{item}: {reason}" for item, reason in problems]
    listed = "\n  ".join(lines[:MAX_LISTED])
    more = f"\n  ... and {len(lines) - MAX_LISTED} more" if len(lines) > MAX_LISTED else ""
    raise UserError(
        f"{what}: {len(lines)} problem(s):\n  {listed}{more}\n"
        "Fix or remove these files, or open the dataset with on_error='skip' to leave them out "
        "(each is listed by its problems() method)."
    )


@dataclass(eq=False)  # arrays inside: compare fields explicitly
class Sample:
    """One image with the mask of one object.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        mask: (H, W) bool, True on the object. Same H, W as ``image``.
        name: unique, stable identifier inside its dataset (used as a table key and to seed
            per-sample randomness, so it must not depend on the dataset's order or length).
        meta: free-form details (source paths, split, shape kind, ...). JSON-friendly values.
    """

    image: np.ndarray
    mask: np.ndarray
    name: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Catch loader bugs at the source rather than as a shape error deep inside a model.
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(
                f"Sample {self.name!r}: image must be (H, W, 3) uint8 RGB, got shape "
                f"{self.image.shape} dtype {self.image.dtype}"
            )
        if self.mask.dtype != np.bool_ or self.mask.shape != self.image.shape[:2]:
            raise ValueError(
                f"Sample {self.name!r}: mask must be (H, W) bool matching the image "
                f"{self.image.shape[:2]}, got shape {self.mask.shape} dtype {self.mask.dtype}"
            )

    @property
    def hw(self) -> tuple[int, int]:
        """(H, W) of the image and mask."""
        return int(self.mask.shape[0]), int(self.mask.shape[1])


class SampleSequence(Sequence[Sample]):
    """A dataset: ``len`` and ``sample(i)`` given, indexing and slicing (a list) follow."""

    @abstractmethod
    def sample(self, index: int) -> Sample: ...

    def problems(self) -> list[Problem]:
        """(item, reason) for every bad item left out when the dataset opened (none here)."""
        return []

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> list[Sample]: ...

    def __getitem__(self, index: int | slice) -> Sample | list[Sample]:
        if isinstance(index, slice):
            return [self.sample(i) for i in range(*index.indices(len(self)))]
        return self.sample(index)

"""Checkers for notebook 05 (attention maps across resolutions)."""

from __future__ import annotations

import math

from . import Verdict, close, verdict


def check_full_map_bytes(answer: object) -> Verdict:
    """Bytes of one global block's full fp32 attention probabilities, tiny model, 1024 px."""
    n = (1024 // 16) ** 2
    expected = 6 * n * n * 4
    return verdict(
        close(answer, expected, rel=1e-6),
        "about 0.4 GB for one block of one image: capture only the query rows you will show.",
        "the full map has heads x N x N numbers (the tiny model has 6 heads; N = tokens at "
        "1024 px with 16 px patches), 4 bytes each in fp32. Answer in bytes.",
    )


def check_uniform_entropy(answer: object) -> Verdict:
    """Entropy (nats) of uniform attention in a global block of the tiny model at 512 px."""
    expected = math.log((512 // 16) ** 2)
    return verdict(
        close(answer, expected, rel=1e-4),
        "ln N: the ceiling every entropy curve of a global block approaches as attention fades.",
        "uniform attention over N keys gives each key 1/N; H = -sum p ln p. How many keys does "
        "a global block see at 512 px? Use natural logarithms (nats).",
    )


def check_self_weight(answer: object) -> Verdict:
    """Weight a centre query gives itself on a 3 x 3 grid under the mask alone (slope 1)."""
    expected = 1.0 / (1.0 + 4.0 * math.exp(-1.0) + 4.0 * math.exp(-math.sqrt(2.0)))
    return verdict(
        close(answer, expected, rel=1e-3),
        "the mask alone already keeps about 29% of the weight on the query itself.",
        "with q.k = 0 the logits are M = -distance (Euclidean): 0 for the query itself, -1 for "
        "its 4 edge neighbours, -sqrt(2) for its 4 corner neighbours. Apply a softmax.",
    )

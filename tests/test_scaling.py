"""attention_scale against the lambda table of basam-method.md, written out."""

from __future__ import annotations

import math

import pytest

from basam_lite import attention_scale

# side (px) -> exact lambda = ln n / ln 4096 with n = (side / 16)^2, and the official value
TABLE = {
    512: (0.8333, None),
    768: (0.9308, None),
    1024: (1.0, 1.0),
    1536: (1.0975, 1.0),
    2048: (1.1667, 1.1667),
    4096: (1.3333, 1.3333),
}


@pytest.mark.parametrize("side", sorted(TABLE))
def test_log_ratio_matches_table(side: int) -> None:
    n = (side // 16) ** 2
    assert attention_scale(n) == pytest.approx(TABLE[side][0], abs=5e-5)
    assert attention_scale(n) == pytest.approx(math.log(n) / math.log(4096), rel=1e-12)


@pytest.mark.parametrize("side", sorted(TABLE))
def test_official_rule_matches_table(side: int) -> None:
    n = (side // 16) ** 2
    expected = TABLE[side][1]
    if expected is None:
        with pytest.raises(ValueError, match="official BA-SAM scale cannot run"):
            attention_scale(n, mode="official")
    else:
        assert attention_scale(n, mode="official") == pytest.approx(expected, abs=5e-5)


def test_official_floor_at_1536_is_integer_rule() -> None:
    # L = floor(sqrt(9216 / 4096)) = floor(1.5) = 1, so lambda = log_4096(4096) = 1.
    assert attention_scale(9216, mode="official") == 1.0
    assert attention_scale(9216, mode="log_ratio") > 1.09


def test_none_mode_and_training_length() -> None:
    assert attention_scale(12345, mode="none") == 1.0
    assert attention_scale(256, train_keys=256) == 1.0
    assert attention_scale(1024, train_keys=256) == pytest.approx(1.25)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_keys": 0}, "num_keys must be a positive integer"),
        ({"num_keys": 10.5}, "num_keys must be a positive integer"),
        ({"num_keys": 10, "train_keys": 1}, "train_keys must be an integer >= 2"),
        ({"num_keys": 10, "mode": "log"}, "unknown scale mode 'log'"),
    ],
)
def test_bad_input(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        attention_scale(**kwargs)

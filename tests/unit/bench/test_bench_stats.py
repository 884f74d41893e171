"""Percentiles and the spread summary of step times; ratios with missing values."""

from __future__ import annotations

import numpy as np
import pytest

from tensorfab.bench.stats import percentile, ratio, spread


def test_percentile_interpolates_like_numpy() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]  # unsorted on purpose
    assert percentile(values, 50) == 3.0
    assert percentile(values, 10) == pytest.approx(1.4)  # rank 0.4 between 1 and 2
    assert percentile(values, 90) == pytest.approx(4.6)
    rng = np.random.default_rng(0)
    sample = rng.exponential(size=37).tolist()
    for q in (0, 12.5, 50, 75, 99, 100):
        assert percentile(sample, q) == pytest.approx(float(np.percentile(sample, q)))


def test_spread_summary() -> None:
    s = spread([1.0, 2.0, 3.0, 4.0, 5.0])
    assert s["n"] == 5
    assert s["median"] == 3.0
    assert s["iqr"] == pytest.approx(2.0)  # p75 4 - p25 2
    assert s["p10"] <= s["median"] <= s["p90"] <= s["p99"] <= s["max"]
    assert (s["min"], s["max"], s["mean"]) == (1.0, 5.0, 3.0)


def test_one_value_has_no_spread() -> None:
    s = spread([0.25])
    assert s["median"] == s["p10"] == s["p90"] == 0.25
    assert s["iqr"] == 0.0


def test_percentile_errors_say_why() -> None:
    with pytest.raises(ValueError, match="percentile of no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="within 0-100, not 101"):
        percentile([1.0], 101)


def test_ratio_handles_missing_values() -> None:
    assert ratio(3.0, 4.0) == 0.75  # below 1 is reported as it is
    assert ratio(None, 4.0) is None
    assert ratio(3.0, None) is None
    assert ratio(3.0, 0.0) is None

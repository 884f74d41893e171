"""Summaries of repeated timings: median, percentiles and spread.

Step times are skewed (a slow step now and then: a Python GC pass, another process on the
core), so a benchmark reports the median and a spread (p10/p90 and the interquartile range)
rather than a mean that one outlier can move.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), numpy's linear interpolation, with clear errors."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be within 0-100, not {q}")
    return float(np.percentile(values, q))


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, p10, p90, p99, interquartile range, mean, min and max of ``values``."""
    return {
        "n": len(values),
        "median": percentile(values, 50),
        "p10": percentile(values, 10),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "iqr": percentile(values, 75) - percentile(values, 25),
        "mean": sum(values) / len(values),
        "min": min(values),
        "max": max(values),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, None when either is missing or the denominator is 0."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator

"""The metrics stage's gauges, on rows as the SQL hands them over (udfs/metrics.py)."""

from __future__ import annotations

import pytest

from fishweight.udfs.metrics import SpeciesMetrics


def test_the_running_window_gauges_follow_the_newest_window_not_the_latest_arrival():
    # Counters are not read by the gauge rule: a species' gauges alone. Each call is one
    # second's joined records of one window: how many, their errors' sum, and the change
    # rule's count over the threshold as of the last of them.
    metrics = SpeciesMetrics(joined=None, windows=None, retrains=None)
    assert (metrics.window_ppm, metrics.change_over) == (-1, -1)
    metrics.running_window(120_000, 2, 0.5, 1.0)
    assert (metrics.window_ppm, metrics.change_over) == (250_000, 1)
    # A record of the previous window joins late (another partition, another pace).
    metrics.running_window(60_000, 1, 0.9, 4.0)
    assert (metrics.window_ppm, metrics.change_over) == (250_000, 1)
    # The window's average runs over all its records so far: (0.5 + 0.1) / 4.
    metrics.running_window(120_000, 2, 0.1, 0.0)
    assert (metrics.window_ppm, metrics.change_over) == (150_000, 0)
    metrics.running_window(180_000, 1, 0.05, float("nan"))
    assert (metrics.window_start_ms, metrics.window_ppm, metrics.change_over) == (
        180_000, 50_000, 0)
    assert metrics.window_count == 1 and metrics.window_error_sum == pytest.approx(0.05)

"""The metrics stage's gauges, on rows as the SQL hands them over (udfs/metrics.py)."""

from __future__ import annotations

from fishweight.udfs.metrics import SpeciesMetrics


def test_the_running_window_gauge_follows_the_newest_window_not_the_latest_arrival():
    # Counters are not read by the gauge rule: a species' gauges alone.
    metrics = SpeciesMetrics(joined=None, windows=None, retrains=None)
    assert metrics.window_ppm == -1
    metrics.running_window(120_000, 0.25)
    assert metrics.window_ppm == 250_000
    # A record of the previous window joins late (another partition, another pace).
    metrics.running_window(60_000, 0.9)
    assert metrics.window_ppm == 250_000
    metrics.running_window(120_000, 0.2)
    assert metrics.window_ppm == 200_000
    metrics.running_window(180_000, 0.05)
    assert (metrics.window_start_ms, metrics.window_ppm) == (180_000, 50_000)

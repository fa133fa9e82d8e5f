"""The bench runs: its cheapest part end to end (no figure is asserted, only that each
number it reports was measured and written)."""

from __future__ import annotations

import json

import pytest

from fishweight.jobs import bench
from fishweight.runtime.settings import Settings

pytestmark = pytest.mark.slow  # an embedded broker


def test_bench_http_part_measures_and_writes_json(tmp_path):
    settings = Settings.load(state_dir=str(tmp_path), web_ui_port=0)
    results = bench.run_bench(settings, bench.BenchConfig(http_seconds=0.5), {"http"})
    assert results.http["requests"] > 0 and results.http["p99_ms"] > 0
    assert results.peak_rss_mb > 0  # the broker and this process were sampled
    table = bench.table(results)
    assert "HTTP per event" in table and "peak RSS" in table
    written = json.loads(bench.write(results, settings).read_text())
    assert written["http"]["requests"] == results.http["requests"]

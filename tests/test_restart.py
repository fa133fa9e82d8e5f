"""State survives a restart: stop with a savepoint, start again, the join still matches."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import pytest

from fishweight.jobs.predict import start_job, stop_job
from fishweight.models.bootstrap import bootstrap_model
from fishweight.runtime.flink_env import latest_snapshot
from fishweight.runtime.kafka import produce
from tests.conftest import fresh_settings
from tests.kafka_helpers import read_values

pytestmark = pytest.mark.slow  # a real broker and two MiniCluster runs


def _fish(fish_id, t_ms):
    measurement = {"Species": "salmon", "Fish_Id": fish_id, "Length": 85.0 + fish_id % 7,
                   "Height": 18.0 + fish_id % 3 * 0.5, "Timestamp": t_ms}
    weight = {"Species": "salmon", "Fish_Id": fish_id, "Weight": 4.4,
              "Timestamp": t_ms + 10_000}
    return measurement, weight


def test_stop_with_savepoint_and_resume_keeps_the_join_state(kafka, tmp_path):
    settings = fresh_settings(kafka, tmp_path / "state", checkpoint_interval_s=2)
    bootstrap_model(settings)
    start = int(time.time() * 1000) - 60_000
    fish = [_fish(i, start + 2000 * i) for i in range(1, 21)]
    measurements = [m for m, _ in fish]
    weights = [w for _, w in fish]
    produce(settings.bootstrap_servers, settings.topic_measurement, measurements,
            keys=[m["Fish_Id"] for m in measurements],
            timestamps=[m["Timestamp"] for m in measurements])

    job = start_job(settings, local=True)
    assert len(read_values(settings, settings.topic_prediction, 20, timeout_s=120)) == 20
    savepoint = stop_job(job)
    assert savepoint and (Path(urlparse(savepoint).path) / "_metadata").is_file(), savepoint
    assert latest_snapshot(settings.resolved_checkpoint_uri) == urlparse(savepoint).path

    # The weights arrive while the job is down; the predictions wait in its saved state.
    produce(settings.bootstrap_servers, settings.topic_weight, weights,
            keys=[w["Fish_Id"] for w in weights], timestamps=[w["Timestamp"] for w in weights])
    job = start_job(settings, local=True)
    try:
        read_values(settings, settings.topic_diff, 20, timeout_s=120)
        # Read on until 5 s without news: a duplicate would show up now.
        diffs = read_values(settings, settings.topic_diff, timeout_s=120)
    finally:
        stop_job(job)
    assert Counter(d["Fish_Id"] for d in diffs) == Counter(range(1, 21))
    # Resumed from the saved offsets: nothing was read, predicted or written twice.
    predictions = read_values(settings, settings.topic_prediction, timeout_s=120)
    assert sorted(p["Fish_Id"] for p in predictions) == list(range(1, 21))

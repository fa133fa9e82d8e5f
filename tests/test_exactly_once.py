"""The job with exactly-once Kafka sinks, end to end on the embedded broker.

Each checkpoint commits the sinks' Kafka transactions; a ``read_committed`` reader (the
trainer, and the reads here) sees every output once. What the embedded broker (Tansu)
does and does not prove about transactions is in docs/faults.md.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from fishweight.jobs.predict import start_job, stop_job
from fishweight.models.bootstrap import bootstrap_model
from fishweight.runtime.kafka import produce, read_topic
from tests.conftest import fresh_settings
from tests.crash_sweep import stored_by_trainer

pytestmark = [pytest.mark.slow, pytest.mark.extended]  # a broker and MiniCluster (suite time)


def _committed(settings, topic: str, expected: int | None = None) -> list:
    return read_topic(settings.bootstrap_servers, topic, expected=expected,
                      idle_s=60 if expected else 5, timeout_s=120,
                      isolation_level="read_committed")


def test_exactly_once_sinks_write_every_output_once(kafka, tmp_path):
    settings = fresh_settings(kafka, tmp_path / "state", checkpoint_interval_s=2,
                              delivery_guarantee="exactly-once", window_s=10,
                              join_bound_s=5, join_before_s=5)
    bootstrap_model(settings)
    start = int(time.time() * 1000) - 120_000
    ids = range(1, 61)
    measurements = [{"Species": "salmon", "Fish_Id": i, "Length": 85.0 + i % 7,
                     "Height": 19.0, "Timestamp": start + 1000 * i} for i in ids]
    weights = [{"Species": "salmon", "Fish_Id": i, "Weight": 2.0,
                "Timestamp": start + 1000 * i + 500} for i in ids]
    for topic, records in ((settings.topic_measurement, measurements),
                           (settings.topic_weight, weights)):
        produce(settings.bootstrap_servers, topic, records, keys=list(ids),
                timestamps=[r["Timestamp"] for r in records])
    job = start_job(settings, local=True)
    try:
        predictions = _committed(settings, settings.topic_prediction, len(ids))
        diffs = _committed(settings, settings.topic_diff, len(ids))
        windows = _committed(settings, settings.topic_windows, 4)
        events = _committed(settings, settings.topic_retrain, 1)
    finally:
        stop_job(job)
    # Read on without the job: nothing more arrives.
    predictions = max(predictions, _committed(settings, settings.topic_prediction), key=len)
    diffs = max(diffs, _committed(settings, settings.topic_diff), key=len)
    assert sorted(json.loads(r.value)["Fish_Id"] for r in predictions) == list(ids)
    assert sorted(json.loads(r.value)["Fish_Id"] for r in diffs) == list(ids)
    starts = Counter(json.loads(r.value)["WindowStart"] for r in windows)
    assert starts and max(starts.values()) == 1, starts
    fired = Counter((json.loads(r.value)["WindowStart"], json.loads(r.value)["Rule"])
                    for r in events)
    assert fired and max(fired.values()) == 1, fired
    offsets = sorted(r.offset for r in predictions if r.partition == predictions[0].partition)
    print(f"\nexactly-once: {len(predictions)} predictions, {len(diffs)} joined, "
          f"{len(windows)} windows, {len(events)} retrain events, each once; offsets of one "
          f"partition {offsets[:8]}...")
    # The trainer reads read_committed and stores each joined record once.
    assert stored_by_trainer(settings) == len(ids)

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


@pytest.mark.extended  # three job runs (~70 s; suite time)
def test_rescale_from_1_to_2_and_back_keeps_every_kind_of_state(kafka, tmp_path):
    """Stop with a savepoint at parallelism 1 while predictions wait in the join, resume at
    2, stop again, resume at 1: each fish is predicted and joined exactly once, the waiting
    predictions meet their weights after each resume, and a repeat of an id measured
    before a rescale is still a dead letter (the first-seen state was redistributed)."""
    settings = fresh_settings(kafka, tmp_path / "state", checkpoint_interval_s=2)
    assert settings.topic_partitions >= 2  # the source's parallelism is bounded by them
    bootstrap_model(settings)
    start = int(time.time() * 1000) - 60_000
    fish = [_fish(i, start + 1000 * i) for i in range(1, 41)]
    measurements = {m["Fish_Id"]: m for m, _ in fish}
    weights = {w["Fish_Id"]: w for _, w in fish}

    def send(topic, records):
        produce(settings.bootstrap_servers, topic, records, keys=[r["Fish_Id"] for r in records],
                timestamps=[r["Timestamp"] for r in records])

    def run(parallelism, expected_predictions, expected_diffs, expected_dead):
        job = start_job(settings.replace(parallelism=parallelism), local=True)
        try:
            for topic, expected in ((settings.topic_prediction, expected_predictions),
                                    (settings.topic_diff, expected_diffs),
                                    (settings.topic_dead_letter, expected_dead)):
                if expected:
                    assert len(read_values(settings, topic, expected)) >= expected, topic
        finally:
            assert stop_job(job), "no savepoint"

    # p=1: fish 1-30 measured, no weight yet: their predictions wait in the join state.
    send(settings.topic_measurement, [measurements[i] for i in range(1, 31)])
    run(1, 30, 0, 0)
    # p=2: weights of 1-15 arrive, fish 31-40 are measured, and fish 5 again.
    send(settings.topic_weight, [weights[i] for i in range(1, 16)])
    repeat_5 = {**measurements[5], "Timestamp": start + 45_000}
    send(settings.topic_measurement, [measurements[i] for i in range(31, 41)] + [repeat_5])
    run(2, 40, 15, 1)
    # p=1 again: the remaining weights, and fish 33 (first measured at p=2) again.
    send(settings.topic_weight, [weights[i] for i in range(16, 41)])
    send(settings.topic_measurement, [{**measurements[33], "Timestamp": start + 50_000}])
    run(1, 40, 40, 2)

    predictions = read_values(settings, settings.topic_prediction)
    diffs = read_values(settings, settings.topic_diff)
    dead = read_values(settings, settings.topic_dead_letter)
    assert Counter(p["Fish_Id"] for p in predictions) == Counter(range(1, 41))
    assert Counter(d["Fish_Id"] for d in diffs) == Counter(range(1, 41))
    assert sorted((d["Reason"].split(":")[0], d["Reason"].split()[2]) for d in dead) == [
        ("duplicate Fish_Id", "33"), ("duplicate Fish_Id", "5")], dead

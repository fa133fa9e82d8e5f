"""A producer pause and its backlog: the weights stop for 30 s while measurements flow
at the real pace, then arrive all at once. No join may be lost."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from fishweight.jobs.predict import start_job, stop_job
from fishweight.models.bootstrap import bootstrap_model
from fishweight.runtime.kafka import produce
from tests.conftest import fresh_settings
from tests.kafka_helpers import read_values

# A real broker, a live job, 40 s of real time: the extended tier (CI runs it), which keeps
# `make test` under 15 minutes on a 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.extended]

FISH = 40


def _send(settings, weights):
    produce(settings.bootstrap_servers, settings.topic_weight, weights,
            keys=[w["Fish_Id"] for w in weights], timestamps=[w["Timestamp"] for w in weights])


def test_weights_pause_then_flush_and_every_weight_joins(kafka, tmp_path):
    settings = fresh_settings(kafka, tmp_path / "state")
    bootstrap_model(settings)
    job = start_job(settings, local=True)
    try:
        weights = []
        for i in range(1, FISH + 1):  # one fish a second, event time = now
            now = int(time.time() * 1000)
            measurement = {"Species": "salmon", "Fish_Id": i, "Length": 85.0 + i % 5,
                           "Height": 18.5, "Timestamp": now}
            produce(settings.bootstrap_servers, settings.topic_measurement, [measurement],
                    keys=[i], timestamps=[now])
            weights.append({"Species": "salmon", "Fish_Id": i, "Weight": 4.4,
                            "Timestamp": now + 10_000})
            if i == 12:  # the weight machine weighs the first fish, then pauses ~30 s
                _send(settings, weights[:2])
            time.sleep(1)
        # The backlog: every other weight at once, event times 10 s after their fish.
        _send(settings, weights[2:])
        diffs = read_values(settings, settings.topic_diff, FISH)
        unmatched = read_values(settings, settings.topic_unmatched)
    finally:
        stop_job(job)
    assert Counter(d["Fish_Id"] for d in diffs) == Counter(range(1, FISH + 1)), unmatched
    assert [u for u in unmatched if u["Kind"] == "weight"] == []

"""Hot swap: a running streaming job picks up newly published models, refuses bad ones.

Measurements flow continuously into the embedded broker while the job runs on a
local MiniCluster; the test publishes a new model version, then a corrupt one.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from fishweight.jobs.predict import build_pipeline
from fishweight.models.bootstrap import bootstrap_model
from fishweight.models.registry import ModelRegistry
from fishweight.models.training import fit
from fishweight.scenarios import load_scenario, sample_species
from tests.conftest import fresh_settings

pytestmark = pytest.mark.slow  # a real broker and/or MiniCluster

SWITCH_WITHIN_S = 2.0


class Feeder(threading.Thread):
    """Sends one measurement every `every_s` seconds, remembering when each was sent."""

    def __init__(self, settings, every_s=0.05):
        super().__init__(daemon=True)
        self.settings, self.every_s = settings, every_s
        self.sent_at: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self):
        producer = KafkaProducer(bootstrap_servers=self.settings.bootstrap_servers, linger_ms=0)
        fish_id = 0
        while not self.stop.is_set():
            fish_id += 1
            now_ms = int(time.time() * 1000)
            record = {"Species": "salmon", "Fish_Id": fish_id, "Length": 80 + fish_id % 10,
                      "Height": 18.0, "Timestamp": now_ms}
            producer.send(self.settings.topic_measurement, key=str(fish_id).encode(),
                          value=json.dumps(record).encode(), timestamp_ms=now_ms).get(10)
            self.sent_at[fish_id] = time.monotonic()
            time.sleep(self.every_s)
        producer.close()


class PredictionReader:
    def __init__(self, settings):
        self.consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
        parts = [TopicPartition(settings.topic_prediction, p)
                 for p in range(settings.topic_partitions)]
        self.consumer.assign(parts)
        self.consumer.seek_to_beginning(*parts)
        self.versions: list[tuple[int, int]] = []  # (Fish_Id, ModelVersion) in arrival order

    def poll(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for records in self.consumer.poll(timeout_ms=100).values():
                for r in records:
                    value = json.loads(r.value)
                    self.versions.append((value["Fish_Id"], value["Prediction"]["ModelVersion"]))

    def wait_for(self, condition, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll(0.2)
            if condition():
                return True
        return False


def _two_species_model():
    scenario = load_scenario()
    rng = np.random.default_rng(5)
    frames = []
    for name in ("salmon", "walleye"):
        values = sample_species(scenario.species[name], 40, rng)
        frames.append(pd.DataFrame({**values, "Species": [name] * 40}))
    return fit(pd.concat(frames, ignore_index=True))


@pytest.mark.parametrize("parallelism", [1, 2])
def test_hot_swap_and_refusal(kafka, tmp_path, parallelism):
    settings = fresh_settings(kafka, tmp_path / "state", parallelism=parallelism)
    registry = ModelRegistry.for_settings(settings)
    bootstrap_model(settings)
    job = build_pipeline(settings).execute_async()
    feeder = Feeder(settings)
    reader = PredictionReader(settings)
    feeder.start()
    try:
        assert reader.wait_for(lambda: len(reader.versions) >= 20, timeout=120), \
            "the job produced no predictions"
        assert {v for _, v in reader.versions} == {1}

        # A new version: later measurements must be predicted by it.
        assert registry.publish(_two_species_model(), {"species": ["salmon", "walleye"]}) == 2
        published = time.monotonic()
        assert reader.wait_for(lambda: any(v == 2 for _, v in reader.versions), timeout=30)
        reader.poll(SWITCH_WITHIN_S + 1)
        after = {f: v for f, v in reader.versions
                 if feeder.sent_at.get(f, 0) > published + SWITCH_WITHIN_S}
        assert after and set(after.values()) == {2}, "new version not served within 2 s"

        # A corrupt version: refused, version 2 keeps serving.
        registry.publish(_two_species_model(), {"species": ["salmon", "walleye"]},
                         make_current=False)
        with open(registry.artifact_path(3), "r+b") as fh:
            fh.seek(100)
            fh.write(b"corrupted")
        registry._point_to(3)  # what a broken publisher or disk could leave behind
        corrupted = time.monotonic()
        reader.poll(SWITCH_WITHIN_S + 2)
        later = {f: v for f, v in reader.versions if feeder.sent_at.get(f, 0) > corrupted}
        assert later and set(later.values()) == {2}, "corrupt version 3 was served"
    finally:
        feeder.stop.set()
        feeder.join(10)
    try:
        sent = set(feeder.sent_at)
        assert reader.wait_for(lambda: {f for f, _ in reader.versions} >= sent, timeout=60)
        counts = Counter(f for f, _ in reader.versions)
        assert set(counts) == sent, "lost measurements"
        assert max(counts.values()) == 1, "a measurement was predicted twice"
    finally:
        job.cancel().result()
        reader.consumer.close()

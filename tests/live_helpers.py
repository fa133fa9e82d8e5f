"""Helpers for tests against a running job: a measurement feeder, a prediction reader, a
second model to publish."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pandas as pd
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from fishweight.models.policy import fit
from fishweight.scenarios import load_scenario, sample_species


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


def two_species_model():
    """A model of salmon and walleye (40 simulated fish each), to publish as a new version."""
    scenario = load_scenario()
    rng = np.random.default_rng(5)
    frames = []
    for name in ("salmon", "walleye"):
        values = sample_species(scenario.species[name], 40, rng)
        frames.append(pd.DataFrame({**values, "Species": [name] * 40}))
    return fit(pd.concat(frames, ignore_index=True))

"""Run the real prediction job on a local MiniCluster over records produced to Kafka."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from jobs.broker import read_topic
from jobs.pipeline import Bounds, build_pipeline
from jobs.scenario import load_scenario, sample_species
from jobs.settings import Settings
from models.registry import ModelRegistry
from models.training import fit
from tests.kafka_helpers import produce


def publish_salmon_model(settings: Settings, seed: int = 200, n: int = 100) -> int:
    """Fit the reference's initial model (100 simulated salmon) and publish it."""
    profile = load_scenario().species["salmon"]
    values = sample_species(profile, n, np.random.default_rng(seed))
    frame = pd.DataFrame({**values, "Species": ["salmon"] * n})
    return ModelRegistry(settings.resolved_model_dir).publish(
        fit(frame), {"species": ["salmon"], "n_samples": n})


@dataclass
class Sent:
    """One input record: its payload (dict -> JSON, or raw bytes) and Kafka timestamp."""

    payload: dict | bytes
    kafka_ms: int
    key: object = None


@dataclass
class Outputs:
    predictions: list[dict] = field(default_factory=list)
    diffs: list[dict] = field(default_factory=list)
    retrains: list[dict] = field(default_factory=list)
    dead_letters: list[dict] = field(default_factory=list)
    windows: list[dict] = field(default_factory=list)


def produce_sorted(settings: Settings, topic: str, records: list[Sent]) -> dict[int, int]:
    ordered = sorted(records, key=lambda r: r.kafka_ms)
    return produce(settings.bootstrap_servers, topic, [r.payload for r in ordered],
                   keys=[r.key for r in ordered], timestamps=[r.kafka_ms for r in ordered])


def read_outputs(settings: Settings, idle_s: float = 2.0) -> Outputs:
    def read(topic):
        return [json.loads(m.value) for m in read_topic(settings.bootstrap_servers, topic,
                                                        idle_s=idle_s)]
    return Outputs(read(settings.topic_prediction), read(settings.topic_diff),
                   read(settings.topic_retrain), read(settings.topic_dead_letter),
                   read(settings.topic_windows))


def run_bounded(settings: Settings, measurements: list[Sent], weights: list[Sent]) -> Outputs:
    """Produce the inputs, run the job until the inputs end, read every output topic."""
    bounds = Bounds(produce_sorted(settings, settings.topic_measurement, measurements),
                    produce_sorted(settings, settings.topic_weight, weights))
    build_pipeline(settings, bounds=bounds).execute()
    return read_outputs(settings)

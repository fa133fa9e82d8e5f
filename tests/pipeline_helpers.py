"""Run the real prediction job on a local MiniCluster over records produced to Kafka."""

from __future__ import annotations

from dataclasses import dataclass

from fishweight.jobs.connectors import Bounds
from fishweight.jobs.predict import build_pipeline
from fishweight.jobs.report import RunData
from fishweight.runtime.kafka import produce
from fishweight.runtime.settings import Settings


@dataclass
class Sent:
    """One input record: its payload (dict -> JSON, or raw bytes) and Kafka timestamp."""

    payload: dict | bytes
    kafka_ms: int
    key: object = None


def produce_sorted(settings: Settings, topic: str, records: list[Sent]) -> dict[int, int]:
    ordered = sorted(records, key=lambda r: r.kafka_ms)
    return produce(settings.bootstrap_servers, topic, [r.payload for r in ordered],
                   keys=[r.key for r in ordered], timestamps=[r.kafka_ms for r in ordered])


def run_bounded(settings: Settings, measurements: list[Sent], weights: list[Sent]) -> RunData:
    """Produce the inputs, run the job until the inputs end, read every output topic."""
    bounds = Bounds(produce_sorted(settings, settings.topic_measurement, measurements),
                    produce_sorted(settings, settings.topic_weight, weights))
    build_pipeline(settings, bounds=bounds).execute()
    return RunData.from_kafka(settings, idle_s=2.0)

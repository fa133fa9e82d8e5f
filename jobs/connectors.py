"""Where the prediction job reads and writes: Kafka in production, in-memory rows in tests.

``Connectors`` is the one part of the job that differs between Kafka and the fast test
tier: it registers the two raw sources and names each sink's connector options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

from fishweight import sql
from fishweight.runtime.settings import Settings
from fishweight.sql.params import with_options

SINK_TABLES = ("prediction_sink", "diff_sink", "window_sink", "retrain_sink",
               "unmatched_sink", "dead_letter_sink")


class Connectors(Protocol):
    """Where the job reads and writes: the only part that differs between Kafka and tests.

    ``create_sources`` registers ``measurement_raw`` and ``weight_raw`` with the
    columns of ``sql/01_sources.sql`` (payload, kafka_partition, kafka_offset,
    kafka_time, event_time with a watermark); ``sink_options`` gives the WITH options
    of each table in ``SINK_TABLES``.
    """

    def create_sources(self, env: StreamExecutionEnvironment, t_env: StreamTableEnvironment,
                       params: dict[str, str]) -> None:
        """Register the two raw input tables."""

    def sink_options(self) -> dict[str, dict[str, str]]:
        """Sink table name -> its connector options."""


@dataclass
class Bounds:
    """End offsets per partition for a bounded (test or backfill) read of the inputs."""

    measurement: dict[int, int]
    weight: dict[int, int]


@dataclass
class KafkaConnectors:
    """The production connectors: JSON on Kafka topics, named by the settings."""

    settings: Settings
    bounds: Bounds | None = None

    def source_options(self, topic: str, offsets: dict[int, int] | None) -> dict[str, str]:
        s = self.settings
        options = {
            "connector": "kafka",
            "topic": topic,
            "format": "raw",
            "properties.bootstrap.servers": s.bootstrap_servers,
            "properties.group.id": f"{s.consumer_group}-predict",
            # A fetch returns at the latest after this long even with little data (Kafka
            # answers at once when data is there; Tansu waits the whole time).
            "properties.fetch.max.wait.ms": "50",
        }
        if s.delivery_guarantee == "exactly-once":
            # Transactional producers upstream: never read an aborted record.
            options["properties.isolation.level"] = "read_committed"
        if offsets is None:
            # Resume from committed offsets (committed on checkpoints); first run: earliest.
            options["scan.startup.mode"] = "group-offsets"
            options["properties.auto.offset.reset"] = "earliest"
        else:
            options["scan.startup.mode"] = "earliest-offset"
            options["scan.bounded.mode"] = "specific-offsets"
            options["scan.bounded.specific-offsets"] = ";".join(
                f"partition:{p},offset:{o}"
                for p, o in sorted({**dict.fromkeys(range(s.topic_partitions), 0),
                                    **offsets}.items()))
        return options

    def create_sources(self, env: StreamExecutionEnvironment, t_env: StreamTableEnvironment,
                       params: dict[str, str]) -> None:
        b = self.bounds
        params = {
            **params,
            "measurement_source": with_options(self.source_options(
                self.settings.topic_measurement, b.measurement if b else None)),
            "weight_source": with_options(self.source_options(
                self.settings.topic_weight, b.weight if b else None)),
        }
        for statement in sql.render(sql.SOURCES, params):
            t_env.execute_sql(statement)

    def sink_options(self) -> dict[str, dict[str, str]]:
        s = self.settings
        common = {
            "connector": "kafka",
            "format": "json",
            "json.timestamp-format.standard": "ISO-8601",
            "properties.bootstrap.servers": s.bootstrap_servers,
            "sink.delivery-guarantee": s.delivery_guarantee,
            # Fuller batches: fewer produce requests per record for the client and the
            # broker. Sent at once (kafka-clients 3.9's default 0), a backlog ran ~25 %
            # slower; a record waits at most this long (docs/performance.md).
            "properties.linger.ms": str(s.sink_linger_ms),
        }
        topics = dict(zip(SINK_TABLES, (s.topic_prediction, s.topic_diff, s.topic_windows,
                                        s.topic_retrain, s.topic_unmatched,
                                        s.topic_dead_letter), strict=True))
        out = {}
        for table, topic in topics.items():
            options = {**common, "topic": topic}
            if s.delivery_guarantee == "exactly-once":
                # One transactional id prefix per sink: they must not fence each other.
                options["sink.transactional-id-prefix"] = f"{s.consumer_group}-{table}"
                # The connector asks for 1 h; a broker allows 15 min by default.
                options["properties.transaction.timeout.ms"] = "900000"
            out[table] = options
        return out



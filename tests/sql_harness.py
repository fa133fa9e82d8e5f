"""The fast tier: the job's SQL on a MiniCluster with in-memory sources and file sinks.

``InMemoryConnectors`` fills the raw-source contract of ``sql/01_sources.sql``
(payload, kafka_partition, kafka_offset, kafka_time, event_time + watermark) from
Python rows, using the very event-time expression of the Kafka tables; the sinks
are JSON files. Everything between (validation, prediction UDF, interval join,
windows, dead letters) is the production SQL, unchanged. No broker is involved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pyflink.common import Row, Types
from pyflink.table import Schema

from fishweight.jobs.connectors import SINK_TABLES
from fishweight.jobs.predict import build_pipeline
from fishweight.jobs.report import Observed, RunData
from fishweight.runtime.settings import Settings
from fishweight.sql.params import event_time, watermark
from tests.pipeline_helpers import Sent

# Sink table -> the RunData field its records belong to (same order as the topics).
SINK_FIELDS = dict(zip(SINK_TABLES, ("predictions", "diffs", "windows", "retrains",
                                     "unmatched", "dead_letters"), strict=True))
RAW_COLUMNS = ["payload", "kafka_partition", "kafka_offset", "kafka_ms"]


@dataclass
class InMemoryConnectors:
    measurements: list[Sent]
    weights: list[Sent]
    out_dir: Path

    def create_sources(self, env, t_env, params) -> None:
        for table, records in (("measurement_raw", self.measurements),
                               ("weight_raw", self.weights)):
            ordered = sorted(records, key=lambda r: r.kafka_ms)
            rows = [Row(r.payload if isinstance(r.payload, bytes)
                        else json.dumps(r.payload).encode(), 0, offset, r.kafka_ms)
                    for offset, r in enumerate(ordered)]
            stream = env.from_collection(rows, type_info=Types.ROW_NAMED(
                RAW_COLUMNS, [Types.PRIMITIVE_ARRAY(Types.BYTE()), Types.INT(), Types.LONG(),
                              Types.LONG()]))
            schema = (Schema.new_builder()
                      .column("payload", "BYTES")
                      .column("kafka_partition", "INT")
                      .column("kafka_offset", "BIGINT")
                      .column("kafka_ms", "BIGINT")
                      .column_by_expression("kafka_time", "TO_TIMESTAMP_LTZ(kafka_ms, 3)")
                      .column_by_expression("event_time", event_time(
                          params, "TO_TIMESTAMP_LTZ(kafka_ms, 3)"))
                      .watermark("event_time", watermark(params, "kafka_time"))
                      .build())
            t_env.create_temporary_view(table, t_env.from_data_stream(stream, schema))

    def sink_options(self) -> dict[str, dict[str, str]]:
        return {table: {"connector": "filesystem",
                        "path": (self.out_dir / table).resolve().as_uri(),
                        "format": "json",
                        "json.timestamp-format.standard": "ISO-8601"}
                for table in SINK_TABLES}

    def read(self) -> RunData:
        data = RunData()
        for table, name in SINK_FIELDS.items():
            records = []
            for part in sorted((self.out_dir / table).glob("**/part-*")):
                records += [Observed(json.loads(line), None)
                            for line in part.read_text().splitlines() if line.strip()]
            setattr(data, name, records)
        return data


def run_in_memory(settings: Settings, measurements: list[Sent], weights: list[Sent],
                  out_dir: Path) -> RunData:
    """Run the job's SQL over in-memory inputs until they end; return every output."""
    connectors = InMemoryConnectors(measurements, weights, out_dir)
    build_pipeline(settings, connectors=connectors).execute()
    return connectors.read()



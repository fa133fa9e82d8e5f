"""The prediction job: ``fishweight predict`` (local MiniCluster) and ``flink run`` entry point.

Data path (every step is SQL in ``fishweight.sql``; Python fills options, registers
the UDFs and adds materialization barriers)::

    measurement_raw ─► 10_score (score_measurement: parse + predict) ─┐
    weight_raw ─────► 15_weights (parse_weight) ─────────────────────┤
                                                                     ▼
                      18_first_seen (one Fish_Id, one fish) ─┬─► prediction_sink
                                                             ├─► dead_letter_sink
                                                             ▼
                      20_join (interval join on Fish_Id) ─► diff_sink, unmatched_sink
                                        │
                                        ▼
                      25_window (tumbling AVG(Error)) ─► window_sink, retrain_sink

Local MiniCluster with the web UI::

    fishweight predict --bootstrap-servers 127.0.0.1:9092

Session cluster (arguments follow the script; there is no -pyargs)::

    flink run -d -py jobs/predict.py --bootstrap-servers kafka:9092 --model-dir /models

Why materialize: the planner may copy a view into every statement that reads it,
which would call the (non-deterministic) prediction UDF once per branch, so the
prediction sink and the error join could see different predictions during a model
swap. Passing the scored measurements through ``to_data_stream``/``from_data_stream``
makes them one physical stream that every branch shares: each measurement is
predicted once. Validated weights and the join output are materialized likewise.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from pyflink.datastream import StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway
from pyflink.table import Schema, StatementSet, StreamTableEnvironment
from pyflink.util.java_utils import load_java_class

from fishweight import sql
from fishweight.models.registry import ModelError, ModelRegistry
from fishweight.records import REASON_CLASSES
from fishweight.runtime.flink_env import create_stream_env, restore_path
from fishweight.runtime.kafka import KafkaNotConfigured, create_topics, require_kafka
from fishweight.runtime.settings import Settings
from fishweight.udfs.metrics import observe_pipeline
from fishweight.udfs.scoring import score_measurement
from fishweight.udfs.validation import (
    MEASUREMENT_NUMBERS,
    WEIGHT_NUMBERS,
    Limits,
    clean_shape_pattern,
    parse_weight,
)

log = logging.getLogger(__name__)

SINK_TABLES = ("prediction_sink", "diff_sink", "window_sink", "retrain_sink",
               "unmatched_sink", "dead_letter_sink")


def _seconds(value: float) -> str:
    """A seconds literal for INTERVAL '...' SECOND: whole or with milliseconds."""
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


def sql_string(value: object) -> str:
    """A value as the inside of a SQL string literal (quotes doubled)."""
    return str(value).replace("'", "''")


def with_options(options: dict[str, str]) -> str:
    """The body of a WITH (...) clause, every key and value escaped."""
    return ",\n    ".join(f"'{sql_string(k)}' = '{sql_string(v)}'" for k, v in options.items())


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


def sql_params(settings: Settings) -> dict[str, str]:
    """Every tunable placeholder the SQL files use (connector options come separately)."""
    params = {
        "topic_measurement": sql_string(settings.topic_measurement),
        "topic_weight": sql_string(settings.topic_weight),
        "watermark_delay": _seconds(settings.watermark_delay_s),
        "max_skew_s": str(int(settings.max_clock_skew_s)),
        "join_bound": _seconds(settings.join_bound_s),
        "join_before": _seconds(settings.join_before_s),
        "window": _seconds(settings.window_s),
        "window_ms": str(round(settings.window_s * 1000)),
        "min_count": str(settings.min_window_count),
        "change_records": str(settings.change_records),
        "change_preceding": str(settings.change_records - 1),
        "change_over": str(settings.change_over),
        "error_threshold": repr(float(settings.error_threshold)),
        # The SQL fast path of validation (udfs/validation.py, clean_shape_pattern).
        "max_length": repr(float(settings.max_length)),
        "max_height": repr(float(settings.max_height)),
        "max_weight": repr(float(settings.max_weight)),
    }
    limits = Limits.from_settings(settings)
    params["reason_class"] = "CASE " + " ".join(
        f"WHEN reason LIKE '{sql_string(prefix)}%' THEN '{name}'"
        for prefix, name in REASON_CLASSES) + " ELSE 'other' END"
    for name, numbers in (("measurement", MEASUREMENT_NUMBERS), ("weight", WEIGHT_NUMBERS)):
        # `text` is the payload as a string; FALSE sends every record to Python.
        params[f"{name}_shaped"] = "FALSE" if settings.validation == "python" else (
            f"COALESCE(CHAR_LENGTH(text) <= {int(settings.max_payload_bytes)} AND REGEXP(text, "
            f"'{sql_string(clean_shape_pattern(numbers, limits))}'), FALSE)")
    params["event_time"] = event_time(params, "kafka_time")
    return params


def event_time(params: dict[str, str], kafka_time: str) -> str:
    """The event-time expression of a raw source, over the SQL expression ``kafka_time``."""
    return sql.render_expression(sql.EVENT_TIME, {**params, "kafka_time": kafka_time})


def materialize(t_env: StreamTableEnvironment, view: str, name: str, *,
                rowtime: bool = True) -> None:
    """Register ``name`` as ``view`` computed once, with its rowtime as ``row_time``.

    The DataStream round trip is a boundary the planner cannot see through, so every
    statement reading ``name`` shares one physical stream instead of recomputing it
    (and no Python UDF after it is pushed into the branches before it). A view without
    a rowtime (``rowtime=False``) keeps its columns as they are.

    The stream carries the table runtime's own rows (``RowData``), not ``Row``: PyFlink's
    ``to_data_stream`` converts every field of every record to a Java object and back,
    which the bench's profile showed among the job's hottest frames.
    """
    j_table = t_env.from_path(view)._j_table
    row_data = load_java_class("org.apache.flink.table.data.RowData")
    internal = j_table.getResolvedSchema().toPhysicalRowDataType().bridgedTo(row_data)
    j_stream = t_env._j_tenv.toDataStream(j_table, internal)
    if rowtime:
        j_schema = (Schema.new_builder()
                    .column_by_metadata("row_time", "TIMESTAMP_LTZ(3)", "rowtime")
                    .watermark("row_time", "SOURCE_WATERMARK()")
                    .build()._j_schema)
        j_result = t_env._j_tenv.fromDataStream(j_stream, j_schema)
    else:
        j_result = t_env._j_tenv.fromDataStream(j_stream)
    t_env._j_tenv.createTemporaryView(name, j_result)


@dataclass
class Pipeline:
    env: StreamExecutionEnvironment
    t_env: StreamTableEnvironment
    statements: StatementSet
    _attached: bool = False

    def _attach(self) -> None:
        if not self._attached:
            self.statements.attach_as_datastream()
            self._attached = True

    def stream_graph(self) -> list[dict]:
        """The job's operators (id, type, contents), as the web UI will show them."""
        self._attach()
        return json.loads(self.env.get_execution_plan())["nodes"]

    def execute(self, name: str = "fishweight-predict"):
        """Run until the sources end (bounded) or forever (streaming); blocking."""
        self._attach()
        return self.env.execute(name)

    def execute_async(self, name: str = "fishweight-predict"):
        """Submit and return the JobClient (cancel it to stop a streaming run)."""
        self._attach()
        return self.env.execute_async(name)


def build_pipeline(settings: Settings, *, bounds: Bounds | None = None, local: bool = True,
                   connectors: Connectors | None = None,
                   restore_from: str | None = None,
                   flink_options: dict[str, str] | None = None) -> Pipeline:
    """The whole prediction job as one statement set; nothing runs yet.

    ``connectors`` defaults to Kafka (``bounds`` makes that read bounded); the fast
    test tier passes in-memory sources and file sinks and runs the same SQL.
    ``flink_options`` are added to the Flink configuration (the bench's profiler).
    """
    registry = ModelRegistry.for_settings(settings)
    registry.load_newest_valid()  # fail now, clearly, if there is no usable model
    connectors = connectors or KafkaConnectors(settings, bounds)
    env, t_env = create_stream_env(settings, local=local, restore_from=restore_from,
                                   extra=flink_options)
    limits = Limits.from_settings(settings)
    t_env.create_temporary_function("parse_weight", parse_weight(limits))
    t_env.create_temporary_function("observe_pipeline", observe_pipeline())
    t_env.create_temporary_function(
        "score_measurement", score_measurement(limits, str(registry.root.resolve()),
                                               settings.model_poll_s,
                                               str(registry.key_file.resolve())))

    params = sql_params(settings)
    connectors.create_sources(env, t_env, params)
    sinks = {table: with_options(options)
             for table, options in connectors.sink_options().items()}
    for stage in sql.STAGES:
        for statement in sql.render(stage.file, {**params, **sinks}):
            t_env.execute_sql(statement)
        for m in stage.materialized:
            materialize(t_env, m.view, m.name, rowtime=m.rowtime)
    statements = t_env.create_statement_set()
    for insert in sql.render(sql.INSERTS, params):
        statements.add_insert_sql(insert)
    return Pipeline(env, t_env, statements)


def start_job(settings: Settings, *, local: bool):
    """Check Kafka and the model, create missing topics, submit the job; return its client.

    Raises ``KafkaNotConfigured`` or ``ModelError`` with a message naming the fix.
    """
    servers = require_kafka(settings, "predict")
    create_topics(servers, settings.all_topics, settings.topic_partitions)
    restore_from = restore_path(settings)
    if restore_from:
        print(f"restoring join, window and source state from {restore_from} "
              "(--resume-from none starts empty)", flush=True)
    return build_pipeline(settings, local=local, restore_from=restore_from).execute_async()


def stop_job(job, timeout_s: float = 60.0) -> str | None:
    """Stop with a savepoint (the next start resumes from it); cancel if that fails.

    A job whose tasks are still starting cannot take a savepoint yet: that is retried
    until ``timeout_s``. Failures are logged in one line, without the Java stack.
    """
    jvm = get_gateway().jvm
    seconds = jvm.java.util.concurrent.TimeUnit.SECONDS
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            # PyFlink 2.0's JobClient.stop_with_savepoint calls a Java signature that no
            # longer exists (it lacks the SavepointFormatType); call the Java client.
            future = job._j_job_client.stopWithSavepoint(
                False, None, jvm.org.apache.flink.core.execution.SavepointFormatType.CANONICAL)
            return str(future.get(max(1, int(deadline - time.monotonic())), seconds))
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, the job must stop
            reason = _first_line(exc)
            if "Not all required tasks are currently running" in str(exc) \
                    and time.monotonic() + 2 < deadline:
                time.sleep(2)  # still starting: the savepoint will be possible soon
                continue
            log.warning("stop with savepoint failed (%s); cancelling, the next start "
                        "resumes from the last retained checkpoint", reason)
            job._j_job_client.cancel().get(int(timeout_s), seconds)
            return None


def _first_line(exc: Exception) -> str:
    """The root cause of a Py4J error in one line (its text holds the Java stack)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    causes = [line for line in lines if "Exception:" in line]
    return (causes[-1] if causes else lines[0] if lines else type(exc).__name__)[:300]


def run_local(settings: Settings, stop: threading.Event) -> int:
    """Run in a local MiniCluster until ``stop`` is set, then cancel the job."""
    job = start_job(settings, local=True)
    if settings.web_ui_port:
        print(f"Flink web UI: http://localhost:{settings.web_ui_port}", flush=True)
    print(f"prediction job {job.get_job_id()} running; Ctrl-C stops it", flush=True)
    while not stop.wait(1.0):
        status = str(job.get_job_status().result())
        if status in ("FAILED", "CANCELED", "FINISHED"):
            print(f"prediction job ended: {status}", file=sys.stderr)
            return 0 if status == "FINISHED" else 1
    savepoint = stop_job(job)
    print(f"prediction job stopped; savepoint {savepoint}" if savepoint
          else "prediction job cancelled", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``flink run -py jobs/predict.py [settings options]``: submit to the cluster."""
    from fishweight.runtime.options import configure_logging, settings_from, settings_parser

    parser = argparse.ArgumentParser(prog="jobs/predict.py", parents=[settings_parser()],
                                     description=__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        job = start_job(settings_from(args), local=False)
    except (KafkaNotConfigured, ModelError) as exc:
        print(f"jobs/predict.py: {exc}", file=sys.stderr)
        return 2
    print(f"submitted prediction job {job.get_job_id()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

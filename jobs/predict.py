"""The prediction job: ``fishweight predict`` (local MiniCluster) and ``flink run`` entry point.

Data path (every step is SQL in ``fishweight.sql``; Python fills options, registers
the UDFs and adds materialization barriers)::

    measurement_raw ─► 10_score (score_measurement: parse + predict) ─┐
    weight_raw ─────► 15_weights (parse_weight) ─────────────────────┤
                                                                     ▼
                      18_first_seen (one Fish_Id, one fish) ─┬─► prediction_sink
                                                             ├─► dead_letter_sink
                                                             ▼
                      20_join (one FULL OUTER interval join on Fish_Id)
                      22_pairs (split) ─► diff_sink, unmatched_sink
                                        │
                                        ▼
                      25_window (tumbling AVG(Error)) ─► window_sink
                      26_rules (window, change and bias rules) ─► retrain_sink

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

from pyflink.datastream import StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway
from pyflink.table import Schema, StatementSet, StreamTableEnvironment
from pyflink.table.expressions import col
from pyflink.util.java_utils import load_java_class

from fishweight import sql
from fishweight.jobs.connectors import Bounds, Connectors, KafkaConnectors
from fishweight.jobs.operator_names import OperatorNames
from fishweight.models.registry import ModelError, ModelRegistry
from fishweight.runtime import SnapshotMisfit
from fishweight.runtime.flink_env import create_stream_env, restore_path
from fishweight.runtime.kafka import KafkaNotConfigured, create_topics, require_kafka
from fishweight.runtime.processes import require_free_ports
from fishweight.runtime.settings import Settings
from fishweight.sql.params import sql_params, with_options
from fishweight.udfs.metrics import observe_pipeline
from fishweight.udfs.scoring import score_measurement
from fishweight.udfs.validation import Limits, parse_weight

log = logging.getLogger(__name__)


def materialize(t_env: StreamTableEnvironment, m: sql.Materialized,
                names: OperatorNames | None = None) -> None:
    """Register ``m.name`` as ``m.view`` computed once, as ``sql.Materialized`` describes.

    The DataStream round trip is a boundary the planner cannot see through, so every
    statement reading ``m.name`` shares one physical stream instead of recomputing it
    (and no Python UDF after it is pushed into the branches before it). Its event time
    (``m.rowtime``), processing time (``m.proctime``) and partitioning (``m.single``) are
    as documented on ``sql.Materialized``; the watermarks are the stream's.

    The stream carries the table runtime's own rows (``RowData``), not ``Row``: PyFlink's
    ``to_data_stream`` converts every field of every record to a Java object and back,
    which the bench's profile showed among the job's hottest frames.
    """
    view, rowtime, proctime = m.view, m.rowtime, m.proctime
    if rowtime not in (sql.RECORD_TIME, sql.COLUMN, None):
        raise ValueError(f"materialize {view}: rowtime must be {sql.RECORD_TIME!r}, "
                         f"{sql.COLUMN!r} or None, not {rowtime!r}")
    table = t_env.from_path(view)
    if proctime:
        table = table.drop_columns(col("proc_time"))
    j_table = table._j_table
    row_data = load_java_class("org.apache.flink.table.data.RowData")
    internal = j_table.getResolvedSchema().toPhysicalRowDataType().bridgedTo(row_data)
    j_stream = t_env._j_tenv.toDataStream(j_table, internal)
    if names is not None:
        names.claim(j_stream.getTransformation(), m.label)
    if m.single:
        j_stream = getattr(j_stream, "global")()  # DataStream.global(), a Python keyword
    if rowtime == sql.COLUMN:
        j_schema = (Schema.new_builder().watermark("row_time", "SOURCE_WATERMARK()")
                    .build()._j_schema)
        j_result = t_env._j_tenv.fromDataStream(j_stream, j_schema)
    elif rowtime == sql.RECORD_TIME:
        j_schema = (Schema.new_builder()
                    .column_by_metadata("row_time", "TIMESTAMP_LTZ(3)", "rowtime")
                    .watermark("row_time", "SOURCE_WATERMARK()")
                    .build()._j_schema)
        j_result = t_env._j_tenv.fromDataStream(j_stream, j_schema)
    elif proctime:
        j_schema = (Schema.new_builder().column_by_expression("proc_time", "PROCTIME()")
                    .build()._j_schema)
        j_result = t_env._j_tenv.fromDataStream(j_stream, j_schema)
    else:
        j_result = t_env._j_tenv.fromDataStream(j_stream)
    t_env._j_tenv.createTemporaryView(m.name, j_result)


@dataclass
class Pipeline:
    env: StreamExecutionEnvironment
    t_env: StreamTableEnvironment
    statements: StatementSet
    names: OperatorNames
    _attached: bool = False

    def _attach(self) -> None:
        if not self._attached:
            self.statements.attach_as_datastream()
            self.names.claim_sinks(self.env._j_stream_execution_environment)
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
    t_env.create_temporary_function("observe_pipeline", observe_pipeline(settings.max_species))
    t_env.create_temporary_function(
        "score_measurement", score_measurement(limits, str(registry.root.resolve()),
                                               settings.model_poll_s,
                                               str(registry.key_file.resolve())))

    params = sql_params(settings)
    connectors.create_sources(env, t_env, params)
    sinks = {table: with_options(options)
             for table, options in connectors.sink_options().items()}
    names = OperatorNames()
    for stage in sql.STAGES:
        if stage.bundle_time is not None:
            t_env.get_config().set("python.fn-execution.bundle.time",
                                   str(getattr(settings, stage.bundle_time)))
        for statement in sql.render(stage.file, {**params, **sinks}):
            t_env.execute_sql(statement)
        for m in stage.materialized:
            materialize(t_env, m, names)
    statements = t_env.create_statement_set()
    for insert in sql.render(sql.INSERTS, params):
        statements.add_insert_sql(insert)
    return Pipeline(env, t_env, statements, names)


def start_job(settings: Settings, *, local: bool):
    """Check Kafka and the model, create missing topics, submit the job; return its client.

    Raises ``KafkaNotConfigured``, ``ModelError``, (local) ``PortInUse`` or
    ``SnapshotMisfit`` with a message naming the fix.
    """
    if local:
        require_free_ports(settings, "web_ui_port", "metrics_port")
    servers = require_kafka(settings, "predict")
    create_topics(servers, settings.all_topics, settings.topic_partitions,
                  settings.topic_replication_factor)
    restore_from = restore_path(settings)
    if restore_from:
        print(f"restoring join, window and source state from {restore_from} "
              "(--resume-from none starts empty)", flush=True)
    pipeline = build_pipeline(settings, local=local, restore_from=restore_from)
    try:
        return pipeline.execute_async()
    except Exception as exc:
        # A local MiniCluster restores as it starts the job; a session cluster restores
        # after the submission, and the job fails there (its exception in the web UI).
        if restore_from and _SNAPSHOT_MISFIT in str(exc):
            raise SnapshotMisfit(_misfit(restore_from, exc)) from None
        raise


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
    first = causes[-1] if causes else lines[0] if lines else type(exc).__name__
    return first.removeprefix("Caused by: ")[:300]


# Flink's words when a snapshot holds state of an operator the job being started lacks.
_SNAPSHOT_MISFIT = "Cannot map checkpoint/savepoint state"


def _misfit(restore_from: str, exc: Exception) -> str:
    return (f"the snapshot to restore ({restore_from}) does not fit this job: it was taken "
            "by a job with other operators (another fishweight release, or settings that "
            "change the job graph). --resume-from none starts empty; --resume-from PATH "
            f"restores another snapshot. Flink: {_first_line(exc)}")


def failure_reason(job) -> str:
    """Why a job that ended FAILED failed: its root cause in one line."""
    try:
        job._j_job_client.getJobExecutionResult().get()
    except Exception as exc:  # noqa: BLE001 - the failure is what we are after
        return _first_line(exc)
    return "no failure reported"


def run_local(settings: Settings, stop: threading.Event) -> int:
    """Run in a local MiniCluster until ``stop`` is set, then cancel the job."""
    job = start_job(settings, local=True)
    if settings.web_ui_port:
        print(f"Flink web UI: http://localhost:{settings.web_ui_port}", flush=True)
    print(f"prediction job {job.get_job_id()} running; Ctrl-C stops it", flush=True)
    while not stop.wait(1.0):
        status = str(job.get_job_status().result())
        if status == "FAILED":
            print(f"prediction job failed: {failure_reason(job)}",
                  file=sys.stderr)
            return 1
        if status in ("CANCELED", "FINISHED"):
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
    except (KafkaNotConfigured, ModelError, SnapshotMisfit, ValueError, OSError) as exc:
        # Settings refused, a broker that does not answer (TimeoutError), a snapshot path
        # that holds none: one line, as `fishweight predict` says it.
        print(f"jobs/predict.py: {exc}", file=sys.stderr)
        return 2
    print(f"submitted prediction job {job.get_job_id()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

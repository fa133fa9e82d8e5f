"""Assemble the prediction job from the SQL files in ``sql/``.

Python only fills connector options and tunables into the SQL and adds the one
thing SQL cannot express: a materialization barrier. The planner may copy a view
into every statement that reads it, which would call the (non-deterministic)
prediction UDF once per branch, so the prediction sink and the error join could
see different predictions during a model swap (NOTES.md). Passing the scored
measurements through ``to_data_stream``/``from_data_stream`` makes them one
physical stream that every branch shares: each measurement is predicted once.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import Schema, StatementSet, StreamTableEnvironment

from jobs.flink_env import create_stream_env
from jobs.settings import PROJECT_ROOT, Settings
from models.registry import ModelRegistry
from udfs.predict import predict_weight
from udfs.validation import parse_measurement, parse_weight

log = logging.getLogger(__name__)

SQL_DIR = PROJECT_ROOT / "sql"
SOURCES, SINKS, SCORE, WEIGHTS, JOIN, WINDOW, INSERTS = (
    "01_sources.sql", "02_sinks.sql", "10_score.sql", "15_weights.sql", "20_join.sql",
    "25_window.sql", "30_inserts.sql")


def _seconds(value: float) -> str:
    """A seconds literal for INTERVAL '...' SECOND: whole or with milliseconds."""
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


def _options(options: dict[str, str]) -> str:
    return ",\n    ".join(f"'{k}' = '{v}'" for k, v in options.items())


def split_statements(text: str) -> list[str]:
    """Split a SQL file on semicolons that end a line; drop comment-only chunks."""
    statements = []
    for chunk in re.split(r";\s*$", text, flags=re.MULTILINE):
        code = "\n".join(line for line in chunk.splitlines()
                         if not line.strip().startswith("--")).strip()
        if code:
            statements.append(code)
    return statements


def render(name: str, params: dict[str, str]) -> list[str]:
    """Statements of one SQL file with ``{placeholders}`` filled in."""
    text = (SQL_DIR / name).read_text()
    try:
        return [s.format_map(params) for s in split_statements(text)]
    except KeyError as exc:
        raise KeyError(f"sql/{name} uses placeholder {exc} that the job does not fill") from exc


@dataclass
class Bounds:
    """End offsets per partition for a bounded (test or backfill) read of the inputs."""

    measurement: dict[int, int]
    weight: dict[int, int]


def sql_params(settings: Settings, bounds: Bounds | None = None) -> dict[str, str]:
    """Every placeholder the SQL files use, from the settings object."""

    def source(offsets: dict[int, int] | None) -> str:
        options = {
            "properties.bootstrap.servers": settings.bootstrap_servers,
            "properties.group.id": f"{settings.consumer_group}-predict",
        }
        if offsets is None:
            # Resume from committed offsets (committed on checkpoints); first run: earliest.
            options["scan.startup.mode"] = "group-offsets"
            options["properties.auto.offset.reset"] = "earliest"
        else:
            options["scan.startup.mode"] = "earliest-offset"
            options["scan.bounded.mode"] = "specific-offsets"
            options["scan.bounded.specific-offsets"] = ";".join(
                f"partition:{p},offset:{o}"
                for p, o in sorted({**dict.fromkeys(range(settings.topic_partitions), 0),
                                    **offsets}.items()))
        return _options(options)

    sink = {"properties.bootstrap.servers": settings.bootstrap_servers,
            "sink.delivery-guarantee": settings.delivery_guarantee}
    if settings.delivery_guarantee == "exactly-once":
        sink["sink.transactional-id-prefix"] = f"{settings.consumer_group}-predict"
    params = {
        "topic_measurement": settings.topic_measurement,
        "topic_weight": settings.topic_weight,
        "topic_prediction": settings.topic_prediction,
        "topic_diff": settings.topic_diff,
        "topic_retrain": settings.topic_retrain,
        "topic_windows": settings.topic_windows,
        "topic_dead_letter": settings.topic_dead_letter,
        "watermark_delay": _seconds(settings.watermark_delay_s),
        "max_skew_s": str(int(settings.max_clock_skew_s)),
        "join_bound": _seconds(settings.join_bound_s),
        "window": _seconds(settings.window_s),
        "error_threshold": repr(float(settings.error_threshold)),
        "sink_options": _options(sink),
    }
    params["measurement_source_options"] = source(bounds.measurement if bounds else None)
    params["weight_source_options"] = source(bounds.weight if bounds else None)
    return params


def materialize(t_env: StreamTableEnvironment, view: str, name: str) -> None:
    """Register ``name`` as ``view`` computed once, with its rowtime as ``row_time``.

    The DataStream round trip is a boundary the planner cannot see through, so every
    statement reading ``name`` shares one physical stream instead of recomputing it.
    """
    stream = t_env.to_data_stream(t_env.from_path(view))
    t_env.create_temporary_view(name, t_env.from_data_stream(
        stream,
        Schema.new_builder()
        .column_by_metadata("row_time", "TIMESTAMP_LTZ(3)", "rowtime")
        .watermark("row_time", "SOURCE_WATERMARK()")
        .build(),
    ))


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


def build_pipeline(settings: Settings, *, bounds: Bounds | None = None,
                   local: bool = True) -> Pipeline:
    """The whole prediction job as one statement set; nothing runs yet."""
    model_dir = settings.resolved_model_dir
    ModelRegistry(model_dir).load_current()  # fail now, clearly, if there is no usable model
    env, t_env = create_stream_env(settings, local=local)
    t_env.create_temporary_function("parse_measurement", parse_measurement)
    t_env.create_temporary_function("parse_weight", parse_weight)
    t_env.create_temporary_function(
        "predict_weight", predict_weight(str(model_dir.resolve()), settings.model_poll_s))

    params = sql_params(settings, bounds)
    for statement in render(SOURCES, params) + render(SINKS, params) + render(SCORE, params):
        t_env.execute_sql(statement)

    # Predicted once, shared by every branch.
    materialize(t_env, "measurement_scored", "measurement_scored_once")
    for statement in render(WEIGHTS, params):
        t_env.execute_sql(statement)
    # Parsed once: the join and the dead-letter sink read one weight stream.
    materialize(t_env, "weight_validated", "weight_validated_once")
    for statement in render(JOIN, params):
        t_env.execute_sql(statement)
    # Joined once: the diff sink and the window read the same join output and state.
    materialize(t_env, "diffs", "diffs_once")
    for statement in render(WINDOW, params):
        t_env.execute_sql(statement)
    statements = t_env.create_statement_set()
    for insert in render(INSERTS, params):
        statements.add_insert_sql(insert)
    return Pipeline(env, t_env, statements)

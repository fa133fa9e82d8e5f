"""The prediction job's Flink SQL, shipped as package data (``fishweight.sql``).

``STAGES`` is the job's shape in one place: which ``NN_*.sql`` files run, in which
order, and which of their views are materialized after each (computed once and shared
by every reader, see ``fishweight.jobs.predict.materialize``). Python only fills
``{placeholders}`` (connector options and tunables, see
``fishweight.sql.params``). ``event_time.sql`` is one expression, shared
by the Kafka source tables (``01_sources.sql``) and the in-memory sources of the fast
test tier. Files are read with ``importlib.resources``, so an installed wheel carries
and finds them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

SOURCES = "01_sources.sql"
SINKS = "02_sinks.sql"
SCORE = "10_score.sql"
WEIGHTS = "15_weights.sql"
FIRST_SEEN = "18_first_seen.sql"
JOIN = "20_join.sql"
PAIRS = "22_pairs.sql"
WINDOW = "25_window.sql"
RULES = "26_rules.sql"
METRICS = "28_metrics.sql"
INSERTS = "30_inserts.sql"
EVENT_TIME = "event_time.sql"


# Where a materialized view's event time ``row_time`` comes from (``Materialized.rowtime``).
RECORD_TIME = "record"  # the view's one time attribute, carried as the stream's record time
COLUMN = "column"  # its own plain ``row_time`` column (a view with two, e.g. an outer join's)


@dataclass(frozen=True)
class Materialized:
    """A view computed once as ``name``.

    ``rowtime`` says where its event time ``row_time`` comes from: ``RECORD_TIME`` (the
    view's one time attribute) or ``COLUMN`` (its own plain ``row_time`` column, never
    NULL, for a view with two time attributes, which the record time cannot carry);
    either way with the watermarks of the stream. ``None``: no event time, the columns as
    they are. With ``proctime``, its ``proc_time`` column is replaced by a
    processing-time attribute of the new stream (the round trip turns a time attribute
    into a plain timestamp). With ``single``, every row goes to the first subtask of
    what reads it (Flink's global partitioning): for a stream of a few rows per second
    whose reader must see all of them in one place.
    """

    view: str
    name: str
    label: str  # what its operators do, as the web UI names them
    rowtime: str | None = RECORD_TIME
    proctime: bool = False
    single: bool = False


@dataclass(frozen=True)
class Stage:
    """One SQL file of the job and the views materialized after it.

    ``bundle_time`` names the setting that bounds the bundle time of the Python UDFs in
    this file (PyFlink's ``python.fn-execution.bundle.time``, per operator): the job sets
    it before the file's statements, and it holds for every stage after until another
    sets it. A Python operator takes the value when the planner translates it, which is
    when its view is materialized, or for the last stage's, when the INSERTs are.
    """

    file: str
    materialized: tuple[Materialized, ...] = ()
    bundle_time: str | None = None


def _once(view: str, label: str, rowtime: str | None = RECORD_TIME,
          proctime: bool = False, single: bool = False) -> Materialized:
    return Materialized(view, f"{view}_once", label, rowtime, proctime, single)


# After the sources (01_sources.sql, from the connectors), in this order. The INSERTs
# (30_inserts.sql) then form the statement set.
STAGES = (
    Stage(SINKS),
    # Predicted once, shared by every branch (the UDF is not deterministic: a model swap).
    # Its bundles bound the predictions' latency (bundle_time_ms).
    Stage(SCORE, (_once("measurement_scored", "score"),), bundle_time="bundle_time_ms"),
    # Parsed once: the join and the dead-letter sink read one weight stream. No
    # prediction waits for a weight: longer bundles, fewer round trips.
    Stage(WEIGHTS, (_once("weight_validated", "parse weights"),),
          bundle_time="weight_bundle_time_ms"),
    # Each Fish_Id's records counted once, shared by the join and the dead letters.
    Stage(FIRST_SEEN, (_once("measurement_outcomes", "first seen (measurements)"),
                       _once("weight_outcomes", "first seen (weights)"))),
    # Joined once: the diffs and the unmatched records are two outputs of one join
    # state; each output once, shared by its sink and the metrics stage.
    Stage(JOIN, (_once("pairs", "join", rowtime=COLUMN),
                 _once("dead_letters", "dead letters", rowtime=None))),
    Stage(PAIRS, (_once("diffs", "diffs"), _once("unmatched", "unmatched", rowtime=None))),
    # The rules' running figures once each; the change and bias rules' (one row per joined
    # record) also feed the metrics stage.
    Stage(WINDOW, (_once("window_errors", "windows", rowtime=None),
                   _once("window_running", "window rule: running error", rowtime=None,
                         proctime=True),
                   _once("change_running", "change and bias rules: last errors", rowtime=None,
                         proctime=True))),
    Stage(RULES, (_once("retrain_events", "trigger", rowtime=None),)),
    # Counted per second (a handful of rows per second), then all of them to one
    # subtask of the metrics UDF, so each species' gauges are kept in one place at any
    # parallelism (udfs/metrics.py).
    Stage(METRICS, (_once("observation_counts", "metrics: count per second", rowtime=None,
                          single=True),),
          bundle_time="weight_bundle_time_ms"),
)

# The operators after the last materialized view, named by the sink they feed.
SINK_LABELS = {
    "prediction_sink": "predictions out", "diff_sink": "diffs out",
    "window_sink": "windows out", "retrain_sink": "retrain events out",
    "unmatched_sink": "unmatched out", "dead_letter_sink": "dead letters out",
    "metrics_sink": "metrics",
}
SOURCE_LABELS = {"measurement_raw": "measurements in", "weight_raw": "weights in"}


def text(name: str) -> str:
    """The raw text of one SQL file of this package."""
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def split_statements(sql: str) -> list[str]:
    """Split SQL text on semicolons that end a line; drop comment-only chunks."""
    statements = []
    for chunk in re.split(r";\s*$", sql, flags=re.MULTILINE):
        code = "\n".join(line for line in chunk.splitlines()
                         if not line.strip().startswith("--")).strip()
        if code:
            statements.append(code)
    return statements


def render(name: str, params: dict[str, str]) -> list[str]:
    """The statements of one SQL file with ``{placeholders}`` filled in."""
    try:
        return [s.format_map(params) for s in split_statements(text(name))]
    except KeyError as exc:
        raise KeyError(f"sql/{name} uses placeholder {exc} that the job does not fill") from exc


def render_expression(name: str, params: dict[str, str]) -> str:
    """A file that holds a single SQL expression (no semicolon), filled in."""
    (expression,) = render(name, params)
    return expression

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
WINDOW = "25_window.sql"
METRICS = "28_metrics.sql"
INSERTS = "30_inserts.sql"
EVENT_TIME = "event_time.sql"


@dataclass(frozen=True)
class Materialized:
    """A view computed once as ``name``; with ``rowtime``, its event time is ``row_time``."""

    view: str
    name: str
    rowtime: bool = True


@dataclass(frozen=True)
class Stage:
    """One SQL file of the job and the views materialized after it."""

    file: str
    materialized: tuple[Materialized, ...] = ()


def _once(view: str, rowtime: bool = True) -> Materialized:
    return Materialized(view, f"{view}_once", rowtime)


# After the sources (01_sources.sql, from the connectors), in this order. The INSERTs
# (30_inserts.sql) then form the statement set.
STAGES = (
    Stage(SINKS),
    # Predicted once, shared by every branch (the UDF is not deterministic: a model swap).
    Stage(SCORE, (_once("measurement_scored"),)),
    # Parsed once: the join and the dead-letter sink read one weight stream.
    Stage(WEIGHTS, (_once("weight_validated"),)),
    # Each Fish_Id's records counted once, shared by the join and the dead letters.
    Stage(FIRST_SEEN, (_once("measurement_outcomes"), _once("weight_outcomes"))),
    # Joined once: the diff sink and the windows read the same join output and state;
    # each output once, shared by its sink and the metrics stage.
    Stage(JOIN, (_once("diffs"), _once("unmatched", rowtime=False),
                 _once("dead_letters", rowtime=False))),
    Stage(WINDOW, (_once("window_errors", rowtime=False),
                   _once("retrain_events", rowtime=False))),
    Stage(METRICS),
)


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

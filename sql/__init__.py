"""The prediction job's Flink SQL, shipped as package data (``fishweight.sql``).

Each ``NN_*.sql`` file holds statements run in the order of its number; Python only
fills ``{placeholders}`` (connector options and tunables, see
``fishweight.jobs.predict.sql_params``). ``event_time.sql`` is one expression, shared
by the Kafka source tables and the in-memory sources of the fast test tier. Files are
read with ``importlib.resources``, so an installed wheel carries and finds them.
"""

from __future__ import annotations

import re
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

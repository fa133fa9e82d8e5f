"""Names the job's operators for what they do, as the Flink web UI and REST API show them.

The planner names operators by their kind and id (``Calc[2] -> PythonCalc[3]``), which
says nothing about which box scores, joins or triggers. The job is built stage by stage
(``fishweight.sql.STAGES``): each materialized view's operators are claimed as they are
translated, and named after the view's label (``score``, ``join``, ``trigger``, ...);
the operators after the last view are named after the sink they feed. A stage's main
operator (the Python UDF, the join, the OVER or window aggregate) carries the label
itself, its helpers the label and their kind (``score: calc``), so a chain reads like
the data path: ``Source: measurements in -> score: calc -> score -> ...``.
The planner's own description of each operator is kept (the web UI's detail view).
"""

from __future__ import annotations

import re

from fishweight import sql

# Operator kinds that do a stage's work: they carry its label alone.
PRINCIPAL = ("PythonCalc", "OverAggregate", "IntervalJoin", "GlobalWindowAggregate",
             "WindowAggregate", "GroupAggregate", "Join", "Deduplicate", "Rank")
HELPERS = {
    "Calc": "calc",
    "ConstraintEnforcer": "not null",
    "TableToDataSteam": "share",
    "LocalWindowAggregate": "local",
    "Union": "union",
    "StreamRecordTimestampInserter": "timestamps",
    "WatermarkAssigner": "watermarks",
    "Exchange": "exchange",
    "Expand": "expand",
}
_ID = re.compile(r"\[\d+\]$")


def kind_of(name: str) -> str:
    """``Calc[12]`` -> ``Calc``; a DataStream source of a shared view -> ``shared``."""
    if name.startswith("*anonymous_datastream_source"):
        return "shared"
    return _ID.sub("", name)


# A second principal operator under one label (the metrics stage's per-second count
# before its UDF): named by its kind, so no two operators of a task share a name (the
# REST API keys a task's metrics by operator name).
SECOND = {"WindowAggregate": "count per second", "OverAggregate": "count",
          "GroupAggregate": "aggregate"}


def operator_name(kind: str, label: str, first: bool = True) -> str:
    if kind in sql.SOURCE_LABELS:
        return sql.SOURCE_LABELS[kind]
    if kind in PRINCIPAL:
        return label if first else f"{label}: {SECOND.get(kind, kind)}"
    if kind == "shared":
        return f"{label}: read"
    return f"{label}: {HELPERS.get(kind, kind)}"


class OperatorNames:
    """Claims and renames the Java transformations of the job, stage by stage."""

    def __init__(self) -> None:
        self._seen: set[int] = set()
        self._principal: set[str] = set()  # labels whose principal operator is named

    def claim(self, j_transformation, label: str) -> None:
        """Name ``j_transformation`` and every input not claimed yet with ``label``."""
        todo = [j_transformation]
        while todo:
            t = todo.pop()
            if t.getId() in self._seen:
                continue
            self._seen.add(t.getId())
            kind = kind_of(t.getName())
            t.setName(operator_name(kind, label, first=label not in self._principal))
            if kind in PRINCIPAL:
                self._principal.add(label)
            todo.extend(t.getInputs())

    def claim_sinks(self, j_env) -> None:
        """After the statement set is attached: each sink and what only it reads."""
        for t in j_env.getTransformations():
            table = kind_of(t.getName())
            label = sql.SINK_LABELS.get(table)
            if label is None:
                continue
            for source in t.getInputs():
                self.claim(source, label)
            self._seen.add(t.getId())
            # Flink appends ": Writer" / ": Committer" to a sink's name.
            t.setName(label)

"""The pipeline's metrics, for the Flink web UI and REST API.

One Python stage observes every output stream of the job: ``sql/28_metrics.sql``
unions them and counts them per second of processing time, and
``observe_pipeline(Kind, Detail, Records, LastValue)`` (whose own output is
discarded) adds those counts to counters and a gauge under the metric group
``fishweight`` (so they trail the outputs by up to a second):

- ``joinedPairs``: predictions that met their weight (records of ``weight-diff``)
- ``unmatchedWeights``, ``unmatchedMeasurements``: records of ``weight-unmatched``
- ``windowsClosed``, ``lastWindowErrorAvgPpm`` (gauge): final window figures; the
  gauge is the ErrorAvg of the window closed last, in parts per million (PyFlink
  gauges are integers; -1 until a window closes)
- ``retrainEvents``: records of ``weight-retrain``
- ``deadLetters.<reasonClass>``: dead letters by the class of their reason
  (``fishweight.records.reason_class``), e.g. ``deadLetters.notJson``

The prediction UDF adds ``predictions``, ``modelVersion``, ``modelSwaps``,
``modelRefusals`` and ``predictBatchMs`` in the same group (``udfs/scoring.py``).
"""

from __future__ import annotations

import pandas as pd
from pyflink.table import DataTypes
from pyflink.table.udf import FunctionContext, ScalarFunction, udf

from fishweight.records import REASON_CLASSES

GROUP = "fishweight"


class ObservePipeline(ScalarFunction):
    """``observe_pipeline(Kind, Detail, Records, LastValue)``: add one second's counts."""

    def open(self, function_context: FunctionContext) -> None:
        group = function_context.get_metric_group().add_group(GROUP)
        self._counters = {
            "joined": group.counter("joinedPairs"),
            "unmatched_weight": group.counter("unmatchedWeights"),
            "unmatched_measurement": group.counter("unmatchedMeasurements"),
            "window": group.counter("windowsClosed"),
            "retrain": group.counter("retrainEvents"),
        }
        self._last_error_avg_ppm = -1
        group.gauge("lastWindowErrorAvgPpm", lambda: self._last_error_avg_ppm)
        letters = group.add_group("deadLetters")
        self._dead_letters = {name: letters.counter(name)
                              for name in sorted({c for _, c in REASON_CLASSES} | {"other"})}

    def eval(self, kind: pd.Series, detail: pd.Series, records: pd.Series,
             last_value: pd.Series) -> pd.Series:
        frame = pd.DataFrame({"kind": kind, "detail": detail, "records": records,
                              "last": last_value})
        for name, n in frame.groupby("kind")["records"].sum().items():
            counter = self._counters.get(name)
            if counter is not None:
                counter.inc(int(n))
        letters = frame[frame["kind"] == "dead_letter"]
        for name, n in letters.groupby("detail")["records"].sum().items():
            self._dead_letters.get(name, self._dead_letters["other"]).inc(int(n))
        windows = frame.loc[frame["kind"] == "window", "last"].dropna()
        if len(windows):
            self._last_error_avg_ppm = round(float(windows.iloc[-1]) * 1_000_000)
        return pd.Series([True] * len(kind))


def observe_pipeline():
    """The UDF ``observe_pipeline(Kind, Detail, Records BIGINT, LastValue DOUBLE)``."""
    return udf(ObservePipeline(), result_type=DataTypes.BOOLEAN(), func_type="pandas")

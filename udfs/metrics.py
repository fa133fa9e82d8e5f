"""The pipeline's metrics, for the Flink web UI and REST API.

One Python stage observes every output stream of the job (``sql/28_metrics.sql``
unions them into ``observe_pipeline(Kind, Detail, Value)``, whose own output is
discarded) and keeps counters and a gauge under the metric group ``fishweight``:

- ``joinedPairs``: predictions that met their weight (records of ``weight-diff``)
- ``unmatchedWeights``, ``unmatchedMeasurements``: records of ``weight-unmatched``
- ``windowsClosed``, ``lastWindowErrorAvgPpm`` (gauge): final window figures; the
  gauge is the ErrorAvg of the window closed last, in parts per million (PyFlink
  gauges are integers; -1 until a window closes)
- ``retrainEvents``: records of ``weight-retrain``
- ``deadLetters.<reasonClass>``: dead letters by the class of their reason
  (``udfs.validation.reason_class``), e.g. ``deadLetters.notJson``

The prediction UDF adds ``predictions``, ``modelVersion``, ``modelSwaps``,
``modelRefusals`` and ``predictBatchMs`` in the same group (``udfs/predict.py``).
"""

from __future__ import annotations

import pandas as pd
from pyflink.table import DataTypes
from pyflink.table.udf import FunctionContext, ScalarFunction, udf

from fishweight.udfs.validation import REASON_CLASSES, reason_class

GROUP = "fishweight"


class ObservePipeline(ScalarFunction):
    """``observe_pipeline(Kind, Detail, Value)``: count one observed output record."""

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

    def eval(self, kind: pd.Series, detail: pd.Series, value: pd.Series) -> pd.Series:
        counts = kind.value_counts()
        for name, n in counts.items():
            counter = self._counters.get(name)
            if counter is not None:
                counter.inc(int(n))
        if counts.get("dead_letter"):
            for name, n in detail[kind == "dead_letter"].map(reason_class).value_counts().items():
                self._dead_letters[name].inc(int(n))
        windows = value[kind == "window"].dropna()
        if len(windows):
            self._last_error_avg_ppm = round(float(windows.iloc[-1]) * 1_000_000)
        return pd.Series([True] * len(kind))


def observe_pipeline():
    """The UDF to register as ``observe_pipeline(Kind STRING, Detail STRING, Value DOUBLE)``."""
    return udf(ObservePipeline(), result_type=DataTypes.BOOLEAN(), func_type="pandas")

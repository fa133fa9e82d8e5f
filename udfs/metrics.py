"""The pipeline's metrics, for the Flink web UI, REST API and Prometheus.

One Python stage observes every output stream of the job (the joined pairs through
the change rule's running rows): ``sql/28_metrics.sql`` unions them and counts them per
second of processing time, and ``observe_pipeline(Kind, Species, Detail, Records, Total,
Latest)`` (whose own output is discarded) adds those counts to counters and gauges
under the metric group ``fishweight`` (so they trail the outputs by up to a second).
All of those rows reach the first subtask of the UDF (``sql.STAGES``), so each
species' gauges are kept in one place at any parallelism. The other subtasks get no
rows, so their Python operator never sends metrics (PyFlink sends them as a bundle
finishes): on a scrape every ``fishweight`` metric of this stage is that one subtask's.
Per-species metrics sit in the key/value group ``species=<name>`` (a Prometheus label);
the names are in ``SPECIES_METRICS`` and docs/metrics.md.

PyFlink gauges are integers: error figures are in parts per million (``...Ppm``), -1
until there is one. The prediction UDF adds ``predictions``, ``modelVersion``,
``modelAgeSeconds``, ``modelSwaps``, ``modelRefusals``, ``predictBatches`` and
``predictMicros`` in the same group (``udfs/scoring.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from pyflink.metrics import Counter, MetricGroup
from pyflink.table import DataTypes
from pyflink.table.udf import FunctionContext, ScalarFunction, udf

from fishweight.records import REASON_CLASSES

GROUP = "fishweight"
# Species are names from the input: a hostile or broken producer could send thousands.
# The first `max_species` (the setting) get their own metrics; the rest are counted
# together as OTHER.
OTHER = "_other"
# Why a record found no partner (sql/28_metrics.sql classifies the reasons of 22_pairs.sql).
UNMATCHED_CLASSES = {"measurement": ("noWeight", "late", "other"),
                     "weight": ("noMeasurement", "late", "measurementRejected", "other")}
SPECIES_METRICS = ("joinedPairs", "windowsClosed", "retrainEvents", "lastWindowErrorAvgPpm",
                   "windowErrorAvgPpm", "changeErrorsOver", "biasLeanPpm")


def ppm(value: float) -> int:
    return round(float(value) * 1_000_000)


@dataclass
class SpeciesMetrics:
    """One species' metrics: counters, and the gauges' latest values."""

    joined: Counter
    windows: Counter
    retrains: Counter
    last_window_ppm: int = -1
    window_ppm: int = -1
    window_start_ms: int = -1  # the newest window the running figures are from
    window_count: int = 0  # its joined records seen so far
    window_error_sum: float = 0.0  # and the sum of their errors
    change_over: int = -1
    lean_ppm: int = 0  # the bias rule's mean signed error (0 until a record joins)

    @classmethod
    def register(cls, group: MetricGroup) -> SpeciesMetrics:
        metrics = cls(group.counter("joinedPairs"), group.counter("windowsClosed"),
                      group.counter("retrainEvents"))
        for counter in (metrics.joined, metrics.windows, metrics.retrains):
            counter.inc(0)  # on the scrape from the start (registered inside eval)
        group.gauge("lastWindowErrorAvgPpm", lambda: metrics.last_window_ppm)
        group.gauge("windowErrorAvgPpm", lambda: metrics.window_ppm)
        group.gauge("changeErrorsOver", lambda: metrics.change_over)
        group.gauge("biasLeanPpm", lambda: metrics.lean_ppm)
        return metrics

    def running_window(self, start_ms: int, records: int, error_sum: float,
                       change_over: float, lean: float = float("nan")) -> None:
        """One second's joined records of one window: the gauges, from the newest window only.

        The window gauge is the running AVG(Error) of the species' newest window (the
        window rule's own running figure), added up here from each second's records.
        Joined records arrive out of event-time order across partitions: records of an
        older window count as joined pairs but do not move the gauges back.
        """
        if start_ms < self.window_start_ms:
            return
        if start_ms > self.window_start_ms:
            self.window_start_ms, self.window_count, self.window_error_sum = start_ms, 0, 0.0
        self.window_count += records
        self.window_error_sum += error_sum
        self.window_ppm = ppm(self.window_error_sum / self.window_count)
        if pd.notna(change_over):
            self.change_over = int(change_over)
        if pd.notna(lean):
            self.lean_ppm = ppm(lean)


@dataclass
class Totals:
    """The job-wide metrics (no species label)."""

    counters: dict[str, Counter]
    unmatched: dict[tuple[str, str], Counter]
    dead_letters: dict[str, Counter]
    last_window_ppm: int = -1
    species: dict[str, SpeciesMetrics] = field(default_factory=dict)


class ObservePipeline(ScalarFunction):
    """One second's counts: ``observe_pipeline(Kind, Species, Detail, Records, ...)``.

    The arguments after Records: Total, Latest, Lean (sql/28_metrics.sql).
    """

    def __init__(self, max_species: int) -> None:
        self.max_species = max_species

    def open(self, function_context: FunctionContext) -> None:
        self._group = group = function_context.get_metric_group().add_group(GROUP)
        unmatched = group.add_group("unmatched")
        letters = group.add_group("deadLetters")
        self._totals = totals = Totals(
            counters={
                # One row per joined record (sql/28_metrics.sql).
                "joined": group.counter("joinedPairs"),
                "unmatched_weight": group.counter("unmatchedWeights"),
                "unmatched_measurement": group.counter("unmatchedMeasurements"),
                "window": group.counter("windowsClosed"),
                "retrain": group.counter("retrainEvents"),
            },
            unmatched={(kind, name): unmatched.add_group(kind).counter(name)
                       for kind, names in UNMATCHED_CLASSES.items() for name in names},
            dead_letters={name: letters.counter(name)
                          for name in sorted({c for _, c in REASON_CLASSES} | {"other"})})
        group.gauge("lastWindowErrorAvgPpm", lambda: totals.last_window_ppm)
        self._reported = False

    def _species(self, name: object) -> SpeciesMetrics | None:
        if not isinstance(name, str):
            return None
        species = self._totals.species
        if name not in species:
            if len(species) >= self.max_species:
                name = OTHER
            if name not in species:
                species[name] = SpeciesMetrics.register(self._group.add_group("species", name))
        return species[name]

    def eval(self, kind: pd.Series, species: pd.Series, detail: pd.Series,
             records: pd.Series, total: pd.Series, latest: pd.Series,
             lean: pd.Series) -> pd.Series:
        totals = self._totals
        if not self._reported:
            # A counter appears on the scrape once it was updated: make every one show 0.
            for counter in (*totals.counters.values(), *totals.unmatched.values(),
                            *totals.dead_letters.values()):
                counter.inc(0)
            self._reported = True
        for k, sp, d, n, tot, last, lean_now in zip(kind, species, detail, records, total,
                                                    latest, lean, strict=True):
            n = int(n)
            counter = totals.counters.get(k)
            if counter is not None:
                counter.inc(n)
            # A species gets its metrics (and one of max_species places) only from a
            # kind counted per species: an unmatched or rejected record's name must
            # not take the place of a species that joins.
            metrics = self._species(sp) if k in SPECIES_KINDS else None
            if k == "dead_letter":
                totals.dead_letters.get(d, totals.dead_letters["other"]).inc(n)
            elif k.startswith("unmatched_"):
                side = k.removeprefix("unmatched_")
                key = (side, d) if (side, d) in totals.unmatched else (side, "other")
                if key in totals.unmatched:
                    totals.unmatched[key].inc(n)
            elif metrics is None:
                continue
            elif k == "window":
                metrics.windows.inc(n)
                if pd.notna(last):
                    metrics.last_window_ppm = totals.last_window_ppm = ppm(last)
            elif k == "retrain":
                metrics.retrains.inc(n)
            elif k == "joined":
                metrics.joined.inc(n)
                if isinstance(d, str) and pd.notna(tot):
                    metrics.running_window(int(d), n, float(tot), last, lean_now)
        return pd.Series([True] * len(kind))


SPECIES_KINDS = frozenset({"window", "retrain", "joined"})


def observe_pipeline(max_species: int):
    """The metrics stage's UDF, ``observe_pipeline(Kind, Species, Detail, ...)``.

    Then Records BIGINT, Total DOUBLE, Latest DOUBLE, Lean DOUBLE.
    """
    return udf(ObservePipeline(max_species), result_type=DataTypes.BOOLEAN(), func_type="pandas")

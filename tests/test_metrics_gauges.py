"""The metrics stage's gauges, on rows as the SQL hands them over (udfs/metrics.py)."""

from __future__ import annotations

import pandas as pd
import pytest

from fishweight.udfs.metrics import ObservePipeline, SpeciesMetrics


def test_the_running_window_gauges_follow_the_newest_window_not_the_latest_arrival():
    # Counters are not read by the gauge rule: a species' gauges alone. Each call is one
    # second's joined records of one window: how many, their errors' sum, and the change
    # rule's count over the threshold as of the last of them.
    metrics = SpeciesMetrics(joined=None, windows=None, retrains=None)
    assert (metrics.window_ppm, metrics.change_over) == (-1, -1)
    metrics.running_window(120_000, 2, 0.5, 1.0)
    assert (metrics.window_ppm, metrics.change_over) == (250_000, 1)
    # A record of the previous window joins late (another partition, another pace).
    metrics.running_window(60_000, 1, 0.9, 4.0)
    assert (metrics.window_ppm, metrics.change_over) == (250_000, 1)
    # The window's average runs over all its records so far: (0.5 + 0.1) / 4.
    metrics.running_window(120_000, 2, 0.1, 0.0)
    assert (metrics.window_ppm, metrics.change_over) == (150_000, 0)
    metrics.running_window(180_000, 1, 0.05, float("nan"))
    assert (metrics.window_start_ms, metrics.window_ppm, metrics.change_over) == (
        180_000, 50_000, 0)
    assert metrics.window_count == 1 and metrics.window_error_sum == pytest.approx(0.05)
    assert metrics.lean_ppm == 0  # no lean reported yet
    metrics.running_window(180_000, 1, 0.06, 0.0, -0.0612)  # the bias rule's mean, signed
    assert metrics.lean_ppm == -61_200


class RecordingGroup:
    """A stand-in for PyFlink's metric group (which exists only inside a running job):
    it records the metrics registered under it, by their dotted names."""

    class Counter:
        def __init__(self):
            self.count = 0

        def inc(self, n=1):
            self.count += n

    def __init__(self, registry=None, path=()):
        self.registry, self.path = {} if registry is None else registry, path

    def add_group(self, *names):
        return RecordingGroup(self.registry, self.path + names)

    def counter(self, name):
        self.registry[".".join((*self.path, name))] = counter = self.Counter()
        return counter

    def gauge(self, name, read):
        self.registry[".".join((*self.path, name))] = read

    def get_metric_group(self):  # the FunctionContext's one call
        return self


def test_only_species_counted_per_species_take_one_of_the_max_species_places():
    """Names seen only in unmatched or rejected records (no per-species metric counts
    them) must not fill the places, or a species that joins would land in `_other`."""
    stage, group = ObservePipeline(max_species=2), RecordingGroup()
    stage.open(group)

    def second(*rows):
        stage.eval(*(pd.Series(column) for column in zip(*rows, strict=True)))

    second(*[("unmatched_weight", f"junk{i}", "noMeasurement", 1, None, None, None)
             for i in range(3)], ("dead_letter", "junk9", "wrongType", 1, None, None, None))
    second(("joined", "salmon", "0", 5, 0.5, 0.0, 0.031), ("joined", "walleye", "0", 2, 0.2,
                                                          0.0, -0.004),
           ("joined", "pike", "0", 1, 0.1, 0.0, 0.0))
    per_species = {name for name in group.registry if name.startswith("fishweight.species.")}
    assert {name.split(".")[2] for name in per_species} == {"salmon", "walleye", "_other"}
    assert group.registry["fishweight.species.salmon.joinedPairs"].count == 5
    # The bias rule's lean, signed, in ppm.
    assert group.registry["fishweight.species.salmon.biasLeanPpm"]() == 31_000
    assert group.registry["fishweight.species.walleye.biasLeanPpm"]() == -4_000
    assert group.registry["fishweight.species._other.joinedPairs"].count == 1
    assert group.registry["fishweight.unmatched.weight.noMeasurement"].count == 3

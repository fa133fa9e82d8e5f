"""A crafted bounded stream for the prediction job and what the job must make of it.

Event times are fixed, so joins and windows are deterministic: the bounded sources
end, the watermark jumps to the end and every window closes. The same plan and the
same checks run in the fast tier (in-memory sources, ``tests/test_sql.py``) and
against Kafka (``tests/test_pipeline.py``). Each ``check_*`` takes a ``PlanRun``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass

import pandas as pd
import pytest

from fishweight.jobs.report import RunData
from fishweight.models.registry import LoadedModel
from fishweight.runtime.settings import Settings
from tests.pipeline_helpers import Sent

T0 = 1_700_000_040_000  # a whole minute, so window k is [T0 + 60k s, T0 + 60(k+1) s)
S = 1000


def _fish(fish_id, species, measured_ms, length, height):
    return {"Species": species, "Fish_Id": fish_id, "Length": length, "Height": height,
            "Timestamp": measured_ms}


def _tutorial(record, fish_id):
    """A record as the tutorial's producers write it: the id a string, no Timestamp."""
    return {**{k: v for k, v in record.items() if k != "Timestamp"}, "Fish_Id": fish_id}


class Plan:
    """The crafted stream and what the job must make of it."""

    def __init__(self, estimator):
        self.measurements: list[Sent] = []
        self.weights: list[Sent] = []
        self.expected_error: dict[int, float] = {}
        self.window_of: dict[int, int] = {}
        self.predicted: dict[int, float] = {}
        self.bad_measurements: dict[str, str] = {}
        self.bad_weights: dict[str, str] = {}
        self.estimator = estimator
        self.no_diff = set()
        self.duplicates: list[tuple[str, int]] = []  # (m|w, Fish_Id) dead-lettered
        self.duplicate_predictions: dict[float, float] = {}  # Length -> prediction
        self.unmatched: dict[tuple[str, int], str] = {}  # (Kind, Fish_Id) -> reason

    def weigh(self, fish_id, species, weighed_ms, weight):
        self.weights.append(Sent({"Species": species, "Fish_Id": fish_id, "Weight": weight,
                                  "Timestamp": weighed_ms}, weighed_ms, key=fish_id))

    def add(self, fish_id, species, measured_ms, target_error, weight_delay_ms=10 * S,
            send_weight=True, wire_ids=None):
        """One fish. ``weight_delay_ms`` may be negative (a weigh clock that lags);
        ``wire_ids`` = (measurement id, weight id) sends both records in the tutorial's
        shape: those ids (strings), no Timestamp (the Kafka record time is the event time).
        """
        length = 80.0 + (fish_id % 13) * 0.7
        height = 17.0 + (fish_id % 7) * 0.3
        record = _fish(fish_id, species, measured_ms, length, height)
        if wire_ids:
            record = _tutorial(record, wire_ids[0])
        self.measurements.append(Sent(record, measured_ms, key=fish_id))
        frame = pd.DataFrame([{"Species": species, "Length": length, "Height": height}])
        predicted = float(self.estimator.predict(frame)[0])
        self.predicted[fish_id] = predicted
        if not send_weight:
            self.no_diff.add(fish_id)
            return
        weighed_ms = measured_ms + weight_delay_ms
        actual = round(predicted / (1 + target_error), 3)
        weight = {"Species": species, "Fish_Id": fish_id, "Weight": actual,
                  "Timestamp": weighed_ms}
        if wire_ids:
            weight = _tutorial(weight, wire_ids[1])
        self.weights.append(Sent(weight, weighed_ms, key=fish_id))
        if not -60 * S <= weight_delay_ms <= 60 * S:  # join_before_s, join_bound_s
            self.no_diff.add(fish_id)
            return
        self.expected_error[fish_id] = round(abs(predicted - actual) / actual, 3)
        self.window_of[fish_id] = (weighed_ms - T0) // (60 * S)

    def bad(self, topic_kind, payload: bytes, reason: str, kafka_ms=T0 + 100 * S, key=None):
        target = self.measurements if topic_kind == "m" else self.weights
        target.append(Sent(payload, kafka_ms, key=key))
        (self.bad_measurements if topic_kind == "m" else self.bad_weights)[payload] = reason


@dataclass(frozen=True)
class PlanRun:
    """The plan run through the job: its settings, the serving model, what it made."""

    settings: Settings
    model: LoadedModel
    plan: Plan
    out: RunData


def build_plan(estimator) -> Plan:
    plan = Plan(estimator)
    fish_id = 1
    # Window 0: salmon, small errors. Window 1: salmon and walleye, large errors.
    # Window 2: salmon plus one unknown species, small errors.
    for window, errors in enumerate([
        [0.010 + 0.002 * i for i in range(10)],
        [0.200 + 0.020 * i for i in range(10)],
        [0.030] * 10,
    ]):
        for i, error in enumerate(errors):
            species = "walleye" if window == 1 and i % 2 else "salmon"
            if window == 2 and i == 5:
                species = "pike"  # never seen by the model: predicted and flagged
            plan.add(fish_id, species, T0 + window * 60 * S + i * 5 * S, error)
            fish_id += 1
    # Window 4: the running average crosses only after 6 small errors and 3 large ones,
    # long before the window closes. Window 5: one noisy fish among small errors; at
    # min_window_count (5) records the average is already below the threshold.
    for i in range(12):
        plan.add(40 + i, "salmon", T0 + 240 * S + i * 3 * S, 0.02 if i < 6 else 0.5)
    for i in range(10):
        plan.add(60 + i, "salmon", T0 + 300 * S + i * 4 * S, 0.5 if i == 0 else 0.01)
    plan.add(90, "salmon", T0 + 150 * S, 0.01, weight_delay_ms=61 * S)  # after the bound
    plan.add(91, "salmon", T0 + 150 * S, 0.01, weight_delay_ms=60 * S)  # on the bound
    plan.add(92, "salmon", T0 + 152 * S, 0.01, send_weight=False)       # never weighed
    # Each machine stamps its records with its own clock. The weigh machine's may lag by
    # more than the weighing delay (fish 96: the weight 20 s "before" its measurement,
    # 86: 60 s before, on the bound, 89: 61 s before) or lead (fish 99: 50 s after).
    plan.add(96, "salmon", T0 + 190 * S, 0.01, weight_delay_ms=-20 * S)
    plan.add(86, "salmon", T0 + 195 * S, 0.01, weight_delay_ms=-60 * S)
    plan.add(89, "salmon", T0 + 200 * S, 0.01, weight_delay_ms=-61 * S)
    plan.add(99, "salmon", T0 + 182 * S, 0.01, weight_delay_ms=50 * S)
    # The tutorial's wire format: ids as strings, no Timestamp. "0097" is fish 97.
    plan.add(97, "salmon", T0 + 185 * S, 0.01, wire_ids=("97", "0097"))
    plan.add(98, "salmon", T0 + 186 * S, 0.01, wire_ids=("98", 98))
    no_measurement = "no measurement of this Fish_Id from 60 s before to 60 s after the weight"
    no_weight = "no weight from 60 s before to 60 s after the measurement"
    plan.unmatched.update({
        ("weight", 90): no_measurement, ("measurement", 90): no_weight,
        ("weight", 89): no_measurement, ("measurement", 89): no_weight,
        ("measurement", 92): no_weight})
    # Fish 93 is measured twice and weighed twice. The first of each to arrive is the
    # fish's; the input is not keyed in the fast tier, so either may arrive first.
    for length, measured_ms in ((82.0, T0 + 160 * S), (83.0, T0 + 162 * S)):
        record = _fish(93, "salmon", measured_ms, length, 17.3)
        plan.measurements.append(Sent(record, measured_ms, key=93))
        frame = pd.DataFrame([{"Species": "salmon", "Length": length, "Height": 17.3}])
        plan.duplicate_predictions[length] = float(plan.estimator.predict(frame)[0])
    plan.weigh(93, "salmon", T0 + 170 * S, 3.0)
    plan.weigh(93, "salmon", T0 + 172 * S, 3.1)
    plan.duplicates += [("m", 93), ("w", 93)]
    plan.window_of[93] = 2  # either weight falls in window 2
    # Fish 94's measurement is rejected; its valid weight is unmatched with that reason.
    bad_length = {"Species": "salmon", "Fish_Id": 94, "Length": 900.0, "Height": 17.0,
                  "Timestamp": T0 + 165 * S}
    plan.bad("m", json.dumps(bad_length).encode(), "out of range: Length", T0 + 165 * S, 94)
    plan.weigh(94, "salmon", T0 + 175 * S, 4.2)
    plan.unmatched[("weight", 94)] = "measurement rejected: out of range: Length = 900"
    # Fish 95 is weighed, never measured.
    plan.weigh(95, "salmon", T0 + 176 * S, 4.0)
    plan.unmatched[("weight", 95)] = no_measurement

    good = f'"Species":"salmon","Fish_Id":500,"Timestamp":{T0 + 100 * S}'
    plan.bad("m", b"this is not json", "not valid JSON")
    plan.bad("m", b'{%s,"Length":80.0}' % good.encode(), "missing field(s): Height")
    plan.bad("m", b'{%s,"Length":"80","Height":17.0}' % good.encode(), "wrong type: Length")
    plan.bad("m", b'{%s,"Length":NaN,"Height":17.0}' % good.encode(), "non-finite number")
    plan.bad("m", b'{%s,"Length":-80.0,"Height":17.0}' % good.encode(), "non-positive number")
    far = b'{"Species":"salmon","Fish_Id":501,"Length":80.0,"Height":17.0,"Timestamp":%d}' % (
        T0 + 10 * 86_400 * S)
    plan.bad("m", far, "implausible Timestamp")
    # 2^32 s ahead: TIMESTAMPDIFF(SECOND, ...) wraps to 0 s apart. In payload event time
    # it would have moved the watermark 136 years ahead and made every record late.
    wrapped = b'{"Species":"salmon","Fish_Id":502,"Length":80.0,"Height":17.0,"Timestamp":%d}' % (
        T0 + 100 * S + 2**32 * 1000)
    plan.bad("m", wrapped, "implausible Timestamp")
    plan.bad("w", b'{"Species":"salmon","Fish_Id":1,"Weight":0,"Timestamp":%d}' % (T0 + 99 * S),
             "non-positive number: Weight = 0")
    plan.bad("w", b'{"Species":"salmon","Fish_Id":2,"Weight":-1.5,"Timestamp":%d}' % (
        T0 + 99 * S), "non-positive number: Weight = -1.5")
    plan.bad("w", b'{"Species":"salmon","Weight":4.0,"Timestamp":%d}' % (T0 + 99 * S),
             "missing field(s): Fish_Id")
    plan.bad("w", b"{broken", "not valid JSON")
    # Hostile input: none of it may fail the job.
    plan.bad("m", b"\x00\xff\xfe garbage", "not UTF-8")
    plan.bad("m", b"[" * 1000 + b"]" * 1000, "not valid JSON: nested too deeply")
    plan.bad("w", b'{"Species":"%s"}' % (b"x" * 900_000), "payload too large: 900014 bytes")
    plan.bad("m", b'{%s,"Length":1e308,"Height":17.0}' % good.encode(), "out of range: Length")
    plan.bad("m", b'{"Species":"sal\\u0000mon","Fish_Id":502,"Length":80.0,"Height":17.0,'
                  b'"Timestamp":%d}' % (T0 + 100 * S), "Species has control characters")
    plan.bad("w", "\ufeff".encode() + b'{"Fish_Id":1}', "not valid JSON")
    # Ids the tutorial's format does not allow either (udfs/validation.py, record_id).
    for fish_id in (b'"1.0"', b'" 7"', b'""', b"1e3", b'"12345678901234567890"'):
        reason = ("out of range: Fish_Id" if b"123" in fish_id
                  else "wrong type: Fish_Id must be an integer or a string of decimal digits")
        plan.bad("m", b'{"Species":"salmon","Fish_Id":%s,"Length":80.0,"Height":17.0}'
                 % fish_id, reason)
    return plan


def check_predictions_match_the_model(run):
    model, plan, out = run.model, run.plan, run.out
    by_id = Counter(p["Fish_Id"] for p in out.values("predictions"))
    duplicated = {i for _, i in plan.duplicates}
    assert set(by_id) == set(plan.predicted) | duplicated
    assert max(by_id.values()) == 1, "a measurement was predicted twice"
    for p in out.values("predictions"):
        if p["Fish_Id"] in duplicated:
            continue  # check_a_repeated_fish_id_is_one_fish
        pred = p["Prediction"]
        assert math.isclose(pred["Weight"], plan.predicted[p["Fish_Id"]], abs_tol=1e-9)
        assert pred["ModelVersion"] == model.version == 1
        assert pred["ModelTime"] == model.trained_at
        assert pred["SpeciesKnown"] is (p["Species"] == "salmon")  # the model saw only salmon


def check_join_yields_one_diff_per_fish_within_the_bound(run):
    plan, out = run.plan, run.out
    ids = Counter(d["Fish_Id"] for d in out.values("diffs"))
    duplicated = {i for _, i in plan.duplicates}
    assert set(ids) == set(plan.expected_error) | duplicated, set(ids) ^ set(
        plan.expected_error)
    assert max(ids.values()) == 1
    assert 90 not in ids and 92 not in ids and 91 in ids
    for d in out.values("diffs"):
        if d["Fish_Id"] in duplicated:
            continue
        assert d["Error"] == pytest.approx(plan.expected_error[d["Fish_Id"]], abs=1.01e-3)
        assert d["PredictedWeight"] == pytest.approx(plan.predicted[d["Fish_Id"]], abs=1e-9)
        assert d["ModelVersion"] == 1


def _window_start(window: int) -> str:
    return pd.Timestamp(T0 + window * 60 * S, unit="ms").strftime("%Y-%m-%dT%H:%M:%S")


def _key(record) -> tuple[str, str]:
    """A window of one species: (WindowStart to the second, species)."""
    (species,) = record["Species"]
    return record["WindowStart"][:19], species


def check_retrain_fires_early_once_per_drifting_window(run):
    """The first crossing of each (window, species) running average, with what it has seen.

    Arrival order inside a window may interleave at parallelism 2, so the checks hold
    for every order: in window 1 (all errors large) salmon and walleye each fire at
    exactly min_window_count records, window 4 fires before its last record, window 5
    (one noisy fish) never fires.
    """
    settings, plan, out = run.settings, run.plan, run.out
    window_events = [e for e in out.values("retrains") if e["Rule"] == "window"]
    events = {_key(e): e for e in window_events}
    assert len(events) == len(window_events), "two retrain events for one window"
    assert set(events) == {(_window_start(1), "salmon"), (_window_start(1), "walleye"),
                           (_window_start(4), "salmon")}, sorted(events)
    final = {_key(w): w for w in out.values("windows")}
    observed = {d["Fish_Id"]: d for d in out.values("diffs")}
    for (start, species), event in events.items():
        window = next(k for k in range(6) if _window_start(k) == start)
        members = [i for i, w in plan.window_of.items()
                   if w == window and observed[i]["Species"] == species]
        errors = sorted(observed[i]["Error"] for i in members)
        n = event["Count"]
        assert settings.min_window_count <= n <= final[(start, species)]["Count"] == len(members)
        assert event["ErrorAvg"] > settings.error_threshold
        # The running average is the mean of n of the window's errors.
        assert sum(errors[:n]) / n - 1e-9 <= event["ErrorAvg"] <= sum(errors[-n:]) / n + 1e-9
        assert min(members) <= event["Fish_Id_Start"] <= event["Fish_Id_End"] <= max(members)
        assert event["Timestamp_End"] in {observed[i]["Timestamp"] for i in members}
        assert event["ModelVersions"] == [1] and event["ModelVersionMax"] == 1
        assert event["WindowEnd"][:19] == _window_start(window + 1)
    assert events[(_window_start(1), "walleye")]["Count"] == settings.min_window_count
    assert events[(_window_start(4), "salmon")]["Count"] < 12, "fired only at the window's end"
    for event in events.values():  # where the change began, as far as the window saw
        bad = [d for d in observed.values() if d["Error"] > settings.error_threshold
               and d["Species"] == event["Species"][0]
               and _window_start(plan.window_of[d["Fish_Id"]]) == event["WindowStart"][:19]]
        assert event["Change_Timestamp"] in {d["Timestamp"] for d in bad}
        assert event["Change_Fish_Id"] in {d["Fish_Id"] for d in bad}
        assert event["Change_Timestamp"] <= event["Timestamp_End"]


def check_change_rule_fires_once_per_species_and_version(run):
    """m of the last k errors of a species over the threshold: one event per species and
    model version at most; the version then had its event. With the records the rule
    looked at. Every walleye error is over the threshold, so walleye fires in any arrival
    order. Salmon's large errors (windows 1 and 4) fire it when they arrive close
    together; read from 3 partitions by 2 subtasks they may arrive spread among its
    small ones (arrival order is the rule's order), so salmon may not fire (seen once in
    CI)."""
    settings, out = run.settings, run.out
    changes = [e for e in out.values("retrains") if e["Rule"] == "change"]
    fired = Counter(e["Species"][0] for e in changes)
    assert fired["walleye"] == 1 and set(fired) <= {"salmon", "walleye"}, changes
    assert max(fired.values()) == 1, changes
    observed = {d["Fish_Id"]: d for d in out.values("diffs")}
    for event in changes:
        (species,) = event["Species"]
        assert event["ModelVersions"] == [1] and event["ModelVersionMax"] == 1
        assert settings.change_over <= event["Count"] <= settings.change_records
        looked_at = [d for d in observed.values() if d["Species"] == species
                     and event["Fish_Id_Start"] <= d["Fish_Id"] <= event["Fish_Id_End"]
                     and d["Timestamp"] <= event["Timestamp_End"]]
        bad = [d for d in looked_at if d["Error"] > settings.error_threshold]
        assert len(bad) >= settings.change_over
        assert event["ErrorAvg"] > 0.1  # window 1's errors are 0.2 and up
        assert event["Change_Fish_Id"] in {d["Fish_Id"] for d in bad}
        assert event["Change_Timestamp"] in {d["Timestamp"] for d in bad}
        assert event["Change_Timestamp"] <= event["Timestamp_End"]


def check_bias_rule_events_are_sound_and_once_per_species_and_version(run):
    """The bias rule (a lean of a species' last bias_records signed errors) fires at most
    once per species and model version, over exactly bias_records joined records. Whether
    it fires here depends on arrival order (salmon's small errors all lean one way, its
    large ones widen the spread), so each event it gives is checked against the diffs: the
    records of its span are there, and the test holds for some bias_records of them."""
    settings, out = run.settings, run.out
    events = [e for e in out.values("retrains") if e["Rule"] == "bias"]
    assert max(Counter((e["Species"][0], e["ModelVersionMax"]) for e in events).values(),
               default=1) == 1, events
    observed = list(out.values("diffs"))
    for event in events:
        (species,) = event["Species"]
        assert event["Count"] == settings.bias_records and event["ModelVersions"] == [1]
        span = [d for d in observed if d["Species"] == species
                and event["Change_Timestamp"] <= d["Timestamp"] <= event["Timestamp_End"]
                and event["Fish_Id_Start"] <= d["Fish_Id"] <= event["Fish_Id_End"]]
        assert len(span) >= settings.bias_records, (event, span)
        assert event["Change_Timestamp"] == min(d["Timestamp"] for d in span)
        errors = sorted(d["Error"] for d in span)
        n = settings.bias_records
        assert sum(errors[:n]) / n - 1e-9 <= event["ErrorAvg"] <= sum(errors[-n:]) / n + 1e-9
        assert event["ErrorAvg"] > settings.bias_min - 0.001  # Error has 3 decimals


def check_every_window_is_reported_once_with_final_figures(run):
    settings, plan, out = run.settings, run.plan, run.out
    counts = Counter(_key(w) for w in out.values("windows"))
    assert set(counts.values()) == {1}
    observed = {d["Fish_Id"]: d for d in out.values("diffs")}
    expected = Counter((plan.window_of[i], observed[i]["Species"]) for i in plan.window_of)
    assert len(counts) == len(expected)
    for w in out.values("windows"):
        (species,) = w["Species"]
        window = (pd.Timestamp(w["WindowStart"]).value // 10**6 - T0) // (60 * S)
        members = [i for i, k in plan.window_of.items()
                   if k == window and observed[i]["Species"] == species]
        assert w["Count"] == len(members) == expected[(window, species)]
        assert w["ErrorAvg"] == pytest.approx(
            sum(observed[i]["Error"] for i in members) / len(members))
        assert (w["Fish_Id_Start"], w["Fish_Id_End"]) == (min(members), max(members))
    # A window whose final figures are over the threshold crossed it at some point.
    over = {_key(w) for w in out.values("windows")
            if w["ErrorAvg"] > settings.error_threshold
            and w["Count"] >= settings.min_window_count}
    assert over <= {_key(e) for e in out.values("retrains")}


def check_bad_input_is_dead_lettered_with_its_reason(run):
    settings, plan, out = run.settings, run.plan, run.out
    expected = [(settings.topic_measurement, p, r) for p, r in plan.bad_measurements.items()]
    expected += [(settings.topic_weight, p, r) for p, r in plan.bad_weights.items()]
    letters = [d for d in out.values("dead_letters") if "duplicate" not in d["Reason"]]
    got = {(d["SourceTopic"], d["PayloadSha256"]): d for d in letters}
    assert len(letters) == len(expected)
    for topic, payload, reason in expected:
        letter = got[(topic, hashlib.sha256(payload).hexdigest())]
        assert reason in letter["Reason"], (payload[:80], letter["Reason"])
        assert letter["PayloadSize"] == len(payload)
        quoted = payload[:1024].decode("utf-8", "backslashreplace")[:1024]
        assert letter["Payload"] == quoted
    for d in out.values("dead_letters"):
        assert d["Offset"] >= 0 and d["Partition"] in (0, 1, 2)


def check_a_repeated_fish_id_is_one_fish(run):
    """The first measurement and the first weight of a Fish_Id are the fish's."""
    settings, plan, out = run.settings, run.plan, run.out
    topics = {"m": settings.topic_measurement, "w": settings.topic_weight}
    duplicates = sorted((d["SourceTopic"], d["Fish_Id"]) for d in out.values("dead_letters")
                        if d["Reason"].startswith("duplicate Fish_Id"))
    assert duplicates == sorted((topics[k], i) for k, i in plan.duplicates)
    for d in out.values("dead_letters"):
        if d["Reason"].startswith("duplicate Fish_Id"):
            assert json.loads(d["Payload"])["Fish_Id"] == d["Fish_Id"]
            assert d["Offset"] >= 0
    fish = {i for _, i in plan.duplicates}.pop()
    (kept,) = [p for p in out.values("predictions") if p["Fish_Id"] == fish]
    (dropped,) = [json.loads(d["Payload"]) for d in out.values("dead_letters")
                  if d["Fish_Id"] == fish and d["SourceTopic"] == settings.topic_measurement]
    assert {kept["Length"], dropped["Length"]} == set(plan.duplicate_predictions)
    assert kept["Prediction"]["Weight"] == pytest.approx(
        plan.duplicate_predictions[kept["Length"]], abs=1e-9)
    (diff,) = [d for d in out.values("diffs") if d["Fish_Id"] == fish]
    (other,) = [json.loads(d["Payload"]) for d in out.values("dead_letters")
                if d["Fish_Id"] == fish and d["SourceTopic"] == settings.topic_weight]
    weighed = {w.payload["Weight"] for w in plan.weights if w.key == fish}
    assert {diff["ActualWeight"], other["Weight"]} == weighed
    # The diff pairs the published prediction with the weight that was kept.
    assert diff["PredictedWeight"] == kept["Prediction"]["Weight"]
    assert diff["Length"] == kept["Length"]


def check_every_input_record_is_accounted_for(run):
    settings, plan, out = run.settings, run.plan, run.out
    dead_m = out.dead_letters_from(settings.topic_measurement)
    dead_w = out.dead_letters_from(settings.topic_weight)
    assert len(out.values("predictions")) + dead_m == len(plan.measurements)
    unmatched = {(u["Kind"], u["Fish_Id"]): u["Reason"] for u in out.values("unmatched")}
    # Fish 90: its weight came after the bound; 92 was never weighed; 94's measurement
    # was rejected; 95 was never measured.
    assert set(unmatched) == set(plan.unmatched), unmatched
    for key, reason in plan.unmatched.items():
        assert unmatched[key].startswith(reason), (key, unmatched[key])
    assert len(out.values("unmatched")) == len(plan.unmatched)
    assert (len(out.values("diffs")) + out.unmatched_of("weight") + dead_w
            == len(plan.weights))


CHECKS = [
    check_predictions_match_the_model,
    check_join_yields_one_diff_per_fish_within_the_bound,
    check_retrain_fires_early_once_per_drifting_window,
    check_change_rule_fires_once_per_species_and_version,
    check_bias_rule_events_are_sound_and_once_per_species_and_version,
    check_every_window_is_reported_once_with_final_figures,
    check_bad_input_is_dead_lettered_with_its_reason,
    check_a_repeated_fish_id_is_one_fish,
    check_every_input_record_is_accounted_for,
]

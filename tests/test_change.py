"""A change inside a known species: the refit of its line and the trainer's decisions.

The trainer (``models.decisions.Trainer``) runs without Kafka here: a SQLite store, a real
model registry with the bootstrap model (100 simulated salmon), and events shaped like
the job's change and bias rules write them (``sql/26_rules.sql``; ``tests/test_sql.py``
runs the rules themselves). The last part: a drift too small for the error threshold,
the bias rule's test and where the errors shifted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fishweight.jobs.trainer_metrics import TrainerMetrics
from fishweight.models.bootstrap import bootstrap_frame, bootstrap_model
from fishweight.models.decisions import Trainer, window_key
from fishweight.models.estimator import refit_species
from fishweight.models.policy import fit, leans, relative_errors, shift_start, signed_errors
from fishweight.records import event_problem
from fishweight.runtime.settings import Settings

T0 = 1_700_000_000_000


def salmon(n, rng, weight_scale=1.0, length_read=1.0, outliers=()):
    """n salmon of the tutorial's profile; the machines may read them off (a change)."""
    length, height = rng.normal(88, 5, n), rng.normal(19, 1, n)
    weight = weight_scale * (0.05 * length + 0.01 * height) + rng.normal(0, 0.1, n)
    weight[list(outliers)] *= 1.4  # mis-weighed
    return pd.DataFrame({"Species": ["salmon"] * n, "Length": np.round(length * length_read, 3),
                         "Height": np.round(height, 3), "Weight": np.round(weight, 3)})


@pytest.mark.parametrize("change", [{"weight_scale": 1.25}, {"weight_scale": 0.8},
                                    {"length_read": 1.25}, {"length_read": 0.75}])
def test_refit_from_a_few_records_since_the_change_is_near_the_noise_floor(change):
    old = fit(bootstrap_frame())
    ratios = []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        since = salmon(4, rng, **change)
        new, loo, choice = refit_species(old, "salmon", since, since["Weight"])
        assert choice["kind"] in ("scale", "offset") and len(loo) == 4
        test = salmon(300, rng, **change)
        exact = change.get("weight_scale", 1.0) * (0.05 * test["Length"] / change.get(
            "length_read", 1.0) + 0.01 * test["Height"])
        floor = float(np.mean(np.abs(exact - test["Weight"]) / test["Weight"]))
        assert relative_errors(old, test).mean() > 0.15  # what the trigger saw
        ratios.append(relative_errors(new, test).mean() / floor)
    assert np.mean(ratios) < 1.4, ratios


def test_with_more_records_the_species_gets_its_own_slopes_and_others_keep_theirs():
    rng = np.random.default_rng(4)
    old = fit(pd.concat([salmon(60, rng), _walleye(30, rng)], ignore_index=True))
    since = salmon(40, rng, length_read=1.3)
    new, _, choice = refit_species(old, "salmon", since, since["Weight"])
    assert choice["records"] == 40 and "own slopes 30" in choice["loo_by_kind"]
    walleye = _walleye(50, rng)
    assert np.allclose(new.predict(walleye), old.predict(walleye))  # untouched
    assert new.describe()["adaptations"]["salmon"]["kind"] == choice["kind"]


def _walleye(n, rng):
    length, height = rng.normal(81, 8, n), rng.normal(17, 2, n)
    weight = 0.02 * length + 0.04 * height + rng.normal(0, 0.1, n)
    return pd.DataFrame({"Species": ["walleye"] * n, "Length": length, "Height": height,
                         "Weight": weight})


def _diffs(frame, first_id, start_ms, model):
    predicted = model.predict(frame)
    return [{"Fish_Id": first_id + i, "Species": row.Species, "Length": row.Length,
             "Height": row.Height, "PredictedWeight": float(p), "ActualWeight": row.Weight,
             "Error": round(abs(float(p) - row.Weight) / row.Weight, 3), "ModelTime": "t",
             "ModelVersion": 1, "Timestamp": start_ms + 2000 * i}
            for i, (row, p) in enumerate(zip(frame.itertuples(), predicted, strict=True))]


def _per_version_event(records, version, rule, changed, **fields):
    """An event of a rule that fires once per species and version (the change or the bias
    rule) over ``records``, the change beginning at the record ``changed``."""
    last = records[-1]
    return {"WindowStart": "2023-11-14T22:13:20", "WindowEnd": "2023-11-14T22:13:30",
            "Species": ["salmon"], "Fish_Id_Start": records[0]["Fish_Id"],
            "Fish_Id_End": last["Fish_Id"], "Timestamp_End": last["Timestamp"],
            "ErrorAvg": 0.2, "Count": len(records), "ModelVersions": [version],
            "ModelVersionMax": version, "Rule": rule,
            "Change_Fish_Id": changed["Fish_Id"], "Change_Timestamp": changed["Timestamp"],
            **fields}


def _change_event(records, version=1):
    bad = [r for r in records if r["Error"] > 0.15]
    return _per_version_event(records, version, "change", bad[0])


@pytest.fixture
def trainer(tmp_path):
    settings = Settings.load(state_dir=str(tmp_path), web_ui_port=0)
    bootstrap_model(settings)
    return Trainer(settings)


def _salmon_heavier_since_fish_41(trainer, rng):
    """40 salmon as v1 knows them, then 4 heavier by 25 %: stored; the change event."""
    v1 = trainer.registry.load_current()
    before = _diffs(salmon(40, rng), 1, T0, v1.estimator)
    after = _diffs(salmon(4, rng, weight_scale=1.25), 41, T0 + 80_000, v1.estimator)
    trainer.store_diffs(before + after)
    return _change_event(after[:3])


def test_a_change_is_learnt_from_its_records_only_and_remembered(trainer):
    rng = np.random.default_rng(7)
    event = _salmon_heavier_since_fish_41(trainer, rng)
    decision = trainer.handle_retrain(event)
    assert decision.action == "promoted", decision.detail
    assert decision.reason == "change" and decision.gate["every_record_better"]
    assert decision.training_species == {"salmon": 4}  # nothing from before the change
    v2 = trainer.registry.load_current()
    assert v2.manifest["changes"] == {"salmon": event["Change_Timestamp"]}
    assert v2.manifest["training_window"]["fish_ids"] == [41, 42, 43, 44]
    heavier = salmon(200, rng, weight_scale=1.25)
    assert relative_errors(v2.estimator, heavier).mean() < 0.03
    # The same species and version again (a replay): decided once.
    assert trainer.handle_retrain(event).action == "skipped_duplicate"
    # A window event of the old version: stale.
    assert trainer.handle_retrain({**event, "Rule": "window"}).action == "skipped_stale"
    # Species memory leaves the old salmon out when a new species is learnt.
    trainer.store_diffs(_diffs(salmon(10, rng, weight_scale=1.25), 45, T0 + 88_000,
                               v2.estimator))
    walleye = _diffs(_walleye(5, rng), 55, T0 + 108_000, v2.estimator)
    trainer.store_diffs(walleye)
    decision = trainer.handle_retrain({**_change_event(walleye, version=2),
                                       "Species": ["walleye"], "Rule": "window"})
    assert decision.action == "promoted", decision.detail
    v3 = trainer.registry.load_current()
    assert min(v3.manifest["training_window"]["fish_ids"]) >= 41
    assert v3.manifest["changes"] == v2.manifest["changes"]


def test_refinement_after_a_change_counts_only_its_records(trainer):
    v1 = trainer.registry.load_current()
    rng = np.random.default_rng(8)
    trainer.store_diffs(_diffs(salmon(40, rng), 1, T0, v1.estimator))
    after = _diffs(salmon(4, rng, length_read=1.25), 41, T0 + 80_000, v1.estimator)
    trainer.store_diffs(after)
    assert trainer.handle_retrain(_change_event(after[:3])).action == "promoted"
    v2 = trainer.registry.load_current()
    assert trainer.species_counts(v2)["salmon"] == 4
    assert trainer.refine_if_due() is None  # 44 salmon stored, 4 since the change
    more = salmon(11, rng, length_read=1.25)
    trainer.store_diffs(_diffs(more, 45, T0 + 88_000, v2.estimator))
    decision = trainer.refine_if_due()
    assert decision is not None and decision.reason == "refinement"
    assert decision.training_species == {"salmon": 15}
    assert decision.gate["since_ms"] == after[0]["Timestamp"]


@pytest.mark.parametrize("outliers", [(0, 1, 2), (0, 2, 3), (0, 1, 3), (0, 2, 4)])
def test_a_burst_of_outliers_among_good_fish_is_refused(trainer, outliers):
    """3 % of fish mis-weighed by +40 %: three of them among five fire the change rule.
    The fish after them is good, so the candidate is worse on it and is refused."""
    v1 = trainer.registry.load_current()
    rng = np.random.default_rng(9)
    trainer.store_diffs(_diffs(salmon(40, rng), 1, T0, v1.estimator))
    burst = _diffs(salmon(5, rng, outliers=outliers), 41, T0 + 80_000, v1.estimator)
    trainer.store_diffs(burst)
    decision = trainer.handle_retrain(_change_event(burst[:max(outliers) + 1]))
    assert decision.action == "not_promoted", decision.detail
    assert not decision.gate["every_record_better"]
    assert trainer.registry.load_current().version == v1.version


def test_a_new_species_with_a_change_start_takes_the_window_path(trainer):
    """The model does not know walleye: the change start is no reason to skip salmon."""
    v1 = trainer.registry.load_current()
    rng = np.random.default_rng(10)
    trainer.store_diffs(_diffs(salmon(40, rng), 1, T0, v1.estimator))
    walleye = _diffs(_walleye(5, rng), 41, T0 + 80_000, v1.estimator)
    trainer.store_diffs(walleye)
    decision = trainer.handle_retrain({**_change_event(walleye), "Species": ["walleye"]})
    assert decision.action == "promoted", decision.detail
    assert decision.reason == "window" and decision.training_species["salmon"] >= 40


@pytest.mark.parametrize("change, problem", [
    ({"Rule": "season"}, "Rule must be one of window, change, bias"),
    ({"Change_Timestamp": "yesterday"}, "Change_Timestamp must be a positive integer"),
    ({"Change_Fish_Id": -3}, "Change_Fish_Id must be a positive integer"),
    ({"ModelVersionMax": None}, "a change event needs ModelVersionMax"),
    # Year 10000 in UTC: datetime raised OverflowError, which stopped the trainer's loop.
    ({"WindowEnd": "9999-12-31T23:59:59-01:00"}, "WindowEnd is not an ISO-8601 time"),
    ({"WindowStart": "0001-01-01T00:00:00+01:00"}, "WindowStart is not an ISO-8601 time"),
])
def test_malformed_change_fields_are_refused_with_a_reason(change, problem):
    event = {**_change_event([{"Fish_Id": 1, "Timestamp": T0, "Error": 0.3}]), **change}
    assert event_problem(event).startswith(problem)
    assert event_problem(_change_event([{"Fish_Id": 1, "Timestamp": T0, "Error": 0.3}])) is None


def test_a_window_end_with_an_offset_is_read_as_the_utc_time_it_names():
    from fishweight.models.decisions import window_end_epoch_ms

    ends = ["2023-11-14T22:14:20", "2023-11-14T22:14:20Z", "2023-11-15T00:14:20+02:00",
            "2023-11-14T22:14:20.000+00:00"]
    assert {window_end_epoch_ms({"WindowEnd": end}) for end in ends} == {T0 + 60_000}


def test_change_events_are_keyed_by_species_and_version():
    event = _change_event([{"Fish_Id": 1, "Timestamp": T0, "Error": 0.3}])
    assert window_key(event) == window_key({**event, "WindowStart": "other"})
    assert window_key(event) != window_key({**event, "ModelVersionMax": 2})
    assert window_key(event) != window_key({**event, "Rule": "window"})



def test_the_decision_log_rolls_over_and_a_restart_still_reads_what_it_needs(tmp_path):
    """A chronically bad species fires an event a minute for ever: the log the trainer
    reads at start stays bounded, and what rolled out of it is not mistaken for a lost
    promotion."""
    from fishweight.models.decisions import decision_log, read_decisions, rolled

    settings = Settings.load(state_dir=str(tmp_path), web_ui_port=0,
                             decision_log_max_mb=4 / 1024)  # 4 KB: a few decisions a file
    bootstrap_model(settings)
    trainer = Trainer(settings)
    change = _salmon_heavier_since_fish_41(trainer, np.random.default_rng(7))
    assert trainer.handle_retrain(change).action == "promoted"
    # Windows still scored by version 1, one a minute: each decided (stale) and logged.
    windows = [{**change, "Rule": "window", "Change_Timestamp": None,
                "WindowStart": f"2023-11-14T23:{m:02d}:00",
                "WindowEnd": f"2023-11-14T23:{m:02d}:10"} for m in range(20)]
    assert {trainer.handle_retrain(w).action for w in windows} == {"skipped_stale"}

    log_path = decision_log(settings)
    assert rolled(log_path).exists() and not rolled(rolled(log_path)).exists()
    current_size = log_path.stat().st_size if log_path.exists() else 0  # none just after a roll
    assert current_size <= 4096 < rolled(log_path).stat().st_size
    kept = read_decisions(settings)
    assert 2 <= len(kept) < 21 and "promoted" not in [d["action"] for d in kept]
    assert [d["event"] for d in kept] == windows[-len(kept):]  # the newest, in order

    restarted = Trainer(settings, store=trainer.store)
    # The running trainer remembers what a restart remembers: the windows the log holds
    # (bounded as the log is, not one per window for ever).
    assert trainer._decided_windows == restarted._decided_windows
    assert len(trainer._decided_windows) == len(kept) < 21
    assert restarted.stats.count("promoted") == 0  # v2's record rolled away: not "lost"
    assert read_decisions(settings) == kept
    assert restarted.handle_retrain(windows[-1]).action == "skipped_duplicate"
    # An event older than the log (a replay from an old savepoint) meets the stale rule.
    assert restarted.handle_retrain(change).action == "skipped_stale"


def test_a_version_rolled_back_to_by_hand_is_not_taken_for_a_lost_promotion(trainer):
    """An operator rolls back to a version the trainer promoted long ago, whose decision
    has rolled out of the log: a restart must not record that old promotion again."""
    from fishweight.models.decisions import read_decisions, rolled

    event = _salmon_heavier_since_fish_41(trainer, np.random.default_rng(7))
    assert trainer.handle_retrain(event).action == "promoted"  # version 2, recorded
    current = trainer.registry.load_current()
    trainer.registry.publish(current.estimator, {"reason": "by hand"})  # version 3
    for path in (trainer.decisions_path, rolled(trainer.decisions_path)):
        path.unlink(missing_ok=True)  # version 2's decision rolled out of the log
    assert trainer.registry.rollback(2) == 2 and trainer.registry.pointed_by() == "rollback"

    restarted = Trainer(trainer.settings, store=trainer.store)
    assert read_decisions(trainer.settings) == []
    assert restarted.stats.count("promoted") == 0
    # The event behind version 2 was decided long ago; on a replay it meets the stale
    # rule (the served version 2 is newer than the version 1 that scored it).
    assert restarted.handle_retrain(event).action == "skipped_stale"


def test_a_promotion_whose_decision_was_lost_is_recovered_and_not_decided_twice(trainer):
    """The trainer killed after switching CURRENT, before appending its decision; and a
    decision line cut short by a kill."""
    from fishweight.models.decisions import read_decisions

    event = _salmon_heavier_since_fish_41(trainer, np.random.default_rng(7))
    trainer._record = lambda decision: decision  # the kill: the decision is never written
    assert trainer.handle_retrain(event).action == "promoted"
    assert trainer.registry.current_version() == 2 and read_decisions(trainer.settings) == []
    with open(trainer.decisions_path, "a") as fh:
        fh.write('{"action": "prom')  # and a line cut short

    restarted = Trainer(trainer.settings, store=trainer.store)
    recovered = read_decisions(trainer.settings)
    assert [(d["action"], d["version"], d["reason"]) for d in recovered] == [
        ("promoted", 2, "change")]
    assert recovered[0]["event"] == event
    assert restarted.handle_retrain(event).action == "skipped_duplicate"  # the redelivery
    assert [d["action"] for d in read_decisions(trainer.settings)] == [
        "promoted", "skipped_duplicate"]
    # Prometheus counts what the stats count: the recovered promotion too.
    registry = TrainerMetrics(restarted.stats).registry
    decided = {(s.labels["action"], s.labels["reason"]): s.value
               for m in registry.collect() for s in m.samples
               if s.name == "fishweight_trainer_decisions_total"}
    assert decided == {("promoted", "change"): 1, ("skipped_duplicate", "change"): 1}
    assert registry.get_sample_value("fishweight_trainer_events_total") == 1
    assert Trainer(trainer.settings, store=trainer.store).stats.count("promoted") == 0  # once only


def test_a_restart_does_not_grant_the_refinements_tried_again(trainer):
    """Refinement tries a species at most a few times per serving version, each after
    more records: a restarted trainer counts the tries the log holds."""
    rng = np.random.default_rng(1)
    v1 = trainer.registry.load_current()
    trainer.store_diffs(_diffs(salmon(40, rng), 1, T0, v1.estimator))
    walleye = _diffs(_walleye(5, rng), 41, T0 + 80_000, v1.estimator)
    trainer.store_diffs(walleye)
    event = {"WindowStart": "2023-11-14T22:13:20", "WindowEnd": "2023-11-14T22:14:20",
             "Species": ["walleye"], "ModelVersions": [1], "ModelVersionMax": 1,
             "Timestamp_End": walleye[-1]["Timestamp"]}
    assert trainer.handle_retrain(event).action == "promoted"
    v2 = trainer.registry.load_current()
    more = _walleye(10, rng)
    more["Weight"] *= rng.choice([1.0, 1.5], 10)  # mis-weighed: the refinement is refused
    trainer.store_diffs(_diffs(more, 46, T0 + 100_000, v2.estimator))
    assert trainer.refine_if_due().action == "not_promoted"
    assert trainer.refine_if_due() is None  # the next try waits for more records
    assert Trainer(trainer.settings, store=trainer.store).refine_if_due() is None


def _mixed(n, rng, weight_scale=1.0):
    """n salmon and n walleye, in turn: one weigh scale for both."""
    fish = [salmon(n, rng, weight_scale=weight_scale), _walleye(n, rng)]
    fish[1]["Weight"] = np.round(fish[1]["Weight"] * weight_scale, 3)
    return pd.concat(fish).sort_index(kind="stable").reset_index(drop=True)


def _window_event(species, count, end_ms, start="2023-11-14T22:13:00"):
    """The window rule's event for ``count`` of a species' records scored by v1 (one
    minute from ``start``; the newest record at ``end_ms``)."""
    minute = int(start[14:16]) + 1
    return {"WindowStart": start, "WindowEnd": f"{start[:14]}{minute:02d}:00",
            "Species": [species], "Count": count, "ErrorAvg": 0.5, "ModelVersions": [1],
            "ModelVersionMax": 1, "Timestamp_End": end_ms, "Rule": "window"}


def _event_of(records, species, version):
    mine = [r for r in records if r["Species"] == species]
    return {**_change_event(mine, version), "Species": [species]}


def test_a_scale_recalibrated_for_two_species_heals_each_without_waiting(trainer):
    """The scale reads every fish 30 % heavy. Both species' change events were scored by
    the version before; the refit of salmon does not make walleye's stale: v2 still gets
    walleye wrong, so walleye's event stands. Once walleye is refit too, a late event of
    either species scored by an old version is stale."""
    rng = np.random.default_rng(11)
    v1 = trainer.registry.load_current()
    trainer.store_diffs(_diffs(_mixed(20, rng), 1, T0, v1.estimator))
    trainer.handle_retrain(_window_event("walleye", 20, T0 + 2000 * 39))
    v2 = trainer.registry.load_current()
    assert v2.version == 2 and set(v2.estimator.species_) == {"salmon", "walleye"}
    after = _diffs(_mixed(4, rng, weight_scale=1.3), 41, T0 + 100_000, v2.estimator)
    for r in after:
        r["ModelVersion"] = 2
    trainer.store_diffs(after)
    salmon_event, walleye_event = (_event_of(after, sp, 2) for sp in ("salmon", "walleye"))

    assert trainer.handle_retrain(salmon_event).action == "promoted"
    assert set(trainer.registry.load_current().manifest["changes"]) == {"salmon"}
    decision = trainer.handle_retrain(walleye_event)  # scored by v2, v3 is current
    assert decision.action == "promoted", decision.detail
    assert decision.reason == "change" and decision.current_version == 3
    v4 = trainer.registry.load_current()
    assert set(v4.manifest["changes"]) == {"salmon", "walleye"}
    assert relative_errors(v4.estimator, _mixed(100, rng, weight_scale=1.3)).mean() < 0.05
    # A late window event of the change, scored by v2: v4 learnt from its records.
    late = {**walleye_event, "Rule": "window", "WindowStart": "2023-11-14T22:15:00"}
    decision = trainer.handle_retrain(late)
    assert decision.action == "skipped_stale" and "version 4 is current" in decision.detail
    # An event from before the change (a replay, say): v4 gets those salmon wrong now, but
    # it learnt their change, which began after the event.
    before = _diffs(_mixed(20, rng), 1, T0, v1.estimator)
    old = {**_window_event("salmon", 20, before[-1]["Timestamp"]), "ErrorAvg": 0.2}
    assert relative_errors(v4.estimator, salmon(50, rng)).mean() > 0.15
    decision = trainer.handle_retrain(old)
    assert decision.action == "skipped_stale" and "change of salmon" in decision.detail
    # A version that refit salmon only, with walleye's records predicted within the rule:
    # stale by the records themselves.
    trainer.registry.rollback(3)
    decision = trainer.handle_retrain({**walleye_event, "WindowStart": "2023-11-14T22:16:00",
                                       "Rule": "window", "ModelVersions": [2]})
    assert decision.action == "promoted"  # v3 (salmon only) still gets walleye wrong


def test_an_event_with_too_few_records_is_retried_as_they_are_stored(trainer):
    """A new species whose first window crossed before the store held enough records to
    learn from: its event is decided again as its records are stored, long before the
    refinement rule's `refine_min_records` of them."""
    rng = np.random.default_rng(12)
    v1 = trainer.registry.load_current()
    walleye = _diffs(_walleye(12, rng), 1, T0, v1.estimator)
    trainer.store_diffs(walleye[:5])
    event = _window_event("walleye", 3, walleye[2]["Timestamp"])
    assert trainer.handle_retrain(event).action == "skipped_too_few"
    assert trainer.refine_if_due() is None  # tried again: still too few, no decision
    decisions = []
    for record in walleye[5:]:
        trainer.store_diffs([record])
        decisions.append(trainer.refine_if_due())
    tried = [d for d in decisions if d is not None]
    assert [d.action for d in tried] == ["promoted"], [(d.action, d.detail) for d in tried]
    assert tried[0].reason == "window" and tried[0].event == event
    assert tried[0].training_species["walleye"] < trainer.settings.refine_min_records
    assert "walleye" in trainer.registry.load_current().estimator.species_


def test_a_waiting_event_costs_no_store_call_is_bounded_and_a_failed_retry_is_recorded(
        trainer, monkeypatch):
    """Three guards of the retried events (``_retry_waiting``): the verdict `skipped_too_few`
    is the event's last store call, so an outage right after it cannot decide the event
    twice; invented species waiting for records are at most `max_species`; a retry that
    raises is a `failed` decision, and the refinement checks go on."""
    from fishweight.models.store import StoreError

    rng = np.random.default_rng(13)
    v1 = trainer.registry.load_current()
    walleye = _diffs(_walleye(12, rng), 1, T0, v1.estimator)
    trainer.store_diffs(walleye[:3])
    event = _window_event("walleye", 3, walleye[2]["Timestamp"])
    counts = trainer.store.species_counts

    def outage(*args, **kwargs):
        raise StoreError("the store is away")

    decisions = []

    def record_then_outage(decision):
        decisions.append(decision)
        monkeypatch.setattr(trainer.store, "species_counts", outage)
        return decision

    record = trainer._record
    monkeypatch.setattr(trainer, "_record", record_then_outage)
    assert trainer.handle_retrain(event).action == "skipped_too_few"
    monkeypatch.setattr(trainer.store, "species_counts", counts)
    monkeypatch.setattr(trainer, "_record", record)
    assert [d.action for d in decisions] == ["skipped_too_few"]

    for i in range(2 * trainer.settings.max_species):  # names nobody weighs
        trainer.handle_retrain({**event, "Species": [f"invented{i}"],
                                "WindowStart": f"2023-11-14T22:{i // 60:02d}:{i % 60:02d}"})
    assert len(trainer._waiting) <= trainer.settings.max_species

    trainer._waiting.clear()
    assert trainer.handle_retrain({**event, "WindowStart": "2023-11-14T23:00:00"}).action \
        == "skipped_too_few"
    monkeypatch.setattr(trainer, "_retrain", lambda *a: 1 / 0)
    trainer.store_diffs(walleye[3:])
    failed = trainer.refine_if_due()
    assert failed is not None and failed.action == "failed" and "ZeroDivisionError" in \
        failed.detail
    assert "walleye" not in trainer._waiting


def test_an_older_versions_event_whose_records_are_not_stored_is_stale_as_before(trainer):
    """Too few of the event's records stored to judge the rule again: stale, as before,
    and the detail says why (not that the current version predicts them well)."""
    rng = np.random.default_rng(14)
    change = _salmon_heavier_since_fish_41(trainer, rng)
    assert trainer.handle_retrain(change).action == "promoted"  # v2 refit salmon only
    walleye = _diffs(_walleye(2, rng), 100, T0 + 200_000, trainer.registry.load(1).estimator)
    trainer.store_diffs(walleye)
    event = _window_event("walleye", 3, walleye[-1]["Timestamp"], start="2023-11-14T22:16:00")
    decision = trainer.handle_retrain(event)
    assert decision.action == "skipped_stale"
    assert "2 of the event's records are stored" in decision.detail, decision.detail


# -- a drift within the threshold: the bias rule ---------------------------------------
def _bias_event(records, version=1):
    """The bias rule's event over ``records`` (its last bias_records, in arrival order)."""
    errors = [r["Error"] for r in records]
    return _per_version_event(records, version, "bias", records[0],
                              WindowEnd="2023-11-14T22:14:20",
                              Species=[records[0]["Species"]],
                              ErrorAvg=sum(errors) / len(errors))


def test_the_bias_test_sees_a_lean_within_the_noise_but_not_noise_or_an_outlier():
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.022, 15)  # salmon's relative noise
    assert not leans(noise - noise.mean(), 5.5, 0.02)
    assert leans(noise - noise.mean() + 0.05, 5.5, 0.02)  # 5 % heavy predictions
    assert leans(noise - noise.mean() - 0.05, 5.5, 0.02)  # and 5 % light
    assert not leans(noise - noise.mean() + 0.015, 5.5, 0.02)  # below bias_min
    outlier = noise - noise.mean()
    outlier[7] = 1 / 1.4 - 1  # one fish mis-weighed by +40 %
    assert not leans(outlier, 5.5, 0.02)


@pytest.mark.parametrize("seed", range(10))
def test_the_shift_is_found_where_the_errors_moved_outliers_or_not(seed):
    rng = np.random.default_rng(seed)
    before, after = rng.normal(0, 0.022, 18), rng.normal(0.06, 0.022, 12)
    run = np.concatenate([before, after])
    assert abs(shift_start(run, 1.0) - 18) <= 1
    assert abs(shift_start(-run, -1.0) - 18) <= 1  # lighter predictions alike
    assert shift_start(run, -1.0) is None  # no shift the other way
    mis_weighed = run.copy()
    mis_weighed[[0, 9]] = (1 + run[[0, 9]]) / 1.4 - 1  # two fish weighed 40 % heavy
    assert abs(shift_start(mis_weighed, 1.0) - 18) <= 1
    assert shift_start(rng.normal(0.06, 0.022, 30), 1.0) is None  # off alike: no cut


def _salmon_heavier_by(trainer, rng, scale, before=40, after=10, bias_records=15):
    """``before`` salmon as v1 knows them, then ``after`` heavier by ``scale``: stored;
    the bias event over the last ``bias_records`` of them."""
    v1 = trainer.registry.load_current()
    records = (_diffs(salmon(before, rng), 1, T0, v1.estimator)
               + _diffs(salmon(after, rng, weight_scale=scale), before + 1,
                        T0 + 2000 * before, v1.estimator))
    trainer.store_diffs(records)
    return records, _bias_event(records[-bias_records:])


def test_a_drift_within_the_threshold_is_learnt_from_where_it_began(trainer):
    """Salmon 6 % heavier: every error is below 0.15, 10 of them lean one way. The event's
    span starts 5 fish before the change; the trainer cuts where the errors shifted and
    refits only the records since, gated on the mean (a drift within the noise leaves
    records the old line predicts better by chance)."""
    rng = np.random.default_rng(21)
    records, event = _salmon_heavier_by(trainer, rng, 1.06)
    assert max(r["Error"] for r in records) < 0.15
    decision = trainer.handle_retrain(event)
    assert decision.action == "promoted", decision.detail
    assert decision.reason == "bias" and decision.training_species == {"salmon": 10}
    assert decision.gate["since_ms"] == records[40]["Timestamp"]  # the first heavier fish
    v2 = trainer.registry.load_current()
    assert v2.manifest["changes"] == {"salmon": records[40]["Timestamp"]}
    heavier = salmon(300, rng, weight_scale=1.06)
    exact = 1.06 * (0.05 * heavier["Length"] + 0.01 * heavier["Height"])
    floor = float(np.mean(np.abs(exact - heavier["Weight"]) / heavier["Weight"]))
    v1 = trainer.registry.load(1)
    assert relative_errors(v1.estimator, heavier).mean() > 2.5 * floor  # what it served
    assert relative_errors(v2.estimator, heavier).mean() < 1.3 * floor
    # The rule fires once per species and version: a replay is decided once.
    assert trainer.handle_retrain(event).action == "skipped_duplicate"


def test_the_change_gate_would_refuse_what_the_bias_gate_lets_through(trainer):
    """The same small drift as a change event: its gate wants every record better, which
    noise of the old line's size makes unlikely; the bias event is gated on the mean."""
    rng = np.random.default_rng(22)
    records, event = _salmon_heavier_by(trainer, rng, 1.05, after=12)
    change = {**event, "Rule": "change", "Change_Timestamp": records[40]["Timestamp"]}
    refused = trainer.handle_retrain(change)
    assert refused.action == "not_promoted" and not refused.gate["every_record_better"]
    promoted = trainer.handle_retrain(event)
    assert promoted.action == "promoted", promoted.detail
    assert promoted.gate["candidate_loo"] < promoted.gate["current"] * 0.95


def test_an_old_versions_bias_event_is_stale_once_its_records_no_longer_lean(trainer):
    """Salmon 25 % heavier: the change rule fires on the third heavier fish and v2 learns
    the change; the bias rule fires on v1's records a few fish later (its 15 records
    span the change). Under v2 those records no longer lean: stale, nothing refit."""
    v1 = trainer.registry.load_current()
    rng = np.random.default_rng(23)
    change = _salmon_heavier_since_fish_41(trainer, rng)  # fish 41-44 heavier
    assert trainer.handle_retrain(change).action == "promoted"
    later = _diffs(salmon(4, rng, weight_scale=1.25), 45, T0 + 88_000, v1.estimator)
    trainer.store_diffs(later)
    span = trainer.store.latest(15, later[-1]["Timestamp"] + 1, "salmon")
    decision = trainer.handle_retrain(_bias_event(sorted(span, key=lambda r: r["Fish_Id"])))
    assert decision.action == "skipped_stale", decision.detail
    assert "predicts its records within the rule" in decision.detail
    assert trainer.registry.load_current().version == 2


def test_an_old_versions_bias_event_stands_while_the_new_one_leans_too(trainer):
    """v2 learnt walleye from records before salmon drifted 6 %; v1's bias event for the
    salmon after it still leans under v2: acted on at once."""
    v1 = trainer.registry.load_current()
    rng = np.random.default_rng(26)
    trainer.store_diffs(_diffs(salmon(30, rng), 1, T0, v1.estimator))
    walleye = _diffs(_walleye(6, rng), 31, T0 + 60_000, v1.estimator)
    trainer.store_diffs(walleye)
    learnt = trainer.handle_retrain({**_bias_event(walleye), "Rule": "window",
                                     "WindowStart": "2023-11-14T22:14:00"})
    assert learnt.action == "promoted" and learnt.reason == "window", learnt.detail
    heavier = _diffs(salmon(15, rng, weight_scale=1.06), 37, T0 + 72_000, v1.estimator)
    trainer.store_diffs(heavier)
    decision = trainer.handle_retrain(_bias_event(heavier))
    assert decision.action == "promoted" and decision.reason == "bias", decision.detail
    assert decision.training_species == {"salmon": 15}


def test_a_species_the_model_does_not_know_takes_the_window_path(trainer):
    """A new species whose shared-line predictions are off by less than the threshold is
    learnt like any new species (its newest records and the others' memory)."""
    v1 = trainer.registry.load_current()
    rng = np.random.default_rng(24)
    trainer.store_diffs(_diffs(salmon(40, rng), 1, T0, v1.estimator))
    walleye = _diffs(_walleye(15, rng), 41, T0 + 80_000, v1.estimator)
    trainer.store_diffs(walleye)
    decision = trainer.handle_retrain(_bias_event(walleye))
    assert decision.reason == "window" and decision.action == "promoted", decision.detail
    assert decision.training_species["salmon"] >= 25


def test_a_bias_event_needs_its_model_version():
    event = _bias_event([{"Fish_Id": 1, "Species": "salmon", "Timestamp": T0, "Error": 0.05}])
    assert event_problem(event) is None
    assert event_problem({**event, "ModelVersionMax": None}).startswith(
        "a bias event needs ModelVersionMax")


def test_signed_errors_are_the_jobs_figure_with_its_sign():
    from fishweight.models.bootstrap import bootstrap_frame
    from tests.test_change import fit

    model = fit(bootstrap_frame())
    fish = salmon(20, np.random.default_rng(25))
    assert np.allclose(np.abs(signed_errors(model, fish)), relative_errors(model, fish))


def test_a_window_event_of_a_changed_species_is_gated_like_a_change(trainer):
    """Only the bias rule's events are gated on the mean alone: a window event of a known
    species with a change start is a change, and its gate wants every record better."""
    rng = np.random.default_rng(22)
    records, event = _salmon_heavier_by(trainer, rng, 1.05, after=12)
    window = {**event, "Rule": "window", "Change_Timestamp": records[40]["Timestamp"]}
    decision = trainer.handle_retrain(window)
    assert decision.reason == "change" and decision.action == "not_promoted"
    assert not decision.gate["every_record_better"]

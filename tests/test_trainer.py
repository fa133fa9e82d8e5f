"""The trainer service against the embedded broker, a SQLite store and a model registry."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time

import numpy as np
import pytest

from fishweight.jobs.train import TrainerService
from fishweight.models.bootstrap import bootstrap_model
from fishweight.models.decisions import ACTIONS, Trainer, read_decisions
from fishweight.models.registry import ModelError, ModelRegistry
from fishweight.models.store import StoreError, open_store
from fishweight.runtime.kafka import produce
from fishweight.scenarios import load_scenario, sample_species

pytestmark = pytest.mark.slow  # a real broker and/or MiniCluster

T0 = 1_700_000_000_000


def diff_records(first_id, species_counts, start_ms, rng):
    """weight-diff records drawn from the scenario profiles, 2 s apart."""
    profiles = load_scenario().species
    records, fish_id, ts = [], first_id, start_ms
    for name, count in species_counts:
        values = sample_species(profiles[name], count, rng)
        for i in range(count):
            weight = float(values["Weight"][i])
            records.append({"Fish_Id": fish_id, "Species": name,
                            "Length": float(values["Length"][i]),
                            "Height": float(values["Height"][i]),
                            "PredictedWeight": 4.0, "ActualWeight": weight,
                            "Error": round(abs(4.0 - weight) / weight, 3),
                            "ModelTime": "t", "ModelVersion": 1, "Timestamp": ts})
            fish_id += 1
            ts += 2000
    return records


def _iso(ms):
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def retrain_event(versions, first, last, end_ms=T0 + 100_000, species=("walleye",),
                  timestamp_end=None):
    event = {"WindowStart": _iso(end_ms - 60_000), "WindowEnd": _iso(end_ms),
             "Species": list(species), "Fish_Id_Start": first, "Fish_Id_End": last,
             "ErrorAvg": 0.4, "Count": 30, "ModelVersions": versions,
             "ModelVersionMax": max(versions)}
    if timestamp_end is not None:
        event["Timestamp_End"] = timestamp_end
    return event


class Running:
    """The trainer service in a background thread."""

    def __init__(self, settings):
        self.settings = settings
        self.stop = threading.Event()
        self.service = TrainerService(settings)
        self.thread = threading.Thread(target=self.service.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def wait_decisions(self, n, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            decisions = read_decisions(self.settings)
            if len(decisions) >= n:
                return decisions
            time.sleep(0.2)
        raise AssertionError(f"expected {n} decisions, got {read_decisions(self.settings)}")

    def close(self):
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


@pytest.fixture
def trainer_settings(settings):
    bootstrap_model(settings)
    return settings


def test_trainer_stores_retrains_skips_and_refuses(trainer_settings):
    settings = trainer_settings
    registry = ModelRegistry.for_settings(settings)
    rng = np.random.default_rng(11)
    drift = diff_records(1, [("salmon", 25), ("walleye", 25)], T0, rng)
    # Joined after the window closed (it waited for the join bound): not for training.
    after = diff_records(51, [("walleye", 10)], T0 + 100_000, rng)
    produce(settings.bootstrap_servers, settings.topic_diff, drift + after,
            keys=[r["Fish_Id"] for r in drift + after])
    produce(settings.bootstrap_servers, settings.topic_retrain, [retrain_event([1], 1, 50)])

    running = Running(settings)
    try:
        # 1. Diffs are stored; the retrain event publishes version 2.
        decisions = running.wait_decisions(1)
        assert decisions[0]["action"] == "promoted", decisions[0]
        assert registry.current_version() == 2
        manifest = registry.manifest(2)
        window = manifest["training_window"]
        assert window["fish_ids"] == list(range(1, 51))
        assert (window["first_fish_id"], window["last_fish_id"]) == (1, 50)
        assert (window["first_timestamp"], window["last_timestamp"]) == (T0, T0 + 49 * 2000)
        assert manifest["n_samples"] == 50
        assert manifest["species"] == ["salmon", "walleye"]
        assert manifest["species_records"] == {"salmon": 25, "walleye": 25}
        assert manifest["parent_version"] == 1
        gate = manifest["metrics"]["gate"]
        print("\npromoted:", decisions[0]["detail"])
        assert gate["candidate_loo"] < gate["current"]

        # 2. A window scored by the old version is skipped: one drift, one retrain. The
        # same window again (a replay) is skipped as a duplicate.
        produce(settings.bootstrap_servers, settings.topic_retrain,
                [retrain_event([1], 40, 60, end_ms=T0 + 160_000),
                 retrain_event([1, 2], 50, 70, end_ms=T0 + 220_000),
                 retrain_event([1], 1, 50)])
        decisions = running.wait_decisions(4)
        # (three partitions: the three events may be handled in any order)
        assert sorted(d["action"] for d in decisions[1:]) == [
            "skipped_duplicate", "skipped_stale", "skipped_stale"]
        assert registry.current_version() == 2

        # 3. A refit on more of the same is no better than the current model: refused.
        same = diff_records(101, [("salmon", 25), ("walleye", 25)], T0 + 300_000, rng)
        produce(settings.bootstrap_servers, settings.topic_diff, same)
        produce(settings.bootstrap_servers, settings.topic_retrain,
                [retrain_event([2], 101, 150, end_ms=T0 + 400_000)])
        decisions = running.wait_decisions(5)
        assert decisions[4]["action"] == "not_promoted", decisions[4]
        print("not promoted:", decisions[4]["detail"])
        assert registry.current_version() == 2 and registry.versions() == [1, 2]
    finally:
        running.close()

    store = open_store(settings.resolved_store_uri)
    assert store.count() == 110
    store.close()
    stats = running.service.trainer.stats
    assert (stats.diffs_stored, stats.retrain_events) == (110, 5)
    assert {a: stats.count(a) for a in ACTIONS} == {
        "promoted": 1, "not_promoted": 1, "skipped_stale": 2, "skipped_too_few": 0,
        "skipped_duplicate": 1, "skipped_species_limit": 0, "failed": 0}


def test_early_event_trains_up_to_its_record_remembers_salmon_and_refines(trainer_settings):
    """An early trigger after 4 walleye trains on the records up to the 4th (plus salmon
    memory), and once 15 walleye are stored the trainer refines by itself, once."""
    settings = trainer_settings
    registry = ModelRegistry.for_settings(settings)
    rng = np.random.default_rng(21)
    salmon = diff_records(1, [("salmon", 60)], T0, rng)
    walleye = diff_records(61, [("walleye", 30)], T0 + 120_000, rng)
    produce(settings.bootstrap_servers, settings.topic_diff, salmon + walleye[:6])
    fourth = walleye[3]["Timestamp"]
    produce(settings.bootstrap_servers, settings.topic_retrain,
            [retrain_event([1], 61, 64, end_ms=T0 + 180_000, timestamp_end=fourth)])
    running = Running(settings)
    try:
        first = running.wait_decisions(1)[0]
        assert first["action"] == "promoted", first
        manifest = registry.manifest(2)
        assert manifest["training_window"]["last_timestamp"] == fourth
        assert manifest["species_records"] == {"salmon": 46, "walleye": 4}
        assert manifest["model"]["species"]["walleye"]["n"] == 4

        produce(settings.bootstrap_servers, settings.topic_diff, walleye[6:])
        decisions = running.wait_decisions(2)
        time.sleep(3)  # no third decision: one refinement per drift
        decisions = read_decisions(settings)
    finally:
        running.close()
    assert [(d["reason"], d["action"]) for d in decisions] == [
        ("window", "promoted"), ("refinement", "promoted")], decisions
    refined = registry.manifest(3)
    assert refined["reason"] == "refinement"
    assert refined["species_records"]["walleye"] >= settings.refine_min_records
    assert refined["species_records"]["salmon"] >= settings.memory_per_species


def test_restart_resumes_from_committed_offsets(trainer_settings):
    settings = trainer_settings
    rng = np.random.default_rng(12)
    records = diff_records(1, [("salmon", 30)], T0, rng)
    produce(settings.bootstrap_servers, settings.topic_diff, records)
    produce(settings.bootstrap_servers, settings.topic_retrain, [retrain_event([0], 1, 30)])
    first = Running(settings)
    first.wait_decisions(1)
    first.close()

    produce(settings.bootstrap_servers, settings.topic_retrain,
            [retrain_event([0], 31, 40, end_ms=T0 + 160_000)])
    second = Running(settings)
    try:
        decisions = second.wait_decisions(2)
        time.sleep(2)  # would a redelivered first event show up as a third decision?
        assert len(read_decisions(settings)) == 2
        assert decisions[1]["event"]["Fish_Id_Start"] == 31
    finally:
        second.close()
    # The second run re-read nothing: the first one committed after storing.
    assert second.service.trainer.stats.diffs_stored == 0


def test_unreadable_records_are_dead_lettered(trainer_settings):
    from fishweight.runtime.kafka import read_topic

    settings = trainer_settings
    sent_ms = 1_700_000_000_123
    produce(settings.bootstrap_servers, settings.topic_diff,
            [b"garbage", {"no": "key"}, {"Fish_Id": 17, "Species": "salmon"}],
            timestamps=[sent_ms] * 3)
    produce(settings.bootstrap_servers, settings.topic_retrain, [b"{not json"])
    running = Running(settings)
    try:
        dead = read_topic(settings.bootstrap_servers, settings.topic_dead_letter, expected=4,
                          timeout_s=30, idle_s=30)
    finally:
        running.close()
    assert len(dead) == 4
    assert running.service.trainer.stats.invalid_records == 4
    # The job's dead-letter shape (README), with the Fish_Id when the record names one.
    letters = [json.loads(d.value) for d in dead]
    assert all(set(d) == {"SourceTopic", "Partition", "Offset", "KafkaTimestamp", "Fish_Id",
                          "Reason", "Payload", "PayloadSize", "PayloadSha256"} for d in letters)
    diffs = [d for d in letters if d["SourceTopic"] == settings.topic_diff]
    assert {d["KafkaTimestamp"] for d in diffs} == {"2023-11-14T22:13:20.123Z"}
    named = [d for d in diffs if d["Fish_Id"] is not None]
    assert len(diffs) == 3 and [d["Fish_Id"] for d in named] == [17]
    assert named[0]["Reason"].startswith("trainer: bad weight-diff record: Timestamp must be")


class FlakyStore:
    """The real store, unavailable for its first ``failures`` reads (a MongoDB restart)."""

    def __init__(self, store, failures):
        self.store, self.failures = store, failures

    def __getattr__(self, name):
        return getattr(self.store, name)

    def species_counts(self, before_ms=None):
        if self.failures > 0:
            self.failures -= 1
            raise StoreError("simulated: MongoDB failed 3 times: connection refused")
        return self.store.species_counts(before_ms)


def test_bad_records_are_dead_lettered_and_a_store_outage_loses_no_event(trainer_settings):
    from fishweight.runtime.kafka import read_topic

    settings = trainer_settings
    rng = np.random.default_rng(31)
    good = diff_records(1, [("salmon", 40), ("walleye", 10)], T0, rng)
    huge_id = {**good[0], "Fish_Id": 2**63}
    no_weight = {**good[1], "ActualWeight": "heavy"}
    huge_length = {**good[2], "Length": 1e308}  # would dominate every gate it entered
    produce(settings.bootstrap_servers, settings.topic_diff,
            good + [huge_id, no_weight, huge_length])
    produce(settings.bootstrap_servers, settings.topic_retrain, [
        {**retrain_event([1], 41, 50), "WindowEnd": "garbage"},
        {**retrain_event([1], 41, 50), "ModelVersions": "1"},
        {**retrain_event([1], 41, 50), "Timestamp_End": -1},
        # Each of these once passed the checks and then stopped the service's loop, on
        # every restart (the offset was never committed).
        {**retrain_event([1], 41, 50), "Timestamp_End": 2**63 - 1},
        {**retrain_event([1], 41, 50), "WindowEnd": 20231114},
        {**retrain_event([1], 41, 50), "Species": []},
    ])
    produce(settings.bootstrap_servers, settings.topic_retrain, [retrain_event([1], 41, 50)])
    trainer = Trainer(settings, store=FlakyStore(open_store(settings.resolved_store_uri), 3))
    service = TrainerService(settings, trainer=trainer)
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    try:
        # Wait for all nine: the store outage's backoff (0.5 + 1 + 2 s) may come between.
        dead = read_topic(settings.bootstrap_servers, settings.topic_dead_letter, expected=9,
                          timeout_s=60, idle_s=60)
        deadline = time.monotonic() + 60
        while not read_decisions(settings) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(30)
    reasons = sorted(json.loads(m.value)["Reason"] for m in dead)
    assert len(reasons) == 9, reasons
    assert any("Length = 1e+308 is above the plausible maximum 500" in r for r in reasons)
    assert any("Fish_Id must be an integer in 1..2^63-1" in r for r in reasons)
    assert any("ActualWeight must be a positive finite number" in r for r in reasons)
    assert sum("WindowEnd is not an ISO-8601 time" in r for r in reasons) == 2
    assert any("ModelVersions must be a list of integers" in r for r in reasons)
    assert sum("Timestamp_End must be a positive integer" in r for r in reasons) == 2
    assert any("Species must be a list of non-empty strings" in r for r in reasons)
    (decision,) = read_decisions(settings)  # the store came back: the event was not lost
    assert decision["action"] == "promoted", decision
    assert trainer.store.failures == 0 and trainer.stats.diffs_stored == 50


def test_an_event_that_fails_before_its_decision_is_a_failed_decision(trainer_settings):
    """Whatever goes wrong while the trainer prepares a decision (here the served model's
    manifest unreadable) is recorded as a failed decision; the service goes on."""
    settings = trainer_settings
    registry = ModelRegistry.for_settings(settings)
    manifest = registry.manifest_path(1)
    good = manifest.read_text()
    running = Running(settings)
    try:
        manifest.write_text("{not json")
        produce(settings.bootstrap_servers, settings.topic_retrain,
                [retrain_event([1], 41, 50, timestamp_end=T0)])
        (failed,) = running.wait_decisions(1)
        manifest.write_text(good)
        produce(settings.bootstrap_servers, settings.topic_retrain,
                [retrain_event([1], 41, 50, end_ms=T0 + 160_000)])
        decisions = running.wait_decisions(2)
    finally:
        running.close()
    assert failed["action"] == "failed" and "unreadable" in failed["detail"], failed
    assert decisions[1]["action"] == "skipped_too_few", decisions[1]  # the loop went on


def test_a_registry_that_cannot_be_read_just_now_delays_the_decision(trainer_settings):
    """The signing key unreadable for a while: the event waits (its offset uncommitted)
    and is decided once the key is back, not recorded as a failure."""
    settings = trainer_settings
    registry = ModelRegistry.for_settings(settings)
    rng = np.random.default_rng(5)
    produce(settings.bootstrap_servers, settings.topic_diff,
            diff_records(1, [("salmon", 40), ("walleye", 10)], T0, rng))
    hidden = registry.key_file.with_name("hidden.key")
    running = Running(settings)
    try:
        registry.key_file.rename(hidden)
        produce(settings.bootstrap_servers, settings.topic_retrain, [retrain_event([1], 41, 50)])
        time.sleep(3)
        assert read_decisions(settings) == []  # waiting, not failed
        hidden.rename(registry.key_file)
        (decision,) = running.wait_decisions(1)
    finally:
        running.close()
    assert decision["action"] == "promoted", decision


def test_one_trainer_per_model_directory(trainer_settings):
    first = Running(trainer_settings)
    try:
        time.sleep(2)
        second = TrainerService(trainer_settings)
        with pytest.raises(ModelError, match="another trainer holds"):
            second.run(threading.Event())
    finally:
        first.close()

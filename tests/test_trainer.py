"""The trainer service against the embedded broker, a SQLite store and a model registry."""

from __future__ import annotations

import datetime as dt
import threading
import time

import numpy as np
import pytest

from fishweight.jobs.train import TrainerService
from fishweight.models.bootstrap import bootstrap_model
from fishweight.models.registry import ModelRegistry
from fishweight.models.retrain import read_decisions
from fishweight.models.store import open_store
from fishweight.scenarios import load_scenario, sample_species
from tests.kafka_helpers import produce

pytestmark = pytest.mark.slow  # a real broker and/or MiniCluster

T0 = 1_700_000_000_000


def diff_records(first_id, species_counts, start_ms, rng, corrupt=None):
    """weight-diff records drawn from the scenario profiles, 2 s apart."""
    profiles = load_scenario().species
    records, fish_id, ts = [], first_id, start_ms
    for name, count in species_counts:
        values = sample_species(profiles[name], count, rng)
        for i in range(count):
            weight = float(values["Weight"][i])
            position = fish_id - first_id
            if corrupt and corrupt(position):
                weight *= 3.0
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


def retrain_event(versions, first, last, end_ms=T0 + 100_000):
    return {"WindowStart": _iso(end_ms - 60_000), "WindowEnd": _iso(end_ms),
            "Species": ["salmon", "walleye"], "Fish_Id_Start": first, "Fish_Id_End": last,
            "ErrorAvg": 0.4, "Count": 30, "ModelVersions": versions,
            "ModelVersionMax": max(versions)}


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
    registry = ModelRegistry(settings.resolved_model_dir)
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
        assert manifest["n_samples"] + manifest["n_holdout"] == 50
        assert manifest["species"] == ["salmon", "walleye"]
        assert manifest["parent_version"] == 1
        holdout = manifest["metrics"]
        print("\npromoted:", decisions[0]["detail"])
        assert (holdout["holdout_candidate"]["mean_relative_error"]
                < holdout["holdout_current"]["mean_relative_error"])

        # 2. A window scored by the old version is skipped: one drift, one retrain.
        produce(settings.bootstrap_servers, settings.topic_retrain, [retrain_event([1], 40, 60)])
        produce(settings.bootstrap_servers, settings.topic_retrain,
                [retrain_event([1, 2], 50, 70)])
        decisions = running.wait_decisions(3)
        assert [d["action"] for d in decisions[1:]] == ["skipped_stale", "skipped_stale"]
        assert registry.current_version() == 2

        # 3. A candidate worse than the current model on the holdout is not promoted:
        # the training rows (not the held-out every 5th) carry corrupted weights.
        bad = diff_records(101, [("salmon", 25), ("walleye", 25)], T0 + 200_000, rng,
                           corrupt=lambda position: position % 5 != 4)
        produce(settings.bootstrap_servers, settings.topic_diff, bad)
        produce(settings.bootstrap_servers, settings.topic_retrain,
                [retrain_event([2], 101, 150, end_ms=T0 + 300_000)])
        decisions = running.wait_decisions(4)
        assert decisions[3]["action"] == "not_promoted", decisions[3]
        print("not promoted:", decisions[3]["detail"])
        assert registry.current_version() == 2 and registry.versions() == [1, 2]
    finally:
        running.close()

    store = open_store(settings.resolved_store_uri)
    assert store.count() == 110
    store.close()
    stats = running.service.trainer.stats
    assert (stats.diffs_stored, stats.retrain_events, stats.promoted, stats.skipped_stale,
            stats.not_promoted) == (110, 4, 1, 2, 1)


def test_restart_resumes_from_committed_offsets(trainer_settings):
    settings = trainer_settings
    rng = np.random.default_rng(12)
    records = diff_records(1, [("salmon", 30)], T0, rng)
    produce(settings.bootstrap_servers, settings.topic_diff, records)
    produce(settings.bootstrap_servers, settings.topic_retrain, [retrain_event([0], 1, 30)])
    first = Running(settings)
    first.wait_decisions(1)
    first.close()

    produce(settings.bootstrap_servers, settings.topic_retrain, [retrain_event([0], 31, 40)])
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
    produce(settings.bootstrap_servers, settings.topic_diff, [b"garbage", {"no": "key"}])
    produce(settings.bootstrap_servers, settings.topic_retrain, [b"{not json"])
    running = Running(settings)
    try:
        dead = read_topic(settings.bootstrap_servers, settings.topic_dead_letter, expected=3,
                          timeout_s=30)
    finally:
        running.close()
    assert len(dead) == 3
    assert running.service.trainer.stats.invalid_records == 3

"""A producer that invents species cannot grow the model: ``max_species``.

Species names come from the input. Without a limit, every invented name with a few
weighed fish is one more retrain event, one more promotion and one more species in every
model after it (measured: 300 invented species gave 288 promotions, each decision slower
than the one before). The trainer (``models.decisions.Trainer``) runs without Kafka here:
a SQLite store, a real model registry with the bootstrap model (salmon).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from fishweight.models.bootstrap import bootstrap_model
from fishweight.models.decisions import Trainer, species_of, window_key
from fishweight.models.policy import admitted_species
from fishweight.runtime.settings import Settings

T0 = 1_700_000_000_000


def _iso(ms):
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


class Producer:
    """Weighed fish of made-up species, each with a weight relation of its own, 2 s apart."""

    def __init__(self, trainer):
        self.trainer, self.rng, self.fish_id, self.ts = trainer, np.random.default_rng(3), 1, T0
        self.slopes: dict[str, tuple[float, float]] = {"salmon": (0.05, 0.01)}

    def fish(self, species, n):
        a, b = self.slopes.setdefault(species, tuple(self.rng.uniform(0.01, 0.06, 2)))
        version = self.trainer.registry.current_version()
        records = []
        for _ in range(n):
            length, height = self.rng.normal(85, 5), self.rng.normal(18, 1)
            weight = float(a * length + b * height + self.rng.normal(0, 0.1))
            records.append({"Fish_Id": self.fish_id, "Species": species, "Length": length,
                            "Height": height, "PredictedWeight": 4.0, "ActualWeight": weight,
                            "Error": round(abs(4.0 - weight) / weight, 3), "ModelTime": "t",
                            "ModelVersion": version, "Timestamp": self.ts})
            self.fish_id += 1
            self.ts += 2000
        self.trainer.store_diffs(records)
        return records

    def window_event(self, records):
        """The window rule's event for these records, as sql/26_rules.sql writes it."""
        first, last = records[0], records[-1]
        version = last["ModelVersion"]
        return {"WindowStart": _iso(first["Timestamp"]), "WindowEnd": _iso(last["Timestamp"] + 1),
                "Species": [last["Species"]], "Fish_Id_Start": first["Fish_Id"],
                "Fish_Id_End": last["Fish_Id"], "Timestamp_End": last["Timestamp"],
                "ErrorAvg": 0.4, "Count": len(records), "ModelVersions": [version],
                "ModelVersionMax": version, "Rule": "window"}


@pytest.fixture
def trainer(tmp_path):
    settings = Settings.load(state_dir=str(tmp_path), web_ui_port=0, max_species=3)
    bootstrap_model(settings)
    return Trainer(settings)


def test_the_model_learns_at_most_max_species_and_refuses_the_rest(trainer):
    producer = Producer(trainer)
    producer.fish("salmon", 20)  # as the bootstrap model knows them
    decisions = {}
    for species in ("pike", "perch", "invented-1", "invented-2"):
        decisions[species] = trainer.handle_retrain(
            producer.window_event(producer.fish(species, 5)))
    assert [decisions[s].action for s in ("pike", "perch")] == ["promoted", "promoted"], \
        [decisions[s].detail for s in ("pike", "perch")]
    for species in ("invented-1", "invented-2"):
        refused = decisions[species]
        assert refused.action == "skipped_species_limit", refused.detail
        assert "max_species = 3" in refused.detail and species in refused.detail
        assert refused.current_version == 3
    # A refusal holds while the limit stands and is no verdict on the window: the same
    # event again is refused again, not remembered as decided.
    again = trainer.handle_retrain(refused.event)
    assert again.action == "skipped_species_limit", again.detail
    # So is a window an older version scored (the stale rule would remember it).
    old = {**refused.event, "WindowStart": "2020-01-01T00:00:00.000", "ModelVersions": [1],
           "ModelVersionMax": 1}
    assert trainer.handle_retrain(old).action == "skipped_species_limit"
    assert window_key(old) not in trainer._decided_windows
    served = trainer.registry.load_current()
    assert served.version == 3 and sorted(species_of(served)) == ["perch", "pike", "salmon"]
    assert not served.estimator.knows("invented-1")  # its fish keep the shared line
    assert trainer.stats.count("skipped_species_limit") == 4

    # A window of a known species while invented ones are among the newest records: the
    # model is retrained on the species it may know, none of the others.
    pike = producer.fish("pike", 6)
    producer.fish("invented-3", 6)
    decision = trainer.handle_retrain(producer.window_event(pike))
    assert decision.action in ("promoted", "not_promoted"), decision.detail
    assert set(decision.training_species) <= {"salmon", "pike", "perch"}
    assert decision.training_species.get("pike", 0) >= 11

    # Refinement, which needs no event, never tries a species it could not learn.
    producer.fish("invented-1", 20)
    refined = []
    for _ in range(10):
        done = trainer.refine_if_due()
        if done is None:
            break
        refined.append(done.event["Species"][0])
    assert not [s for s in refined if s.startswith("invented")], refined
    assert sorted(species_of(trainer.registry.load_current())) == ["perch", "pike", "salmon"]

    # With the limit raised (a trainer restarted on the same state), the species' next
    # window is learnt.
    raised = Trainer(trainer.settings.replace(max_species=4))
    producer.trainer = raised
    learnt = raised.handle_retrain(producer.window_event(producer.fish("invented-1", 5)))
    assert learnt.action == "promoted", learnt.detail
    assert "invented-1" in species_of(raised.registry.load_current())


def test_admission_keeps_every_known_species_then_the_events_then_the_most_stored():
    stored = {"a": 3, "b": 9, "c": 9, "d": 1}
    assert admitted_species(["x", "y"], ["d"], stored, 5) == {"x", "y", "d", "b", "c"}
    assert admitted_species(["x", "y"], ["d"], stored, 2) == {"x", "y"}
    # A limit lowered below what the model knows forgets nothing.
    assert admitted_species(["x", "y", "z"], ["d"], stored, 2) == {"x", "y", "z"}
    assert admitted_species([], [], stored, 10) == {"a", "b", "c", "d"}


def test_a_known_species_the_store_has_none_of_keeps_its_line(trainer):
    """The store holds no salmon (the bootstrap's fish are not in it; a replaced store;
    a stream that begins with another species): a retrain for walleye must not drop the
    salmon the serving model knows, nor move their line."""
    producer = Producer(trainer)
    v1 = trainer.registry.load_current()
    walleye = producer.fish("walleye", 12)
    decision = trainer.handle_retrain(producer.window_event(walleye))
    assert decision.action == "promoted" and decision.training_species == {"walleye": 12}
    v2 = trainer.registry.load_current()
    assert species_of(v2) == ["salmon", "walleye"] == v2.manifest["species"]
    salmon = pd.DataFrame({"Species": ["salmon"] * 3, "Length": [80.0, 88.0, 95.0],
                           "Height": [18.0, 19.0, 20.5]})
    assert np.allclose(v2.estimator.predict(salmon), v1.estimator.predict(salmon))
    assert v2.manifest["evidence"]["salmon"] == v1.manifest["evidence"]["salmon"] > 0


def test_an_event_for_a_species_with_no_stored_records_fits_nothing(trainer):
    """Records of other species alone cannot teach the model the event's species."""
    producer = Producer(trainer)
    salmon = producer.fish("salmon", 30)
    decision = trainer.handle_retrain({**producer.window_event(salmon), "Species": ["walleye"]})
    assert decision.action == "skipped_too_few", decision
    assert "no records of walleye stored" in decision.detail
    assert trainer.registry.current_version() == 1


def test_an_event_waiting_for_records_is_refused_once_the_limit_is_reached(tmp_path):
    """An event that found too few records waits for more (models/decisions.py); if another
    species fills the model meanwhile (max_species = 2 here), its retry is refused, not
    fitted."""
    settings = Settings.load(state_dir=str(tmp_path), web_ui_port=0, max_species=2)
    bootstrap_model(settings)
    trainer = Trainer(settings)
    producer = Producer(trainer)
    producer.slopes["pike"] = (0.1, 0.05)  # twice as heavy as the shared line says
    early = producer.fish("pike", 3)  # the store holds 3 records: too few to learn from
    assert trainer.handle_retrain(producer.window_event(early)).action == "skipped_too_few"
    decision = trainer.handle_retrain(producer.window_event(producer.fish("trout", 12)))
    assert decision.action == "promoted", decision.detail
    assert sorted(species_of(trainer.registry.load_current())) == ["salmon", "trout"]
    producer.fish("pike", 1)
    decision = trainer.refine_if_due()
    assert decision is not None and decision.action == "skipped_species_limit", decision
    assert "pike" not in species_of(trainer.registry.load_current())
    assert trainer.refine_if_due() is None  # decided: no longer waiting

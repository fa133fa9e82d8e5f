"""The run report's figures: what a closed-loop run did, summarized from its records.

Works from a run directory: ``topics/*.jsonl`` (output topic records as the demo
observed them, each with its Kafka timestamp), ``simulator.json`` (what was
produced), ``trainer-decisions.jsonl`` and the model registry. ``fishweight report``
redraws it from those files, or re-reads the topics from a still-running Kafka.
``summarize`` computes the figures; ``fishweight.jobs.report_files`` writes them.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fishweight.models.decisions import ACTIONS
from fishweight.models.registry import ModelRegistry
from fishweight.runtime.settings import Settings
from fishweight.scenarios import Scenario

TOPIC_FILES = ("predictions", "diffs", "windows", "retrains", "unmatched", "dead_letters")


@dataclass
class Observed:
    """One output record: its JSON value and Kafka timestamp (ms, when it was written).

    ``kafka_ms`` is None for records that did not come through Kafka (the fast tests).
    """

    value: dict[str, Any]
    kafka_ms: int | None


def output_topics(settings: Settings) -> dict[str, str]:
    """Output topic -> the RunData field that holds its records."""
    return {settings.topic_prediction: "predictions", settings.topic_diff: "diffs",
            settings.topic_windows: "windows", settings.topic_retrain: "retrains",
            settings.topic_unmatched: "unmatched", settings.topic_dead_letter: "dead_letters"}


def arrival_order(records: list[Observed]) -> list[Observed]:
    """Joined records in the order they were written (Kafka time), ties by event time."""
    return sorted(records, key=lambda r: (r.kafka_ms, r.value["Timestamp"], r.value["Fish_Id"]))


@dataclass
class RunData:
    predictions: list[Observed] = field(default_factory=list)
    diffs: list[Observed] = field(default_factory=list)
    windows: list[Observed] = field(default_factory=list)
    retrains: list[Observed] = field(default_factory=list)
    unmatched: list[Observed] = field(default_factory=list)
    dead_letters: list[Observed] = field(default_factory=list)
    produced: dict[str, int] = field(default_factory=dict)  # measurements, weights
    decisions: list[dict[str, Any]] = field(default_factory=list)
    manifests: dict[int, dict[str, Any]] = field(default_factory=dict)

    def values(self, name: str) -> list[dict[str, Any]]:
        """The JSON values of one output (``predictions``, ``diffs``, ...)."""
        return [o.value for o in getattr(self, name)]

    @classmethod
    def from_kafka(cls, settings: Settings, idle_s: float = 3.0) -> RunData:
        """Every output topic read from the beginning (until ``idle_s`` without news)."""
        from fishweight.runtime.kafka import read_topic

        data = cls()
        for topic, name in output_topics(settings).items():
            setattr(data, name, [Observed(json.loads(m.value), m.timestamp) for m in
                                 read_topic(settings.bootstrap_servers, topic, idle_s=idle_s)])
        return data

    def unmatched_of(self, kind: str) -> int:
        """Unmatched records of one kind: ``weight`` or ``measurement``."""
        return sum(u.value.get("Kind") == kind for u in self.unmatched)

    def dead_letters_from(self, topic: str) -> int:
        return sum(d.value.get("SourceTopic") == topic for d in self.dead_letters)

    def save(self, run_dir: Path) -> None:
        topics = run_dir / "topics"
        topics.mkdir(parents=True, exist_ok=True)
        for name in TOPIC_FILES:
            with open(topics / f"{name}.jsonl", "w") as fh:
                for rec in getattr(self, name):
                    fh.write(json.dumps({"kafka_ms": rec.kafka_ms, "value": rec.value}) + "\n")
        (run_dir / "simulator.json").write_text(json.dumps(self.produced))

    @classmethod
    def load(cls, run_dir: Path, settings: Settings) -> RunData:
        data = cls()
        for name in TOPIC_FILES:
            path = run_dir / "topics" / f"{name}.jsonl"
            if path.exists():
                setattr(data, name, [Observed(r["value"], r["kafka_ms"]) for r in
                                     map(json.loads, path.read_text().splitlines())])
        produced = run_dir / "simulator.json"
        data.produced = json.loads(produced.read_text()) if produced.exists() else {}
        data.attach_state(settings)
        return data

    def attach_state(self, settings: Settings) -> None:
        from fishweight.models.decisions import read_decisions

        self.decisions = read_decisions(settings)
        registry = ModelRegistry.for_settings(settings)
        self.manifests = {v: registry.manifest(v) for v in registry.versions()}


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def phases(scenario: Scenario) -> list[dict[str, Any]]:
    """The scenario's blocks as Fish_Id ranges: emitted ``species`` and ``profile`` key."""
    return [{"phase": index + 1, "species": scenario.emitted_name(block.species),
             "profile": block.species, "first_fish_id": first, "last_fish_id": last}
            for index, (block, first, last) in enumerate(scenario.block_ranges())]


def learnt_profiles(manifests: dict[int, dict[str, Any]], scenario: Scenario,
                    timestamps: dict[int, int | None] | None = None) -> dict[int, dict[str, str]]:
    """Model version -> {species: the profile key it learnt}.

    A version without training fish ids (the bootstrap) knows the default profile of
    each of its ``species``. Any other starts from the version it replaced (its
    ``parent_version``, else the one before) less the species it dropped, and learns
    per species the profile of its newest training fish (by Timestamp when all are
    known, else by Fish_Id): what the model fits best is what it saw last.
    """
    timestamps = timestamps or {}
    learnt: dict[int, dict[str, str]] = {}
    for version in sorted(manifests):
        manifest = manifests[version]
        listed = set(manifest.get("species", []))
        fish_ids = manifest.get("training_window", {}).get("fish_ids")
        parent = manifest.get("parent_version")
        if parent not in learnt:
            parent = max((v for v in learnt if v < version), default=None)
        mapping = ({} if fish_ids is None else
                   {s: p for s, p in learnt.get(parent, {}).items() if s in listed})
        ids = [i for i in fish_ids or [] if scenario.profile_of(i) is not None]
        timed = all(timestamps.get(i) is not None for i in ids)
        for i in sorted(ids, key=lambda i: (timestamps[i], i) if timed else i):
            mapping[scenario.emitted_name(scenario.profile_of(i))] = scenario.profile_of(i)
        for species in listed - set(mapping):
            if scenario.default_profile(species) is not None:
                mapping[species] = scenario.default_profile(species)
        learnt[version] = mapping
    return learnt


RECOVERY_ROLL = 5  # fish in the rolling mean that must stay below the threshold


def noise_floor(diff: dict[str, Any], scenario: Scenario) -> float | None:
    """|true weight - actual| / actual: the error of a model that knows the profile.

    The profile is the one of the fish's block; the true weight is computed from the
    true sizes behind the reported (perhaps miscalibrated) Length and Height.
    """
    key = scenario.profile_of(diff["Fish_Id"])
    if key is None or scenario.emitted_name(key) != diff["Species"]:
        key = diff["Species"]  # not a fish of this scenario's blocks
    profile = scenario.species.get(key)
    if profile is None:
        return None
    true = profile.true_weight(*profile.true_inputs(diff["Length"], diff["Height"]))
    return abs(true - diff["ActualWeight"]) / diff["ActualWeight"]


def drifts(by_fish: dict[int, dict[str, Any]], blocks: list[dict[str, Any]],
           manifests: dict[int, dict[str, Any]], scenario: Scenario,
           threshold: float) -> list[dict[str, Any]]:
    """Per block after the first: how fast the loop adapted.

    *Served*: the first fish of the block predicted by a version that learnt its profile
    (``learnt_profiles``): a new species, or a changed profile of a known one.
    *Recovery*: the first served fish from which the rolling mean error of the last
    ``RECOVERY_ROLL`` fish stays below the threshold to the end of the block.
    """
    learnt = learnt_profiles(manifests, scenario,
                             {i: d.get("Timestamp") for i, d in by_fish.items()})
    out = []
    for b in blocks[1:]:
        fish = [by_fish[i] for i in range(b["first_fish_id"], b["last_fish_id"] + 1)
                if i in by_fish]
        if not fish:
            continue
        errors = [d["Error"] for d in fish]
        profile = b.get("profile", b["species"])
        knows = [learnt.get(d["ModelVersion"], {}).get(b["species"]) == profile
                 for d in fish]
        served = next((k for k, known in enumerate(knows) if known), len(fish))
        recovery = next((k for k in range(served, len(fish)) if knows[k] and all(
            statistics.fmean(errors[max(k, j - RECOVERY_ROLL + 1):j + 1]) < threshold
            for j in range(k, len(fish)))), len(fish))
        after = fish[recovery:]
        error_after, floor = _error_and_floor(after, scenario)
        error_30, floor_30 = _error_and_floor(after[:AFTER_RECOVERY_FISH], scenario)
        out.append({
            "block": b["phase"],
            "species": b["species"], "profile": profile, "first_fish_id": b["first_fish_id"],
            "fish": len(fish), "known_at_start": knows[0],
            "fish_until_served": served,
            "fish_until_recovery": recovery,
            "recovery_fish_id": fish[recovery]["Fish_Id"] if recovery < len(fish) else None,
            "over_threshold_until_recovery": sum(e > threshold for e in errors[:recovery]),
            "over_threshold_after_recovery": sum(e > threshold for e in errors[recovery:]),
            "mean_error_after_recovery": error_after,
            "noise_floor": floor,
            "error_to_noise_floor": _ratio(error_after, floor),
            # The same over the first AFTER_RECOVERY_FISH fish after recovery.
            "error_to_noise_floor_30": _ratio(error_30, floor_30),
        })
    return out


AFTER_RECOVERY_FISH = 30


def _error_and_floor(fish: list[dict[str, Any]], scenario: Scenario
                     ) -> tuple[float | None, float | None]:
    floors = [f for f in (noise_floor(d, scenario) for d in fish) if f is not None]
    return _mean([d["Error"] for d in fish]), _mean(floors)


def _ratio(error: float | None, floor: float | None) -> float | None:
    return round(error / floor, 2) if error is not None and floor else None


def summarize(data: RunData, scenario: Scenario, settings: Settings) -> dict[str, Any]:
    """Every number of the report, as plain data (also what the end-to-end test checks)."""
    threshold = settings.error_threshold
    diffs = arrival_order(data.diffs)
    by_fish = {d.value["Fish_Id"]: d.value for d in diffs}
    blocks = phases(scenario)
    # The first block whose profile the initial model did not learn (a species or a change).
    initial = learnt_profiles(data.manifests, scenario,
                              {i: d.get("Timestamp") for i, d in by_fish.items()}).get(1, {})
    drift = next((b for b in blocks if initial.get(b["species"]) != b["profile"]), None)
    drift_start = drift["first_fish_id"] if drift else None

    promoted = [d for d in data.decisions if d["action"] == "promoted"]
    versions = []
    for decision in promoted:
        version = decision["version"]
        served = [p for p in data.predictions if p.value["Prediction"]["ModelVersion"] == version]
        first = min(served, key=lambda p: p.kafka_ms) if served else None
        trigger = next((r for r in data.retrains if r.value == decision["event"]), None)
        manifest = data.manifests.get(version, {})
        versions.append({
            "version": version,
            "reason": decision.get("reason", "window"),
            "trained_on_fish_ids": manifest.get("training_window", {}).get("fish_ids"),
            "species": manifest.get("species"),
            "training_species": manifest.get("species_records"),
            "gate": decision.get("detail"),
            "first_fish_id_served": first.value["Fish_Id"] if first else None,
            "retrain_window": [decision["event"].get("Fish_Id_Start"),
                               decision["event"].get("Fish_Id_End")],
            "trigger_species": decision["event"].get("Species"),
            "trigger_count": decision["event"].get("Count"),
            "seconds_retrain_event_to_first_prediction": (
                round((first.kafka_ms - trigger.kafka_ms) / 1000, 2)
                if first and trigger else None),
        })
    recovery = min((v["first_fish_id_served"] for v in versions
                    if v["first_fish_id_served"] is not None), default=None)

    drift_list = drifts(by_fish, blocks, data.manifests, scenario, threshold)
    own_drift = {d["first_fish_id"]: d for d in drift_list}
    per_phase = []
    for b in blocks:
        ids = range(b["first_fish_id"], b["last_fish_id"] + 1)
        # Each block split at its own recovery (the drift table's); a block the first
        # model knew is all after it; else the first fish a promoted version served.
        drift_of_block = own_drift.get(b["first_fish_id"])
        if drift_of_block is not None:
            recovered = drift_of_block["recovery_fish_id"]
        elif initial.get(b["species"]) == b["profile"]:
            recovered = b["first_fish_id"]
        else:
            recovered = recovery
        errors = [by_fish[i]["Error"] for i in ids if i in by_fish]
        before = [by_fish[i]["Error"] for i in ids if i in by_fish and
                  (recovered is None or i < recovered)]
        after = [by_fish[i]["Error"] for i in ids if i in by_fish and
                 recovered is not None and i >= recovered]
        per_phase.append({**b, "joined": len(errors), "mean_error": _mean(errors),
                          "mean_error_before_recovery": _mean(before),
                          "mean_error_after_recovery": _mean(after),
                          "fish_after_recovery": len(after)})
    species_errors: dict[str, list[float]] = {}
    for d in diffs:
        species_errors.setdefault(d.value["Species"], []).append(d.value["Error"])

    dead_by_topic = dict(Counter(d.value.get("SourceTopic", "?") for d in data.dead_letters))
    unmatched_by_reason = dict(Counter(
        f'{u.value.get("Kind")}: {str(u.value.get("Reason")).split(":")[0]}'
        for u in data.unmatched))
    dead_measurements = data.dead_letters_from(settings.topic_measurement)
    dead_weights = data.dead_letters_from(settings.topic_weight)
    produced = data.produced.get("measurements")
    weights_produced = data.produced.get("weights")
    # By Fish_Id, not only by count: a missing record and a duplicate (at-least-once)
    # would cancel out. The simulator sends fish in id order, so the first `produced`.
    first = scenario.first_fish_id
    predicted_ids = Counter(p.value.get("Fish_Id") for p in data.predictions)
    joined_ids = Counter(d.value.get("Fish_Id") for d in diffs)
    dead_ids = {topic: {d.value.get("Fish_Id") for d in data.dead_letters
                        if d.value.get("SourceTopic") == topic}
                for topic in (settings.topic_measurement, settings.topic_weight)}
    unmatched_weight_ids = {u.value.get("Fish_Id") for u in data.unmatched
                            if u.value.get("Kind") == "weight"}
    missing_measurements = (None if produced is None else sorted(
        set(range(first, first + produced)) - set(predicted_ids)
        - dead_ids[settings.topic_measurement]))
    missing_weights = (None if weights_produced is None else sorted(
        set(range(first, first + weights_produced)) - set(joined_ids) - unmatched_weight_ids
        - dead_ids[settings.topic_weight]))
    duplicate_predictions = sum(n - 1 for n in predicted_ids.values())
    duplicate_diffs = sum(n - 1 for n in joined_ids.values())
    return {
        "threshold": threshold,
        "counts": {
            "measurements_produced": produced,
            "weights_produced": data.produced.get("weights"),
            "predictions": len(data.predictions),
            "dead_letters": len(data.dead_letters),
            "dead_letters_by_topic": dead_by_topic,
            "joined_pairs": len(diffs),
            "windows_closed": len(data.windows),
            "retrain_events": len(data.retrains),
            "unmatched_weights": data.unmatched_of("weight"),
            "unmatched_measurements": data.unmatched_of("measurement"),
            "unmatched_by_reason": unmatched_by_reason,
            "accounted": (produced is not None
                          and produced == len(data.predictions) + dead_measurements
                          and not missing_measurements and not duplicate_predictions),
            "weights_accounted": (weights_produced is not None and weights_produced
                                  == len(diffs) + data.unmatched_of("weight") + dead_weights
                                  and not missing_weights and not duplicate_diffs),
            "measurements_missing": (missing_measurements or [])[:20],
            "weights_missing": (missing_weights or [])[:20],
            "duplicate_predictions": duplicate_predictions,
            "duplicate_diffs": duplicate_diffs,
        },
        "drift_start_fish_id": drift_start,
        "recovery_fish_id": recovery,
        "retrain_events": [r.value for r in data.retrains],
        "decisions": {a: sum(d["action"] == a for d in data.decisions) for a in ACTIONS},
        "drifts": drift_list,
        "versions_promoted": versions,
        "per_phase": per_phase,
        "per_species_mean_error": {s: _mean(e) for s, e in species_errors.items()},
        "fish_over_threshold_after_drift_before_recovery": sum(
            1 for i, d in by_fish.items()
            if drift_start is not None and i >= drift_start
            and (recovery is None or i < recovery) and d["Error"] > threshold),
    }

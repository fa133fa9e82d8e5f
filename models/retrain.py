"""Retraining decisions, independent of Kafka: what to train on, the gate, when to refine.

A retrain event (the first crossing of a window's running error, per species) is
handled like this:

1. **Once per window.** An event for a (window, species) that was already decided is
   skipped (a replay after a restart may repeat it).
2. **Stale rule.** A window scored (even partly) by a version older than the current
   one is skipped: that model has not had its chance yet, so one drift causes one
   retrain, not a storm.
3. **Training set.** The newest ``retrain_samples`` joined records up to and including
   the triggering one (the mission's rule), plus **species memory**: every species
   ever stored that has fewer than ``memory_per_species`` records among them is
   topped up with its own newest records, so a species absent from the newest 50 is
   not forgotten.
4. **Model.** ``SpeciesShrinkageRegressor`` chooses per species how much of its own
   slopes the evidence supports (few records: an offset on shared slopes).
5. **Gate.** The candidate's leave-one-out error must beat the current model's error
   by ``GATE_MARGIN`` on the records the current model has not trained on.

**Refinement.** A new species caught early is trained on a few records. Once the
store holds ``refine_min_records`` of a species that had fewer when the current model
was promoted, the trainer retrains by itself (at most a few attempts, each after more
records), so a drift costs at most two promotions. Every decision is appended to
``<state_dir>/trainer-decisions.jsonl``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fishweight.models.registry import LoadedModel, ModelRegistry, utc_now_iso
from fishweight.models.store import TrainingStore, open_store
from fishweight.models.training import (
    fit,
    loo_gate,
    refinement_due,
    select_training_records,
    to_frame,
)
from fishweight.runtime.settings import Settings

log = logging.getLogger(__name__)

MIN_TRAINING_RECORDS = 10
REFINE_ATTEMPTS = 3   # per species and promotion
REFINE_STEP = 5       # more records of the species before the next attempt
# A candidate must beat the current model by 5 %: a refit within the noise is no reason
# to swap (a drift improves the error several-fold, a refinement by ~40 %).
GATE_MARGIN = 0.05
ACTIONS = ("promoted", "not_promoted", "skipped_stale", "skipped_too_few", "skipped_duplicate",
           "failed")
MAX_ID = 2**63 - 1


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def diff_problem(record: Any) -> str | None:
    """Why a weight-diff record cannot be stored for training, or None when it can."""
    if not isinstance(record, dict):
        return f"not a JSON object but {type(record).__name__}"
    for name in ("Fish_Id", "Timestamp"):
        if not _is_int(record.get(name)) or not 0 < record[name] <= MAX_ID:
            return f"{name} must be an integer in 1..2^63-1, got {record.get(name)!r}"[:300]
    species = record.get("Species")
    if not isinstance(species, str) or not species.strip() or len(species) > 200:
        return f"Species must be a short non-empty string, got {species!r}"[:300]
    for name in ("Length", "Height", "ActualWeight"):
        if not _is_number(record.get(name)) or record[name] <= 0:
            return f"{name} must be a positive finite number, got {record.get(name)!r}"[:300]
    return None


def event_problem(event: Any) -> str | None:
    """Why a weight-retrain record cannot be acted on, or None when it can."""
    if not isinstance(event, dict):
        return f"not a JSON object but {type(event).__name__}"
    for name in ("WindowStart", "WindowEnd"):
        try:
            dt.datetime.fromisoformat(str(event.get(name)).removesuffix("Z"))
        except ValueError:
            return f"{name} is not an ISO-8601 time: {event.get(name)!r}"[:300]
    species = event.get("Species")
    if not isinstance(species, list) or not all(isinstance(x, str) for x in species):
        return f"Species must be a list of strings, got {species!r}"[:300]
    versions = event.get("ModelVersions")
    if not isinstance(versions, list) or not all(v is None or _is_int(v) for v in versions):
        return f"ModelVersions must be a list of integers, got {versions!r}"[:300]
    if "Timestamp_End" in event and not (_is_int(event["Timestamp_End"])
                                         and 0 < event["Timestamp_End"] <= MAX_ID):
        return f"Timestamp_End must be a positive integer, got {event['Timestamp_End']!r}"[:300]
    return None


@dataclass
class TrainerStats:
    diffs_stored: int = 0
    invalid_records: int = 0
    retrain_events: int = 0
    refinements: int = 0
    promoted: int = 0
    not_promoted: int = 0
    skipped_stale: int = 0
    skipped_too_few: int = 0
    skipped_duplicate: int = 0
    failed: int = 0


@dataclass
class Decision:
    """What the trainer did with one retrain event or refinement."""

    action: str  # one of ACTIONS
    event: dict[str, Any]
    detail: str
    reason: str = "window"  # window | refinement
    version: int | None = None
    current_version: int | None = None
    gate: dict[str, Any] = field(default_factory=dict)
    training_species: dict[str, int] = field(default_factory=dict)
    decided_at: str = field(default_factory=utc_now_iso)


def window_key(event: dict[str, Any]) -> str:
    """The (window, species) a retrain event belongs to."""
    return json.dumps([event.get("WindowStart"), sorted(event.get("Species") or [])])


def window_end_epoch_ms(event: dict[str, Any]) -> int | None:
    """The retrain event's WindowEnd (ISO-8601, UTC) in epoch milliseconds."""
    end = event.get("WindowEnd")
    if not end:
        return None
    parsed = dt.datetime.fromisoformat(end.removesuffix("Z"))
    return int(parsed.replace(tzinfo=dt.UTC).timestamp() * 1000)


def trigger_time_ms(event: dict[str, Any]) -> int | None:
    """Train on records up to and including this event time (epoch ms, exclusive bound).

    The early trigger names its newest record (``Timestamp_End``); older events only
    have the window's end.
    """
    if isinstance(event.get("Timestamp_End"), int):
        return event["Timestamp_End"] + 1
    return window_end_epoch_ms(event)


def evidence_of(model: LoadedModel) -> dict[str, int]:
    """Records per species the current model was promoted on (see ``refinement_due``)."""
    m = model.manifest
    if "evidence" in m:
        return {s: int(n) for s, n in m["evidence"].items()}
    if "species_records" in m:
        return {s: int(n) for s, n in m["species_records"].items()}
    return {s: int(m.get("n_samples", 0)) for s in m.get("species", [])}


class Trainer:
    """The retraining logic, independent of Kafka: feed it diffs and retrain events."""

    def __init__(self, settings: Settings, store: TrainingStore | None = None) -> None:
        self.settings = settings
        self.registry = ModelRegistry.for_settings(settings)
        self.store = store or open_store(settings.resolved_store_uri)
        self.stats = TrainerStats()
        self.decisions_path = Path(settings.state_dir) / "trainer-decisions.jsonl"
        self._decided_windows = {window_key(d["event"]) for d in read_decisions(settings)
                                 if d.get("reason", "window") == "window"}
        self._refine_tries: dict[tuple[int, str], tuple[int, int]] = {}

    def store_diffs(self, records: list[dict[str, Any]]) -> None:
        self.stats.diffs_stored += self.store.append(records)

    def _record(self, decision: Decision) -> Decision:
        setattr(self.stats, decision.action, getattr(self.stats, decision.action) + 1)
        self.decisions_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.decisions_path, "a") as fh:
            fh.write(json.dumps(asdict(decision), sort_keys=True) + "\n")
        return decision

    def fail(self, event: dict[str, Any], exc: BaseException) -> Decision:
        """Record that handling an event failed; the trainer goes on with the next one."""
        log.exception("retrain event failed: %s", exc)
        self._decided_windows.add(window_key(event))
        return self._record(Decision("failed", event, f"{type(exc).__name__}: {exc}"[:500]))

    def handle_retrain(self, event: dict[str, Any]) -> Decision:
        self.stats.retrain_events += 1
        decision = self._record(self._decide(event))
        if decision.action != "skipped_duplicate":
            self._decided_windows.add(window_key(event))
        log.info("retrain event for %s %s..%s (ErrorAvg %.3f, Count %s): %s - %s",
                 event.get("Species"), event.get("WindowStart"), event.get("WindowEnd"),
                 event.get("ErrorAvg", float("nan")), event.get("Count"),
                 decision.action, decision.detail)
        return decision

    def _decide(self, event: dict[str, Any]) -> Decision:
        current = self.registry.load_current()
        if window_key(event) in self._decided_windows:
            return Decision("skipped_duplicate", event, "this window was already decided",
                            current_version=current.version)
        scored_by = [v for v in event.get("ModelVersions") or [] if v is not None]
        if not scored_by or min(scored_by) < current.version:
            return Decision("skipped_stale", event,
                            f"window scored by version(s) {sorted(scored_by)}, "
                            f"version {current.version} is current and had no full window yet",
                            current_version=current.version)
        return self._retrain(current, trigger_time_ms(event), event, "window")

    def refine_if_due(self) -> Decision | None:
        """Retrain by itself when a species has gathered enough records since promotion."""
        current = self.registry.load_current()
        counts = self.store.species_counts()
        for species in refinement_due(counts, evidence_of(current),
                                      self.settings.refine_min_records):
            tries, at = self._refine_tries.get((current.version, species), (0, 0))
            if tries >= REFINE_ATTEMPTS or (tries and counts[species] < at + REFINE_STEP):
                continue
            self._refine_tries[(current.version, species)] = (tries + 1, counts[species])
            self.stats.refinements += 1
            event = {"Species": [species], "Count": counts[species]}
            decision = self._record(self._retrain(current, None, event, "refinement"))
            log.info("refinement for %s (%d records stored): %s - %s", species,
                     counts[species], decision.action, decision.detail)
            return decision
        return None

    def _retrain(self, current: LoadedModel, before_ms: int | None, event: dict[str, Any],
                 reason: str) -> Decision:
        s = self.settings
        records = select_training_records(
            lambda n, before, species: self.store.latest(n, before, species),
            self.store.species_counts(before_ms), before_ms,
            s.retrain_samples, s.memory_per_species)
        if len(records) < MIN_TRAINING_RECORDS:
            return Decision("skipped_too_few", event,
                            f"only {len(records)} records stored, need {MIN_TRAINING_RECORDS}",
                            reason=reason, current_version=current.version)
        frame = to_frame(records)
        in_training = {str(k): int(v) for k, v in frame["Species"].value_counts().items()}
        candidate = fit(frame)
        trained_until = current.manifest.get("training_window", {}).get("last_timestamp")
        gate = loo_gate(candidate, current.estimator, frame,
                        current_trained_until_ms=trained_until, margin=GATE_MARGIN)
        detail = (f"leave-one-out error {gate['candidate_loo']:.4f} vs current "
                  f"v{current.version} {gate['current']:.4f} on {gate['n']} records; "
                  f"trained on {in_training}")
        if not gate["promote"]:
            return Decision("not_promoted", event, detail, reason=reason,
                            current_version=current.version, gate=gate,
                            training_species=in_training)
        stored = self.store.species_counts()
        version = self.registry.publish(candidate, expected_current=current.version, metadata={
            "n_samples": len(frame),
            "species": sorted(in_training),
            "species_records": in_training,
            "evidence": {sp: max(stored.get(sp, 0), in_training.get(sp, 0))
                         for sp in set(stored) | set(in_training)},
            "model": candidate.describe(),
            "training_window": {
                "first_fish_id": int(frame["Fish_Id"].iloc[0]),
                "last_fish_id": int(frame["Fish_Id"].iloc[-1]),
                "first_timestamp": int(frame["Timestamp"].min()),
                "last_timestamp": int(frame["Timestamp"].max()),
                "fish_ids": [int(i) for i in frame["Fish_Id"]],
            },
            "metrics": {"gate": gate},
            "trigger": event,
            "reason": reason,
        })
        self._refine_tries.clear()
        return Decision("promoted", event, detail, reason=reason, version=version,
                        current_version=current.version, gate=gate,
                        training_species=in_training)


def read_decisions(settings: Settings) -> list[dict[str, Any]]:
    path = Path(settings.state_dir) / "trainer-decisions.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

"""Retraining decisions, independent of Kafka: what to train on, the gate, the stale rule.

Per retrain event the ``Trainer`` loads the newest ``retrain_samples`` records up to
the end of the triggering window, fits a candidate on 4/5 of them and promotes it
only if it beats the current model on the held-out 1/5. A window that was (even
partly) scored by a version older than the current one is skipped: that model has not
had its chance yet, so one drift causes one retrain, not a storm. Every decision is
appended to ``<state_dir>/trainer-decisions.jsonl``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fishweight.models.registry import ModelRegistry, utc_now_iso
from fishweight.models.store import TrainingStore, open_store
from fishweight.models.training import compare_on_holdout, fit, holdout_split, to_frame
from fishweight.runtime.settings import Settings

log = logging.getLogger(__name__)

MIN_TRAINING_RECORDS = 10


@dataclass
class TrainerStats:
    diffs_stored: int = 0
    invalid_records: int = 0
    retrain_events: int = 0
    promoted: int = 0
    not_promoted: int = 0
    skipped_stale: int = 0
    skipped_too_few: int = 0


@dataclass
class Decision:
    """What the trainer did with one retrain event."""

    action: str  # promoted | not_promoted | skipped_stale | skipped_too_few
    event: dict[str, Any]
    detail: str
    version: int | None = None
    current_version: int | None = None
    holdout: dict[str, Any] = field(default_factory=dict)
    decided_at: str = field(default_factory=utc_now_iso)


class Trainer:
    """The retraining logic, independent of Kafka: feed it diffs and retrain events."""

    def __init__(self, settings: Settings, store: TrainingStore | None = None) -> None:
        self.settings = settings
        self.registry = ModelRegistry(settings.resolved_model_dir)
        self.store = store or open_store(settings.resolved_store_uri)
        self.stats = TrainerStats()
        self.decisions_path = Path(settings.state_dir) / "trainer-decisions.jsonl"

    def store_diffs(self, records: list[dict[str, Any]]) -> None:
        self.stats.diffs_stored += self.store.append(records)

    def handle_retrain(self, event: dict[str, Any]) -> Decision:
        self.stats.retrain_events += 1
        decision = self._decide(event)
        setattr(self.stats, decision.action, getattr(self.stats, decision.action) + 1)
        self.decisions_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.decisions_path, "a") as fh:
            fh.write(json.dumps(asdict(decision), sort_keys=True) + "\n")
        log.info("retrain event for window %s..%s (ErrorAvg %.3f): %s - %s",
                 event.get("WindowStart"), event.get("WindowEnd"),
                 event.get("ErrorAvg", float("nan")), decision.action, decision.detail)
        return decision

    def _decide(self, event: dict[str, Any]) -> Decision:
        current = self.registry.load_current()
        scored_by = [v for v in event.get("ModelVersions") or [] if v is not None]
        if not scored_by or min(scored_by) < current.version:
            return Decision("skipped_stale", event,
                            f"window scored by version(s) {sorted(scored_by)}, "
                            f"version {current.version} is current and had no full window yet",
                            current_version=current.version)
        # The newest records as of the end of the triggering window, not as of now: the
        # window closes a join bound after its end, and by then the stream may hold a
        # later phase only (e.g. only the new species). Also makes retraining
        # reproducible whatever the processing speed.
        window_end_ms = window_end_epoch_ms(event)
        records = self.store.latest(self.settings.retrain_samples, before_ms=window_end_ms)
        if len(records) < MIN_TRAINING_RECORDS:
            return Decision("skipped_too_few", event,
                            f"only {len(records)} records stored, need {MIN_TRAINING_RECORDS}",
                            current_version=current.version)
        records.sort(key=lambda r: (r["Timestamp"], r["Fish_Id"]))  # oldest first
        frame = to_frame(records)
        train, holdout = holdout_split(frame)
        candidate = fit(train)
        scores = compare_on_holdout(candidate, current.estimator, holdout)
        cand_err = scores["candidate"]["mean_relative_error"]
        curr_err = scores["current"]["mean_relative_error"]
        detail = (f"holdout mean relative error: candidate {cand_err:.4f} vs current "
                  f"v{current.version} {curr_err:.4f} on {len(holdout)} records")
        if not cand_err < curr_err:
            return Decision("not_promoted", event, detail, current_version=current.version,
                            holdout=scores)
        species = sorted(set(frame["Species"]))
        version = self.registry.publish(candidate, {
            "n_samples": len(train),
            "n_holdout": len(holdout),
            "species": species,
            "features": candidate.named_steps["features"].feature_names(),
            "training_window": {
                "first_fish_id": int(frame["Fish_Id"].iloc[0]),
                "last_fish_id": int(frame["Fish_Id"].iloc[-1]),
                "first_timestamp": int(frame["Timestamp"].iloc[0]),
                "last_timestamp": int(frame["Timestamp"].iloc[-1]),
                "fish_ids": [int(i) for i in frame["Fish_Id"]],
            },
            "metrics": {"holdout_candidate": scores["candidate"],
                        "holdout_current": scores["current"]},
            "trigger": event,
            "reason": "retrain",
        })
        return Decision("promoted", event, detail, version=version,
                        current_version=current.version, holdout=scores)


def window_end_epoch_ms(event: dict[str, Any]) -> int | None:
    """The retrain event's WindowEnd (ISO-8601, UTC) in epoch milliseconds."""
    end = event.get("WindowEnd")
    if not end:
        return None
    parsed = dt.datetime.fromisoformat(end.removesuffix("Z"))
    return int(parsed.replace(tzinfo=dt.UTC).timestamp() * 1000)


def read_decisions(settings: Settings) -> list[dict[str, Any]]:
    path = Path(settings.state_dir) / "trainer-decisions.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

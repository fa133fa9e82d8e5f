"""``fishweight train``: the trainer service.

Consumes ``weight-diff`` (every joined record goes into the training store) and
``weight-retrain`` (the window trigger). Per retrain event it loads the newest
``retrain_samples`` records up to the end of the triggering window, fits a candidate
on 4/5 of them and promotes it only if it beats the current model on the held-out
1/5. A window that was (even partly) scored by a version older than the current one
is skipped: that model has not had its chance yet, so one drift causes one retrain,
not a storm.

Offsets are committed only after the records are stored or the event is fully
handled (at-least-once; the store's upserts make redelivery harmless). Every
decision is appended to ``<state_dir>/trainer-decisions.jsonl``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition

from jobs.settings import Settings
from models.registry import ModelError, ModelRegistry, utc_now_iso
from models.store import TrainingStore, open_store
from models.training import compare_on_holdout, fit, holdout_split, to_frame

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


def _decode(message) -> dict[str, Any] | None:
    try:
        value = json.loads(message.value)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


class TrainerService:
    """Kafka plumbing around ``Trainer``: assign, poll, store, decide, commit."""

    def __init__(self, settings: Settings, trainer: Trainer | None = None) -> None:
        self.settings = settings
        self.trainer = trainer or Trainer(settings)
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            group_id=f"{settings.consumer_group}-trainer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="fishweight-trainer",
        )
        self.dead_letters = KafkaProducer(bootstrap_servers=settings.bootstrap_servers,
                                          client_id="fishweight-trainer-dlq")
        # Explicit assignment (no group rebalancing): one trainer per registry.
        self.diff_parts = self._partitions(settings.topic_diff)
        self.retrain_parts = self._partitions(settings.topic_retrain)
        self.consumer.assign(self.diff_parts + self.retrain_parts)
        for tp in self.diff_parts + self.retrain_parts:
            committed = self.consumer.committed(tp)
            if committed is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, committed)

    def _partitions(self, topic: str) -> list[TopicPartition]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            parts = self.consumer.partitions_for_topic(topic)
            if parts:
                return [TopicPartition(topic, p) for p in sorted(parts)]
            time.sleep(0.2)
        raise RuntimeError(f"topic {topic} not found on {self.settings.bootstrap_servers}")

    def _commit(self, tp: TopicPartition, next_offset: int) -> None:
        self.consumer.commit({tp: OffsetAndMetadata(next_offset, "", -1)})

    def _dead_letter(self, message, reason: str) -> None:
        self.trainer.stats.invalid_records += 1
        log.error("unreadable record %s[%d]@%d: %s", message.topic, message.partition,
                  message.offset, reason)
        self.dead_letters.send(self.settings.topic_dead_letter, json.dumps({
            "SourceTopic": message.topic, "Partition": message.partition,
            "Offset": message.offset, "Reason": reason,
            "Payload": message.value.decode("utf-8", "replace") if message.value else None,
        }).encode()).get(timeout=30)

    def _store(self, batch: dict[TopicPartition, list]) -> None:
        for tp, messages in batch.items():
            records = []
            for message in messages:
                record = _decode(message)
                if record is None or "Fish_Id" not in record or "Timestamp" not in record:
                    self._dead_letter(message, "trainer: not a weight-diff JSON record")
                else:
                    records.append(record)
            self.trainer.store_diffs(records)
            self._commit(tp, messages[-1].offset + 1)

    def _catch_up_diffs(self, max_s: float = 1.0) -> None:
        """Store the diffs already in Kafka before deciding on a retrain event.

        The triggering window's diffs were written a join bound before the window
        closed, so a short catch-up suffices. It is capped in time: under a steady
        stream of new diffs an "until nothing arrives" loop would never end.
        """
        self.consumer.pause(*self.retrain_parts)
        deadline = time.monotonic() + max_s
        try:
            while time.monotonic() < deadline and (batch := self.consumer.poll(timeout_ms=200)):
                self._store(batch)
        finally:
            self.consumer.resume(*self.retrain_parts)

    def poll_once(self, timeout_ms: int = 500) -> None:
        batch = self.consumer.poll(timeout_ms=timeout_ms)
        self._store({tp: m for tp, m in batch.items() if tp.topic == self.settings.topic_diff})
        for tp, messages in batch.items():
            if tp.topic != self.settings.topic_retrain:
                continue
            for message in messages:
                event = _decode(message)
                if event is None:
                    self._dead_letter(message, "trainer: not a weight-retrain JSON record")
                else:
                    self._catch_up_diffs()
                    try:
                        self.trainer.handle_retrain(event)
                    except ModelError as exc:
                        # No usable current model: keep the event, retry on restart.
                        log.error("cannot handle retrain event: %s", exc)
                        raise
                self._commit(tp, message.offset + 1)

    def run(self, stop: threading.Event) -> TrainerStats:
        log.info("trainer consuming %s and %s; models in %s; store %s",
                 self.settings.topic_diff, self.settings.topic_retrain,
                 self.settings.resolved_model_dir, self.settings.resolved_store_uri)
        try:
            while not stop.is_set():
                self.poll_once()
        finally:
            self.close()
        log.info("trainer stopped: %s", self.trainer.stats)
        return self.trainer.stats

    def close(self) -> None:
        self.consumer.close()
        self.dead_letters.close()
        self.trainer.store.close()


def read_decisions(settings: Settings) -> list[dict[str, Any]]:
    path = Path(settings.state_dir) / "trainer-decisions.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

"""``fishweight train``: the trainer service, the Kafka loop around ``models.decisions``.

Consumes ``weight-diff`` (every joined record goes into the training store) and
``weight-retrain`` (the window trigger) and hands each retrain event to
``fishweight.models.decisions.Trainer``, which decides what to train on, gates the
candidate (leave-one-out against the current model) and publishes it.

Offsets are committed only after the records are stored or the event is fully
handled (at-least-once; the store's upserts make redelivery harmless).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition

from fishweight.jobs.trainer_metrics import TrainerMetrics
from fishweight.models.decisions import (
    CHANGE_WAIT_S,
    Decision,
    Trainer,
    TrainerStats,
    species_of,
    trigger_time_ms,
)
from fishweight.models.registry import ModelError, ModelUnavailable
from fishweight.models.store import StoreError
from fishweight.records import (
    diff_problem,
    event_problem,
    payload_evidence,
    record_id,
    utc_iso,
)
from fishweight.runtime.settings import Settings, redact_uri

log = logging.getLogger(__name__)


def _decode(message) -> dict[str, Any] | None:
    try:
        value = json.loads(message.value)
    except (TypeError, ValueError, RecursionError):  # not JSON, not UTF-8, nested too deep
        return None
    return value if isinstance(value, dict) else None


class TrainerService:
    """Kafka plumbing around ``Trainer``: assign, poll, store, decide, commit."""

    def __init__(self, settings: Settings, trainer: Trainer | None = None) -> None:
        self.settings = settings
        self.trainer = trainer or Trainer(settings)
        self.metrics = TrainerMetrics(self.trainer.stats)
        self._stop = threading.Event()
        if settings.trainer_metrics_port:
            # Before Kafka: a taken port is a clear error at once.
            self.metrics.serve(settings.trainer_metrics_port, settings.trainer_metrics_host)
        try:
            self._connect()
        except BaseException:
            self.metrics.close()
            raise
        self.metrics.model_version.set(self.trainer.registry.current_version() or 0)
        self._count_species()

    def _count_species(self) -> None:
        """The served model's species."""
        try:
            species = species_of(self.trainer.registry.load_current())
        except ModelError as exc:
            log.warning("cannot count the served model's species: %s", exc)
            return
        self.metrics.model_species.set(len(species))

    def _connect(self) -> None:
        settings = self.settings
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            group_id=f"{settings.consumer_group}-trainer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="fishweight-trainer",
            # A retrain event is acted on within this after it is written (kafka-python
            # waits 500 ms by default when a fetch finds little data).
            fetch_max_wait_ms=50,
            # With exactly-once sinks the job writes in transactions: skip aborted ones.
            isolation_level=("read_committed" if settings.delivery_guarantee == "exactly-once"
                             else "read_uncommitted"),
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

    def _dead_letter(self, message, record: dict[str, Any] | None, reason: str) -> None:
        """The job's dead-letter shape (README), for a record the trainer cannot use."""
        self.trainer.stats.invalid_records += 1
        log.error("unreadable record %s[%d]@%d: %s", message.topic, message.partition,
                  message.offset, reason)
        text, size, sha256 = payload_evidence(message.value,
                                              self.settings.dead_letter_payload_chars)
        fish_id = record_id(record.get("Fish_Id"), "Fish_Id")[0] if record else None
        kafka_time = utc_iso(message.timestamp) if message.timestamp >= 0 else None
        self.dead_letters.send(self.settings.topic_dead_letter, json.dumps({
            "SourceTopic": message.topic, "Partition": message.partition,
            "Offset": message.offset, "KafkaTimestamp": kafka_time, "Fish_Id": fish_id,
            "Reason": reason, "Payload": text, "PayloadSize": size, "PayloadSha256": sha256,
        }).encode()).get(timeout=30)

    def _retrying(self, action, what: str) -> bool:
        """Run ``action`` until the store takes it (backoff up to 30 s); False if stopped.

        A store that is down must not lose a record or an event: the offset is only
        committed after ``action`` succeeded. Nor must a model registry that cannot be
        read just now (``ModelUnavailable``: a file system error, the key remounted).
        """
        delay = 0.5
        while True:
            try:
                action()
                return True
            except (StoreError, ModelUnavailable) as exc:
                down = "training store"
                if isinstance(exc, StoreError):
                    self.trainer.stats.store_errors += 1
                else:
                    down = "model registry"
                log.warning("%s unavailable while %s (%s); retrying in %.1f s",
                            down, what, exc, delay)
                if self._stop.wait(delay):
                    return False
                delay = min(delay * 2, 30.0)

    def _store(self, batch: dict[TopicPartition, list]) -> None:
        for tp, messages in batch.items():
            records = []
            for message in messages:
                record = _decode(message)
                problem = ("not a JSON record" if record is None
                           else diff_problem(record, self.settings.plausible_maxima))
                if problem:
                    self._dead_letter(message, record,
                                      f"trainer: bad weight-diff record: {problem}")
                else:
                    records.append(record)
            if not self._retrying(lambda r=records: self.trainer.store_diffs(r),
                                  "storing diffs"):
                return
            self._commit(tp, messages[-1].offset + 1)

    def _catch_up_diffs(self, event: dict, max_s: float = CHANGE_WAIT_S) -> None:
        """Store the diffs already in Kafka before deciding on a retrain event.

        The job writes the triggering record to weight-diff and the event to
        weight-retrain at about the same moment, so the event can arrive first. Poll
        diffs until the store holds the triggering record (the event's
        ``Timestamp_End``) and, for a change inside a known species, ``change_min_records``
        of its records since the change; capped in time (an event without
        ``Timestamp_End``: until nothing more arrives).
        """
        wanted = trigger_time_ms(event)
        change = self.trainer.change_of(event)
        self.consumer.pause(*self.retrain_parts)
        deadline = time.monotonic() + max_s
        try:
            # First what is already fetched: it often holds the triggering record.
            wait_ms = 200 if wanted is None else 0
            while time.monotonic() < deadline:
                batch = self.consumer.poll(timeout_ms=wait_ms)
                wait_ms = 200
                self._store(batch)
                if wanted is None:
                    if not batch:  # an event without Timestamp_End: until nothing arrives
                        return
                    continue
                # The triggering record is stored: decide now. Waiting for a quiet
                # moment would wait the whole cap under a steady stream of diffs.
                have = self.trainer.store.latest(1, wanted)
                if have and have[0]["Timestamp"] >= wanted - 1 and self._enough_since(change):
                    return
        finally:
            self.consumer.resume(*self.retrain_parts)

    def _enough_since(self, change: tuple[str, int] | None) -> bool:
        """Whether ``change_min_records`` of a changed species are stored since its change.

        The change rule fires on the third bad record; one more shows whether a good
        fish follows, i.e. whether it was a burst of outliers.
        """
        if change is None:
            return True
        species, since = change
        need = self.settings.change_min_records
        return len(self.trainer.store.latest(need, None, species, since)) >= need

    def poll_once(self, timeout_ms: int = 500) -> None:
        batch = self.consumer.poll(timeout_ms=timeout_ms)
        diffs = {tp: m for tp, m in batch.items() if tp.topic == self.settings.topic_diff}
        self._store(diffs)
        for tp, messages in batch.items():
            if tp.topic != self.settings.topic_retrain:
                continue
            for message in messages:
                event = _decode(message)
                problem = "not a JSON record" if event is None else event_problem(event)
                if problem:
                    self._dead_letter(message, event,
                                      f"trainer: bad weight-retrain record: {problem}")
                elif not self._retrying(lambda e=event: self._handle(e), "retraining"):
                    return  # stopping: the event is redelivered on restart
                self._commit(tp, message.offset + 1)
        if diffs:
            self._retrying(self._refine, "checking for a refinement")

    def _handle(self, event: dict) -> None:
        """Decide on one event; anything but an unavailable store is a ``failed`` decision."""
        started = time.perf_counter()
        try:
            self._catch_up_diffs(event)
            started = time.perf_counter()
            decision = self.trainer.handle_retrain(event)
        except (StoreError, ModelUnavailable):
            raise
        except Exception as exc:  # noqa: BLE001 - one bad event must not stop the trainer
            decision = self.trainer.fail(event, exc)
        self._decided(decision, started)

    def _decided(self, decision: Decision | None, started: float) -> None:
        if decision is not None:
            self.metrics.decided(decision, time.perf_counter() - started)
            if decision.action == "promoted":
                self._count_species()

    def _refine(self) -> None:
        started = time.perf_counter()
        try:
            self._decided(self.trainer.refine_if_due(), started)
        except (StoreError, ModelUnavailable):
            raise
        except Exception as exc:  # noqa: BLE001 - a failed refinement must not stop storing
            log.exception("refinement check failed: %s", exc)

    def run(self, stop: threading.Event) -> TrainerStats:
        log.info("trainer consuming %s and %s; models in %s; store %s",
                 self.settings.topic_diff, self.settings.topic_retrain,
                 self.settings.resolved_model_dir,
                 redact_uri(self.settings.resolved_store_uri))
        self._stop = stop
        try:
            with self.trainer.registry.exclusive_writer():
                while not stop.is_set():
                    self.poll_once()
        finally:
            self.close()
        log.info("trainer stopped: %s", self.trainer.stats)
        return self.trainer.stats

    def close(self) -> None:
        self.metrics.close()
        self.consumer.close()
        self.dead_letters.close()
        self.trainer.store.close()

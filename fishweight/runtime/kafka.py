"""Kafka access for every process: readiness, topics, producing and reading records.

Everything here takes bootstrap servers and works the same against the embedded
broker (``fishweight.runtime.broker``) and a real Apache Kafka.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import subprocess
import time

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

log = logging.getLogger(__name__)


class KafkaNotConfigured(ValueError):
    """A command needs Kafka but no bootstrap servers are configured."""


def require_kafka(settings, command: str) -> str:
    """The configured bootstrap servers, once they answer; a clear error if there are none."""
    if not settings.bootstrap_servers:
        raise KafkaNotConfigured(
            f"{command} needs Kafka: pass --bootstrap-servers or set "
            "FISHWEIGHT_BOOTSTRAP_SERVERS (e.g. from `fishweight broker`)")
    wait_until_ready(settings.bootstrap_servers)
    return settings.bootstrap_servers


def wait_until_ready(bootstrap_servers: str, timeout_s: float = 20.0,
                     process: subprocess.Popen | None = None) -> None:
    """Block until the broker answers a metadata request, or raise with the reason."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"broker exited with code {process.returncode} while starting")
        try:
            # A broker still starting refuses connections; kafka-python would log an ERROR
            # for each refusal, so the client comes only once a server accepts one.
            _accepts_connections(bootstrap_servers)
            admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers,
                                     request_timeout_ms=3000, client_id="fishweight-ready")
            try:
                admin.list_topics()
                return
            finally:
                admin.close()
        except (KafkaError, OSError) as exc:
            last_error = exc
            time.sleep(0.1)
    raise TimeoutError(f"Kafka at {bootstrap_servers} not ready after {timeout_s}s: {last_error}")


def _accepts_connections(bootstrap_servers: str) -> None:
    """Return once one of the servers accepts a TCP connection; OSError if none does."""
    error: OSError = OSError(f"no bootstrap server in {bootstrap_servers!r}")
    for server in filter(None, (s.strip() for s in bootstrap_servers.split(","))):
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
                return
        except ValueError:
            error = OSError(f"bootstrap server {server!r} is not host:port")
        except OSError as exc:
            error = exc
    raise error


def create_topics(bootstrap_servers: str, topics: list[str], partitions: int,
                  replication_factor: int = 1) -> None:
    """Create topics that do not exist yet; existing ones are left as they are."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="fishweight-admin")
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topics if t not in existing]
        for topic in missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(topic, num_partitions=partitions,
                                              replication_factor=replication_factor)])
        if missing:
            log.info("created topics %s with %d partitions, %d replica(s) each", missing,
                     partitions, replication_factor)
    finally:
        admin.close()


def partition_counts(bootstrap_servers: str, topics: list[str]) -> dict[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="fishweight-admin")
    try:
        described = admin.describe_topics(topics)
        return {t["name"]: len(t["partitions"]) for t in described}
    finally:
        admin.close()


def produce(bootstrap_servers: str, topic: str, records: list, keys: list | None = None,
            timestamps: list[int] | None = None) -> dict[int, int]:
    """Send records (dicts are JSON-encoded, bytes sent as they are); return end offsets.

    Returns {partition: offset after the last record}, which a bounded Flink source
    uses as `scan.bounded.specific-offsets` (Tansu's "latest" offsets are unreliable).
    """
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
    try:
        futures = []
        for i, record in enumerate(records):
            value = (record if record is None or isinstance(record, bytes)
                     else json.dumps(record).encode())  # None: a tombstone
            k = keys[i] if keys else None
            ts = timestamps[i] if timestamps else None
            futures.append(producer.send(topic, key=None if k is None else str(k).encode(),
                                         value=value, timestamp_ms=ts))
        producer.flush()
        ends: dict[int, int] = {}
        for future in futures:
            meta = future.get(timeout=30)
            ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
        return ends
    finally:
        producer.close()


def read_topic(bootstrap_servers: str, topic: str, *, expected: int | None = None,
               idle_s: float = 3.0, timeout_s: float = 60.0,
               isolation_level: str = "read_uncommitted") -> list:
    """Read a topic from the beginning, without a consumer group.

    Stops when ``expected`` records were read, or when nothing new arrived for
    ``idle_s`` seconds, or after ``timeout_s``. (End offsets are not used: Tansu
    reports them wrongly for multi-record batches, see docs/platform.md.)
    ``read_committed`` skips what a transactional writer has not committed (yet).
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
                             client_id="fishweight-reader", isolation_level=isolation_level)
    try:
        deadline = time.monotonic() + timeout_s
        partitions = consumer.partitions_for_topic(topic)
        while not partitions and time.monotonic() < deadline:
            time.sleep(0.2)
            partitions = consumer.partitions_for_topic(topic)
        assigned = [TopicPartition(topic, p) for p in sorted(partitions or [])]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        records: list = []
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            if expected is not None and len(records) >= expected:
                break
            batch = consumer.poll(timeout_ms=200)
            if batch:
                for part_records in batch.values():
                    records.extend(part_records)
                last_new = time.monotonic()
            elif time.monotonic() - last_new > idle_s:
                break
        return records
    finally:
        consumer.close()

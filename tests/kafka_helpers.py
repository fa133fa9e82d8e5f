"""Test helpers: produce JSON records and describe where they end, for bounded Flink reads."""

from __future__ import annotations

import json

from kafka import KafkaProducer


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


def bounded_offsets(ends: dict[int, int], partitions: int = 3) -> str:
    return ";".join(f"partition:{p},offset:{ends.get(p, 0)}" for p in range(partitions))


def read_values(settings, topic: str, expected: int | None = None,
                timeout_s: float = 150) -> list[dict]:
    """JSON values of a topic: wait for ``expected`` records, or without it read until
    5 s pass without news (to see that nothing more, e.g. a duplicate, arrives)."""
    from fishweight.runtime.kafka import read_topic

    return [json.loads(m.value) for m in read_topic(
        settings.bootstrap_servers, topic, expected=expected, timeout_s=timeout_s,
        idle_s=timeout_s if expected else 5)]

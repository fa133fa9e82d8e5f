"""Test helpers: bounded-read offsets and reading outputs (to produce: runtime.kafka.produce)."""

from __future__ import annotations

import json


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

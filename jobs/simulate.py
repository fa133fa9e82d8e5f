"""``fishweight simulate``: the two factory machines as Kafka producers.

Records are JSON, keyed by Fish_Id, with the Kafka record timestamp set to the
record's event time. Sending follows the simulated clock divided by ``speed``
(``speed=0``: as fast as possible); event timestamps do not depend on the speed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass

from kafka import KafkaProducer

from fishweight.runtime.settings import Settings
from fishweight.scenarios import MEASUREMENT, Scenario, events

log = logging.getLogger(__name__)


@dataclass
class SimulationResult:
    measurements: int = 0
    weights: int = 0
    start_ms: int = 0
    stopped_early: bool = False


def make_producer(bootstrap_servers: str) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        linger_ms=5,
        client_id="fishweight-simulator",
    )


def default_start_ms(scenario: Scenario, speed: float, now_s: float | None = None) -> int:
    """The first event time when none is given: now, or earlier when sending is faster.

    Sending faster than the simulated clock would run the record times ahead of the wall
    clock; they start early enough to end at it (the job rejects a record time more than
    ``max_clock_skew_s`` ahead of its clock: docs/settings.md).
    """
    now_ms = (time.time() if now_s is None else now_s) * 1000
    span_ms = scenario.duration_s * 1000
    ahead_ms = span_ms if speed == 0 else max(0.0, span_ms * (1 - 1 / speed))
    return int(now_ms - ahead_ms)


def simulate(settings: Settings, bootstrap_servers: str, scenario: Scenario,
             speed: float = 1.0, start_ms: int | None = None,
             stop: threading.Event | None = None,
             on_record=None) -> SimulationResult:
    """Send the scenario; returns how many records of each kind were acknowledged."""
    if speed < 0:
        raise ValueError("speed must be >= 0 (0 = as fast as possible)")
    if start_ms is None:
        start_ms = default_start_ms(scenario, speed)
    stop = stop or threading.Event()
    result = SimulationResult(start_ms=start_ms)
    topics = {MEASUREMENT: settings.topic_measurement, "weight": settings.topic_weight}
    producer = make_producer(bootstrap_servers)
    wall_start = time.monotonic()
    futures = []
    try:
        for event_ms, kind, record in events(scenario, start_ms):
            if speed > 0:
                due = wall_start + (event_ms - start_ms) / 1000.0 / speed
                if stop.wait(max(0.0, due - time.monotonic())):
                    result.stopped_early = True
                    break
            elif stop.is_set():
                result.stopped_early = True
                break
            futures.append((kind, producer.send(
                topics[kind], key=str(record["Fish_Id"]).encode(),
                value=json.dumps(record, separators=(",", ":")).encode(),
                timestamp_ms=event_ms)))
            if on_record is not None:
                on_record(kind, record)
        producer.flush()
        for kind, future in futures:
            future.get(timeout=30)  # raises if the broker refused the record
            if kind == MEASUREMENT:
                result.measurements += 1
            else:
                result.weights += 1
    finally:
        producer.close()
    log.info("simulator sent %d measurements and %d weights%s", result.measurements,
             result.weights, " (stopped early)" if result.stopped_early else "")
    return result

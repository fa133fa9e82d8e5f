"""What the parts send to the broker: fresh topics, a backlog of fish, fish at a fixed rate.

``generate`` is the latency part's load, run in its own process (``__main__.py``).
"""

from __future__ import annotations

import json
import time

from fishweight.jobs.connectors import Bounds
from fishweight.runtime.kafka import create_topics, produce
from fishweight.runtime.settings import Settings


def produce_fish(settings: Settings, n: int) -> Bounds:
    """N fish (measurement, weight 0.5 s later); the bounds where they end."""
    now = int(time.time() * 1000) - 60_000
    ids = range(1, n + 1)
    times = [now + (i - 1) // 10 for i in ids]
    measurements = [{"Species": "salmon", "Fish_Id": i, "Length": 80.0 + i % 17,
                     "Height": 18.0, "Timestamp": t} for i, t in zip(ids, times, strict=True)]
    weights = [{"Species": "salmon", "Fish_Id": i, "Weight": 4.3, "Timestamp": t + 500}
               for i, t in zip(ids, times, strict=True)]
    servers = settings.bootstrap_servers
    return Bounds(produce(servers, settings.topic_measurement, measurements, keys=list(ids),
                          timestamps=times),
                  produce(servers, settings.topic_weight, weights, keys=list(ids),
                          timestamps=[t + 500 for t in times]))


def fresh(settings: Settings, servers: str, tag: str, **changes) -> Settings:
    """A part's own pipeline on the shared broker: topics suffixed with ``tag``, created."""
    s = settings.suffixed(tag, bootstrap_servers=servers, **changes)
    create_topics(servers, s.all_topics, s.topic_partitions)
    return s


class PacedFish:
    """Fish at a fixed rate into a live job, keyed by Fish_Id.

    Each measurement goes now, its weight ``WEIGHT_DELAY_S`` later (event and Kafka
    time alike). With ``flush`` every step waits until the broker has its records
    (the drift part, a few fish a second); without, the producer batches them as its
    ``linger_ms`` allows (the load generator).
    """

    WEIGHT_DELAY_S = 1.0

    def __init__(self, producer, settings: Settings, rate: float, flush: bool = True,
                 first_id: int = 1, limit: int | None = None) -> None:
        self.producer, self.settings, self.rate, self.flush = producer, settings, rate, flush
        self.limit = limit  # fish in all, if given
        self.started = time.monotonic()
        self.sent = 0  # fish; their ids count up from first_id
        self.first_id = first_id
        self.weights_due: list[tuple[float, dict]] = []

    def step(self, fields, on_sent) -> None:
        """Send what is due by now.

        ``fields(fish)`` gives (Species, Length, Height, Weight); ``on_sent(fish, ms)``
        runs right after its measurement (Timestamp ``ms``) is handed to the producer.
        """
        delay_ms = int(self.WEIGHT_DELAY_S * 1000)
        due = int((time.monotonic() - self.started) * self.rate)
        while self.sent < (due if self.limit is None else min(due, self.limit)):
            fish = self.first_id + self.sent
            self.sent += 1
            now_ms = int(time.time() * 1000)
            weight = self._send_measurement(fish, fields, now_ms)
            on_sent(fish, now_ms)
            self.weights_due.append((time.monotonic() + self.WEIGHT_DELAY_S, {
                **weight, "Timestamp": now_ms + delay_ms}))
        while self.weights_due and self.weights_due[0][0] <= time.monotonic():
            self._send_weight(self.weights_due.pop(0)[1])
        if self.flush:
            self.producer.flush()

    def burst(self, n: int, fields) -> None:
        """``n`` fish at once, each weight with its measurement (warm-up load).

        The paced fish follow them, and the pace starts when they are sent.
        """
        now_ms = int(time.time() * 1000)
        for fish in range(self.first_id, self.first_id + n):
            self._send_weight({**self._send_measurement(fish, fields, now_ms),
                               "Timestamp": now_ms})
        self.first_id += n
        self.producer.flush()
        self.started = time.monotonic()

    def finish(self) -> None:
        """Send the weights still due, each at its time."""
        while self.weights_due:
            due, record = self.weights_due.pop(0)
            time.sleep(max(0.0, due - time.monotonic()))
            self._send_weight(record)
        self.producer.flush()

    def _send_measurement(self, fish: int, fields, now_ms: int) -> dict:
        """Send the fish's measurement stamped ``now_ms``; return its weight's fields."""
        species, length, height, weight = fields(fish)
        self.producer.send(self.settings.topic_measurement, key=str(fish).encode(),
                           timestamp_ms=now_ms, value=json.dumps({
                               "Species": species, "Fish_Id": fish, "Length": length,
                               "Height": height, "Timestamp": now_ms}).encode())
        return {"Species": species, "Fish_Id": fish, "Weight": weight}

    def _send_weight(self, record: dict) -> None:
        self.producer.send(self.settings.topic_weight, key=str(record["Fish_Id"]).encode(),
                           timestamp_ms=record["Timestamp"], value=json.dumps(record).encode())


# A producer's batching: Kafka 4.0's default linger. Unbatched (a batch per record), the
# embedded broker slows down as it fills: Tansu's memory storage lists every stored batch
# of a partition on each fetch (docs/platform.md).
GENERATOR_LINGER_MS = 5


def _salmon(fish: int) -> tuple[str, float, float, float]:
    """A salmon of fixed shape (Species, Length, Height, Weight): load, not a scenario."""
    return "salmon", 80.0 + fish % 17, 18.0, 4.3


def generate(servers: str, topic_measurement: str, topic_weight: str, rate: float,
             seconds: float, warm_fish: int = 0, count_from_ms: float = 0,
             count_to_ms: float = float("inf")) -> tuple[int, int]:
    """The latency part's load: a burst of fish, then salmon at a fixed rate.

    ``warm_fish`` fish at once, then ``rate`` fish/s for ``seconds``. Returns the fish
    sent and how many of them were sent (Timestamp) within ``[count_from_ms, count_to_ms)``.

    Runs in its own process (``python -m fishweight.jobs.bench generate ...``): in the
    bench process it would share the interpreter lock with the job's Python UDF worker,
    which a local MiniCluster runs there (docs/platform.md). The burst first lets the
    JVM compile the job's hot code, as in a job that has been running for a while; at
    100/s a warm-up at the rate alone leaves it interpreting.
    """
    from kafka import KafkaProducer

    s = Settings().replace(bootstrap_servers=servers, topic_measurement=topic_measurement,
                           topic_weight=topic_weight)
    producer = KafkaProducer(bootstrap_servers=servers, linger_ms=GENERATOR_LINGER_MS)
    paced = PacedFish(producer, s, rate, flush=False, limit=round(rate * seconds))
    paced.burst(warm_fish, _salmon)
    counted = [0]

    def count(_fish: int, timestamp_ms: int) -> None:
        counted[0] += count_from_ms <= timestamp_ms < count_to_ms

    while paced.sent < paced.limit:
        paced.step(_salmon, count)
        time.sleep(0.001)
    paced.finish()
    producer.close()
    return warm_fish + paced.sent, counted[0]

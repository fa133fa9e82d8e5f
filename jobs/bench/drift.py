"""Part d, drift: salmon, then walleye, through a live job and the trainer.

Seconds from the first walleye to the retrain event, to the new version, to its first prediction.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fishweight.jobs.bench.load import PacedFish, fresh
from fishweight.jobs.predict import build_pipeline
from fishweight.jobs.train import TrainerService
from fishweight.models.bootstrap import bootstrap_model
from fishweight.models.registry import ModelRegistry
from fishweight.runtime.flink_rest import local_url, wait_until_running
from fishweight.runtime.processes import free_port
from fishweight.runtime.settings import Settings
from fishweight.scenarios import load_scenario, sample_species

if TYPE_CHECKING:
    from fishweight.jobs.bench import BenchConfig


def bench_drift(settings: Settings, servers: str, config: BenchConfig) -> dict:
    """Salmon, then walleye, at a fixed rate through the job and the trainer.

    Its own state directory: the models the trainer publishes here must not change
    what the other parts serve. Weights follow their measurement by 1 s (the
    factory's is ~10 s, which adds 9 s to the drift-to-event figure and nothing else).
    """
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    state = Path(settings.state_dir) / "bench" / f"drift-{time.strftime('%Y%m%d-%H%M%S')}"
    port = free_port()
    s = fresh(settings.replace(state_dir=str(state)), servers, "drift", web_ui_port=port)
    bootstrap_model(s)
    registry = ModelRegistry.for_settings(s)
    first_version = registry.current_version()
    profiles = load_scenario().species
    rng = np.random.default_rng(7)
    seen: dict[str, float] = {}
    walleye_by_old_model = [0]
    stop = threading.Event()

    def watch() -> None:  # the prediction and retrain topics, and the registry
        consumer = KafkaConsumer(bootstrap_servers=servers, fetch_max_wait_ms=10)
        parts = [TopicPartition(t, p) for t in (s.topic_prediction, s.topic_retrain)
                 for p in range(s.topic_partitions)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        while not stop.is_set():
            for tp, records in consumer.poll(timeout_ms=20).items():
                now = time.monotonic()
                for r in records:
                    value = json.loads(r.value)
                    if tp.topic == s.topic_retrain:
                        seen.setdefault("event", now)
                    elif value["Prediction"]["ModelVersion"] != first_version:
                        seen.setdefault("served", now)
                    elif value["Species"] == "walleye":
                        walleye_by_old_model[0] += 1
            if "published" not in seen and registry.current_version() != first_version:
                seen["published"] = time.monotonic()
        consumer.close()

    job = build_pipeline(s).execute_async()
    job_id = str(job.get_job_id())
    trainer = TrainerService(s)
    threads = [threading.Thread(target=watch, daemon=True),
               threading.Thread(target=trainer.run, args=(stop,), daemon=True)]
    for t in threads:
        t.start()
    producer = KafkaProducer(bootstrap_servers=servers, linger_ms=0)
    try:
        wait_until_running(local_url(port), job_id)
        paced = PacedFish(producer, s, config.drift_rate)

        species_of: dict[int, str] = {}

        def fish_of_now(fish: int) -> tuple[str, float, float, float]:
            species = ("salmon" if time.monotonic() - paced.started < config.drift_salmon_s
                       else "walleye")
            species_of[fish] = species
            values = sample_species(profiles[species], 1, rng)
            return (species, *(float(values[k][0]) for k in ("Length", "Height", "Weight")))

        def sent_at(fish: int, _timestamp_ms: int) -> None:
            if species_of.pop(fish) == "walleye":
                seen.setdefault("drift", time.monotonic())  # the first walleye

        # Salmon for a while, then walleye until the new version serves (at most 90 s).
        while ("served" not in seen
               and time.monotonic() - paced.started < config.drift_salmon_s + 90):
            paced.step(fish_of_now, sent_at)
            time.sleep(0.005)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        producer.close()
        job.cancel().result()

    def since(a: str, b: str) -> float | None:
        return seen[b] - seen[a] if a in seen and b in seen else None

    return {
        "rate_per_s": config.drift_rate, "salmon_s": config.drift_salmon_s,
        "weight_delay_s": PacedFish.WEIGHT_DELAY_S, "model_poll_s": s.model_poll_s,
        "drift_to_event_s": since("drift", "event"),
        "event_to_published_s": since("event", "published"),
        "published_to_served_s": since("published", "served"),
        "event_to_served_s": since("event", "served"),
        "drift_to_served_s": since("drift", "served"),
        "walleye_predicted_by_old_model": walleye_by_old_model[0],
        "trainer": asdict(trainer.trainer.stats),
    }

"""Part c, latency: measurement produced -> prediction consumed, at fixed rates.

Through a live job with checkpoints, the load from its own process; the passthrough is the floor.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fishweight.jobs.bench.load import fresh
from fishweight.jobs.bench.procfs import cpu_s
from fishweight.jobs.bench.stats import pct
from fishweight.jobs.bench.throughput import passthrough_statements
from fishweight.jobs.predict import build_pipeline
from fishweight.runtime.broker import EmbeddedBroker
from fishweight.runtime.flink_rest import local_url, rest, wait_until_running
from fishweight.runtime.processes import free_port
from fishweight.runtime.settings import Settings

if TYPE_CHECKING:
    from fishweight.jobs.bench import BenchConfig

log = logging.getLogger("fishweight.bench")


def bench_latency(settings: Settings, config: BenchConfig) -> dict:
    """Rounds of the full job at each rate, then the floor; the medians over them.

    A round (``config.latency_rounds`` of them) runs the full job at each of
    ``config.rates``, then the passthrough at 100/s: the floor.

    Every run has an embedded broker of its own: Tansu's memory storage slows down as it
    fills (docs/platform.md), so on a shared broker each run would start on the data of
    the runs before it, and the floor, measured last, would be the slowest of all. Two
    runs of the same code on this machine differ by as much as the latency target's
    margin (docs/performance.md), so a round compares its job runs with its own floor,
    and the medians over several rounds are the figures to judge by.
    """
    logs = Path(settings.state_dir) / "bench"
    rounds = []
    for number in range(1, config.latency_rounds + 1):
        runs = {}
        for rate in config.rates:
            with EmbeddedBroker(log_path=logs / f"broker-latency-{rate}.log") as broker:
                runs[str(rate)] = _latency_at(settings, broker.bootstrap_servers, rate,
                                              config.rate_seconds, config.warmup_seconds,
                                              broker_pid=broker.pid,
                                              warm_fish=config.warm_fish)
            log.info("latency at %d/s, round %d: %s", rate, number, runs[str(rate)])
        # The floor: the same path through a broker and Flink, no pipeline.
        with EmbeddedBroker(log_path=logs / "broker-latency-100-passthrough.log") as broker:
            runs[FLOOR] = _latency_at(
                settings, broker.bootstrap_servers, 100, min(config.rate_seconds, 60),
                config.warmup_seconds, passthrough=True, broker_pid=broker.pid,
                warm_fish=config.warm_fish)
        log.info("the floor, round %d: %s", number, runs[FLOOR])
        rounds.append(runs)
    return {"rounds": rounds, "medians": latency_medians(rounds)}


FLOOR = "100-passthrough"


def latency_medians(rounds: list[dict]) -> dict:
    """Per rate, the median p50 and p99 over the rounds.

    At the floor's rate also the median distance of each round's job run from that
    round's floor: the figure the latency target is about.
    """
    out = {}
    for key in rounds[0] if rounds else ():
        runs = [r[key] for r in rounds if r[key]["predicted"]]
        figures = {"rounds": len(runs)}
        at_floor_rate = (key != FLOOR and bool(runs)
                         and runs[0]["rate_per_s"] == rounds[0][FLOOR]["rate_per_s"])
        for q in ("p50_ms", "p99_ms"):
            figures[q] = _median([run[q] for run in runs])
            if at_floor_rate:
                figures[f"{q}_above_floor"] = _median(
                    [r[key][q] - r[FLOOR][q] for r in rounds
                     if r[key]["predicted"] and r[FLOOR]["predicted"]])
        out[key] = figures
    return out


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def _latency_at(settings: Settings, servers: str, rate: int, seconds: float,
                warmup: float = 0.0, passthrough: bool = False,
                broker_pid: int | None = None, warm_fish: int = 0) -> dict:
    """Measurement sent -> prediction read, at ``rate``.

    The load comes from a separate process; a prediction's latency is the time it is
    read minus its measurement's ``Timestamp`` (the wall clock when it was sent). With
    ``passthrough`` the job only copies each measurement to the prediction topic: the
    broker's and Flink's share of the latency.
    """
    from kafka import KafkaConsumer, TopicPartition

    port = free_port()
    s = fresh(settings, servers, f"latency-{rate}{'-passthrough' if passthrough else ''}",
              web_ui_port=port)
    job = (passthrough_statements(s, None).execute().get_job_client() if passthrough
           else build_pipeline(s).execute_async())
    job_id = str(job.get_job_id())
    url = local_url(port)
    wait_until_running(url, job_id)
    consumer = KafkaConsumer(bootstrap_servers=servers, fetch_max_wait_ms=10)
    parts = [TopicPartition(s.topic_prediction, p) for p in range(s.topic_partitions)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    latency: dict[int, float] = {}  # Fish_Id -> ms (the first copy, should one repeat)
    done = threading.Event()
    started_ms = time.time() * 1000
    measure_from_ms = started_ms + warmup * 1000
    measure_to_ms = measure_from_ms + seconds * 1000

    def read() -> None:
        while not done.is_set():
            for records in consumer.poll(timeout_ms=50).values():
                arrived_ms = time.time() * 1000
                for r in records:
                    value = json.loads(r.value)
                    if measure_from_ms <= value["Timestamp"] < measure_to_ms:
                        latency.setdefault(value["Fish_Id"], arrived_ms - value["Timestamp"])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        generator = subprocess.Popen(
            [sys.executable, "-m", "fishweight.jobs.bench", "generate", servers,
             s.topic_measurement, s.topic_weight, str(rate), str(warmup + seconds),
             str(warm_fish), str(measure_from_ms), str(measure_to_ms)],
            stdout=subprocess.PIPE, text=True)
        broker_cpu = [cpu_s(broker_pid)]  # every 10 s while the load runs
        while generator.poll() is None:
            time.sleep(0.2)
            if (time.time() * 1000 - started_ms) // 10_000 >= len(broker_cpu):
                broker_cpu.append(cpu_s(broker_pid))
        output = generator.stdout.read().split()
        if generator.returncode != 0 or len(output) < 2:
            raise RuntimeError(f"the load generator failed (exit {generator.returncode})")
        sent, sent_measured = int(output[-2]), int(output[-1])
        drained_by = time.monotonic() + 30
        while len(latency) < sent_measured and time.monotonic() < drained_by:
            time.sleep(0.2)
        done.set()
        reader.join(timeout=10)
        stats = rest(url, f"/jobs/{job_id}/checkpoints", timeout_s=10)
        restarts = rest(url, f"/jobs/{job_id}/metrics?get=numRestarts", timeout_s=10)
    finally:
        done.set()
        job.cancel().result()
        consumer.close()
    checkpoints = stats["counts"]
    latest = (stats.get("latest") or {}).get("completed") or {}
    failures = [h.get("failure_message") for h in stats.get("history", [])
                if h.get("status") == "FAILED"]
    lat = sorted(latency.values())
    steps = np.diff(broker_cpu) / 10 if len(broker_cpu) > 2 else np.array([])
    return {
        "job": "passthrough" if passthrough else "full job",
        "rate_per_s": rate, "seconds": seconds, "warmup_seconds": warmup,
        "warm_fish": warm_fish, "generated": sent, "sent": sent_measured, "predicted": len(lat),
        "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "max_ms": lat[-1] if lat else None,
        "checkpoints_completed": checkpoints.get("completed"),
        "checkpoints_failed": checkpoints.get("failed"),
        "state_backend": s.state_backend,
        "last_checkpoint_mb": (latest.get("checkpointed_size") or latest.get("state_size")
                               or 0) / 2**20,
        "last_checkpoint_ms": latest.get("end_to_end_duration"),
        "checkpoint_failures": failures,
        "restarts": int(restarts[0]["value"]) if restarts else None,
        # The embedded broker's CPU (cores) in the first and the last 10 s of the load.
        "broker_cores_first": float(steps[0]) if steps.size else None,
        "broker_cores_last": float(steps[-1]) if steps.size else None,
    }

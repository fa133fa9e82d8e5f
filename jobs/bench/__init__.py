"""``fishweight bench`` (``make bench``): the figures of docs/performance.md.

Everything runs on this machine, in one run, on the embedded broker, so each headline
is a ratio or a percentile of figures measured side by side; one module per part:

a. ``serving``: the prediction UDF alone on generated rows (``datagen`` -> UDF ->
   ``blackhole``), default and tuned bundle settings, predictions/s; and the model
   called directly in Python (no Flink) for the ceiling.
b. ``throughput``: the full job against a raw Kafka-to-Kafka passthrough on the same
   topics, at parallelism 1 and 2: interleaved pairs of runs, each in a process of its
   own with a fresh broker (``runs``), each rate over its output's span (``steady``) and
   over its output's second half (``warm``, after the JIT's warm-up).
c. ``latency``: measurement produced -> prediction consumed, p50/p99/max, at fixed rates
   through a live job with checkpoints, each run on a fresh broker of its own; restarts
   and failed checkpoints from REST. ``latency_rounds`` rounds of every rate and its own
   floor (the passthrough at 100/s), and the medians over them.
d. ``drift``: salmon, then walleye (the model knows only salmon), through a live job and
   the trainer: seconds from the first walleye to the retrain event, to the new
   version being published, and to the first prediction by it.
e. peak RSS of the stack (broker, JVM with the MiniCluster, Python workers, trainer),
   sampled from /proc (``procfs``) during the whole run.
p. ``profile``: where the full job spends its time on a backlog: per task (Flink's chains
   of operators), the share of each second it was busy and back-pressured, from REST.
f. ``http_baseline``: the tutorial's architecture: one HTTP request per measurement to a
   single-threaded model server with the same model, sequentially; compared with a.

``ab`` is not a part: ``fishweight bench --ab BASE[..NEW]`` runs the throughput of the
full job at two commits in interleaved pairs (the way docs/performance.md compares them);
``runs`` is the one measured run both use.

``load`` holds what the parts send (the latency part's generator runs in its own
process, ``python -m fishweight.jobs.bench generate``), ``output`` the table and the JSON.
Nothing here is asserted: the JSON goes to ``<state_dir>/bench/``.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fishweight.jobs.bench.drift import bench_drift
from fishweight.jobs.bench.http_baseline import bench_http
from fishweight.jobs.bench.latency import bench_latency
from fishweight.jobs.bench.procfs import RssSampler, tree_rss_mb
from fishweight.jobs.bench.profile import bench_profile
from fishweight.jobs.bench.serving import TUNED, bench_serving
from fishweight.jobs.bench.throughput import bench_throughput
from fishweight.models.bootstrap import bootstrap_model
from fishweight.models.registry import ModelRegistry
from fishweight.runtime.broker import EmbeddedBroker
from fishweight.runtime.settings import Settings

__all__ = ["PARTS", "TUNED", "BenchConfig", "Results", "run_bench"]

log = logging.getLogger("fishweight.bench")

PARTS = {"serving", "http", "throughput", "profile", "latency", "drift"}


@dataclass
class BenchConfig:
    serving_rows: tuple[int, int] = (500_000, 2_500_000)
    # Long enough (~23 s at p=1) that the second half of the output comes after the JIT's
    # warm-up; the passthrough is ~10x faster and needs more records for its own.
    job_fish: int = 250_000
    passthrough_fish: int = 500_000
    throughput_pairs: int = 3
    parallelisms: tuple[int, ...] = (1, 2)
    rates: tuple[int, ...] = (100, 1000, 5000)
    rate_seconds: float = 60.0
    # Rounds of the latency part (each: every rate, then its own floor); the table gives
    # the medians over them, each job run taken against the floor of its round.
    latency_rounds: int = 1
    # Sent at the rate first and not measured: the JVM compiles the job's hot code
    # in its first tens of seconds (the profile shows the JIT as the top CPU user).
    warmup_seconds: float = 30.0
    # Sent at once when the load starts, within the warm-up: the JIT sees the hot paths.
    warm_fish: int = 10_000
    http_seconds: float = 5.0
    profile_fish: int = 100_000
    drift_rate: int = 10
    drift_salmon_s: float = 15.0

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(serving_rows=(200_000, 1_000_000), job_fish=40_000,
                   passthrough_fish=200_000, throughput_pairs=1,
                   parallelisms=(1,), rates=(100, 1000), rate_seconds=20.0, http_seconds=2.0,
                   warmup_seconds=15.0, warm_fish=3_000,
                   profile_fish=40_000)


@dataclass
class Results:
    machine: dict = field(default_factory=dict)
    serving: dict = field(default_factory=dict)
    throughput: dict = field(default_factory=dict)
    latency: dict = field(default_factory=dict)
    http: dict = field(default_factory=dict)
    drift: dict = field(default_factory=dict)
    profile: dict = field(default_factory=dict)
    peak_rss_mb: float = 0.0


def run_bench(settings: Settings, config: BenchConfig, parts: set[str]) -> Results:
    results = Results(machine={"cpus": os.cpu_count(), "python": sys.version.split()[0],
                               "config": asdict(config)})
    state = Path(settings.state_dir)
    settings = settings.replace(state_dir=str(state))
    if ModelRegistry.for_settings(settings).current_version() is None:
        bootstrap_model(settings)
    (state / "bench").mkdir(parents=True, exist_ok=True)
    with EmbeddedBroker(log_path=state / "bench" / "broker.log") as broker:
        sampler = RssSampler([os.getpid(), broker.pid])
        sampler.start()
        try:
            if "serving" in parts:
                results.serving = bench_serving(settings, config)
            if "http" in parts:
                results.http = bench_http(settings, config.http_seconds)
            if "throughput" in parts:
                results.throughput = bench_throughput(settings, config)
            if "profile" in parts:
                results.profile = bench_profile(settings, broker.bootstrap_servers, config,
                                                broker.pid)
                log.info("profile: %s", results.profile)
            if "latency" in parts:
                results.latency = bench_latency(settings, config)
            if "drift" in parts:
                results.drift = bench_drift(settings, broker.bootstrap_servers, config)
                log.info("drift: %s", results.drift)
        finally:
            sampler.stop_event.set()
            sampler.join()
            results.peak_rss_mb = max(sampler.peak_mb, tree_rss_mb(sampler.roots))
    return results

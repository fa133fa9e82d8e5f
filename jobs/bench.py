"""``fishweight bench`` (``make bench``): the figures of docs/performance.md.

Everything runs on this machine, in one run, on the embedded broker, so each headline
is a ratio or a percentile of figures measured side by side:

a. serving: the prediction UDF alone on generated rows (``datagen`` -> UDF ->
   ``blackhole``), default and tuned bundle settings, predictions/s; and the model
   called directly in Python (no Flink) for the ceiling.
b. throughput: the full job against a raw Kafka-to-Kafka passthrough on the same topics,
   at parallelism 1 and 2; two input sizes, so the rate is the marginal one
   ``(n2 - n1) / (t2 - t1)`` and start-up cancels out.
c. latency: measurement produced -> prediction consumed, p50/p99/max, at fixed rates
   through a live job with checkpoints; restarts and failed checkpoints from REST.
d. drift: salmon, then walleye (the model knows only salmon), through a live job and
   the trainer: seconds from the first walleye to the retrain event, to the new
   version being published, and to the first prediction by it.
e. peak RSS of the stack (broker, JVM with the MiniCluster, Python workers, trainer).
p. profile: where the full job spends its time on a backlog: per task (Flink's chains
   of operators), the share of each second it was busy and back-pressured, from REST.
f. the tutorial's architecture: one HTTP request per measurement to a single-threaded
   model server with the same model, sequentially; compared with a.

Nothing here is asserted: the JSON goes to ``<state_dir>/bench/``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pandas as pd

from fishweight.jobs.predict import Bounds, build_pipeline
from fishweight.jobs.train import TrainerService
from fishweight.models.bootstrap import bootstrap_model
from fishweight.models.registry import ModelRegistry
from fishweight.runtime.broker import EmbeddedBroker
from fishweight.runtime.flink_env import create_stream_env
from fishweight.runtime.flink_rest import local_url, rest, wait_until_running
from fishweight.runtime.kafka import create_topics, produce
from fishweight.runtime.processes import descendants, free_port
from fishweight.runtime.settings import Settings
from fishweight.scenarios import load_scenario, sample_species
from fishweight.udfs.scoring import predict_weight

log = logging.getLogger("fishweight.bench")

PARTS = {"serving", "http", "throughput", "profile", "latency", "drift"}
TUNED = {"bundle_size": 20_000, "bundle_time_ms": 1000, "arrow_batch_size": 20_000}


@dataclass
class BenchConfig:
    serving_rows: tuple[int, int] = (500_000, 2_500_000)
    job_fish: tuple[int, int] = (25_000, 125_000)
    # The passthrough is ~20x faster: it needs more records to outlast its start-up.
    passthrough_fish: tuple[int, int] = (100_000, 500_000)
    parallelisms: tuple[int, ...] = (1, 2)
    rates: tuple[int, ...] = (100, 1000, 5000)
    rate_seconds: float = 60.0
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
        return cls(serving_rows=(200_000, 1_000_000), job_fish=(10_000, 40_000),
                   passthrough_fish=(40_000, 200_000),
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


# ---------------------------------------------------------------- peak memory (e)

def _tree_rss_mb(roots: list[int]) -> float:
    """Resident memory of these processes and all their descendants, in MB."""
    pids = set(roots).union(*(descendants(r) for r in roots))
    total = 0
    for pid in pids:
        try:  # statm: size resident shared ... (pages)
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total * os.sysconf("SC_PAGE_SIZE") / 2**20


class RssSampler(threading.Thread):
    def __init__(self, roots: list[int], every_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.roots, self.every_s = roots, every_s
        self.peak_mb = 0.0
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(self.every_s):
            self.peak_mb = max(self.peak_mb, _tree_rss_mb(self.roots))


# ---------------------------------------------------------------- serving (a)

def _serving_job(settings: Settings, rows: int, tuning: dict) -> float:
    """Seconds to predict ``rows`` generated rows with the UDF (datagen -> blackhole)."""
    s = settings.replace(parallelism=1, checkpoint_interval_s=0, web_ui_port=0, **tuning)
    registry = ModelRegistry.for_settings(s)
    _, t_env = create_stream_env(s)
    t_env.create_temporary_function("predict_weight", predict_weight(
        str(registry.root.resolve()), s.model_poll_s, str(registry.key_file.resolve())))
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE gen (id BIGINT) WITH (
            'connector' = 'datagen', 'number-of-rows' = '{rows}',
            'rows-per-second' = '1000000000',
            'fields.id.kind' = 'sequence', 'fields.id.start' = '1',
            'fields.id.end' = '{rows}')""")
    t_env.execute_sql("CREATE TEMPORARY TABLE served (w DOUBLE) WITH ('connector' = 'blackhole')")
    started = time.perf_counter()
    t_env.execute_sql("""
        INSERT INTO served
        SELECT predict_weight(CASE WHEN MOD(id, 2) = 0 THEN 'salmon' ELSE 'walleye' END,
                              80.0 + MOD(id, 17), 17.0 + MOD(id, 5) * 0.5).Weight
        FROM gen""").wait()
    return time.perf_counter() - started


def _marginal(sizes: tuple[int, int], seconds: tuple[float, float]) -> float:
    return (sizes[1] - sizes[0]) / max(seconds[1] - seconds[0], 1e-9)


def bench_serving(settings: Settings, config: BenchConfig) -> dict:
    out = {}
    for name, tuning in (("default", {}), ("tuned", TUNED)):
        seconds = tuple(_serving_job(settings, n, tuning) for n in config.serving_rows)
        out[name] = {"rows": config.serving_rows, "seconds": seconds,
                     "predictions_per_s": _marginal(config.serving_rows, seconds),
                     "settings": tuning or "defaults"}
        log.info("serving %s: %.0f predictions/s", name, out[name]["predictions_per_s"])
    model = ModelRegistry.for_settings(settings).load_current()
    frame = _frame(10_000)
    started, calls = time.perf_counter(), 0
    while time.perf_counter() - started < 2.0:
        model.estimator.predict(frame)
        calls += 1
    out["model_in_python"] = {"predictions_per_s": calls * len(frame)
                              / (time.perf_counter() - started), "batch": len(frame)}
    return out


def _frame(n: int) -> pd.DataFrame:
    i = np.arange(n)
    return pd.DataFrame({"Species": np.where(i % 2 == 0, "salmon", "walleye"),
                         "Length": 80.0 + i % 17, "Height": 17.0 + (i % 5) * 0.5})


# ---------------------------------------------------------------- throughput (b)

def _produce_fish(settings: Settings, n: int) -> Bounds:
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


def _fresh(settings: Settings, servers: str, tag: str, **changes) -> Settings:
    s = settings.suffixed(tag, bootstrap_servers=servers, **changes)
    create_topics(servers, s.all_topics, s.topic_partitions)
    return s


def _passthrough_statements(s: Settings, bounds: Bounds | None):
    """Measurements and weights copied byte for byte to two output topics."""
    _, t_env = create_stream_env(s)
    for table, topic, offsets in (("m_in", s.topic_measurement, bounds and bounds.measurement),
                                  ("w_in", s.topic_weight, bounds and bounds.weight)):
        scan = "'scan.startup.mode' = 'earliest-offset'"
        if offsets is not None:
            every = {**dict.fromkeys(range(s.topic_partitions), 0), **offsets}
            spec = ";".join(f"partition:{p},offset:{o}" for p, o in sorted(every.items()))
            scan += (", 'scan.bounded.mode' = 'specific-offsets', "
                     f"'scan.bounded.specific-offsets' = '{spec}'")
        t_env.execute_sql(f"""
            CREATE TEMPORARY TABLE {table} (payload BYTES) WITH (
                'connector' = 'kafka', 'topic' = '{topic}', 'format' = 'raw',
                'properties.bootstrap.servers' = '{s.bootstrap_servers}',
                'properties.fetch.max.wait.ms' = '50', {scan})""")
    for table, topic in (("m_out", s.topic_prediction), ("w_out", s.topic_diff)):
        t_env.execute_sql(f"""
            CREATE TEMPORARY TABLE {table} (payload BYTES) WITH (
                'connector' = 'kafka', 'topic' = '{topic}', 'format' = 'raw',
                'properties.bootstrap.servers' = '{s.bootstrap_servers}')""")
    statements = t_env.create_statement_set()
    statements.add_insert_sql("INSERT INTO m_out SELECT payload FROM m_in")
    statements.add_insert_sql("INSERT INTO w_out SELECT payload FROM w_in")
    return statements


def _passthrough(s: Settings, bounds: Bounds) -> float:
    statements = _passthrough_statements(s, bounds)
    started = time.perf_counter()
    statements.execute().wait()
    return time.perf_counter() - started


def _full_job(s: Settings, bounds: Bounds) -> float:
    pipeline = build_pipeline(s, bounds=bounds)
    started = time.perf_counter()
    pipeline.execute()
    return time.perf_counter() - started


def bench_throughput(settings: Settings, servers: str, config: BenchConfig) -> dict:
    out = {}
    for p in config.parallelisms:
        for name, run in (("passthrough", _passthrough), ("full_job", _full_job)):
            seconds = []
            sizes = config.passthrough_fish if name == "passthrough" else config.job_fish
            for n in sizes:
                s = _fresh(settings, servers, f"{name}-p{p}-{n}", parallelism=p,
                           checkpoint_interval_s=0, web_ui_port=0)
                seconds.append(run(s, _produce_fish(s, n)))
            records = tuple(2 * n for n in sizes)
            figures = {"input_records": records, "seconds": seconds,
                       "records_per_s": _marginal(records, tuple(seconds)), "bound": "="}
            if seconds[1] < seconds[0] * 1.1:
                # The larger input took no longer: start-up and end detection hide the
                # rate. Only a lower bound is known: the larger input over its time.
                figures.update(records_per_s=records[1] / seconds[1], bound=">=")
            out[f"{name}_p{p}"] = figures
            log.info("%s p=%d: %s %.0f records/s", name, p, figures["bound"],
                     figures["records_per_s"])
        full, passthrough = out[f"full_job_p{p}"], out[f"passthrough_p{p}"]
        out[f"ratio_p{p}"] = full["records_per_s"] / passthrough["records_per_s"]
        out[f"ratio_p{p}_bound"] = "<=" if passthrough["bound"] == ">=" else "="
    return out


# ---------------------------------------------------------------- profile (p)

def _short(name: str, width: int = 90) -> str:
    """A task's name without Flink's generated detail, e.g. the operators it chains."""
    parts = [p.split("[")[0].split("(")[0].strip() for p in name.split("->")]
    text = " -> ".join(p for p in parts if p)
    return text if len(text) <= width else text[:width - 3] + "..."


_TICK = os.sysconf("SC_CLK_TCK")


def _kind(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    text = b" ".join(argv).decode(errors="replace")
    if pid == os.getpid():
        # Locally PyFlink runs the UDFs in a loopback worker inside the client process.
        return "Python process (Flink client, loopback UDF worker, bench clients)"
    if argv and argv[0].endswith(b"java"):
        return "JVM (Flink MiniCluster)"
    if "tansu" in text:
        return "broker"
    if "pyflink" in text or "beam" in text:
        return "Python UDF workers"
    return "other"


def _stat(path: str) -> tuple[str, float] | None:
    """A process's or thread's name and the CPU seconds it has used, from /proc."""
    try:
        stat = Path(path).read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return stat[stat.index("(") + 1:stat.rindex(")")], (int(fields[11]) + int(fields[12])) / _TICK


def _thread_cpu(roots: list[int]) -> dict[tuple[int, int], tuple[str, str, float]]:
    """(pid, tid) -> (process kind, thread name, CPU seconds so far)."""
    out = {}
    for pid in set(roots).union(*(descendants(r) for r in roots)):
        kind = _kind(pid)
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            if (stat := _stat(f"/proc/{pid}/task/{tid}/stat")) is not None:
                out[(pid, int(tid))] = (kind, *stat)
    return out


def _cpu_profile(before: dict, after: dict, seconds: float) -> dict:
    """CPU seconds per process kind and per JVM thread name over ``seconds``.

    Flink names a task's thread after the task; Linux cuts the name to 15 characters.
    """
    kinds: dict[str, float] = {}
    threads: dict[str, float] = {}
    for key, (kind, name, cpu) in after.items():
        used = cpu - (before[key][2] if key in before else 0.0)
        kinds[kind] = kinds.get(kind, 0.0) + used
        if kind.startswith("JVM"):
            threads[name] = threads.get(name, 0.0) + used
    top = sorted(threads.items(), key=lambda t: -t[1])[:12]
    return {"seconds": seconds, "cpus": os.cpu_count(),
            "cpu_s_by_process": dict(sorted(kinds.items(), key=lambda k: -k[1])),
            "cpu_s_by_jvm_thread": dict(top)}


def _hot_frames(graph: dict, top: int = 15) -> list[tuple[str, float]]:
    """Share of on-CPU samples per frame where the time was spent (self time).

    Each frame comes with the nearest frame above it from Flink's table runtime,
    Beam, Kafka or generated code, which says on whose behalf.
    """
    total = graph.get("value") or 1
    spent: dict[str, float] = {}
    owners = ("org.apache.flink.table", "org.apache.beam", "org.apache.flink.python",
              "org.apache.kafka", "org.apache.flink.connector", "StreamExecCalc",
              "org.apache.flink.formats", "org.apache.flink.api.java.typeutils")

    def walk(node: dict, owner: str) -> None:
        name = node.get("name", "?")
        if any(o in name for o in owners):
            owner = name
        children = node.get("children", [])
        own = node.get("value", 0) - sum(c.get("value", 0) for c in children)
        if own > 0:
            key = f"{name}  <-  {owner}" if owner and owner != name else name
            spent[key] = spent.get(key, 0) + own
        for child in children:
            walk(child, owner)

    walk(graph, "")
    return sorted(((n, v / total) for n, v in spent.items()), key=lambda t: -t[1])[:top]


def bench_profile(settings: Settings, servers: str, config: BenchConfig,
                  broker_pid: int | None = None) -> dict:
    """Busy and back-pressured ms per second of each task, averaged while the job runs.

    The task whose upstream is back-pressured while it is busy ~1000 ms/s is what
    limits the job. Sampled over REST every second on a bounded backlog.
    """
    port = free_port()
    s = _fresh(settings, servers, "profile", web_ui_port=port, checkpoint_interval_s=0)
    bounds = _produce_fish(s, config.profile_fish)
    job = build_pipeline(s, bounds=bounds,
                         flink_options={"rest.flamegraph.enabled": "true"}).execute_async()
    job_id = str(job.get_job_id())
    wait_until_running(local_url(port), job_id)
    flames: dict[str, dict] = {}
    roots = [os.getpid()] + ([broker_pid] if broker_pid else [])
    cpu_before = _thread_cpu(roots)
    cpu_last = dict(cpu_before)  # threads end with the job: keep their last reading
    samples: dict[str, list[tuple[float, float]]] = {}
    names: dict[str, str] = {}
    started = time.monotonic()
    while True:
        try:
            detail = _rest(port, f"/jobs/{job_id}")
        except OSError:
            break
        if detail["state"] != "RUNNING":
            break
        for v in detail["vertices"]:
            names[v["id"]] = v["name"]
            try:
                got = {m["id"]: m for m in _rest(
                    port, f"/jobs/{job_id}/vertices/{v['id']}/subtasks/metrics"
                    "?get=busyTimeMsPerSecond,backPressuredTimeMsPerSecond&agg=avg")}
            except OSError:
                continue
            busy = got.get("busyTimeMsPerSecond", {}).get("avg")
            pressured = got.get("backPressuredTimeMsPerSecond", {}).get("avg")
            if busy is not None and not (isinstance(busy, float) and np.isnan(busy)):
                samples.setdefault(v["id"], []).append((float(busy), float(pressured or 0)))
        cpu_last.update(_thread_cpu(roots))
        if time.monotonic() - started > 20:  # warmed up: sample the busiest tasks' stacks
            for vid in sorted(samples, key=lambda v: -np.mean([b for b, _ in samples[v]]))[:2]:
                try:
                    graph = _rest(port, f"/jobs/{job_id}/vertices/{vid}/flamegraph?type=on_cpu")
                except OSError:
                    continue
                if graph.get("data", {}).get("value"):
                    flames[_short(names[vid])] = graph["data"]
        time.sleep(0.5)
    job.get_job_execution_result().result()
    seconds = time.monotonic() - started
    cpu_last.update(_thread_cpu(roots))
    cpu = _cpu_profile(cpu_before, cpu_last, seconds)
    tasks = sorted(({"task": _short(names[vid]), "busy_ms_per_s": float(np.mean([b for b, _ in x])),
                     "backpressured_ms_per_s": float(np.mean([p for _, p in x])),
                     "samples": len(x)} for vid, x in samples.items()),
                   key=lambda t: -t["busy_ms_per_s"])
    return {"fish": config.profile_fish, "seconds": seconds,
            "records_per_s": 2 * config.profile_fish / seconds, "tasks": tasks, "cpu": cpu,
            "hot_frames": {task: _hot_frames(graph) for task, graph in flames.items()}}


# ---------------------------------------------------------------- latency (c)

def _rest(port: int, path: str):
    return rest(local_url(port), path, timeout_s=10)


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


def _cpu_s(pid: int | None) -> float:
    """CPU seconds a process has used so far (0 when it is gone or not given)."""
    stat = _stat(f"/proc/{pid}/stat") if pid else None
    return stat[1] if stat else 0.0


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
    s = _fresh(settings, servers, f"latency-{rate}{'-passthrough' if passthrough else ''}",
               web_ui_port=port)
    job = (_passthrough_statements(s, None).execute().get_job_client() if passthrough
           else build_pipeline(s).execute_async())
    job_id = str(job.get_job_id())
    wait_until_running(local_url(port), job_id)
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
        broker_cpu = [_cpu_s(broker_pid)]  # every 10 s while the load runs
        while generator.poll() is None:
            time.sleep(0.2)
            if (time.time() * 1000 - started_ms) // 10_000 >= len(broker_cpu):
                broker_cpu.append(_cpu_s(broker_pid))
        output = generator.stdout.read().split()
        if generator.returncode != 0 or len(output) < 2:
            raise RuntimeError(f"the load generator failed (exit {generator.returncode})")
        sent, sent_measured = int(output[-2]), int(output[-1])
        drained_by = time.monotonic() + 30
        while len(latency) < sent_measured and time.monotonic() < drained_by:
            time.sleep(0.2)
        done.set()
        reader.join(timeout=10)
        stats = _rest(port, f"/jobs/{job_id}/checkpoints")
        restarts = _rest(port, f"/jobs/{job_id}/metrics?get=numRestarts")
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
        "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99), "max_ms": lat[-1] if lat else None,
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


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(values, q))


# ---------------------------------------------------------------- drift (d)

def bench_drift(settings: Settings, servers: str, config: BenchConfig) -> dict:
    """Salmon, then walleye, at a fixed rate through the job and the trainer.

    Its own state directory: the models the trainer publishes here must not change
    what the other parts serve. Weights follow their measurement by 1 s (the
    factory's is ~10 s, which adds 9 s to the drift-to-event figure and nothing else).
    """
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    state = Path(settings.state_dir) / "bench" / f"drift-{time.strftime('%Y%m%d-%H%M%S')}"
    port = free_port()
    s = _fresh(settings.replace(state_dir=str(state)), servers, "drift", web_ui_port=port)
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


# ---------------------------------------------------------------- HTTP baseline (f)

def bench_http(settings: Settings, seconds: float) -> dict:
    """The tutorial's path: one HTTP request per measurement to a single-threaded server."""
    model = ModelRegistry.for_settings(settings).load_current()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body are separate writes: without this, Nagle + delayed ACK
            # add ~40 ms to every request, which would flatter the UDF.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            weight = float(model.estimator.predict(pd.DataFrame([body]))[0])
            reply = json.dumps({"Weight": weight}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1])
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    latencies = []
    started = time.perf_counter()
    i = 0
    while time.perf_counter() - started < seconds:
        i += 1
        body = json.dumps({"Species": "salmon", "Length": 80.0 + i % 17, "Height": 18.0})
        t = time.perf_counter()
        conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
        conn.getresponse().read()
        latencies.append((time.perf_counter() - t) * 1000)
    elapsed = time.perf_counter() - started
    conn.close()
    server.shutdown()
    return {"requests": len(latencies), "requests_per_s": len(latencies) / elapsed,
            "p50_ms": _pct(latencies, 50), "p99_ms": _pct(latencies, 99)}


# ---------------------------------------------------------------- the run

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
                results.throughput = bench_throughput(settings, broker.bootstrap_servers,
                                                      config)
            if "profile" in parts:
                results.profile = bench_profile(settings, broker.bootstrap_servers, config,
                                                broker.pid)
                log.info("profile: %s", results.profile)
            if "latency" in parts:
                for rate in config.rates:
                    results.latency[str(rate)] = _latency_at(
                        settings, broker.bootstrap_servers, rate, config.rate_seconds,
                        config.warmup_seconds, broker_pid=broker.pid,
                        warm_fish=config.warm_fish)
                    log.info("latency at %d/s: %s", rate, results.latency[str(rate)])
                # The floor: the same path through the broker and Flink, no pipeline.
                results.latency["100-passthrough"] = _latency_at(
                    settings, broker.bootstrap_servers, 100, min(config.rate_seconds, 60),
                    config.warmup_seconds, passthrough=True, broker_pid=broker.pid,
                    warm_fish=config.warm_fish)
            if "drift" in parts:
                results.drift = bench_drift(settings, broker.bootstrap_servers, config)
                log.info("drift: %s", results.drift)
        finally:
            sampler.stop_event.set()
            sampler.join()
            results.peak_rss_mb = max(sampler.peak_mb, _tree_rss_mb(sampler.roots))
    return results


def table(r: Results) -> str:
    rows = ["| figure | value |", "|---|---|"]
    if r.serving:
        d, t = r.serving["default"], r.serving["tuned"]
        rows.append(f"| UDF serving, default bundles | {d['predictions_per_s']:,.0f} "
                    "predictions/s |")
        rows.append(f"| UDF serving, tuned bundles {TUNED} | {t['predictions_per_s']:,.0f} "
                    "predictions/s |")
        rows.append(f"| model alone in Python (batch 10k, no Flink) | "
                    f"{r.serving['model_in_python']['predictions_per_s']:,.0f} predictions/s |")
    if r.http:
        rows.append(f"| HTTP per event, single-threaded server (tutorial) | "
                    f"{r.http['requests_per_s']:,.0f} predictions/s "
                    f"(p99 {r.http['p99_ms']:.1f} ms) |")
    if r.serving and r.http:
        best = max(r.serving["default"]["predictions_per_s"],
                   r.serving["tuned"]["predictions_per_s"])
        rows.append(f"| UDF / HTTP per event | {best / r.http['requests_per_s']:,.0f}x |")
    for key, value in sorted(r.throughput.items()):
        if key.endswith("_bound"):
            continue
        if key.startswith("ratio"):
            bound = r.throughput.get(f"{key}_bound", "=").replace("=", "") or ""
            rows.append(f"| full job / passthrough, {key[-2:]} | {bound} {value:.3f} |")
        else:
            bound = value.get("bound", "=").replace("=", "")
            rows.append(f"| {key.replace('_', ' ')} (marginal, {value['input_records'][0]:,}"
                        f" -> {value['input_records'][1]:,} records) | {bound} "
                        f"{value['records_per_s']:,.0f} records/s |")
    for lat in r.latency.values():
        rows.append(f"| latency at {lat['rate_per_s']}/s, {lat.get('job', 'full job')} "
                    f"({lat['seconds']:.0f} s after "
                    f"{lat.get('warmup_seconds', 0):.0f} s warm-up) | "
                    + (f"p50 {lat['p50_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms, "
                       f"max {lat['max_ms']:.0f} ms; " if lat["predicted"] else "")
                    + f"{lat['predicted']}/{lat['sent']} predicted, checkpoints "
                    f"{lat['checkpoints_completed']} ok / {lat['checkpoints_failed']} failed "
                    f"({lat['state_backend']}, last {lat['last_checkpoint_mb']:.1f} MB in "
                    f"{lat['last_checkpoint_ms']} ms), {lat['restarts']} restarts"
                    + (f"; broker {lat['broker_cores_first']:.2f} -> "
                       f"{lat['broker_cores_last']:.2f} cores"
                       if lat.get("broker_cores_last") is not None else "") + " |")
    if r.profile:
        rows.append(f"| profile: {r.profile['fish']:,} fish backlog, full job "
                    f"(p={1}) | {r.profile['records_per_s']:,.0f} records/s incl. start-up |")
        for t in r.profile["tasks"][:4]:
            rows.append(f"| busy {t['busy_ms_per_s']:.0f} / back-pressured "
                        f"{t['backpressured_ms_per_s']:.0f} ms/s | {t['task']} |")
        cpu = r.profile["cpu"]
        for kind, used in cpu["cpu_s_by_process"].items():
            if used < 0.05:
                continue
            rows.append(f"| CPU of {kind} | {used:.1f} s of {cpu['seconds']:.1f} s x "
                        f"{cpu['cpus']} cores |")
        for name, used in list(cpu["cpu_s_by_jvm_thread"].items())[:8]:
            rows.append(f"| CPU of JVM thread `{name}` | {used:.1f} s |")
    if r.drift:
        d = r.drift

        def sec(key: str) -> str:
            return "n/a" if d[key] is None else f"{d[key]:.2f} s"

        rows.append(f"| drift at {d['rate_per_s']} fish/s, weight {d['weight_delay_s']:.0f} s "
                    f"after: first walleye -> retrain event | {sec('drift_to_event_s')} |")
        rows.append(f"| retrain event -> new version published (trainer) | "
                    f"{sec('event_to_published_s')} |")
        rows.append(f"| published -> first prediction by it | {sec('published_to_served_s')} |")
        rows.append(f"| retrain event -> new version served | {sec('event_to_served_s')} "
                    f"({d['walleye_predicted_by_old_model']} walleye predicted by the old "
                    "model) |")
    rows.append(f"| peak RSS of the stack | {r.peak_rss_mb:,.0f} MB |")
    return "\n".join(rows)


def write(r: Results, settings: Settings) -> Path:
    out_dir = Path(settings.state_dir) / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(asdict(r), indent=2, default=str) + "\n")
    return path



if __name__ == "__main__":  # the latency part's load generator, in its own process
    if len(sys.argv) == 10 and sys.argv[1] == "generate":
        servers, topic_m, topic_w, *numbers = sys.argv[2:]
        print(*generate(servers, topic_m, topic_w, *map(float, numbers[:2]), int(numbers[2]),
                        *map(float, numbers[3:])), flush=True)
    else:
        sys.exit("usage: python -m fishweight.jobs.bench generate SERVERS TOPIC_MEASUREMENT "
                 "TOPIC_WEIGHT RATE SECONDS WARM_FISH COUNT_FROM_MS COUNT_TO_MS")

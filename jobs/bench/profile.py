"""Part p, profile: where the full job spends its time on a backlog.

Each task's busy and back-pressured ms/s and hot frames (Flink's REST); CPU per process/thread.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import numpy as np

from fishweight.jobs.bench.load import fresh, produce_fish
from fishweight.jobs.bench.procfs import cpu_profile, thread_cpu
from fishweight.jobs.predict import build_pipeline
from fishweight.runtime.flink_rest import local_url, rest, wait_until_running
from fishweight.runtime.processes import free_port
from fishweight.runtime.settings import Settings

if TYPE_CHECKING:
    from fishweight.jobs.bench import BenchConfig


def _short(name: str, width: int = 90) -> str:
    """A task's name without Flink's generated detail, e.g. the operators it chains."""
    parts = [p.split("[")[0].split("(")[0].strip() for p in name.split("->")]
    text = " -> ".join(p for p in parts if p)
    return text if len(text) <= width else text[:width - 3] + "..."


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
    s = fresh(settings, servers, "profile", web_ui_port=port, checkpoint_interval_s=0)
    bounds = produce_fish(s, config.profile_fish)
    job = build_pipeline(s, bounds=bounds,
                         flink_options={"rest.flamegraph.enabled": "true"}).execute_async()
    job_id = str(job.get_job_id())
    url = local_url(port)
    wait_until_running(url, job_id)
    flames: dict[str, dict] = {}
    roots = [os.getpid()] + ([broker_pid] if broker_pid else [])
    cpu_before = thread_cpu(roots)
    cpu_last = dict(cpu_before)  # threads end with the job: keep their last reading
    samples: dict[str, list[tuple[float, float]]] = {}
    names: dict[str, str] = {}
    started = time.monotonic()
    while True:
        try:
            detail = rest(url, f"/jobs/{job_id}", timeout_s=10)
        except OSError:
            break
        if detail["state"] != "RUNNING":
            break
        for v in detail["vertices"]:
            names[v["id"]] = v["name"]
            try:
                got = {m["id"]: m for m in rest(
                    url, f"/jobs/{job_id}/vertices/{v['id']}/subtasks/metrics"
                    "?get=busyTimeMsPerSecond,backPressuredTimeMsPerSecond&agg=avg",
                    timeout_s=10)}
            except OSError:
                continue
            busy = got.get("busyTimeMsPerSecond", {}).get("avg")
            pressured = got.get("backPressuredTimeMsPerSecond", {}).get("avg")
            if busy is not None and not (isinstance(busy, float) and np.isnan(busy)):
                samples.setdefault(v["id"], []).append((float(busy), float(pressured or 0)))
        cpu_last.update(thread_cpu(roots))
        if time.monotonic() - started > 20:  # warmed up: sample the busiest tasks' stacks
            for vid in sorted(samples, key=lambda v: -np.mean([b for b, _ in samples[v]]))[:2]:
                try:
                    graph = rest(url, f"/jobs/{job_id}/vertices/{vid}/flamegraph?type=on_cpu",
                                 timeout_s=10)
                except OSError:
                    continue
                if graph.get("data", {}).get("value"):
                    flames[_short(names[vid])] = graph["data"]
        time.sleep(0.5)
    job.get_job_execution_result().result()
    seconds = time.monotonic() - started
    cpu_last.update(thread_cpu(roots))
    cpu = cpu_profile(cpu_before, cpu_last, seconds)
    tasks = sorted(({"task": _short(names[vid]), "busy_ms_per_s": float(np.mean([b for b, _ in x])),
                     "backpressured_ms_per_s": float(np.mean([p for _, p in x])),
                     "samples": len(x)} for vid, x in samples.items()),
                   key=lambda t: -t["busy_ms_per_s"])
    return {"fish": config.profile_fish, "seconds": seconds,
            "records_per_s": 2 * config.profile_fish / seconds, "tasks": tasks, "cpu": cpu,
            "hot_frames": {task: _hot_frames(graph) for task, graph in flames.items()}}

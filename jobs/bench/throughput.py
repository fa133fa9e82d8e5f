"""Part b, throughput: the full job against a raw Kafka-to-Kafka passthrough on the same topics.

At each parallelism, ``throughput_pairs`` interleaved pairs of runs (passthrough, full job,
passthrough, ...), each over a backlog in a process of its own with a fresh embedded broker
(``runs.run_once``: the same start for both kinds). Each run gives a ``steady`` rate (its
input records over its output's span, JIT warm-up included) and a ``warm`` one (the second
half of its output); each pair gives the ratio full job / passthrough of both, and the
headline is the median over the pairs.
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING

from fishweight.jobs.bench import runs
from fishweight.jobs.connectors import Bounds
from fishweight.runtime.flink_env import create_stream_env
from fishweight.runtime.settings import Settings

if TYPE_CHECKING:
    from fishweight.jobs.bench import BenchConfig

log = logging.getLogger("fishweight.bench")


def passthrough_statements(s: Settings, bounds: Bounds | None):
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


def bench_throughput(settings: Settings, config: BenchConfig) -> dict:
    root = Path(settings.state_dir).resolve() / "bench" / "throughput"
    run_dir = root / "runs" / time.strftime("%Y%m%d-%H%M%S")
    out = {}
    for p in config.parallelisms:
        figures: dict = {"passthrough": [], "full_job": [], "ratio_steady": [],
                         "ratio_warm": []}
        for i in range(1, config.throughput_pairs + 1):
            pair = {}
            for name, kind, fish in (("passthrough", "passthrough", config.passthrough_fish),
                                     ("full_job", "job", config.job_fish)):
                tag = f"{name}-p{p}-{i}"
                pair[name] = runs.run_once(kind, None, root / "state", tag, fish, p,
                                           run_dir / f"{tag}.log", settings)
                figures[name].append(pair[name])
                log.info("%s p=%d, run %d: %.0f records/s steady, %.0f warm", name, p, i,
                         pair[name]["steady"], pair[name]["warm"])
            for rate in ("steady", "warm"):
                figures[f"ratio_{rate}"].append(
                    pair["full_job"][rate] / pair["passthrough"][rate])
        for key in ("ratio_steady", "ratio_warm"):
            figures[f"median_{key}"] = statistics.median(figures[key])
        for name in ("passthrough", "full_job"):
            for rate in ("steady", "warm"):
                figures[f"median_{name}_{rate}"] = statistics.median(
                    run[rate] for run in figures[name])
        out[f"p{p}"] = figures
        log.info("full job / passthrough, p=%d: %.3f steady, %.3f warm (median of %d pairs)",
                 p, figures["median_ratio_steady"], figures["median_ratio_warm"],
                 config.throughput_pairs)
    return out

"""Part b, throughput: the full job against a raw Kafka-to-Kafka passthrough on the same topics.

At each parallelism, a backlog of fish through each job, two sizes. The headline is the
steady rate of the larger run: its input records over the span between the first and the
last output record's broker time (predictions and diffs for the full job, the copies for
the passthrough), so neither start-up nor the end of a bounded job counts. The marginal
rate between the two sizes, ``(n2 - n1) / (t2 - t1)`` over wall-clock times, is kept
beside it as a cross-check (it is only a bound when start-up hides the difference).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from fishweight.jobs.bench.load import fresh, produce_fish
from fishweight.jobs.bench.stats import marginal
from fishweight.jobs.connectors import Bounds
from fishweight.jobs.predict import build_pipeline
from fishweight.runtime.flink_env import create_stream_env
from fishweight.runtime.kafka import read_topic
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


def _passthrough(s: Settings, bounds: Bounds) -> float:
    statements = passthrough_statements(s, bounds)
    started = time.perf_counter()
    statements.execute().wait()
    return time.perf_counter() - started


def _full_job(s: Settings, bounds: Bounds) -> float:
    pipeline = build_pipeline(s, bounds=bounds)
    started = time.perf_counter()
    pipeline.execute()
    return time.perf_counter() - started


def output_span_s(servers: str, topics: tuple[str, ...], expected: int) -> float:
    """Seconds between the first and the last record's broker time over ``topics``."""
    stamps = [r.timestamp for topic in topics
              for r in read_topic(servers, topic, expected=expected, idle_s=2.0,
                                  timeout_s=600.0)]
    if len(stamps) < 2 * expected:
        raise RuntimeError(f"throughput: {len(stamps)} output records in {topics}, "
                           f"expected {2 * expected}")
    return max((max(stamps) - min(stamps)) / 1000, 1e-3)


def bench_throughput(settings: Settings, servers: str, config: BenchConfig) -> dict:
    out = {}
    for p in config.parallelisms:
        for name, run in (("passthrough", _passthrough), ("full_job", _full_job)):
            seconds = []
            sizes = config.passthrough_fish if name == "passthrough" else config.job_fish
            for n in sizes:
                s = fresh(settings, servers, f"{name}-p{p}-{n}", parallelism=p,
                          checkpoint_interval_s=0, web_ui_port=0)
                seconds.append(run(s, produce_fish(s, n)))
            # The larger run (``s`` is its settings): both jobs write one record per fish
            # to each of these two topics.
            span = output_span_s(servers, (s.topic_prediction, s.topic_diff), sizes[-1])
            records = tuple(2 * n for n in sizes)
            figures = {"input_records": records, "seconds": seconds, "output_span_s": span,
                       "records_per_s": records[-1] / span,
                       "marginal_records_per_s": marginal(records, tuple(seconds)),
                       "marginal_bound": "="}
            if seconds[1] < seconds[0] * 1.1:
                # The larger input took no longer: start-up and end detection hide the
                # marginal rate; only a lower bound is known.
                figures.update(marginal_records_per_s=records[1] / seconds[1],
                               marginal_bound=">=")
            out[f"{name}_p{p}"] = figures
            log.info("%s p=%d: %.0f records/s (marginal %s %.0f)", name, p,
                     figures["records_per_s"], figures["marginal_bound"],
                     figures["marginal_records_per_s"])
        full, passthrough = out[f"full_job_p{p}"], out[f"passthrough_p{p}"]
        out[f"ratio_p{p}"] = full["records_per_s"] / passthrough["records_per_s"]
    return out

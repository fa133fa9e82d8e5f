"""Part a, serving: the prediction UDF alone on generated rows, and the model in Python.

``datagen`` -> UDF -> ``blackhole``, with the default and the tuned (``TUNED``) bundles.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fishweight.jobs.bench.stats import marginal
from fishweight.models.registry import ModelRegistry
from fishweight.runtime.flink_env import create_stream_env
from fishweight.runtime.settings import Settings
from fishweight.udfs.scoring import predict_weight

if TYPE_CHECKING:
    from fishweight.jobs.bench import BenchConfig

log = logging.getLogger("fishweight.bench")

TUNED = {"bundle_size": 20_000, "bundle_time_ms": 1000, "arrow_batch_size": 20_000}


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


def bench_serving(settings: Settings, config: BenchConfig) -> dict:
    out = {}
    for name, tuning in (("default", {}), ("tuned", TUNED)):
        seconds = tuple(_serving_job(settings, n, tuning) for n in config.serving_rows)
        out[name] = {"rows": config.serving_rows, "seconds": seconds,
                     "predictions_per_s": marginal(config.serving_rows, seconds),
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

"""The one place that builds a Flink ``TableEnvironment`` for fishweight jobs.

The same function serves local MiniCluster runs (``python jobs/...`` or tests) and
``flink run -py`` submissions; only ``local=True`` adds the web UI port, which a
session cluster configures itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pyflink.table import EnvironmentSettings, TableEnvironment

from jobs import jars
from jobs.settings import Settings


def flink_config(settings: Settings, *, local: bool, streaming: bool = True) -> dict[str, str]:
    """Key/value configuration, kept separate so it can be inspected and tested."""
    jar_paths = jars.connector_jars(settings.resolved_jar_dir)
    jar_urls = ";".join(p.resolve().as_uri() for p in jar_paths)
    conf = {
        "pipeline.jars": jar_urls,
        "pipeline.name": "fishweight",
        # The Python workers must import udfs/ and models/ from this environment.
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        "python.fn-execution.bundle.size": str(settings.bundle_size),
        "python.fn-execution.bundle.time": str(settings.bundle_time_ms),
        "python.fn-execution.arrow.batch.size": str(settings.arrow_batch_size),
        "parallelism.default": str(settings.parallelism),
        # An empty partition must not hold back the watermark (NOTES.md).
        "table.exec.source.idle-timeout": f"{int(settings.idle_timeout_s * 1000)} ms",
        "table.local-time-zone": "UTC",
    }
    if streaming and settings.checkpoint_interval_s > 0:
        interval_ms = int(settings.checkpoint_interval_s * 1000)
        conf["execution.checkpointing.interval"] = f"{interval_ms} ms"
    if local:
        if settings.web_ui_port:
            conf["rest.port"] = str(settings.web_ui_port)
            conf["rest.bind-address"] = "127.0.0.1"
            conf["rest.address"] = "127.0.0.1"
        # Keep local runs small on a 2-core machine.
        conf["taskmanager.numberOfTaskSlots"] = str(max(settings.parallelism, 2))
    return conf


def create_table_env(settings: Settings, *, local: bool = True,
                     streaming: bool = True) -> TableEnvironment:
    """A TableEnvironment with connector jars, Python workers and pipeline tuning applied."""
    builder = EnvironmentSettings.new_instance()
    builder = builder.in_streaming_mode() if streaming else builder.in_batch_mode()
    t_env = TableEnvironment.create(builder.build())
    config = t_env.get_config()
    for key, value in flink_config(settings, local=local, streaming=streaming).items():
        config.set(key, value)
    return t_env


def project_root() -> Path:
    return Path(__file__).resolve().parent.parent

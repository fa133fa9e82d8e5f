"""The one place that builds a Flink ``TableEnvironment`` for fishweight jobs.

The same function serves local MiniCluster runs (``python jobs/...`` or tests) and
``flink run -py`` submissions; only ``local=True`` adds the web UI port, which a
session cluster configures itself.
"""

from __future__ import annotations

import os
import sys
import urllib.parse
from pathlib import Path

from pyflink.common import Configuration
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

from fishweight.runtime import jars
from fishweight.runtime.prometheus import prometheus_config
from fishweight.runtime.settings import Settings


def latest_snapshot(checkpoint_uri: str) -> str | None:
    """The newest savepoint or retained checkpoint (a directory with ``_metadata``)."""
    if not checkpoint_uri.startswith("file:"):
        return None  # remote storage: pass an explicit path as resume_from
    root = Path(urllib.parse.urlparse(checkpoint_uri).path)
    found = [m.parent for m in root.glob("**/_metadata")] if root.is_dir() else []
    return str(max(found, key=lambda d: (d / "_metadata").stat().st_mtime)) if found else None


def restore_path(settings: Settings) -> str | None:
    """What ``resume_from`` names: ``latest``, ``none`` or an explicit path."""
    if settings.resume_from == "none":
        return None
    if settings.resume_from == "latest":
        return latest_snapshot(settings.resolved_checkpoint_uri)
    path = settings.resume_from
    local = path.removeprefix("file://") if path.startswith("file://") or "://" not in path \
        else None
    if local is not None and not (Path(local).is_file() or (Path(local) / "_metadata").is_file()):
        # Else Flink fails the job at its start, after the JVM and the workers came up.
        raise FileNotFoundError(f"resume_from {path}: no savepoint or retained checkpoint "
                                "there (a directory with a _metadata file); `latest` takes "
                                "the newest in checkpoint_dir")
    return path


def local_classpath(settings: Settings) -> None:
    """Put Flink's Prometheus reporter on the classpath of a local MiniCluster.

    A MiniCluster creates its metric reporters from its classpath only: it does not load
    ``plugins/`` as a session cluster does ("The reporter factory ... could not be found"
    in its log). So, before PyFlink starts its JVM (the first ``get_gateway()``), point
    ``FLINK_LIB_DIR`` at a directory of links to ``pyflink/lib/*.jar`` plus the reporter's
    jar. Always, not only when ``metrics_port`` is set: one JVM serves every job of a
    process (the tests), and an unconfigured reporter costs nothing. Under ``flink run``
    the CLI's JVM is already running and the cluster loads ``plugins/`` itself.
    """
    import pyflink
    from pyflink import java_gateway
    from pyflink.find_flink_home import _find_flink_home

    if java_gateway._gateway is not None:
        return  # started already
    home = Path(pyflink.__file__).parent
    # PyFlink's own lookup, done now so that it does not overwrite the choice below; it
    # sets FLINK_LIB_DIR to pyflink/lib unless FLINK_HOME names another installation.
    _find_flink_home()
    if Path(os.environ.get("FLINK_LIB_DIR", home / "lib")).resolve() != (home / "lib").resolve():
        return  # someone chose the classpath
    jars_wanted = [*sorted((home / "lib").glob("*.jar")),
                   *sorted((home / "plugins" / "metrics-prometheus").glob("*.jar"))]
    lib = settings.resolved_jar_dir.parent / "minicluster-lib"
    lib.mkdir(parents=True, exist_ok=True)
    names = {j.name for j in jars_wanted}
    for old in lib.iterdir():
        if old.name not in names:  # another PyFlink version's jar
            old.unlink(missing_ok=True)
    for jar in jars_wanted:
        link = lib / jar.name
        if link.is_symlink() and link.resolve() == jar.resolve():
            continue
        # Atomic, so two jobs starting at once (the tests, the demo) never see a gap.
        staged = lib / f".{jar.name}.{os.getpid()}"
        staged.unlink(missing_ok=True)
        staged.symlink_to(jar)
        staged.replace(link)
    os.environ["FLINK_LIB_DIR"] = str(lib)


def flink_config(settings: Settings, *, local: bool,
                 restore_from: str | None = None) -> dict[str, str]:
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
        # The job-wide bound; each Python stage sets its own as the planner translates it
        # (sql.Stage.bundle_time, jobs/predict.py), so this holds only for a stage that
        # sets none.
        "python.fn-execution.bundle.time": str(settings.bundle_time_ms),
        "python.fn-execution.arrow.batch.size": str(settings.arrow_batch_size),
        # With managed memory, the Python operators of a slot share one worker process;
        # without, each has its own process and interpreter lock (python_workers).
        "python.fn-execution.memory.managed": str(settings.python_workers != "process").lower(),
        "parallelism.default": str(settings.parallelism),
        # Chained operators hand rows on instead of copying each one (the table runtime
        # copies where it keeps a row; so do the Python operators): 12 % less time on a
        # backlog in the bench (docs/performance.md).
        "pipeline.object-reuse": "true",
        # Latency: a record crosses several exchanges between tasks (keyed by Fish_Id,
        # the joins); each holds a partly filled buffer up to this long.
        "execution.buffer-timeout.interval": f"{settings.buffer_timeout_ms} ms",
        # An empty partition must not hold back the watermark forever (docs/platform.md),
        # but a paused producer must hold it for the join bound (see the setting).
        "table.exec.source.idle-timeout": f"{int(settings.idle_timeout_s * 1000)} ms",
        "table.local-time-zone": "UTC",
        # Bounds the keyed OVER state: the duplicate Fish_Id check and the retrain
        # trigger's running window figures (joins and windows clean their state by
        # watermark and are not affected).
        "table.exec.state.ttl": f"{int(settings.state_ttl_s * 1000)} ms",
        # Bounded restarts (a broken job must fail visibly, not restart forever) that
        # outlast the loss of a TaskManager: until the JobManager declares it dead
        # (missed heartbeats), every restart that places a task on its slots fails at
        # once ("RecipientUnreachableException ... submitTask"); three restarts 2 s
        # apart were all spent within 7 s and the job failed (docs/faults.md).
        # Backing off 1, 2, 4 ... 30 s spans a minute with the default 6 attempts; the
        # count starts afresh after 10 minutes without a failure.
        "restart-strategy.type": "exponential-delay",
        "restart-strategy.exponential-delay.attempts-before-reset-backoff":
            str(settings.restart_attempts),
        "restart-strategy.exponential-delay.initial-backoff": "1 s",
        "restart-strategy.exponential-delay.backoff-multiplier": "2.0",
        "restart-strategy.exponential-delay.max-backoff": "30 s",
        "restart-strategy.exponential-delay.reset-backoff-threshold": "10 min",
        "restart-strategy.exponential-delay.jitter-factor": "0.1",
    }
    # Durable state: checkpoints on a file system, not in the JobManager's memory (whose
    # 5 MB limit the join's state passes within a minute at 1k fish/s), kept on cancel
    # so a restart resumes the join and window state.
    conf["state.backend.type"] = settings.state_backend
    conf["execution.checkpointing.dir"] = settings.resolved_checkpoint_uri
    conf["execution.checkpointing.savepoint-dir"] = (
        settings.resolved_checkpoint_uri.rstrip("/") + "/savepoints")
    conf["execution.checkpointing.externalized-checkpoint-retention"] = "RETAIN_ON_CANCELLATION"
    conf["execution.checkpointing.num-retained"] = "2"
    if settings.checkpoint_interval_s > 0:
        interval_ms = int(settings.checkpoint_interval_s * 1000)
        conf["execution.checkpointing.interval"] = f"{interval_ms} ms"
        # Flink triggers the first checkpoint at a random time between the minimum
        # pause and the interval after the job (or a restart) begins, often before the
        # Python workers have started (~5 s): a trigger while a task is not running yet
        # counts as a failed checkpoint. With the pause as long as the interval, the
        # first one comes one interval in; later ones come an interval after the last
        # one ended, which lengthens the period by a checkpoint's duration.
        conf["execution.checkpointing.min-pause"] = f"{interval_ms} ms"
    if restore_from:
        conf["execution.state-recovery.path"] = restore_from
    if local:
        if settings.web_ui_port:
            conf["rest.port"] = str(settings.web_ui_port)
            conf["rest.bind-address"] = "127.0.0.1"
            conf["rest.address"] = "127.0.0.1"
        # A MiniCluster is one process with one metric registry: one port.
        conf.update(prometheus_config(settings.metrics_port))
        # Keep local runs small on a 2-core machine.
        conf["taskmanager.numberOfTaskSlots"] = str(max(settings.parallelism, 2))
    return conf


def create_stream_env(settings: Settings, *, local: bool = True,
                      restore_from: str | None = None,
                      extra: dict[str, str] | None = None,
                      ) -> tuple[StreamExecutionEnvironment, StreamTableEnvironment]:
    """A DataStream + Table environment pair with jars, Python workers and tuning applied.

    Under ``flink run`` the execution environment is the cluster's; the same
    configuration is layered on top of it.
    """
    if local:
        local_classpath(settings)
        # Read by PyFlink when a job is executed: `loopback` runs the Python operators as
        # threads of this process, `process` starts worker processes as a cluster does.
        os.environ["_python_worker_execution_mode"] = settings.python_workers
    else:
        # Inherited from a local run in the parent process, `loopback` would fail here.
        os.environ.pop("_python_worker_execution_mode", None)
    options = {**flink_config(settings, local=local, restore_from=restore_from),
               **(extra or {})}  # e.g. the bench's profiler options
    conf = Configuration()
    for key, value in options.items():
        conf.set_string(key, value)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    t_env = StreamTableEnvironment.create(env)
    # Table options (idle timeout, time zone) must also be on the table config.
    for key, value in options.items():
        t_env.get_config().set(key, value)
    return env, t_env


def create_table_env(settings: Settings, *, local: bool = True) -> StreamTableEnvironment:
    """Only the table side of ``create_stream_env``."""
    return create_stream_env(settings, local=local)[1]

"""The files of a local Flink session cluster: where they live and what they hold.

``apache-flink`` ships Flink's ``bin/`` scripts, ``conf/``, ``lib/`` and ``opt/``. The
cluster runs them unchanged, pointed by environment variables at a private directory
under the state directory, so the virtualenv is never modified::

    <state_dir>/cluster/
        conf/config.yaml   generated (plus pyflink's log4j/logback files)
        lib/               links to pyflink/lib/*.jar + pyflink/opt/flink-python-*.jar
        log/ pid/ tmp/     daemon logs, the scripts' pid files, io.tmp.dirs
        bin/flink          Flink's CLI with this cluster's FLINK_CONF_DIR / FLINK_LIB_DIR
        cluster.json       REST address and ports of the running cluster

``flink-python-*.jar`` must be on the cluster's classpath (lib/), else a Python job
fails with ``ClassNotFoundException ... PythonScalarFunctionOperator``. The Kafka
connector jars are not needed there: the job ships them itself (``pipeline.jars``).
The configuration is built by pure functions (``cluster_config``, ``render_config``)
that the unit tests check without starting anything; ``prepare`` writes it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from fishweight.runtime.prometheus import CLUSTER_METRICS_PORTS, prometheus_config
from fishweight.runtime.settings import Settings


class ClusterError(RuntimeError):
    """The cluster could not be started, reached or stopped; the message says why."""


IDENT = "fishweight"  # FLINK_IDENT_STRING: names the pid and log files
DAEMONS = {"jobmanager": "standalonesession", "taskmanager": "taskexecutor"}
# Sized for a 2-core machine with a few GB free; the TaskManager's managed memory
# (40 % of its Flink memory) also covers the Python workers.
JOBMANAGER_MEMORY = "1024m"
TASKMANAGER_MEMORY = "1728m"


# Locations ------------------------------------------------------------------------

def pyflink_home() -> Path:
    """The installed ``pyflink`` package directory (holds bin/, conf/, lib/, opt/)."""
    import importlib.util

    spec = importlib.util.find_spec("pyflink")
    if spec is None or not spec.submodule_search_locations:
        raise ClusterError("pyflink is not installed in this environment")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def predict_script() -> Path:
    """The installed job file to pass to ``flink run -py``."""
    import importlib.util

    spec = importlib.util.find_spec("fishweight.jobs.predict")
    assert spec is not None and spec.origin
    return Path(spec.origin).resolve()


@dataclass(frozen=True)
class ClusterPaths:
    root: Path

    @classmethod
    def for_settings(cls, settings: Settings) -> ClusterPaths:
        return cls((Path(settings.state_dir) / "cluster").resolve())

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def lib(self) -> Path:
        return self.root / "lib"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def pid(self) -> Path:
        return self.root / "pid"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def flink(self) -> Path:
        """The wrapper around ``pyflink/bin/flink`` for ``flink run``/``list``/``cancel``."""
        return self.root / "bin" / "flink"

    @property
    def state_file(self) -> Path:
        return self.root / "cluster.json"

    def pid_file(self, daemon: str) -> Path:
        return self.pid / f"flink-{IDENT}-{DAEMONS[daemon]}.pid"


# Pure configuration ------------------------------------------------------------------

def flatten_yaml(text: str) -> dict[str, str]:
    """Flink's nested config.yaml as flat keys: ``{"jobmanager.rpc.port": "6123", ...}``.

    Values as Flink writes them: booleans lower-case, lists ``;``-separated.
    """
    out: dict[str, str] = {}

    def walk(prefix: str, node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        elif isinstance(node, bool):
            out[prefix] = "true" if node else "false"
        elif isinstance(node, list):
            out[prefix] = ";".join(str(v) for v in node)
        elif node is not None:
            out[prefix] = str(node)

    walk("", yaml.safe_load(text) or {})
    return out


def cluster_config(settings: Settings, paths: ClusterPaths, *, rest_port: int, rpc_port: int,
                   python: str, defaults: dict[str, str] | None = None) -> dict[str, str]:
    """The cluster's flat Flink configuration (config.yaml), keyed as Flink names it.

    ``defaults`` is pyflink's own config.yaml, flattened: its JVM options (the
    ``--add-opens`` Java 17 needs) are kept, everything this cluster sets wins.
    """
    checkpoints = settings.resolved_checkpoint_uri
    loopback = "127.0.0.1"
    conf = dict(defaults or {})
    conf.update({
        # Everything on loopback, on ports no other cluster's defaults use.
        "jobmanager.rpc.address": loopback,
        "jobmanager.rpc.port": str(rpc_port),
        "jobmanager.bind-host": loopback,
        "taskmanager.bind-host": loopback,
        "taskmanager.host": loopback,
        "rest.address": loopback,
        "rest.bind-address": loopback,
        "rest.port": str(rest_port),
        "jobmanager.memory.process.size": JOBMANAGER_MEMORY,
        "taskmanager.memory.process.size": TASKMANAGER_MEMORY,
        "taskmanager.numberOfTaskSlots": str(max(2, settings.parallelism)),
        # A job's slots spread over the TaskManagers (not packed into the first): a lost
        # TaskManager costs a share of the job, and the others hold free slots for it.
        "taskmanager.load-balance.mode": "SLOTS",
        # A TaskManager whose process is gone fails the JobManager's heartbeat RPCs at
        # once; two such failures (Flink's rpc-failure-threshold) declare it lost. One
        # heartbeat every 2 s (Flink's default: 10 s) frees its slots within ~4 s
        # instead of ~20 s; a slow but live TaskManager still has the 50 s timeout.
        "heartbeat.interval": "2000",
        "parallelism.default": str(settings.parallelism),
        # The Python workers (TaskManager) and the `flink run -py` client process must
        # import fishweight: both are this environment's interpreter.
        "python.executable": python,
        "python.client.executable": python,
        # Durable state where the jobs of this project keep it (flink_env.flink_config
        # sets the same per job); the savepoint dir is also `cluster stop`'s target.
        "state.backend.type": settings.state_backend,
        "execution.checkpointing.dir": checkpoints,
        "execution.checkpointing.savepoint-dir": checkpoints.rstrip("/") + "/savepoints",
        # The scripts read these two instead of FLINK_LOG_DIR / FLINK_PID_DIR, so the
        # `flink` CLI logs next to the daemons as well.
        "env.log.dir": str(paths.log),
        "env.pid.dir": str(paths.pid),
        "io.tmp.dirs": str(paths.tmp),
    })
    conf.update(prometheus_config(settings.metrics_port, CLUSTER_METRICS_PORTS))
    return conf


def render_config(conf: dict[str, str]) -> str:
    """config.yaml text: one flat key per line, every value a double-quoted YAML string."""
    lines = ["# Written by `fishweight cluster start`; regenerated on every start.",
             *(f"{key}: {json.dumps(value)}" for key, value in sorted(conf.items()))]
    return "\n".join(lines) + "\n"


def lib_jars(pyflink: Path) -> list[Path]:
    """Jars for the cluster's lib/: pyflink's lib/ plus the flink-python jar from opt/."""
    jars = sorted((pyflink / "lib").glob("*.jar"))
    python_jars = sorted((pyflink / "opt").glob("flink-python*.jar"))
    if not any(j.name.startswith("flink-dist") for j in jars):
        raise ClusterError(f"no flink-dist jar in {pyflink / 'lib'}: is apache-flink complete?")
    if len(python_jars) != 1:
        raise ClusterError(f"expected one flink-python jar in {pyflink / 'opt'}, "
                           f"found {[j.name for j in python_jars]}")
    return jars + python_jars


def script_env(paths: ClusterPaths) -> dict[str, str]:
    """Environment for Flink's scripts (daemons and CLI) to use this cluster's files."""
    return {
        "FLINK_CONF_DIR": str(paths.conf),
        "FLINK_LIB_DIR": str(paths.lib),
        "FLINK_LOG_DIR": str(paths.log),
        "FLINK_PID_DIR": str(paths.pid),
        "FLINK_IDENT_STRING": IDENT,
    }


def wrapper_script(pyflink: Path, paths: ClusterPaths) -> str:
    """``bin/flink``: Flink's CLI with this cluster's environment, nothing exported."""
    exports = "".join(f"export {k}='{v}'\n" for k, v in script_env(paths).items())
    return ("#!/bin/sh\n"
            "# Written by `fishweight cluster start`: Flink's CLI for this cluster.\n"
            f"{exports}"
            f"exec '{pyflink / 'bin' / 'flink'}' \"$@\"\n")


def prepare(settings: Settings, *, rest_port: int, rpc_port: int,
            pyflink: Path | None = None) -> ClusterPaths:
    """Write conf/, lib/ links and bin/flink for a cluster; start nothing."""
    pyflink = pyflink or pyflink_home()
    paths = ClusterPaths.for_settings(settings)
    for d in (paths.conf, paths.lib, paths.log, paths.pid, paths.tmp, paths.flink.parent):
        d.mkdir(parents=True, exist_ok=True)
    # log4j/logback files as shipped; config.yaml, masters and workers are ours.
    for source in (pyflink / "conf").iterdir():
        if source.name.startswith(("log4j", "logback")):
            (paths.conf / source.name).write_bytes(source.read_bytes())
    defaults = flatten_yaml((pyflink / "conf" / "config.yaml").read_text())
    conf = cluster_config(settings, paths, rest_port=rest_port, rpc_port=rpc_port,
                          python=sys.executable, defaults=defaults)
    (paths.conf / "config.yaml").write_text(render_config(conf))
    (paths.conf / "masters").write_text(f"127.0.0.1:{rest_port}\n")
    (paths.conf / "workers").write_text("127.0.0.1\n")
    # lib/: exactly the wanted jars (a stale link from another PyFlink version would
    # put two flink-dist jars on the classpath).
    for old in paths.lib.iterdir():
        old.unlink()
    for jar in lib_jars(pyflink):
        (paths.lib / jar.name).symlink_to(jar)
    paths.flink.write_text(wrapper_script(pyflink, paths))
    paths.flink.chmod(0o755)
    return paths

"""A local standalone Flink session cluster from the installed PyFlink: ``fishweight cluster``.

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

Only processes whose pid is in ``pid/`` *and* whose command line names this
``conf/`` directory are ever signalled, so other Flink clusters are left alone.
The configuration is built by pure functions (``cluster_config``, ``render_config``)
that the unit tests check without starting anything.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from fishweight.runtime.flink_rest import reachable, rest, stop_job
from fishweight.runtime.processes import free_port, inherit_env, port_in_use
from fishweight.runtime.settings import Settings

IDENT = "fishweight"  # FLINK_IDENT_STRING: names the pid and log files
DAEMONS = {"jobmanager": "standalonesession", "taskmanager": "taskexecutor"}
# Sized for a 2-core machine with a few GB free; the TaskManager's managed memory
# (40 % of its Flink memory) also covers the Python workers.
JOBMANAGER_MEMORY = "1024m"
TASKMANAGER_MEMORY = "1728m"
# Job states after which a job needs nothing more.
TERMINAL_STATES = {"FINISHED", "CANCELED", "FAILED", "SUSPENDED"}


class ClusterError(RuntimeError):
    """The cluster could not be started, reached or stopped; the message says why."""


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


# Processes ----------------------------------------------------------------------------

def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        pass
    try:  # no /proc (macOS)
        return subprocess.run(["ps", "-p", str(pid), "-o", "args="], capture_output=True,
                              text=True, check=False).stdout.split()
    except OSError:
        return []


def owned_pids(paths: ClusterPaths, daemon: str) -> list[int]:
    """Live pids from the daemon's pid file that really are this cluster's processes.

    The scripts start each daemon with ``--configDir <conf>``; a pid that was reused
    by another process, or a daemon of another cluster, does not have this argument.
    """
    try:
        lines = paths.pid_file(daemon).read_text().split()
    except OSError:
        return []
    owned = []
    for pid in (int(p) for p in lines if p.isdigit()):
        args = _cmdline(pid)
        if ("--configDir", str(paths.conf)) in itertools.pairwise(args):
            owned.append(pid)
    return owned


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) is not alive.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def _terminate(pids: list[int], timeout_s: float = 30.0) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _log_tail(paths: ClusterPaths, daemon: str, lines: int = 15) -> str:
    logs = sorted(paths.log.glob(f"flink-{IDENT}-{DAEMONS[daemon]}-*"),
                  key=lambda p: p.stat().st_mtime)
    text = []
    for log_file in logs[-2:]:
        tail = log_file.read_text(errors="replace").splitlines()[-lines:]
        if tail:
            text.append(f"--- {log_file}\n" + "\n".join(tail))
    return "\n".join(text)


# Commands -------------------------------------------------------------------------------

@dataclass
class ClusterStatus:
    running: bool
    url: str | None = None
    jobmanager_pids: tuple[int, ...] = ()
    taskmanager_pids: tuple[int, ...] = ()
    overview: dict | None = None
    jobs: tuple[dict, ...] = ()

    def lines(self) -> list[str]:
        if not self.running:
            if self.jobmanager_pids or self.taskmanager_pids:
                return [f"Flink cluster processes are alive (JobManager {self.jobmanager_pids}, "
                        f"TaskManager {self.taskmanager_pids}) but REST at {self.url} does "
                        "not answer: starting, or broken (see its log/)"]
            return ["Flink cluster: not running"]
        o = self.overview or {}
        out = [f"Flink cluster: running (Flink {o.get('flink-version', '?')})",
               f"  web UI / REST: {self.url}",
               f"  JobManager pid {', '.join(map(str, self.jobmanager_pids))}; "
               f"TaskManagers {o.get('taskmanagers', 0)} "
               f"(pid {', '.join(map(str, self.taskmanager_pids)) or '-'})",
               f"  slots: {o.get('slots-available', 0)} free of {o.get('slots-total', 0)}",
               f"  jobs: {o.get('jobs-running', 0)} running, {o.get('jobs-finished', 0)} "
               f"finished, {o.get('jobs-cancelled', 0)} cancelled, "
               f"{o.get('jobs-failed', 0)} failed"]
        out += [f"    {j.get('jid')}  {str(j.get('state')):<10} {j.get('name')}"
                for j in self.jobs if j.get("state") not in TERMINAL_STATES]
        return out


def _recorded_url(paths: ClusterPaths) -> str | None:
    try:
        return json.loads(paths.state_file.read_text())["url"]
    except (OSError, ValueError, KeyError):
        return None


def status(settings: Settings) -> ClusterStatus:
    paths = ClusterPaths.for_settings(settings)
    jm = tuple(owned_pids(paths, "jobmanager"))
    tm = tuple(owned_pids(paths, "taskmanager"))
    url = _recorded_url(paths)
    if not jm or url is None:
        return ClusterStatus(False, url, jm, tm)
    overview = reachable(url)
    if overview is None:
        return ClusterStatus(False, url, jm, tm)
    try:
        jobs = tuple(rest(url, "/jobs/overview").get("jobs", []))
    except (OSError, ValueError):
        jobs = ()
    return ClusterStatus(True, url, jm, tm, overview, jobs)


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


def _run_script(pyflink: Path, paths: ClusterPaths, script: str, *args: str) -> None:
    env = inherit_env(**script_env(paths))
    result = subprocess.run(
        [str(pyflink / "bin" / script), *args], env=env, capture_output=True, text=True,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # the daemons must not get the terminal's Ctrl-C
        check=False,
    )
    with open(paths.log / "scripts.log", "a") as fh:
        fh.write(f"$ {script} {' '.join(args)}\n{result.stdout}{result.stderr}")
    if result.returncode != 0:
        raise ClusterError(f"{script} {' '.join(args)} failed ({result.returncode}):\n"
                           f"{result.stdout}{result.stderr}")


@dataclass
class Started:
    status: ClusterStatus
    paths: ClusterPaths
    already_running: bool
    seconds: float


def start(settings: Settings, timeout_s: float = 120.0) -> Started:
    """Start JobManager and one TaskManager; wait until REST reports the TaskManager."""
    began = time.monotonic()
    paths = ClusterPaths.for_settings(settings)
    current = status(settings)
    if current.running:
        return Started(current, paths, True, 0.0)
    if current.jobmanager_pids or current.taskmanager_pids:
        raise ClusterError("\n".join(current.lines())
                           + "\nrun `fishweight cluster stop` first")
    rest_port = settings.web_ui_port or free_port()
    if port_in_use(rest_port):
        raise ClusterError(
            f"port {rest_port} is in use (another Flink cluster, or `fishweight predict`?); "
            "choose another with --web-ui-port or FISHWEIGHT_WEB_UI_PORT")
    for daemon in DAEMONS:  # stale pid files of a crashed or rebooted cluster
        paths.pid_file(daemon).unlink(missing_ok=True)
    pyflink = pyflink_home()
    paths = prepare(settings, rest_port=rest_port, rpc_port=free_port(), pyflink=pyflink)
    url = f"http://127.0.0.1:{rest_port}"
    paths.state_file.write_text(json.dumps({
        "url": url, "rest_port": rest_port, "pyflink": str(pyflink),
        "python": sys.executable, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }, indent=2) + "\n")
    try:
        _run_script(pyflink, paths, "jobmanager.sh", "start")
        _run_script(pyflink, paths, "taskmanager.sh", "start")
        deadline = time.monotonic() + timeout_s
        while True:
            overview = reachable(url)
            if overview and overview.get("taskmanagers", 0) >= 1 \
                    and overview.get("slots-total", 0) >= 1:
                break
            for daemon in DAEMONS:
                if not any(_alive(p) for p in owned_pids(paths, daemon)):
                    raise ClusterError(f"the {daemon} exited while starting:\n"
                                       + _log_tail(paths, daemon))
            if time.monotonic() > deadline:
                raise ClusterError(f"no TaskManager registered at {url} after {timeout_s:.0f}s:"
                                   f"\n{_log_tail(paths, 'jobmanager')}")
            time.sleep(0.5)
    except BaseException:
        _stop_daemons(paths)
        raise
    return Started(status(settings), paths, False, time.monotonic() - began)


def _stop_daemons(paths: ClusterPaths) -> list[int]:
    # TaskManager first, so the JobManager does not restart the jobs' tasks meanwhile.
    stopped = []
    for daemon in ("taskmanager", "jobmanager"):
        pids = owned_pids(paths, daemon)
        _terminate(pids)
        stopped += pids
        paths.pid_file(daemon).unlink(missing_ok=True)
    return stopped


def stop(settings: Settings, *, savepoint: bool = True,
         savepoint_timeout_s: float = 60.0) -> list[str]:
    """Stop the jobs (with a savepoint unless told not to), then this cluster's daemons."""
    paths = ClusterPaths.for_settings(settings)
    current = status(settings)
    messages = []
    if current.running and current.url:
        target = (settings.resolved_checkpoint_uri.rstrip("/") + "/savepoints"
                  if savepoint else None)
        for job in current.jobs:
            if job.get("state") not in TERMINAL_STATES:
                messages.append(stop_job(current.url, job, target, savepoint_timeout_s))
    pids = _stop_daemons(paths)
    if pids:
        messages.append(f"Flink cluster stopped (pids {', '.join(map(str, pids))})")
    else:
        messages.append("Flink cluster: not running")
    return messages


def start_lines(started: Started, settings: Settings) -> list[str]:
    """What ``fishweight cluster start`` prints: where the UI is and how to submit."""
    paths, s = started.paths, started.status
    head = ("Flink cluster already running" if started.already_running
            else f"Flink cluster started in {started.seconds:.0f}s")
    job_args = [f"--bootstrap-servers {settings.bootstrap_servers or '127.0.0.1:9092'}",
                f"--state-dir {Path(settings.state_dir).resolve()}"]
    if settings.model_dir:
        job_args.append(f"--model-dir {settings.resolved_model_dir.resolve()}")
    env = " ".join(f"{k}={v}" for k, v in script_env(paths).items()
                   if k in ("FLINK_CONF_DIR", "FLINK_LIB_DIR"))
    return [
        f"{head}: web UI {s.url}",
        *s.lines()[2:4],
        f"  logs: {paths.log}",
        "submit the prediction job with this cluster's flink CLI:",
        f"  {paths.flink} run -d -py {predict_script()} \\",
        f"      {' '.join(job_args)}",
        f"  (the wrapper runs {pyflink_home() / 'bin' / 'flink'} with {env})",
        "stop it with `fishweight cluster stop` (jobs stop with a savepoint first)",
    ]

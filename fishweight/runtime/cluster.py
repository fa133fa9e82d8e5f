"""A local standalone Flink session cluster from the installed PyFlink: ``fishweight cluster``.

Its lifecycle: start the JobManager and TaskManager daemons with Flink's own scripts
(on the files ``cluster_files`` writes), report their state, stop jobs with a
savepoint and then the daemons. Only processes whose pid is in ``pid/`` *and* whose
command line names this cluster's ``conf/`` directory are ever signalled, so other
Flink clusters are left alone.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fishweight.runtime.cluster_files import (
    DAEMONS,
    IDENT,
    ClusterError,
    ClusterPaths,
    predict_script,
    prepare,
    pyflink_home,
    script_env,
)
from fishweight.runtime.flink_rest import reachable, rest, stop_job
from fishweight.runtime.processes import (
    alive,
    cmdline,
    free_port,
    inherit_env,
    port_in_use,
    terminate,
)
from fishweight.runtime.settings import Settings

# Job states after which a job needs nothing more.
TERMINAL_STATES = {"FINISHED", "CANCELED", "FAILED", "SUSPENDED"}


# Processes ----------------------------------------------------------------------------

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
        args = cmdline(pid)
        if ("--configDir", str(paths.conf)) in itertools.pairwise(args):
            owned.append(pid)
    return owned


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


def taskmanager_ids(url: str) -> set[str]:
    """The ids of the TaskManagers registered at the JobManager.

    A lost TaskManager stays listed until the JobManager notices (heartbeats).
    """
    try:
        return {tm["id"] for tm in rest(url, "/taskmanagers").get("taskmanagers", [])}
    except (OSError, ValueError, KeyError):
        return set()


def _wait_taskmanagers(paths: ClusterPaths, url: str, wanted: int, timeout_s: float,
                       known: frozenset[str] = frozenset()) -> None:
    """Until ``wanted`` TaskManagers other than ``known`` are registered.

    A daemon that exits meanwhile is an error at once.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        registered = taskmanager_ids(url) - known
        if len(registered) >= wanted:
            return
        for daemon in DAEMONS:
            if not any(alive(p) for p in owned_pids(paths, daemon)):
                raise ClusterError(f"the {daemon} exited while starting:\n"
                                   + _log_tail(paths, daemon))
        if time.monotonic() > deadline:
            raise ClusterError(f"{len(registered)} of {wanted} TaskManagers registered at "
                               f"{url} after {timeout_s:.0f}s:\n"
                               f"{_log_tail(paths, 'jobmanager')}")
        time.sleep(0.5)


def start(settings: Settings, timeout_s: float = 120.0) -> Started:
    """Start the JobManager and ``settings.taskmanagers`` TaskManagers.

    Returns once REST reports them all.
    """
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
        for _ in range(settings.taskmanagers):
            _run_script(pyflink, paths, "taskmanager.sh", "start")
        _wait_taskmanagers(paths, url, settings.taskmanagers, timeout_s)
    except BaseException:
        _stop_daemons(paths)
        raise
    return Started(status(settings), paths, False, time.monotonic() - began)


def add_taskmanager(settings: Settings, timeout_s: float = 120.0) -> ClusterStatus:
    """Start one more TaskManager in the running cluster.

    For more slots, or to replace one that was lost; returns once it is registered.
    """
    paths = ClusterPaths.for_settings(settings)
    current = status(settings)
    if not current.running or current.url is None:
        raise ClusterError("no fishweight cluster is running; `fishweight cluster start` first")
    known = frozenset(taskmanager_ids(current.url))
    _run_script(pyflink_home(), paths, "taskmanager.sh", "start")
    _wait_taskmanagers(paths, current.url, 1, timeout_s, known)
    return status(settings)


def _stop_daemons(paths: ClusterPaths) -> list[int]:
    # TaskManager first, so the JobManager does not restart the jobs' tasks meanwhile.
    stopped = []
    for daemon in ("taskmanager", "jobmanager"):
        pids = owned_pids(paths, daemon)
        terminate(pids)
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

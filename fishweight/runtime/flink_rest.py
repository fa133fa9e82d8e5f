"""A small client of Flink's REST API: what the job, the demo, the bench and the tests ask.

The same API answers for a local MiniCluster (``fishweight predict`` with ``web_ui_port``)
and for a session cluster (``fishweight cluster start``); ``url`` is its base address,
e.g. ``http://127.0.0.1:8081``.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable


def local_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def rest(url: str, path: str, *, method: str = "GET", body: dict | None = None,
         timeout_s: float = 5.0) -> dict:
    """One REST call; the decoded JSON answer ({} when empty). Raises OSError, ValueError."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url.rstrip("/") + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
        raw = response.read()
    return json.loads(raw) if raw else {}


def vertex_metrics(url: str, job_id: str, vertex_id: str,
                   wanted: Callable[[str], bool]) -> list[tuple[str, float]]:
    """The numeric metrics of one vertex whose id ``wanted`` accepts, as (id, value).

    Ids are ``<subtask>.<operator>.<name>``; values that are not numbers (a
    distribution's summary) are left out.
    """
    base = f"/jobs/{job_id}/vertices/{vertex_id}/metrics"
    ids = [m["id"] for m in rest(url, base) if wanted(m["id"])]
    found = []
    for start in range(0, len(ids), 50):  # keep each URL short
        # Metric ids hold brackets (`0.PythonCalc[101].fishweight...`): URL-encode them.
        query = urllib.parse.quote(",".join(ids[start:start + 50]), safe=",")
        for m in rest(url, f"{base}?get={query}"):
            try:
                found.append((m["id"], float(m["value"])))
            except (TypeError, ValueError):
                continue
    return found


def operator_metrics(url: str, job_id: str, group: str = "fishweight",
                     ) -> dict[str, list[float]]:
    """The job's metrics in one operator group, by name, one value per subtask.

    A name is the part after ``<subtask>.<operator>.<group>.``, e.g. ``joinedPairs`` or
    ``species.walleye.joinedPairs``.
    """
    found: dict[str, list[float]] = {}
    marker = f".{group}."
    for vertex in rest(url, f"/jobs/{job_id}")["vertices"]:
        for metric_id, value in vertex_metrics(url, job_id, vertex["id"],
                                               lambda i: marker in i):
            found.setdefault(metric_id.split(marker, 1)[1], []).append(value)
    return found


def job_metric(url: str, job_id: str, name: str) -> float | None:
    """A job-level metric such as ``numRestarts`` or ``uptime``."""
    try:
        (m,) = rest(url, f"/jobs/{job_id}/metrics?get={name}")
        return float(m["value"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def completed_checkpoints(url: str, job_id: str) -> int:
    """How many checkpoints of the job have completed."""
    return int(rest(url, f"/jobs/{job_id}/checkpoints")["counts"]["completed"])


def reachable(url: str) -> dict | None:
    """The cluster's ``/overview``, or None when nothing answers."""
    try:
        return rest(url, "/overview", timeout_s=2.0)
    except (OSError, ValueError):
        return None


def all_tasks_running(url: str, job_id: str) -> bool:
    """The job is RUNNING and so is every one of its tasks (its sources are assigned)."""
    try:
        job = rest(url, f"/jobs/{job_id}")
    except (OSError, ValueError):
        return False
    return job.get("state") == "RUNNING" and all(v["status"] == "RUNNING"
                                                 for v in job.get("vertices", []))


def running_job(url: str) -> str | None:
    """The id of a job whose tasks all run, or None."""
    try:
        jobs = rest(url, "/jobs/overview", timeout_s=2.0)["jobs"]
    except (OSError, ValueError, KeyError):
        return None
    return next((job["jid"] for job in jobs if job["state"] == "RUNNING"
                 and job["tasks"]["running"] == job["tasks"]["total"]), None)


def wait_until_running(url: str, job_id: str | None = None, *, timeout_s: float = 120,
                       alive: Callable[[], None] | None = None) -> str:
    """Until the job (``job_id``, or any job) runs every task; its id.

    ``alive`` is called on every poll and may raise (e.g. the job's process has exited);
    a ``TimeoutError`` after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if alive is not None:
            alive()
        found = (job_id if job_id and all_tasks_running(url, job_id)
                 else None if job_id else running_job(url))
        if found:
            return found
        time.sleep(0.5)
    raise TimeoutError(f"no job{' ' + job_id if job_id else ''} with all tasks running at "
                       f"{url} after {timeout_s:.0f}s")


def stop_job(url: str, job: dict, savepoint_dir: str | None, timeout_s: float) -> str:
    """Stop one job with a savepoint (or cancel it); a line saying what happened.

    ``job`` is an entry of ``/jobs/overview`` (``jid``, ``state``, ``name``). The job's
    own entry point (``fishweight.jobs.predict.stop_job``) does the same through its Java
    client, which the local run holds instead of a URL.
    """
    jid = job["jid"]
    if savepoint_dir and job.get("state") == "RUNNING":
        try:
            trigger = rest(url, f"/jobs/{jid}/stop", method="POST",
                           body={"drain": False, "targetDirectory": savepoint_dir})
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                result = rest(url, f"/jobs/{jid}/savepoints/{trigger['request-id']}")
                if result.get("status", {}).get("id") == "COMPLETED":
                    operation = result.get("operation", {})
                    if "location" in operation:
                        return (f"job {jid} ({job.get('name')}) stopped; savepoint "
                                f"{operation['location']}")
                    cause = operation.get("failure-cause", {}).get("stack-trace", "")
                    reason = cause.splitlines()[0] if cause else "unknown reason"
                    break
                time.sleep(0.5)
            else:
                reason = f"no savepoint after {timeout_s:.0f}s"
        except (OSError, ValueError, KeyError) as exc:
            reason = str(exc)
        prefix = f"savepoint of job {jid} failed ({reason}); "
    else:
        prefix = ""
    with contextlib.suppress(OSError, ValueError):
        rest(url, f"/jobs/{jid}?mode=cancel", method="PATCH")
    return prefix + f"job {jid} ({job.get('name')}) cancelled"

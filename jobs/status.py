"""``fishweight status``: what a running prediction job is doing, read at a terminal.

Reads the job's state and per-source figures from Flink's REST API and the
``fishweight`` metrics from its Prometheus endpoint (``metrics_port``), or from the REST
API when that is off; and, when ``trainer_metrics_port`` is set, the trainer's. Prints
what the demo's status line shows. Exit code 0 when the job is RUNNING, 1 when there is
no job or it is not running, so scripts and health checks can use it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from fishweight import sql
from fishweight.runtime.flink_rest import (
    job_metric,
    operator_metrics,
    reachable,
    rest,
    vertex_metrics,
)
from fishweight.runtime.prometheus import job_group, metrics_url, scrape
from fishweight.runtime.settings import Settings

JOB_NAME = "fishweight-predict"
# Metrics of the `fishweight` group that are gauges (one figure, not summed over subtasks).
GAUGE_SUFFIXES = ("modelVersion", "modelAgeSeconds", "Ppm", "changeErrorsOver")
# The Kafka sources, by the name their operator carries (jobs/operator_names.py).
SOURCES = {"measurements": sql.SOURCE_LABELS["measurement_raw"],
           "weights": sql.SOURCE_LABELS["weight_raw"]}


@dataclass
class JobStatus:
    """One look at the job: its state and figures; ``problem`` when there is none."""

    url: str
    problem: str | None = None
    job_id: str | None = None
    state: str | None = None
    uptime_s: float | None = None
    restarts: float | None = None
    metrics_from: str = "REST"
    metrics: dict[str, float] = field(default_factory=dict)
    sources: dict[str, dict[str, float | None]] = field(default_factory=dict)
    trainer: dict[str, float] | None = None

    @property
    def running(self) -> bool:
        return self.state == "RUNNING"


def _combine(by_name: dict[str, list[float]]) -> dict[str, float]:
    """Counters summed over subtasks; gauges the largest (-1 = none yet).

    The model's age is the smallest: that of the newest version, which one subtask may
    serve a poll before another.
    """
    return {name: (min(values) if name.endswith("modelAgeSeconds")
                   else max(values) if name.endswith(GAUGE_SUFFIXES) else sum(values))
            for name, values in by_name.items() if values}


def _find_job(url: str) -> tuple[dict | None, str | None]:
    if reachable(url) is None:
        return None, (f"no Flink REST API answers at {url}: is `fishweight predict` (or the "
                      "demo) running? Its port is web_ui_port (--web-ui-port)")
    jobs = rest(url, "/jobs/overview").get("jobs", [])
    ours = [j for j in jobs if j.get("name") == JOB_NAME] or jobs
    if not ours:
        return None, f"Flink at {url} runs no job"
    ours.sort(key=lambda j: (j.get("state") == "RUNNING", j.get("start-time", 0)))
    return ours[-1], None


def _sources(url: str, job_id: str) -> dict[str, dict[str, float | None]]:
    """Records read and the event-time lag (now - watermark) of each Kafka source."""
    out: dict[str, dict[str, float | None]] = {}
    for vertex in rest(url, f"/jobs/{job_id}")["vertices"]:
        for label, operator in SOURCES.items():
            if not vertex["name"].startswith(f"Source: {operator}"):
                continue
            values: dict[str, list[float]] = {}
            for metric_id, value in vertex_metrics(
                    url, job_id, vertex["id"],
                    lambda i: ".Source__" in i and i.endswith((".numRecordsIn",
                                                               ".watermarkLag"))):
                values.setdefault(metric_id.rsplit(".", 1)[1], []).append(value)
            lag = values.get("watermarkLag")
            out[label] = {"records": sum(values.get("numRecordsIn", [])) or None,
                          "lag_s": max(lag) / 1000 if lag else None}
    return out


def job_status(settings: Settings, url: str) -> JobStatus:
    job, problem = _find_job(url)
    if job is None:
        return JobStatus(url, problem)
    status = JobStatus(url, job_id=job["jid"], state=job.get("state"))
    if not status.running:
        status.problem = f"job {job['jid']} ({job.get('name')}) is {job.get('state')}"
        return status
    status.uptime_s = (time.time() * 1000 - job.get("start-time", 0)) / 1000
    status.restarts = job_metric(url, job["jid"], "numRestarts")
    by_name: dict[str, list[float]] | None = None
    if settings.metrics_port:
        try:
            by_name = job_group(scrape(metrics_url(settings.metrics_port)), job_id=job["jid"])
        except (OSError, ValueError):  # nothing answers, or not Prometheus text
            by_name = None
        if by_name:
            status.metrics_from = f"Prometheus :{settings.metrics_port}"
    status.metrics = _combine(by_name if by_name else operator_metrics(url, job["jid"]))
    status.sources = _sources(url, job["jid"])
    if settings.trainer_metrics_port:
        try:
            samples = scrape(metrics_url(settings.trainer_metrics_port))
            status.trainer = {}
            for s in samples:
                if s.name.startswith("fishweight_trainer_") and not s.name.endswith(
                        ("_created", "_bucket")):
                    key = s.name + "".join(f",{v}" for v in s.labels.values())
                    status.trainer[key] = s.value
        except (OSError, ValueError):
            status.trainer = None
    return status


def _ppm(value: float | None) -> str:
    return "-" if value is None or value < 0 else f"{value / 1e6:.3f}"


def lines(status: JobStatus) -> list[str]:
    """What ``fishweight status`` prints."""
    if status.problem:
        return [f"fishweight status: {status.problem}"]
    m = status.metrics
    get = lambda name: m.get(name, 0.0)  # noqa: E731
    uptime = int(status.uptime_s or 0)
    out = [f"job {status.job_id} {status.state} for {uptime // 60}m{uptime % 60:02d}s, "
           f"restarts {int(status.restarts or 0)} ({status.url}; metrics from "
           f"{status.metrics_from})"]
    src = status.sources
    ins = ", ".join(f"{label} {int(v['records'] or 0)}" for label, v in src.items())
    out.append(f"records in: {ins or '-'} | predicted {int(get('predictions'))} | joined "
               f"{int(get('joinedPairs'))} | unmatched weights {int(get('unmatchedWeights'))}, "
               f"measurements {int(get('unmatchedMeasurements'))} | windows "
               f"{int(get('windowsClosed'))} | retrain events {int(get('retrainEvents'))}")
    if "modelVersion" in m:
        model = f"model v{int(m['modelVersion'])}, live for {int(m.get('modelAgeSeconds', 0))} s"
    else:
        model = "model - (no batch scored yet)"
    out.append(f"{model} (swaps {int(get('modelSwaps'))}, refused {int(get('modelRefusals'))})")
    # species.<name>.<metric>: a species name may hold dots ("S. salar").
    species = sorted({name.removeprefix("species.").rsplit(".", 1)[0] for name in m
                      if name.startswith("species.") and name.count(".") >= 2})
    for sp in species:
        f = lambda name, sp=sp: m.get(f"species.{sp}.{name}")  # noqa: E731
        over, lean = f("changeErrorsOver"), f("biasLeanPpm")
        out.append(f"  {sp}: joined {int(f('joinedPairs') or 0)}, error: current window "
                   f"{_ppm(f('windowErrorAvgPpm'))}, last closed window "
                   f"{_ppm(f('lastWindowErrorAvgPpm'))}, change rule "
                   f"{'-' if over is None or over < 0 else int(over)} over the threshold, "
                   f"bias rule lean {'-' if lean is None else f'{lean / 1e6:+.3f}'}; "
                   f"retrain events {int(f('retrainEvents') or 0)}")
    letters = {name.split(".", 1)[1]: v for name, v in m.items()
               if name.startswith("deadLetters.") and v}
    out.append("dead letters: " + (", ".join(f"{k} {int(v)}" for k, v in sorted(letters.items()))
                                   or "none"))
    lags = ", ".join(f"{label} {v['lag_s']:.1f} s" for label, v in src.items()
                     if v["lag_s"] is not None)
    out.append(f"event-time lag (now - watermark): {lags or '-'}")
    if status.trainer is not None:
        t = status.trainer
        decisions = ", ".join(
            f"{k.split(',')[1]} ({k.split(',')[2]}) {int(v)}" for k, v in sorted(t.items())
            if k.startswith("fishweight_trainer_decisions_total,") and v)
        out.append(f"trainer: events {int(t.get('fishweight_trainer_events_total', 0))}, "
                   f"decisions: {decisions or 'none'}; model v"
                   f"{int(t.get('fishweight_trainer_model_version', 0))} knows "
                   f"{int(t.get('fishweight_trainer_model_species', 0))} species")
    return out

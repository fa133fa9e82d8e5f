"""Prometheus: Flink's reporter in the job's configuration, and reading a scrape.

The job's metrics come from Flink's own reporter (``pyflink/plugins/metrics-prometheus``,
on every interface: Flink has no bind-address option for it); the trainer's from
``prometheus_client`` (``fishweight.jobs.trainer_metrics``). ``scrape`` reads either,
for ``fishweight status`` and the tests.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

PROMETHEUS_FACTORY = "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
# A session cluster's JobManager and each TaskManager are processes of their own: each
# takes the first free port of the range.
CLUSTER_METRICS_PORTS = 9


def prometheus_config(port: int, ports: int = 1) -> dict[str, str]:
    """Flink's Prometheus reporter (``pyflink/plugins/metrics-prometheus``) on ``port``.

    ``ports`` > 1 gives a range, for several Flink processes on one host. 0 = off.
    """
    if not port:
        return {}
    return {
        "metrics.reporters": "prom",
        "metrics.reporter.prom.factory.class": PROMETHEUS_FACTORY,
        "metrics.reporter.prom.port": str(port) if ports == 1 else f"{port}-{port + ports - 1}",
    }


@dataclass(frozen=True)
class Sample:
    """One line of a scrape: a metric name, its labels and value."""

    name: str
    labels: dict[str, str]
    value: float


def scrape(url: str, timeout_s: float = 5.0) -> list[Sample]:
    """Every sample at a Prometheus endpoint (``http://host:port/metrics``)."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - our URL
        text = response.read().decode("utf-8")
    return [Sample(s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text) for s in family.samples]


def metrics_url(port: int, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{port}/metrics"


def job_group(samples: list[Sample], group: str = "fishweight",
              job_id: str | None = None) -> dict[str, list[float]]:
    """A Flink scrape's metrics of one operator group, named as the REST API names them.

    ``flink_taskmanager_job_task_operator_fishweight_species_joinedPairs{species="walleye"}``
    becomes ``species.walleye.joinedPairs`` (the names in the group are camelCase, so
    ``_`` only separates scope parts); one value per subtask, like
    ``fishweight.runtime.flink_rest.operator_metrics``.
    """
    marker = f"_operator_{group}_"
    found: dict[str, list[float]] = {}
    for s in samples:
        if marker not in s.name or (job_id and s.labels.get("job_id") != job_id):
            continue
        parts = s.name.split(marker, 1)[1].split("_")
        if parts[0] == "species" and "species" in s.labels:
            parts.insert(1, s.labels["species"])
        found.setdefault(".".join(parts), []).append(s.value)
    return found

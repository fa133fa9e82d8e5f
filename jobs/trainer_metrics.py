"""The trainer's Prometheus metrics (``prometheus_client``), served on ``trainer_metrics_port``.

Names (all ``fishweight_trainer_*``; docs/metrics.md has the table):

- ``events_total``: retrain events received (valid ones; bad records are dead letters)
- ``decisions_total{action, reason}``: what the trainer did, by action
  (``fishweight.models.decisions.ACTIONS``) and reason (window, change, bias, refinement)
- ``decision_seconds{reason}``: fitting and gating one candidate, publishing included
- ``candidate_error``, ``current_error``: the gate's figures at the latest decision that
  had a candidate (the candidate's leave-one-out error, the current model's error)
- ``model_version``: the version ``CURRENT`` names after the latest decision
- ``records_stored_total``, ``dead_letters_total``: diffs stored; records refused
- ``store_errors_total``: store calls that failed (each is retried)

The counters are the trainer's own counts (``TrainerStats``), read at each scrape: one
count of each thing, which also covers a promotion recovered when the trainer starts.
A private registry, so several trainers (the tests) can live in one process.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from fishweight.models.decisions import Decision, TrainerStats
from fishweight.runtime.processes import PortInUse

log = logging.getLogger(__name__)

PREFIX = "fishweight_trainer"


class _StatsCollector(Collector):
    """The counters, from ``TrainerStats`` at scrape time."""

    def __init__(self, stats: TrainerStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        for name, doc, value in (
                ("events", "Retrain events received", s.retrain_events),
                ("records_stored", "Joined records stored", s.diffs_stored),
                ("dead_letters", "Records the trainer could not read", s.invalid_records),
                ("store_errors", "Store calls that failed (and were retried)",
                 s.store_errors)):
            yield CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)
        decisions = CounterMetricFamily(f"{PREFIX}_decisions", "Trainer decisions",
                                        labels=["action", "reason"])
        for reason, actions in sorted(s.decisions.items()):
            for action, n in sorted(actions.items()):
                decisions.add_metric([action, reason], n)
        yield decisions


class TrainerMetrics:
    def __init__(self, stats: TrainerStats) -> None:
        self.registry = r = CollectorRegistry()
        r.register(_StatsCollector(stats))
        self.decision_seconds = Histogram(
            f"{PREFIX}_decision_seconds", "Fitting, gating and publishing one candidate",
            ["reason"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30), registry=r)
        self.candidate_error = Gauge(f"{PREFIX}_candidate_error",
                                     "Leave-one-out error of the latest candidate", registry=r)
        self.current_error = Gauge(f"{PREFIX}_current_error",
                                   "The current model's error on the latest candidate's records",
                                   registry=r)
        self.model_version = Gauge(f"{PREFIX}_model_version", "The version CURRENT names",
                                   registry=r)
        self.model_species = Gauge(f"{PREFIX}_model_species",
                                   "Species the version CURRENT names knows (at most "
                                   "max_species are learnt)", registry=r)
        self._server: WSGIServer | None = None

    def decided(self, decision: Decision, seconds: float) -> None:
        """The figures of one decision (the decision itself is counted in the stats)."""
        if "candidate_loo" in decision.gate:
            self.decision_seconds.labels(decision.reason).observe(seconds)
            self.candidate_error.set(decision.gate["candidate_loo"])
            self.current_error.set(decision.gate["current"])
        version = decision.version or decision.current_version
        if version is not None:
            self.model_version.set(version)

    def serve(self, port: int, host: str) -> None:
        """Start the /metrics endpoint; ``PortInUse`` when the port is taken."""
        try:
            self._server, _ = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise PortInUse(f"trainer metrics port {host}:{port} is not free ({exc.strerror}); "
                            "choose another with --trainer-metrics-port or "
                            "FISHWEIGHT_TRAINER_METRICS_PORT (0 = off)") from exc
        log.info("trainer metrics on http://%s:%d/metrics", host, port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

"""The trainer's Prometheus metrics (``prometheus_client``), served on ``trainer_metrics_port``.

Names (all ``fishweight_trainer_*``; docs/metrics.md has the table):

- ``events_total``: retrain events received (valid ones; bad records are dead letters)
- ``decisions_total{action, reason}``: what the trainer did, by action
  (``fishweight.models.decisions.ACTIONS``) and reason (window, change, refinement)
- ``decision_seconds{reason}``: fitting and gating one candidate, publishing included
- ``candidate_error``, ``current_error``: the gate's figures at the latest decision that
  had a candidate (the candidate's leave-one-out error, the current model's error)
- ``model_version``: the version ``CURRENT`` names after the latest decision
- ``records_stored_total``, ``dead_letters_total``: diffs stored; records refused
- ``store_errors_total``: store calls that failed (each is retried)

A private registry, so several trainers (the tests) can live in one process.
"""

from __future__ import annotations

import logging
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from fishweight.models.decisions import Decision
from fishweight.runtime.processes import PortInUse

log = logging.getLogger(__name__)

PREFIX = "fishweight_trainer"


class TrainerMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.events = Counter(f"{PREFIX}_events", "Retrain events received", registry=r)
        self.decisions = Counter(f"{PREFIX}_decisions", "Trainer decisions",
                                 ["action", "reason"], registry=r)
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
        self.records_stored = Counter(f"{PREFIX}_records_stored", "Joined records stored",
                                      registry=r)
        self.dead_letters = Counter(f"{PREFIX}_dead_letters",
                                    "Records the trainer could not read", registry=r)
        self.store_errors = Counter(f"{PREFIX}_store_errors",
                                    "Store calls that failed (and were retried)", registry=r)
        self._server: WSGIServer | None = None

    def decided(self, decision: Decision, seconds: float) -> None:
        self.decisions.labels(decision.action, decision.reason).inc()
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

"""``fishweight demo``: the whole loop on one machine, then a report.

Starts (each as its own process, tied to this one): the embedded broker (unless
bootstrap servers are configured), the trainer and the prediction job in a local
MiniCluster with the Flink web UI; bootstraps the initial model; runs a scenario
through the simulator while a status line shows what flows; stops everything and
writes the report. Ctrl-C stops early and still writes a report of what ran.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from kafka import KafkaConsumer, TopicPartition

from fishweight.jobs.report import Observed, RunData, output_topics
from fishweight.jobs.report_files import write_report
from fishweight.jobs.simulate import SimulationResult, simulate
from fishweight.models.bootstrap import bootstrap_model
from fishweight.runtime.broker import EmbeddedBroker
from fishweight.runtime.flink_rest import local_url, wait_until_running
from fishweight.runtime.kafka import create_topics, wait_until_ready
from fishweight.runtime.processes import (
    ChildProcess,
    python_module,
    require_free_ports,
    settings_env,
)
from fishweight.runtime.settings import Settings
from fishweight.scenarios import Scenario

log = logging.getLogger(__name__)

DEFAULT_SPEED = 5.0  # the default scenario (6 min of factory time) in ~75 s


class Observer(threading.Thread):
    """Tails the output topics, keeping every record with its Kafka timestamp.

    From where the topics end when it is made (before the simulator sends): a broker
    that earlier runs wrote to (``bootstrap_servers`` set) keeps their records, which are
    not this run's.
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True, name="observer")
        self.settings = settings
        self.data = RunData()
        self.recent_errors: deque[float] = deque(maxlen=20)
        self.model_version = 0
        self.stop = threading.Event()
        self._topics = output_topics(settings)
        self.error: Exception | None = None
        self._consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                                       enable_auto_commit=False, client_id="fishweight-demo")
        parts = [TopicPartition(t, p) for t in self._topics
                 for p in sorted(self._consumer.partitions_for_topic(t) or [])]
        self._start = self._consumer.end_offsets(parts)

    def run(self) -> None:
        consumer = self._consumer
        try:
            consumer.assign(list(self._start))
            for tp, offset in self._start.items():
                consumer.seek(tp, offset)
            while not self.stop.is_set():
                for tp, messages in consumer.poll(timeout_ms=200).items():
                    target = getattr(self.data, self._topics[tp.topic])
                    for m in messages:
                        value = json.loads(m.value)
                        target.append(Observed(value, m.timestamp))
                        if tp.topic == self.settings.topic_diff:
                            self.recent_errors.append(value["Error"])
                        elif tp.topic == self.settings.topic_prediction:
                            self.model_version = max(self.model_version,
                                                     value["Prediction"]["ModelVersion"] or 0)
        except Exception as exc:  # surfaced by the demo loop
            self.error = exc
            raise
        finally:
            consumer.close()

    def drain(self, seconds: float = 2.0) -> None:
        """Give the tail a moment, then stop."""
        time.sleep(seconds)
        self.stop.set()
        self.join(10)


@dataclass
class DemoResult:
    run_dir: Path
    summary: dict | None
    completed: bool
    simulation: SimulationResult | None


class StatusLine:
    """One updating line on a terminal; a line every few seconds otherwise."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self._last = 0.0

    def show(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            self.out.write("\r\033[K" + text)
            self.out.flush()
        elif force or now - self._last >= 5:
            self.out.write(text + "\n")
            self.out.flush()
            self._last = now

    def end(self) -> None:
        if self.tty:
            self.out.write("\n")


def run_demo(settings: Settings, scenario: Scenario, speed: float, run_dir: Path,
             stop: threading.Event, out: TextIO = sys.stdout,
             finish_timeout_s: float = 90, start_ms: int | None = None) -> DemoResult:
    """Run the whole loop: broker, model, trainer, job, simulator, report.

    ``start_ms`` is the first measurement's event time (default: now, or earlier when the
    run is faster than real time, so that the last record time is now:
    ``simulate.default_start_ms``; tests choose it to place a drift at a given point of a
    window).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    say = lambda text: print(text, file=out, flush=True)  # noqa: E731
    require_free_ports(settings, "web_ui_port", "metrics_port", "trainer_metrics_port")
    broker = None
    children: list[ChildProcess] = []
    observer = None
    sim_result: SimulationResult | None = None
    completed = False
    try:
        if settings.bootstrap_servers:
            wait_until_ready(settings.bootstrap_servers)
        else:
            broker = EmbeddedBroker(log_path=run_dir / "broker.log").start()
            settings = settings.replace(bootstrap_servers=broker.bootstrap_servers)
            say(f"embedded Kafka broker (Tansu) on {broker.bootstrap_servers}")
        create_topics(settings.bootstrap_servers, settings.all_topics, settings.topic_partitions,
                      settings.topic_replication_factor)
        version, scores = bootstrap_model(settings, scenario)  # the scenario's salmon
        if version:
            say(f"initial model v{version}: 100 salmon, R^2 {scores['r2']:.3f}, "
                f"MAE {scores['mae']:.3f} kg")
        trainer = ChildProcess("trainer", python_module("fishweight.jobs.cli", "train"),
                               run_dir / "trainer.log", settings_env(settings, trainer=True))
        trainer.start()
        predict = ChildProcess("prediction job", python_module("fishweight.jobs.cli", "predict"),
                               run_dir / "predict.log", settings_env(settings, trainer=False))
        predict.start()
        children += [predict, trainer]
        if settings.web_ui_port:
            say(f"Flink web UI: http://localhost:{settings.web_ui_port}  (while the job runs; "
                "`fishweight status` in another terminal)")
        for what, port in (("job", settings.metrics_port),
                           ("trainer", settings.trainer_metrics_port)):
            if port:
                say(f"Prometheus metrics of the {what}: http://127.0.0.1:{port}/metrics")
        say("starting the prediction job (Flink MiniCluster) ...")
        job_id = None
        if settings.web_ui_port:
            def predict_alive() -> None:
                if predict.exited() is not None:
                    raise RuntimeError(f"the prediction job exited with code "
                                       f"{predict.exited()}; see {predict.log_path}")
            try:
                job_id = wait_until_running(local_url(settings.web_ui_port),
                                            alive=predict_alive)
            except TimeoutError as exc:
                raise TimeoutError(f"{exc}; see {predict.log_path}") from exc
        pace = (f"{speed}x ({scenario.duration_s / speed:.0f} s)" if speed > 0
                else "as fast as possible")
        say(f"prediction job {job_id or ''} running; sending {scenario.fish_count} fish at "
            f"{pace}")

        observer = Observer(settings)
        observer.start()
        sent = {"measurement": 0, "weight": 0}

        def count(kind, _record):
            sent[kind] += 1

        sim_error: list[BaseException] = []

        def send():
            nonlocal sim_result
            try:
                sim_result = simulate(settings, settings.bootstrap_servers, scenario,
                                      speed=speed, start_ms=start_ms, stop=stop,
                                      on_record=count)
            except BaseException as exc:  # the demo's loop reports it and stops
                sim_error.append(exc)

        simulator = threading.Thread(target=send, daemon=True, name="simulator")
        simulator.start()
        status = StatusLine(out)
        finished_at = None
        while not stop.is_set():
            d = observer.data
            recent = list(observer.recent_errors)
            line = (f"fish {sent['measurement']}/{scenario.fish_count} | predicted "
                    f"{len(d.predictions)} | joined {len(d.diffs)} | windows {len(d.windows)} | "
                    f"retrain events {len(d.retrains)} | model v{observer.model_version} | "
                    f"recent error {sum(recent) / len(recent) if recent else 0:.3f} | "
                    f"dead letters {len(d.dead_letters)}")
            status.show(line)
            for child in children:
                if child.exited() is not None:
                    raise RuntimeError(f"{child.name} exited with code {child.exited()}; "
                                       f"see {child.log_path}")
            if observer.error:
                raise observer.error
            if sim_error:
                raise RuntimeError(f"the simulator stopped: {sim_error[0]}") from sim_error[0]
            if broker is not None and broker.exited() is not None:
                raise RuntimeError(f"the embedded broker exited with code {broker.exited()}; "
                                   f"see {run_dir / 'broker.log'}")
            if not simulator.is_alive() and sim_result is not None:
                finished_at = finished_at or time.monotonic()
                done = (len(d.predictions) + d.dead_letters_from(settings.topic_measurement)
                        >= sim_result.measurements
                        and len(d.diffs) + d.unmatched_of("weight")
                        + d.dead_letters_from(settings.topic_weight) >= sim_result.weights)
                if done or time.monotonic() - finished_at > finish_timeout_s:
                    completed = done
                    status.show(line, force=True)
                    break
            time.sleep(0.5)
        status.end()
    finally:
        stop.set()
        for child in children:
            child.stop()
        if observer is not None:
            observer.drain()
        if broker is not None:
            broker.stop()

    summary = None
    if observer is not None:
        data = observer.data
        data.produced = {"measurements": sim_result.measurements if sim_result else 0,
                         "weights": sim_result.weights if sim_result else 0}
        data.attach_state(settings)
        data.save(run_dir)
        summary = write_report(data, scenario, settings, run_dir)
    return DemoResult(run_dir, summary, completed, sim_result)


def read_run_from_kafka(settings: Settings) -> RunData:
    """The output topics of a finished run, re-read from a Kafka that still holds them."""
    from fishweight.runtime.kafka import read_topic

    data = RunData.from_kafka(settings)
    data.produced = {
        "measurements": len(read_topic(settings.bootstrap_servers, settings.topic_measurement)),
        "weights": len(read_topic(settings.bootstrap_servers, settings.topic_weight)),
    }
    data.attach_state(settings)
    return data

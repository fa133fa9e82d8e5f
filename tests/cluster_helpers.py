"""Helpers for tests against a local session cluster: submit with ``flink run``, wait,
kill a TaskManager, and a feeder that sends measurements and, a little later, weights."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from kafka import KafkaProducer

from fishweight.runtime.processes import cmdline, descendants, inherit_env
from fishweight.runtime.settings import Settings

REPO = Path(__file__).resolve().parent.parent


def job_options(settings: Settings) -> list[str]:
    """Every setting that differs from its default, as ``jobs/predict.py`` options."""
    args = []
    for f in dataclasses.fields(Settings):
        value = getattr(settings, f.name)
        if f.name == "state_dir":
            value = str(Path(value).resolve())
        elif value == f.default:
            continue
        args += [f"--{f.name.replace('_', '-')}", str(value)]
    return args


def submit(settings: Settings, flink: Path) -> str:
    """``flink run -d -py jobs/predict.py ...`` as the README says; the job id."""
    done = subprocess.run([str(flink), "run", "-d", "-py", "jobs/predict.py",
                           *job_options(settings)],
                          cwd=REPO, env=inherit_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (job_id,) = [line.split()[-1] for line in done.stdout.splitlines()
                 if line.startswith("submitted prediction job")]
    return job_id


def wait(what: str, condition, timeout_s: float, every_s: float = 1.0):
    """``condition()``'s first truthy value, polled; an AssertionError after the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def python_workers(pid: int) -> list[int]:
    """The PyFlink UDF worker processes below ``pid`` (a TaskManager's JVM, or a test
    process whose MiniCluster runs them), never the JVM itself."""
    return [child for child in descendants(pid)
            if any("pyflink.fn_execution" in arg or "pyflink-udf-runner" in arg
                   for arg in cmdline(child))]


def kill_process_tree(pid: int) -> list[int]:
    """SIGKILL a process and everything below it at once (a machine lost, not a stop)."""
    victims = [pid, *descendants(pid)]
    for victim in victims:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return victims


class FishStream(threading.Thread):
    """Salmon measurements every ``every_s`` and each fish's weight ``weight_after_s`` later,
    stamped with the time they are sent (record timestamp and payload ``Timestamp``).

    ``weight`` makes every prediction of the bootstrapped model ~55 % off, so every
    window crosses the threshold and fires a retrain event.
    """

    def __init__(self, settings: Settings, every_s: float = 0.1, weight_after_s: float = 1.0,
                 weight: float = 2.0, first_id: int = 1):
        super().__init__(daemon=True)
        self.settings, self.every_s, self.weight_after_s = settings, every_s, weight_after_s
        self.weight, self.next_id = weight, first_id
        self.measured: dict[int, int] = {}   # Fish_Id -> event time (ms)
        self.weighed: dict[int, int] = {}
        self.stop = threading.Event()

    def _send(self, producer, topic: str, record: dict, now_ms: int) -> None:
        producer.send(topic, key=str(record["Fish_Id"]).encode(),
                      value=json.dumps(record).encode(), timestamp_ms=now_ms).get(10)

    def run(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.settings.bootstrap_servers, linger_ms=0)
        pending: list[tuple[float, int]] = []
        while not self.stop.is_set() or pending:
            now, now_ms = time.monotonic(), int(time.time() * 1000)
            if not self.stop.is_set():
                fish_id, self.next_id = self.next_id, self.next_id + 1
                self._send(producer, self.settings.topic_measurement, {
                    "Species": "salmon", "Fish_Id": fish_id, "Length": 85.0 + fish_id % 7,
                    "Height": 19.0, "Timestamp": now_ms}, now_ms)
                self.measured[fish_id] = now_ms
                pending.append((now + self.weight_after_s, fish_id))
            while pending and (pending[0][0] <= now or self.stop.is_set()):
                _, fish_id = pending.pop(0)
                self._send(producer, self.settings.topic_weight, {
                    "Species": "salmon", "Fish_Id": fish_id, "Weight": self.weight,
                    "Timestamp": now_ms}, now_ms)
                self.weighed[fish_id] = now_ms
            time.sleep(self.every_s)
        producer.close()

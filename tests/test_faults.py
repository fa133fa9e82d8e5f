"""Faults: the Python UDF workers die under a running job.

The job must recover by itself (Flink restarts it from its last checkpoint) and predict
every measurement, before and after the fault (at least once: with at-least-once sinks
a record processed after the last checkpoint and before the fault may be predicted
again after the restart).
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from fishweight.jobs.predict import build_pipeline
from fishweight.models.bootstrap import bootstrap_model
from fishweight.runtime.flink_rest import completed_checkpoints, local_url, rest
from fishweight.runtime.processes import free_port
from tests.cluster_helpers import python_workers, wait
from tests.conftest import fresh_settings
from tests.live_helpers import Feeder, PredictionReader

pytestmark = pytest.mark.slow  # a real broker and MiniCluster


def _rest(port: int, path: str):
    return rest(local_url(port), path, timeout_s=10)


def test_killed_python_workers_lose_no_prediction(kafka, tmp_path):
    port = free_port()
    settings = fresh_settings(kafka, tmp_path / "state", web_ui_port=port,
                              checkpoint_interval_s=2.0)
    bootstrap_model(settings)
    job = build_pipeline(settings).execute_async()
    job_id = str(job.get_job_id())
    feeder, reader = Feeder(settings, every_s=0.05), PredictionReader(settings)
    feeder.start()
    try:
        assert reader.wait_for(lambda: len(reader.versions) >= 40, 120), "no predictions"
        wait("a checkpoint completed",
             lambda: completed_checkpoints(local_url(port), job_id) >= 1, 60, every_s=0.5)
        workers = python_workers(os.getpid())
        assert workers, "found no Python worker to kill"
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        killed_at = feeder.sent_at and max(feeder.sent_at)

        time.sleep(10)  # fish keep coming after the fault
    finally:
        feeder.stop.set()
        feeder.join()
    sent = set(feeder.sent_at)
    assert reader.wait_for(lambda: sent <= {f for f, _ in reader.versions}, 120), (
        f"{len(sent - {f for f, _ in reader.versions})} of {len(sent)} fish never predicted")
    assert max(sent) > killed_at  # fish sent after the fault were predicted too
    restarts = _rest(port, f"/jobs/{job_id}/metrics?get=numRestarts")
    print(f"\nkilled {len(workers)} Python worker processes; restarts: {restarts}; "
          f"{len(sent)} fish sent, all predicted")
    assert str(job.get_job_status().result()).endswith("RUNNING")
    job.cancel().result()

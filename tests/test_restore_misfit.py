"""A snapshot that does not fit: ``fishweight predict`` resumes from the newest snapshot by
default, and a snapshot taken by a job with other operators (another release, settings that
change the job graph) cannot be restored. The start must fail with the reason and the fix
in one line (the CLI prints it and exits 2), not with a Java stack."""

from __future__ import annotations

import threading

import pytest

from fishweight.jobs.bench.throughput import passthrough_statements
from fishweight.jobs.predict import run_local, stop_job
from fishweight.models.bootstrap import bootstrap_model
from fishweight.runtime import SnapshotMisfit
from fishweight.runtime.flink_env import latest_snapshot

pytestmark = pytest.mark.slow  # a real broker, two jobs


def test_a_snapshot_of_another_job_graph_fails_the_start_with_the_fix(settings):
    bootstrap_model(settings)
    # Another job graph (the bench's raw passthrough) stopped with a savepoint where the
    # prediction job looks for its snapshots.
    other = passthrough_statements(settings, None).execute().get_job_client()
    savepoint = stop_job(other)
    assert savepoint is not None and latest_snapshot(settings.resolved_checkpoint_uri)

    stop = threading.Event()
    threading.Timer(60, stop.set).start()  # should the job start after all: stop it
    with pytest.raises(SnapshotMisfit) as misfit:
        run_local(settings, stop)
    stop.set()
    message = str(misfit.value)
    assert message.startswith("the snapshot to restore (") and savepoint.removeprefix(
        "file:") in message
    assert "--resume-from none starts empty" in message and "Cannot map checkpoint" in message
    assert "\n" not in message  # one line: no Java stack

"""A TaskManager lost mid-stream: the job at parallelism 2 on two TaskManagers of a
session cluster, a steady stream of fish with weights, one TaskManager's JVM and its
Python workers SIGKILLed, a replacement started.

Checked: the job runs every task again (the time is printed), every fish sent is
predicted and joined at least once and the replay's duplicates are counted, the trainer
stores every joined fish once, no closed window and no retrain event is lost, the job
restarted as often as the fault explains. With ``exactly-once`` sinks the outputs are
read as the trainer reads them (``read_committed``) and the duplicates counted again.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest

from fishweight.models.bootstrap import bootstrap_model
from fishweight.runtime import cluster
from fishweight.runtime.flink_rest import (
    all_tasks_running,
    completed_checkpoints,
    job_metric,
    rest,
)
from fishweight.runtime.kafka import read_topic
from fishweight.runtime.processes import free_port
from tests.cluster_helpers import FishStream, kill_process_tree, python_workers, submit, wait
from tests.conftest import fresh_settings
from tests.crash_sweep import stored_by_trainer

pytestmark = [pytest.mark.slow, pytest.mark.extended]  # a session cluster, ~3 min each


def _read(settings, topic: str, expected: int,
          isolation: str = "read_uncommitted") -> list[dict]:
    """Everything the job wrote to ``topic`` (every record, whatever its transaction)."""
    records = read_topic(settings.bootstrap_servers, topic, expected=expected, idle_s=20,
                         timeout_s=180, isolation_level=isolation)
    more = read_topic(settings.bootstrap_servers, topic, idle_s=5, timeout_s=60,
                      isolation_level=isolation)  # anything late, e.g. a duplicate
    return [json.loads(r.value) for r in max(records, more, key=len)]


def _committed_view(settings, topic: str, written: set[int]) -> tuple[int, int, int]:
    """What a read_committed reader sees of ``topic``: records, duplicates, fish missing.

    Counted, not asserted: on the embedded broker a transaction of the lost TaskManager
    can stay open, and a read_committed reader then sees nothing after it (docs/faults.md).
    """
    seen = Counter(r["Fish_Id"] for r in _read(settings, topic, len(written),
                                               "read_committed"))
    return sum(seen.values()), sum(seen.values()) - len(seen), len(written - set(seen))


def _restarting_since(url: str, job_id: str) -> int:
    try:
        return rest(url, f"/jobs/{job_id}")["timestamps"].get("RESTARTING", 0)
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_a_lost_taskmanager_loses_no_fish_window_or_event(kafka, tmp_path, guarantee):
    settings = fresh_settings(kafka, tmp_path / "state", web_ui_port=free_port(),
                              parallelism=2, taskmanagers=2, checkpoint_interval_s=2.0,
                              window_s=10, join_bound_s=5, join_before_s=5,
                              delivery_guarantee=guarantee)
    bootstrap_model(settings)
    started = cluster.start(settings)
    url, paths = started.status.url, started.paths
    stream = FishStream(settings)
    try:
        assert len(cluster.owned_pids(paths, "taskmanager")) == 2
        job_id = submit(settings, paths.flink)
        wait("the job's tasks RUNNING", lambda: all_tasks_running(url, job_id), 120)
        stream.start()
        wait("fish flowing and two checkpoints", lambda: len(stream.weighed) > 100
             and completed_checkpoints(url, job_id) >= 2, 120)
        victim = next(pid for pid in cluster.owned_pids(paths, "taskmanager")
                      if python_workers(pid))
        killed = kill_process_tree(victim)
        killed_at, fish_at_kill = time.monotonic(), stream.next_id - 1
        replacement = threading.Thread(target=cluster.add_taskmanager, args=(settings,))
        replacement.start()  # meanwhile the job restarts on the other one's free slots
        # The job's own record of entering RESTARTING (REST's metric fetcher may still be
        # asking the lost TaskManager right now).
        wait("the job to restart", lambda: _restarting_since(url, job_id), 180, 0.5)
        wait("every task RUNNING again", lambda: all_tasks_running(url, job_id), 180, 0.5)
        recovery_s = time.monotonic() - killed_at
        replacement.join(120)
        assert len(cluster.owned_pids(paths, "taskmanager")) == 2  # the survivor and the new
        time.sleep(25)  # fish keep coming after the recovery; windows close
    finally:
        stream.stop.set()
        stream.join(60)
    try:
        measured, weighed = set(stream.measured), set(stream.weighed)
        assert max(measured) > fish_at_kill + 100  # the stream went on well past the fault
        predictions = _read(settings, settings.topic_prediction, len(measured))
        predicted = Counter(p["Fish_Id"] for p in predictions)
        assert measured <= set(predicted), f"{len(measured - set(predicted))} never predicted"
        # A weight the stream itself sent more than the join bound after its measurement
        # cannot join: the job must report both records unmatched instead. (In one CI run
        # two fish had no diff while the test's Kafka client logged a 3.2 s stall as the
        # replacement TaskManager started; stamped when sent, a weight then lags its fish.)
        apart = {i for i in weighed
                 if stream.weighed[i] - stream.measured[i] > 1000 * settings.join_bound_s}
        diffs = _read(settings, settings.topic_diff, len(weighed - apart))
        joined = Counter(d["Fish_Id"] for d in diffs)
        assert weighed - apart <= set(joined), \
            f"{len(weighed - apart - set(joined))} never joined"
        if apart:
            unmatched = {(u["Kind"], u["Fish_Id"]) for u in _read(
                settings, settings.topic_unmatched, 2 * len(apart))}
            missing = {(kind, i) for i in apart for kind in ("measurement", "weight")}
            assert missing <= unmatched, f"neither joined nor unmatched: {missing - unmatched}"

        # Closed windows: every fish weighed well before the last watermark is in one.
        windows = _read(settings, settings.topic_windows, 1)
        closed = {(w["WindowStart"], tuple(w["Species"])): w for w in windows}
        cutoff = max(stream.weighed.values()) - 1000 * (
            settings.window_s + settings.join_bound_s + settings.watermark_delay_s + 5)
        in_windows = {i for w in closed.values()
                      for i in range(w["Fish_Id_Start"], w["Fish_Id_End"] + 1)}
        due = {i for i, t in stream.weighed.items() if t < cutoff and i not in apart}
        assert due and due <= in_windows, f"fish {sorted(due - in_windows)[:10]} in no window"
        # Every window over the threshold fired its retrain event.
        events = _read(settings, settings.topic_retrain, 1)
        fired = {(e["WindowStart"], tuple(e["Species"])) for e in events
                 if e["Rule"] == "window"}
        crossing = {k for k, w in closed.items() if w["ErrorAvg"] > settings.error_threshold
                    and w["Count"] >= settings.min_window_count}
        assert crossing and crossing <= fired, sorted(crossing - fired)

        # The trainer stores each joined fish once, whatever was replayed.
        committed = ""
        if guarantee == "exactly-once":
            # It reads read_committed here: each fish it can see, once.
            views = {name: _committed_view(settings, topic, written) for name, topic, written
                     in (("predictions", settings.topic_prediction, measured),
                         ("joined", settings.topic_diff, weighed - apart))}
            stored = stored_by_trainer(settings, wait_for_all=False)
            assert stored == len(weighed - apart) - views["joined"][2]
            committed = "; read_committed: " + ", ".join(
                f"{name} {n} ({dup} duplicates, {missing} fish not visible)"
                for name, (n, dup, missing) in views.items())
        else:
            stored = stored_by_trainer(settings)
            assert stored == len(joined)

        # Each failure the job recovered from is one restart (Flink's exception history;
        # the numRestarts metric over REST read 0 after such a recovery in one run).
        history = rest(url, f"/jobs/{job_id}/exceptions")["exceptionHistory"]["entries"]
        restarts = len(history)
        assert 1 <= restarts <= settings.restart_attempts, history
        causes = Counter(e["exceptionName"].rsplit(".", 1)[-1] for e in history)
        assert all_tasks_running(url, job_id)
        print(f"\n{guarantee}: killed TaskManager {victim} and {len(killed) - 1} processes "
              f"below it; every task RUNNING again after {recovery_s:.1f} s; "
              f"restarts {restarts} ({dict(causes)}; numRestarts metric "
              f"{job_metric(url, job_id, 'numRestarts')}); {len(measured)} fish measured, "
              f"{len(predictions)} predictions ({len(predictions) - len(predicted)} "
              f"duplicates), {len(diffs)} joined ({len(diffs) - len(joined)} duplicates; "
              f"{len(apart)} weights sent beyond the join bound, reported unmatched), "
              f"{len(closed)} windows ({len(windows) - len(closed)} duplicates), "
              f"{len(events)} retrain events, {stored} stored once each{committed}")
    finally:
        cluster.stop(settings, savepoint=False)

"""The job on a real standalone session cluster, submitted with ``flink run`` as the
README says: RUNNING over REST, hostile input survives with zero restarts, predictions,
diffs and a retrain event arrive, a newly published model is served, the pipeline
metrics are read through the REST API, and a stop with a savepoint resumes.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from fishweight.models.bootstrap import bootstrap_model
from fishweight.models.registry import ModelRegistry
from fishweight.runtime import cluster
from fishweight.runtime.flink_rest import all_tasks_running, operator_metrics, rest, stop_job
from fishweight.runtime.kafka import produce, read_topic
from fishweight.runtime.processes import free_port
from tests.cluster_helpers import submit, wait
from tests.conftest import fresh_settings
from tests.live_helpers import two_species_model

pytestmark = pytest.mark.slow  # a real broker and a Flink cluster

NOW_MS = int(time.time() * 1000)
GOOD = {"Species": "salmon", "Fish_Id": 9000, "Length": 88.0, "Height": 19.0,
        "Timestamp": NOW_MS}


def _with(**changes) -> bytes:
    record = {**GOOD, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not ...}).encode()


# Hostile measurements, one per kind of trouble; each must become one dead letter.
HOSTILE_MEASUREMENTS = [
    None,                                            # tombstone
    b"",                                             # empty
    b"\x00\xff\xfe garbage",                         # not UTF-8
    b"[" * 1000 + b"]" * 1000,                       # nested too deeply
    b"x" * 5000,                                     # too large
    b"not json", b"{broken", b"null", b'"a string"', b"[1, 2]",
    "\ufeff".encode() + _with(),                     # byte-order mark
    _with(Height=...),                               # missing field
    _with(Length="88"), _with(Fish_Id="7.0"), _with(Fish_Id=True), _with(Species=5),
    b'{"Species":"salmon","Fish_Id":9001,"Length":NaN,"Height":19,"Timestamp":%d}' % NOW_MS,
    b'{"Species":"salmon","Fish_Id":9002,"Length":Infinity,"Height":19,"Timestamp":%d}'
    % NOW_MS,
    _with(Fish_Id=9003, Length=-5.0), _with(Fish_Id=9004, Height=0),
    _with(Fish_Id=9005, Length=1e308), _with(Fish_Id=9006, Height=201.0),
    _with(Species=""), _with(Species="s" * 100), _with(Species="sal\u0000mon"),
    _with(Fish_Id=2**63), _with(Fish_Id=-1), _with(Timestamp="now"),
    _with(Fish_Id=9007, Timestamp=NOW_MS + 30 * 86_400_000),   # implausible time
    b'{"Species":"salmon","Fish_Id":9008,"Length":1%s,"Height":19,"Timestamp":%d}'
    % (b"0" * 400, NOW_MS),                                     # float overflow
]
HOSTILE_WEIGHTS = [
    b"{broken", _with(Weight=0), _with(Weight="heavy"), _with(Weight=-1.0),
    b'{"Species":"salmon","Fish_Id":9000,"Timestamp":%d}' % NOW_MS,
]


def _rest(url: str, path: str, **kwargs):
    return rest(url, path, **kwargs)


def _metrics(url: str, job_id: str) -> dict[str, float]:
    """Every ``fishweight`` metric of the job, summed over subtasks, by name."""
    return {name: sum(values) for name, values in operator_metrics(url, job_id).items()}


def _fish(first_id: int, n: int, weight: float | None = 2.0):
    """n salmon measurements now, and weights that make every prediction ~130 % off."""
    now = int(time.time() * 1000)
    measurements = [{"Species": "salmon", "Fish_Id": i, "Length": 88.0 + i % 5,
                     "Height": 19.0, "Timestamp": now + i} for i in range(first_id,
                                                                         first_id + n)]
    weights = [{"Species": "salmon", "Fish_Id": m["Fish_Id"], "Weight": weight,
                "Timestamp": now + 500 + m["Fish_Id"]} for m in measurements]
    return measurements, weights


def test_flink_run_on_a_session_cluster(kafka, tmp_path):
    settings = fresh_settings(kafka, tmp_path / "state", web_ui_port=free_port(),
                              parallelism=2)
    bootstrap_model(settings)
    started = cluster.start(settings)
    url, paths = started.status.url, started.paths
    try:
        job_id = submit(settings, paths.flink)
        wait("the job's tasks RUNNING", lambda: all_tasks_running(url, job_id), 120)

        # Hostile input first: the job must keep running, with no restart.
        produce(kafka, settings.topic_measurement, HOSTILE_MEASUREMENTS,
                keys=[f"hostile-{i}" for i in range(len(HOSTILE_MEASUREMENTS))])
        produce(kafka, settings.topic_weight, HOSTILE_WEIGHTS)
        measurements, weights = _fish(1, 12)
        keys = [m["Fish_Id"] for m in measurements]
        produce(kafka, settings.topic_measurement, measurements + [measurements[0]],
                keys=keys + keys[:1])  # and one duplicate
        time.sleep(1.0)
        produce(kafka, settings.topic_weight, weights, keys=keys)

        predictions = read_topic(kafka, settings.topic_prediction, expected=12, idle_s=30,
                                 timeout_s=120)
        assert sorted(json.loads(p.value)["Fish_Id"] for p in predictions) == keys
        diffs = read_topic(kafka, settings.topic_diff, expected=12, idle_s=30, timeout_s=120)
        assert sorted(json.loads(d.value)["Fish_Id"] for d in diffs) == keys
        retrains = read_topic(kafka, settings.topic_retrain, expected=1, idle_s=30,
                              timeout_s=120)
        assert json.loads(retrains[0].value)["ErrorAvg"] > settings.error_threshold
        hostile = len(HOSTILE_MEASUREMENTS) + len(HOSTILE_WEIGHTS) + 1  # + the duplicate
        letters = read_topic(kafka, settings.topic_dead_letter, expected=hostile, idle_s=30,
                             timeout_s=120)
        reasons = Counter(json.loads(d.value)["Reason"].split(":")[0] for d in letters)
        assert len(letters) == hostile, reasons

        # A model published now is served by the cluster's job.
        registry = ModelRegistry.for_settings(settings)
        assert registry.publish(two_species_model(), {"species": ["salmon", "walleye"]}) == 2
        time.sleep(2 * settings.model_poll_s + 1)
        later, _ = _fish(100, 5)
        produce(kafka, settings.topic_measurement, later, keys=[m["Fish_Id"] for m in later])
        served = read_topic(kafka, settings.topic_prediction, expected=17, idle_s=30,
                            timeout_s=120)
        versions = {json.loads(p.value)["Fish_Id"]: json.loads(p.value)["Prediction"][
            "ModelVersion"] for p in served}
        assert {versions[m["Fish_Id"]] for m in later} == {2}

        # The pipeline's metrics, through the REST API.
        def metrics_caught_up():
            m = _metrics(url, job_id)
            dead = sum(v for k, v in m.items() if k.startswith("deadLetters."))
            ok = (m.get("predictions", 0) >= 17 and m.get("joinedPairs", 0) >= 12
                  and m.get("retrainEvents", 0) >= 1 and dead >= hostile
                  and m.get("modelVersion", 0) * 1 >= 2)
            return m if ok else None

        metrics = wait("the pipeline metrics over REST", metrics_caught_up, 90, 3.0)
        print("\nfishweight metrics read over REST:")
        for name in sorted(metrics):
            print(f"  {name} = {metrics[name]:g}")
        assert metrics["deadLetters.duplicateFishId"] == 1
        assert metrics["deadLetters.notJson"] >= 4 and metrics["deadLetters.notUtf8"] == 1
        assert metrics["modelRefusals"] == 0 and metrics["modelSwaps"] >= 1
        restarts = _rest(url, f"/jobs/{job_id}/metrics?get=numRestarts")
        assert restarts == [{"id": "numRestarts", "value": "0"}], restarts
        assert all_tasks_running(url, job_id)

        # Stop with a savepoint, submit again: it resumes from the savepoint.
        (stopped,) = [stop_job(url, {"jid": job_id, "state": "RUNNING"},
                                settings.resolved_checkpoint_uri + "/savepoints", 120)]
        assert "savepoint" in stopped and "failed" not in stopped, stopped
        resumed = submit(settings, paths.flink)
        wait("the resumed job RUNNING", lambda: all_tasks_running(url, resumed), 120)
        restored = _rest(url, f"/jobs/{resumed}/checkpoints")["latest"]["restored"]
        assert restored["is_savepoint"] is True, restored
        after, _ = _fish(200, 4)
        produce(kafka, settings.topic_measurement, after, keys=[m["Fish_Id"] for m in after])
        everything = read_topic(kafka, settings.topic_prediction, expected=21, idle_s=30,
                                timeout_s=120)
        counts = Counter(json.loads(p.value)["Fish_Id"] for p in everything)
        assert max(counts.values()) == 1, "a measurement was predicted again after resuming"
        assert set(counts) == set(keys) | {m["Fish_Id"] for m in later + after}
    finally:
        cluster.stop(settings, savepoint=False)
    assert not cluster.status(settings).running

"""The prediction job against a real broker: the plan of ``tests/pipeline_plan.py`` produced
to 3-partition topics and read back with a bounded Kafka source, at parallelism 2
(the fast tier runs the same checks on in-memory rows at parallelism 1 and 2).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from fishweight.jobs.predict import build_pipeline
from fishweight.jobs.report import RunData
from fishweight.models.bootstrap import bootstrap_model
from fishweight.models.registry import ModelRegistry
from fishweight.runtime.kafka import produce
from tests.conftest import fresh_settings
from tests.pipeline_helpers import Sent, run_bounded
from tests.pipeline_plan import CHECKS, PlanRun, build_plan

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(kafka, tmp_path_factory):
    settings = fresh_settings(kafka, tmp_path_factory.mktemp("state"), parallelism=2,
                              min_window_count=5)
    bootstrap_model(settings)
    model = ModelRegistry.for_settings(settings).load_current()
    plan = build_plan(model.estimator)
    outputs = run_bounded(settings, plan.measurements, plan.weights)
    return PlanRun(settings, model, plan, outputs)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_job_over_kafka(run, check):
    check(run)


def test_the_tutorials_two_records_give_a_prediction_and_a_diff(kafka, tmp_path):
    """The records the tutorial's article shows its producers writing, byte for byte:
    a String key, Fish_Id a string, no Timestamp (the Kafka record time is the event
    time, as in ksqlDB)."""
    settings = fresh_settings(kafka, tmp_path / "state")
    bootstrap_model(settings)
    measured_ms = 1_700_000_040_000
    outputs = run_bounded(
        settings,
        [Sent(b'{ "Species": "salmon", "Fish_Id": "1", "Length": 86.370, "Height": 18.740 }',
              measured_ms, key="1")],
        [Sent(b'{ "Species": "salmon", "Fish_Id": "1", "Weight": 4.43990 }',
              measured_ms + 10_000, key="1")])
    assert outputs.values("dead_letters") == []
    (prediction,) = outputs.values("predictions")
    assert (prediction["Fish_Id"], prediction["Timestamp"]) == (1, measured_ms)
    assert prediction["Prediction"]["ModelVersion"] == 1
    assert (prediction["Length"], prediction["Height"]) == (86.37, 18.74)
    (diff,) = outputs.values("diffs")
    assert (diff["Fish_Id"], diff["ActualWeight"]) == (1, 4.4399)
    assert diff["PredictedWeight"] == prediction["Prediction"]["Weight"]
    assert diff["Timestamp"] == measured_ms + 10_000
    assert outputs.values("unmatched") == []


def test_a_record_time_far_ahead_of_the_clock_cannot_stall_the_stream(kafka, tmp_path):
    """Event time is the Kafka record time, so one producer whose clock is a day ahead
    (or that sends microseconds as milliseconds) would move its partition's watermark a
    day on: every later record there would be late and find no partner. Such a record is
    a dead letter instead, and the fish after it on every partition are predicted and
    joined as if it had never come. A running job: the watermark has to pass."""
    settings = fresh_settings(kafka, tmp_path / "state")
    bootstrap_model(settings)
    job = build_pipeline(settings).execute_async()
    future = list(range(1001, 1013))  # keys enough to reach every one of the 3 partitions
    fish = list(range(1, 21))
    bodies = {"measurement": {"Length": 88.0, "Height": 19.0}, "weight": {"Weight": 4.6}}
    topics = {"measurement": settings.topic_measurement, "weight": settings.topic_weight}

    def send(ids: list[int], times_ms: dict[str, int]) -> None:
        for kind, topic in topics.items():
            produce(settings.bootstrap_servers, topic,
                    [json.dumps({"Species": "salmon", "Fish_Id": str(i), **bodies[kind]}).encode()
                     for i in ids], keys=[str(i) for i in ids],
                    timestamps=[times_ms[kind] + 100 * n for n, _ in enumerate(ids)])

    def wait_for(output: str, count: int) -> RunData:
        deadline = time.monotonic() + 120
        while True:
            outputs = RunData.from_kafka(settings, idle_s=1.0)
            if len(outputs.values(output)) >= count or time.monotonic() > deadline:
                return outputs

    try:
        ahead_ms = int(time.time() * 1000) + 86_400_000
        send(future, {"measurement": ahead_ms, "weight": ahead_ms})
        wait_for("dead_letters", 2 * len(future))
        time.sleep(1.0)  # the sources' watermarks are emitted every 200 ms
        now_ms = int(time.time() * 1000)
        send(fish, {"measurement": now_ms, "weight": now_ms + 10_000})
        outputs = wait_for("diffs", len(fish))
    finally:
        job.cancel().result()
    assert sorted(d["Fish_Id"] for d in outputs.values("diffs")) == fish
    assert sorted(p["Fish_Id"] for p in outputs.values("predictions")) == fish
    dead = outputs.values("dead_letters")
    assert sorted((d["SourceTopic"], d["Fish_Id"]) for d in dead) == sorted(
        [(settings.topic_measurement, i) for i in future]
        + [(settings.topic_weight, i) for i in future])
    assert {d["Reason"] for d in dead} == {
        "implausible Timestamp: the Kafka record time was more than 3600 s ahead of the "
        "job's clock on arrival"}
    assert {d["KafkaTimestamp"][:16] for d in dead} == {
        datetime.fromtimestamp(ahead_ms / 1000, UTC).isoformat()[:16]}
    assert outputs.values("unmatched") == []

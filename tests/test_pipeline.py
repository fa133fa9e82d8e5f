"""The prediction job against a real broker: the plan of ``tests/pipeline_plan.py`` produced
to 3-partition topics and read back with a bounded Kafka source, at parallelism 2
(the fast tier runs the same checks on in-memory rows at parallelism 1 and 2).
"""

from __future__ import annotations

import pytest

from fishweight.models.bootstrap import bootstrap_model
from fishweight.models.registry import ModelRegistry
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

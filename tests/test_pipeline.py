"""The prediction job against a real broker: the plan of ``tests/pipeline_plan.py`` produced
to 3-partition topics and read back with a bounded Kafka source, at parallelism 2
(the fast tier runs the same checks on in-memory rows at parallelism 1 and 2).
"""

from __future__ import annotations

import pytest

from fishweight.models.bootstrap import bootstrap_model
from fishweight.models.registry import ModelRegistry
from tests.conftest import fresh_settings
from tests.pipeline_helpers import run_bounded
from tests.pipeline_plan import CHECKS, build_plan

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(kafka, tmp_path_factory):
    settings = fresh_settings(kafka, tmp_path_factory.mktemp("state"), parallelism=2,
                              min_window_count=5)
    bootstrap_model(settings)
    model = ModelRegistry.for_settings(settings).load_current()
    plan = build_plan(model.estimator)
    outputs = run_bounded(settings, plan.measurements, plan.weights)
    return settings, model, plan, outputs


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_job_over_kafka(run, check):
    check(run)

"""Hot swap: a running streaming job picks up newly published models, refuses bad ones.

Measurements flow continuously into the embedded broker while the job runs on a
local MiniCluster; the test publishes a new model version, then a corrupt one.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from fishweight.jobs.predict import build_pipeline
from fishweight.models.bootstrap import bootstrap_model
from fishweight.models.registry import ModelRegistry
from tests.conftest import fresh_settings
from tests.live_helpers import Feeder, PredictionReader, two_species_model

pytestmark = pytest.mark.slow  # a real broker and/or MiniCluster

SWITCH_WITHIN_S = 2.0


@pytest.mark.parametrize("parallelism", [1, 2])
def test_hot_swap_and_refusal(kafka, tmp_path, parallelism):
    settings = fresh_settings(kafka, tmp_path / "state", parallelism=parallelism)
    registry = ModelRegistry.for_settings(settings)
    bootstrap_model(settings)
    job = build_pipeline(settings).execute_async()
    feeder = Feeder(settings)
    reader = PredictionReader(settings)
    feeder.start()
    try:
        assert reader.wait_for(lambda: len(reader.versions) >= 20, timeout=120), \
            "the job produced no predictions"
        assert {v for _, v in reader.versions} == {1}

        # A new version: later measurements must be predicted by it.
        assert registry.publish(two_species_model(), {"species": ["salmon", "walleye"]}) == 2
        published = time.monotonic()
        assert reader.wait_for(lambda: any(v == 2 for _, v in reader.versions), timeout=30)
        reader.poll(SWITCH_WITHIN_S + 1)
        after = {f: v for f, v in reader.versions
                 if feeder.sent_at.get(f, 0) > published + SWITCH_WITHIN_S}
        assert after and set(after.values()) == {2}, "new version not served within 2 s"

        # A corrupt version: refused, version 2 keeps serving.
        registry.publish(two_species_model(), {"species": ["salmon", "walleye"]},
                         make_current=False)
        with open(registry.artifact_path(3), "r+b") as fh:
            fh.seek(100)
            fh.write(b"corrupted")
        registry.point_to(3)  # what a broken publisher or disk could leave behind
        corrupted = time.monotonic()
        reader.poll(SWITCH_WITHIN_S + 2)
        later = {f: v for f, v in reader.versions if feeder.sent_at.get(f, 0) > corrupted}
        assert later and set(later.values()) == {2}, "corrupt version 3 was served"
    finally:
        feeder.stop.set()
        feeder.join(10)
    try:
        sent = set(feeder.sent_at)
        assert reader.wait_for(lambda: {f for f, _ in reader.versions} >= sent, timeout=60)
        counts = Counter(f for f, _ in reader.versions)
        assert set(counts) == sent, "lost measurements"
        assert max(counts.values()) == 1, "a measurement was predicted twice"
    finally:
        job.cancel().result()
        reader.consumer.close()

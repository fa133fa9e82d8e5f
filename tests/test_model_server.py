"""The UDF's model holder without Flink: poll interval, swap, refusal."""

import json
import time

import pandas as pd

from fishweight.models.bootstrap import bootstrap_frame
from fishweight.models.policy import fit
from fishweight.models.registry import ModelRegistry
from fishweight.udfs.scoring import ModelServer


def test_swaps_on_publish_refuses_corrupt_and_respects_poll(tmp_path):
    registry = ModelRegistry(tmp_path)
    model = fit(bootstrap_frame())
    registry.publish(model, {"species": ["salmon"]})
    server = ModelServer(str(tmp_path), poll_s=1.0)
    t0 = time.monotonic()
    assert server.refresh(t0 + 1.0).version == 1

    registry.publish(model, {"species": ["salmon"]})
    assert server.refresh(t0 + 1.5).version == 1  # polled 0.5 s ago: not yet
    assert server.refresh(t0 + 2.1).version == 2 and server.swaps == 1

    registry.publish(model, make_current=False)
    registry.artifact_path(3).write_bytes(b"not a model")
    registry.point_to(3)
    assert server.refresh(t0 + 3.2).version == 2 and server.refusals == 1
    assert server.refresh(t0 + 4.3).version == 2 and server.refusals == 1  # not retried


def test_batch_predicts_with_one_version_and_nulls_for_missing_inputs(tmp_path):
    registry = ModelRegistry(tmp_path)
    model = fit(bootstrap_frame())
    registry.publish(model, {"species": ["salmon"]})
    server = ModelServer(str(tmp_path))
    out = server.predict(pd.Series(["salmon", None, "pike"]), pd.Series([88.0, None, 60.0]),
                         pd.Series([19.0, None, 12.0]))
    assert out["ModelVersion"].tolist() == [1, None, 1]
    assert out["SpeciesKnown"].tolist() == [True, None, False]
    assert pd.isna(out["Weight"][1]) and out["Weight"][0] > 0
    expected = model.predict(pd.DataFrame({"Species": ["salmon"], "Length": [88.0],
                                           "Height": [19.0]}))[0]
    assert out["Weight"][0] == expected


class Broken:
    """Unpickles fine, predicts nonsense: the smoke test must catch it."""

    def predict(self, frame):
        return [float("nan")] * len(frame)


def test_refuses_unsigned_and_failing_versions_and_starts_on_the_newest_valid(tmp_path):
    registry = ModelRegistry(tmp_path / "models")
    registry.publish(fit(bootstrap_frame()), {"species": ["salmon"]})
    registry.publish(Broken())  # signed, but fails the smoke test
    server = ModelServer(str(registry.root), poll_s=0.0)
    assert server.model.version == 1, "CURRENT (v2) fails the smoke test: start on v1"

    manifest = registry.manifest(1)
    registry.publish(fit(bootstrap_frame()), make_current=False)
    unsigned = registry.manifest(3)
    del unsigned["signature"]
    registry.manifest_path(3).write_text(json.dumps(unsigned))
    registry.point_to(3)
    assert server.refresh().version == 1 and server.refusals == 1
    assert manifest == registry.manifest(1)


def test_a_version_that_cannot_be_read_now_is_tried_again_not_refused(tmp_path):
    """The signing key unreadable for a while (a secret being remounted): no verdict on
    the new version, which is served once it can be verified."""
    registry = ModelRegistry(tmp_path / "models")
    model = fit(bootstrap_frame())
    registry.publish(model, {"species": ["salmon"]})
    server = ModelServer(str(registry.root), poll_s=0.0)
    registry.publish(model, {"species": ["salmon"]})
    hidden = registry.key_file.with_name("hidden.key")
    registry.key_file.rename(hidden)
    assert server.refresh().version == 1 and server.refusals == 0
    assert server.refresh().version == 1
    hidden.rename(registry.key_file)
    assert server.refresh().version == 2 and server.swaps == 1 and server.refusals == 0


def test_junk_in_the_model_directory_never_stops_the_server(tmp_path):
    """What a broken publisher or a hand edit leaves behind is refused or waited out;
    the last good version keeps serving, and a start falls back to the newest valid."""
    registry = ModelRegistry(tmp_path / "models")
    registry.publish(fit(bootstrap_frame()), {"species": ["salmon"]})
    server = ModelServer(str(registry.root), poll_s=0.0)
    pointer = registry.root / "CURRENT"
    for junk in ('{"version": Infinity}', "[" * 100_000, "null", '{"version": 1e999}'):
        pointer.write_text(junk)
        assert server.refresh().version == 1
    registry.point_to(1)
    registry.publish(fit(bootstrap_frame()), make_current=False)
    registry.manifest_path(2).write_text("[]")
    registry.point_to(2)
    assert server.refresh().version == 1 and server.refusals == 1
    (registry.versions_dir / "000001 copy.json").write_text("{}")
    registry.point_to(7)  # a version that does not exist
    assert ModelServer(str(registry.root)).model.version == 1

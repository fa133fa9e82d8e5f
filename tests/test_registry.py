import json
import subprocess
import sys

import pytest

from fishweight.models.bootstrap import bootstrap_frame
from fishweight.models.registry import ModelError, ModelRegistry
from fishweight.models.training import fit


@pytest.fixture
def registry(tmp_path):
    return ModelRegistry(tmp_path / "models")


@pytest.fixture(scope="module")
def model():
    return fit(bootstrap_frame())


def test_publish_versions_and_manifest(registry, model):
    assert registry.current_version() is None
    assert registry.publish(model, {"n_samples": 100}) == 1
    assert registry.publish(model, {"n_samples": 50}) == 2
    assert registry.current_version() == 2
    manifest = registry.manifest(2)
    assert manifest["parent_version"] == 1 and manifest["n_samples"] == 50
    assert len(manifest["sha256"]) == 64 and manifest["trained_at"].endswith("Z")
    loaded = registry.load_current()
    assert loaded.version == 2 and loaded.trained_at == manifest["trained_at"]


def test_crash_between_artifact_and_pointer_keeps_previous_version(registry, model):
    registry.publish(model)
    with pytest.raises(SystemExit, match="simulated crash"):
        registry.publish(model, _crash_before_pointer=True)
    assert registry.artifact_path(2).exists()  # written, but never made current
    assert registry.current_version() == 1
    assert registry.load_current().version == 1
    assert registry.publish(model) == 3  # the next publish does not reuse the number


def test_crash_in_another_process_leaves_no_half_written_file(registry, model, tmp_path):
    registry.publish(model)
    script = (
        "import os, sys, joblib\n"
        "from fishweight.models.registry import ModelRegistry\n"
        "import fishweight.models.registry as r\n"
        "real = r._write_atomic\n"
        "def dying(path, data):\n"
        "    if path.name == 'CURRENT':\n"
        "        os._exit(9)\n"  # killed hard, no cleanup
        "    real(path, data)\n"
        "r._write_atomic = dying\n"
        f"ModelRegistry({str(registry.root)!r}).publish(joblib.load({str(registry.artifact_path(1))!r}))\n"
    )
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    assert registry.current_version() == 1
    assert registry.load_current().version == 1
    assert not list(registry.versions_dir.glob(".*.tmp"))


def test_tampered_artifact_fails_verification(registry, model):
    registry.publish(model)
    with open(registry.artifact_path(1), "r+b") as fh:
        fh.seek(50)
        fh.write(b"\x00tampered\x00")
    with pytest.raises(ModelError, match="SHA-256 .* manifest says .* refusing to load"):
        registry.load_current()


def test_missing_model_says_how_to_fix(registry):
    with pytest.raises(ModelError, match="fishweight bootstrap-model"):
        registry.load_current()


def test_rollback(registry, model):
    for _ in range(3):
        registry.publish(model)
    assert registry.rollback() == 2
    assert registry.current_version() == 2
    assert registry.rollback(1) == 1
    with open(registry.artifact_path(3), "ab") as fh:
        fh.write(b"x")
    with pytest.raises(ModelError, match="SHA-256"):
        registry.rollback(3)
    assert registry.current_version() == 1
    with pytest.raises(ModelError, match="no earlier version"):
        registry.rollback()


def test_pointer_file_is_json(registry, model):
    registry.publish(model)
    assert json.loads((registry.root / "CURRENT").read_text()) == {"version": 1}


def test_unreadable_pointer_and_manifest_are_model_errors(registry, model):
    registry.publish(model)
    registry.manifest_path(1).write_text("{not json")
    with pytest.raises(ModelError, match="manifest .* is unreadable"):
        registry.load_current()
    (registry.root / "CURRENT").write_text("garbage")
    with pytest.raises(ModelError, match="CURRENT is unreadable"):
        registry.current_version()

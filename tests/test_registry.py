import hashlib
import json
import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fishweight.models.bootstrap import bootstrap_frame
from fishweight.models.policy import fit
from fishweight.models.registry import ModelError, ModelRegistry, create_key


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


def test_pointer_file_is_json_and_says_what_moved_it(registry, model):
    registry.publish(model)
    registry.publish(model)
    assert json.loads((registry.root / "CURRENT").read_text()) == {"version": 2,
                                                                   "by": "publish"}
    registry.rollback()
    assert json.loads((registry.root / "CURRENT").read_text()) == {"version": 1,
                                                                   "by": "rollback"}
    # A pointer written before it said what moved it still reads.
    (registry.root / "CURRENT").write_text(json.dumps({"version": 2}))
    assert registry.current_version() == 2 and registry.pointed_by() is None


def test_unreadable_pointer_and_manifest_are_model_errors(registry, model):
    registry.publish(model)
    registry.manifest_path(1).write_text("{not json")
    with pytest.raises(ModelError, match="manifest .* is unreadable"):
        registry.load_current()
    (registry.root / "CURRENT").write_text("garbage")
    with pytest.raises(ModelError, match="CURRENT is unreadable"):
        registry.current_version()


class Exploit:
    """A pickle that runs code when loaded: what joblib.load would execute."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant(registry, version, payload: bytes, **manifest):
    """Write an artifact and a manifest with a matching SHA-256, as an intruder could."""
    registry.versions_dir.mkdir(parents=True, exist_ok=True)
    registry.artifact_path(version).write_bytes(payload)
    registry.manifest_path(version).write_text(json.dumps({
        "version": version, "trained_at": "2026-01-01T00:00:00.000Z",
        "sha256": hashlib.sha256(payload).hexdigest(), **manifest}))
    (registry.root / "CURRENT").write_text(json.dumps({"version": version}))


def test_a_matching_checksum_without_the_key_runs_no_code(registry, model, tmp_path):
    registry.publish(model)
    marker = tmp_path / "pwned"
    _plant(registry, 2, pickle.dumps(Exploit(marker)))
    with pytest.raises(ModelError, match="version 2 is not signed"):
        registry.load_current()
    _plant(registry, 3, pickle.dumps(Exploit(marker)), signature="0" * 64)
    with pytest.raises(ModelError, match="signature does not match"):
        registry.load_current()
    assert not marker.exists(), "the artifact was unpickled before verification"
    assert registry.load_newest_valid().version == 1


def test_the_bytes_that_were_verified_are_the_bytes_unpickled(registry, model, tmp_path,
                                                              monkeypatch):
    """An intruder who swaps the artifact between the check and the load gets nothing run:
    the load unpickles the bytes it verified, not the file read again."""
    registry.publish(model)
    marker = tmp_path / "pwned"
    artifact = registry.artifact_path(1)
    read_bytes = Path.read_bytes

    def read_then_swap(path):
        data = read_bytes(path)
        if path == artifact:  # the intruder wins the race, right after the read
            artifact.write_bytes(pickle.dumps(Exploit(marker)))
        return data

    monkeypatch.setattr(Path, "read_bytes", read_then_swap)
    loaded = registry.load(1)
    assert hasattr(loaded.estimator, "predict") and not marker.exists()


@pytest.mark.parametrize("pointer", ['{"version": Infinity}', '{"version": 1e999}',
                                     '{"version": true}', '{"version": "1"}', "[" * 100_000,
                                     "null", '{"version": -3}'])
def test_a_pointer_that_names_no_version_is_a_model_error(registry, model, pointer):
    registry.publish(model)
    (registry.root / "CURRENT").write_text(pointer)
    with pytest.raises(ModelError, match="CURRENT is unreadable"):
        registry.current_version()


@pytest.mark.parametrize("manifest, problem", [
    ("[]", "not a JSON object but list"), ("null", "not a JSON object but NoneType"),
    ("[" * 100_000, "is unreadable"), (None, "is not signed")])
def test_a_manifest_that_is_not_one_is_a_model_error(registry, model, manifest, problem):
    registry.publish(model)
    if manifest is None:  # a signature that is not hex (compare_digest would raise)
        manifest = json.dumps({**registry.manifest(1), "signature": "\u00e9" * 64})
    registry.manifest_path(1).write_text(manifest)
    with pytest.raises(ModelError, match=problem):
        registry.load(1)


def test_files_in_versions_that_are_not_versions_are_ignored(registry, model):
    registry.publish(model)
    (registry.versions_dir / "000001 copy.json").write_text("{}")
    (registry.versions_dir / "1x.json").write_text("{}")
    assert registry.versions() == [1]
    assert registry.publish(model) == 2


def test_another_key_or_an_edited_manifest_is_refused(registry, model, tmp_path):
    registry.publish(model, {"species": ["salmon"]})
    create_key(tmp_path / "other.key")
    other = ModelRegistry(registry.root, tmp_path / "other.key")
    with pytest.raises(ModelError, match="signature does not match"):
        other.load(1)
    manifest = registry.manifest(1)
    manifest["species"] = ["salmon", "walleye"]
    registry.manifest_path(1).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="signature does not match"):
        registry.load(1)


def test_key_file_is_created_outside_the_model_directory_owner_read_only(registry, model):
    registry.publish(model)
    assert registry.key_file.parent != registry.root
    assert stat.S_IMODE(registry.key_file.stat().st_mode) == 0o400


def test_a_reader_without_the_key_refuses_clearly(registry, model, tmp_path):
    registry.publish(model)
    reader = ModelRegistry(registry.root, tmp_path / "missing.key")
    with pytest.raises(ModelError, match="cannot read the model signing key"):
        reader.load(1)
    assert not (tmp_path / "missing.key").exists(), "a reader must not create a key"


def test_publish_refuses_when_current_moved_since_the_comparison(registry, model):
    registry.publish(model)
    registry.publish(model)  # another writer got there first
    with pytest.raises(ModelError, match="CURRENT moved from version 1 to 2"):
        registry.publish(model, expected_current=1)
    assert registry.current_version() == 2 and registry.versions() == [1, 2]


def test_models_list_shows_records_per_species_and_the_gate_error(registry, model):
    registry.publish(model, {"species": ["salmon"], "species_records": {"salmon": 100},
                             "reason": "bootstrap"})
    registry.publish(model, {"species": ["salmon", "walleye"],
                             "species_records": {"salmon": 47, "walleye": 3},
                             "metrics": {"gate": {"candidate_loo": 0.0257}},
                             "reason": "window"})
    first, second = registry.describe()
    assert first.startswith("  v1") and "records=salmon:100" in first and "bootstrap" in first
    assert second.startswith("* v2") and "records=salmon:47,walleye:3" in second
    assert "loo_error=0.0257" in second and "parent=1" in second

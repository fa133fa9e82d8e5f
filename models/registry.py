"""The model directory format, shared by the trainer (writer) and the UDF (reader).

Layout of a model directory::

    versions/000001.joblib   the fitted estimator (joblib)
    versions/000001.json     its manifest: version, trained_at, sha256, features, ...
    CURRENT                  {"version": 1}: the version being served

**Signed.** joblib is pickle: loading an artifact runs code. So every manifest carries
an HMAC-SHA256 (``signature``) over the artifact's SHA-256 and the rest of the
manifest, keyed by a secret key file that lives *outside* the model directory (by
default ``model-signing.key`` next to it, created with mode 0400 by the first
publisher). ``load`` verifies the signature before anything is unpickled: a version
that is unsigned, signed with another key, or whose artifact or manifest was changed
afterwards is refused. Whoever may write the model directory but not read the key
cannot make the job or the trainer run their code.

Publishing is crash-safe: artifact and manifest are written to temporary files,
fsynced and renamed into place, and only then is ``CURRENT`` replaced by an atomic
rename. A reader therefore sees either the old or the new version, never half of
one. Every load verifies the artifact's SHA-256 against its manifest.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import io
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib

from fishweight.records import utc_iso

log = logging.getLogger(__name__)

POINTER = "CURRENT"
VERSIONS = "versions"
FORMAT_VERSION = 1


class ModelError(RuntimeError):
    """A model version is missing, unreadable or fails verification."""


class ModelUnavailable(ModelError):
    """A version could not be read just now: no verdict on it, worth trying again.

    A file system error, a missing file, the signing key unreadable.
    """


@dataclass(frozen=True)
class LoadedModel:
    version: int
    manifest: dict[str, Any]
    estimator: Any

    @property
    def trained_at(self) -> str:
        return self.manifest["trained_at"]

    @property
    def species(self) -> frozenset[str]:
        return frozenset(self.manifest.get("species", []))


_SIGNATURE = re.compile(r"[0-9a-f]{64}")  # HMAC-SHA256, hex


def _is_version(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a temp file in the same directory, fsync, rename over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


KEY_FILE = "model-signing.key"


def create_key(path: Path) -> None:
    """Write a new random signing key, readable by its owner only (mode 0400)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
        fh.flush()
        os.fsync(fh.fileno())  # durable before any version signed with it
    fsync_dir(path.parent)
    log.info("created model signing key %s (mode 0400)", path)


def _canonical(manifest: dict[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


class ModelRegistry:
    """Versioned, signed models in one directory (local disk or a shared mount)."""

    def __init__(self, root: str | Path, key_file: str | Path | None = None) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / VERSIONS
        self.key_file = Path(key_file) if key_file else self.root.resolve().parent / KEY_FILE

    @classmethod
    def for_settings(cls, settings) -> ModelRegistry:
        return cls(settings.resolved_model_dir, settings.model_key_file or None)

    def _key(self, *, create: bool = False) -> bytes:
        if create and not self.key_file.exists():
            with contextlib.suppress(FileExistsError):
                create_key(self.key_file)
        try:
            key = self.key_file.read_text().strip().encode()
        except (OSError, ValueError) as exc:
            raise ModelUnavailable(f"cannot read the model signing key {self.key_file}: "
                                   f"{exc}; models cannot be verified without it") from exc
        if len(key) < 32:
            raise ModelUnavailable(f"the model signing key {self.key_file} is too short")
        return key

    def sign(self, manifest: dict[str, Any], *, create_key: bool = True) -> str:
        return hmac.new(self._key(create=create_key), _canonical(manifest),
                        hashlib.sha256).hexdigest()

    # Paths -------------------------------------------------------------------------

    def artifact_path(self, version: int) -> Path:
        return self.versions_dir / f"{version:06d}.joblib"

    def manifest_path(self, version: int) -> Path:
        return self.versions_dir / f"{version:06d}.json"

    # Reading -----------------------------------------------------------------------

    def current_version(self) -> int | None:
        """The served version, or None when nothing was published yet. Cheap: one small read."""
        pointer = self.pointer()
        return None if pointer is None else pointer[0]

    def pointed_by(self) -> str | None:
        """What last switched ``CURRENT``: ``publish`` or ``rollback`` (None: not said)."""
        pointer = self.pointer()
        return None if pointer is None else pointer[1]

    def pointer(self) -> tuple[int, str | None] | None:
        """``CURRENT`` in one read, or None when nothing was published yet.

        (the served version, what last switched it: ``publish``, ``rollback``, or None when
        not said, as in a ``CURRENT`` written before this was recorded).
        """
        path = self.root / POINTER
        try:
            pointer = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ModelUnavailable(f"{path} is unreadable: {exc}") from exc
        except (ValueError, RecursionError) as exc:
            raise ModelError(f"{path} is unreadable: {exc}"[:500]) from exc
        version = pointer.get("version") if isinstance(pointer, dict) else None
        if not _is_version(version):
            raise ModelError(f"{path} is unreadable: no positive integer version in it: "
                             f"{pointer!r}"[:500])
        by = pointer.get("by")
        return version, by if isinstance(by, str) else None

    def promoted_at(self) -> float | None:
        """When ``CURRENT`` was last pointed at a version (epoch seconds), if it exists."""
        try:
            return (self.root / POINTER).stat().st_mtime
        except OSError:
            return None

    def versions(self) -> list[int]:
        """The published versions: manifests named by their number (other files ignored)."""
        if not self.versions_dir.is_dir():
            return []
        return sorted(int(p.stem) for p in self.versions_dir.glob("[0-9]*.json")
                      if p.stem.isascii() and p.stem.isdigit())

    def manifest(self, version: int) -> dict[str, Any]:
        path = self.manifest_path(version)
        try:
            manifest = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ModelUnavailable(f"model version {version} has no manifest at {path}") from exc
        except OSError as exc:
            raise ModelUnavailable(f"manifest {path} is unreadable: {exc}") from exc
        except (ValueError, RecursionError) as exc:
            raise ModelError(f"manifest {path} is unreadable: {exc}"[:500]) from exc
        if not isinstance(manifest, dict):
            raise ModelError(f"manifest {path} is not a JSON object but "
                             f"{type(manifest).__name__}")
        return manifest

    def load(self, version: int) -> LoadedModel:
        """Load one version after checking its artifact against the manifest's SHA-256."""
        manifest = self.manifest(version)
        path = self.artifact_path(version)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise ModelUnavailable(f"model version {version}: artifact {path} is missing") \
                from exc
        except OSError as exc:
            raise ModelUnavailable(f"model version {version}: cannot read {path}: {exc}") \
                from exc
        actual = hashlib.sha256(data).hexdigest()
        if actual != manifest.get("sha256"):
            raise ModelError(
                f"model version {version}: artifact {path} has SHA-256 {actual}, "
                f"manifest says {manifest.get('sha256')}; refusing to load it"
            )
        signature = manifest.get("signature")
        if not isinstance(signature, str) or not _SIGNATURE.fullmatch(signature):
            raise ModelError(f"model version {version} is not signed; refusing to load it")
        if not hmac.compare_digest(signature, self.sign(manifest, create_key=False)):
            raise ModelError(f"model version {version}: signature does not match the key "
                             f"{self.key_file}; refusing to load it")
        try:
            # The very bytes that were verified: reading the file again would unpickle
            # whatever replaced it meanwhile.
            estimator = joblib.load(io.BytesIO(data))
        except Exception as exc:  # a verified file that still fails to unpickle
            raise ModelError(f"model version {version}: cannot unpickle {path}: {exc}") from exc
        if not hasattr(estimator, "predict"):
            raise ModelError(f"model version {version}: {type(estimator)} has no predict()")
        return LoadedModel(version, manifest, estimator)

    def load_newest_valid(self, check=None) -> LoadedModel:
        """The newest version that loads, verifies and passes ``check`` (raising ModelError).

        The fallback when the version CURRENT names is unusable.
        """
        errors = []
        for version in reversed(self.versions()):
            try:
                model = self.load(version)
                if check is not None:
                    check(model)
                return model
            except Exception as exc:  # noqa: BLE001 - whatever a version's files cause
                errors.append(str(exc))
        raise ModelError("no model version in " f"{self.root} verifies: " + "; ".join(errors))

    def load_current(self) -> LoadedModel:
        version = self.current_version()
        if version is None:
            raise ModelError(
                f"no model published in {self.root}; run `fishweight bootstrap-model` first"
            )
        return self.load(version)

    # Writing -----------------------------------------------------------------------

    @contextlib.contextmanager
    def exclusive_writer(self):
        """Hold the trainer lock for the block: one publishing process per directory."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".trainer.lock", "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise ModelError(f"another trainer holds {self.root / '.trainer.lock'}; "
                                 "one trainer per model directory") from exc
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _lock(self):
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def publish(self, estimator: Any, metadata: dict[str, Any] | None = None,
                *, make_current: bool = True, expected_current: int | None = None,
                _crash_before_pointer: bool = False) -> int:
        """Store a new version and (by default) switch ``CURRENT`` to it. Returns the version.

        With ``expected_current``, refuse (``ModelError``) unless ``CURRENT`` still names
        that version: a candidate compared against one version must not replace another.
        """
        with self._lock():
            if expected_current is not None and self.current_version() != expected_current:
                raise ModelError(f"CURRENT moved from version {expected_current} to "
                                 f"{self.current_version()} meanwhile; not publishing")
            self.versions_dir.mkdir(parents=True, exist_ok=True)
            self._remove_leftovers()
            existing = self.versions()
            version = (existing[-1] if existing else 0) + 1
            artifact = self.artifact_path(version)
            with tempfile.TemporaryDirectory(dir=self.versions_dir, prefix=".stage-") as stage:
                staged = Path(stage) / artifact.name
                joblib.dump(estimator, staged)
                data = staged.read_bytes()
            _write_atomic(artifact, data)
            manifest = {
                "format": FORMAT_VERSION,
                "version": version,
                "trained_at": utc_iso(),
                "artifact": artifact.name,
                "sha256": hashlib.sha256(data).hexdigest(),
                "parent_version": self.current_version(),
                **(metadata or {}),
            }
            manifest["signature"] = self.sign(manifest)
            _write_atomic(self.manifest_path(version),
                          json.dumps(manifest, indent=2, sort_keys=True).encode())
            if _crash_before_pointer:  # test hook: simulate dying between the two steps
                raise SystemExit("simulated crash before switching CURRENT")
            if make_current:
                self.point_to(version, by="publish")
            log.info("published model version %d (%s)", version, artifact)
            return version

    def _remove_leftovers(self) -> None:
        """Temporary files of a publisher that was killed; only ever called under ``_lock``."""
        for leftover in [*self.versions_dir.glob(".*"), *self.root.glob(f".{POINTER}.*.tmp")]:
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
            log.info("removed %s, left by an interrupted publish", leftover)

    def point_to(self, version: int, *, by: str = "publish") -> None:
        """Switch CURRENT to ``version`` atomically, unverified (``rollback`` verifies).

        ``by`` says what moved it (``publish`` or ``rollback``): a trainer restarting
        after a kill must tell a promotion it did not record from an operator's rollback
        (``decisions.Trainer._recover_promotion``).
        """
        _write_atomic(self.root / POINTER,
                      json.dumps({"version": version, "by": by}).encode())

    def rollback(self, version: int | None = None) -> int:
        """Serve ``version`` (default: the one before the current). It is verified first."""
        with self._lock():
            current = self.current_version()
            if version is None:
                older = [v for v in self.versions() if current is None or v < current]
                if not older:
                    raise ModelError("no earlier version to roll back to")
                version = older[-1]
            self.load(version)  # refuses a missing or tampered version
            self.point_to(version, by="rollback")
            log.info("rolled back model from version %s to %d", current, version)
            return version

    def describe(self) -> list[str]:
        """One line per version for ``fishweight models list``; ``*`` marks the served one."""
        current = self.current_version()
        lines = []
        for version in self.versions():
            m = self.manifest(version)
            error = m.get("metrics", {}).get("gate", {}).get("candidate_loo")
            records = m.get("species_records") or {s: "?" for s in m.get("species", [])}
            lines.append(
                f"{'*' if version == current else ' '} v{version:<4} trained {m.get('trained_at')}"
                f"  records={','.join(f'{s}:{n}' for s, n in sorted(records.items()))}"
                + (f"  loo_error={error:.4f}" if error is not None else "")
                + f"  parent={m.get('parent_version')}  {m.get('reason', '')}"
            )
        return lines

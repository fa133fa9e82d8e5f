import shutil

import pytest

from fishweight.runtime import jars
from fishweight.runtime.settings import Settings


def test_missing_jars_name_the_fix(tmp_path):
    with pytest.raises(jars.MissingJarsError, match="fishweight fetch-jars"):
        jars.connector_jars(tmp_path)


def test_tampered_jar_is_refused(tmp_path):
    cached = jars.connector_jars(Settings.load().resolved_jar_dir)
    for path in cached:
        shutil.copy(path, tmp_path / path.name)
    with open(tmp_path / "kafka-clients.jar", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(jars.MissingJarsError, match="kafka-clients.jar has SHA-256"):
        jars.connector_jars(tmp_path)

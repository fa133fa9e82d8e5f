"""The built wheel is one `fishweight` package that runs outside the checkout."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fishweight.runtime.processes import inherit_env

pytestmark = pytest.mark.slow  # builds a wheel and starts a JVM

CHECKOUT = Path(__file__).resolve().parents[1]

PLAN_SCRIPT = """
import json, sys
import fishweight
from fishweight.jobs.predict import build_pipeline
from fishweight.models.bootstrap import bootstrap_model
from fishweight.runtime.settings import Settings

settings = Settings.load(bootstrap_servers="127.0.0.1:9", web_ui_port=0)
bootstrap_model(settings)
nodes = build_pipeline(settings).stream_graph()
print(json.dumps({"package": fishweight.__file__, "state_dir": settings.state_dir,
                  "operators": [n["contents"] for n in nodes]}))
"""


def _tracked_copy(dest: Path) -> Path:
    """The checkout's files that git tracks or would track (not ignored ones), so the build
    neither sees local leftovers nor writes a build/ directory into the checkout."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=CHECKOUT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = CHECKOUT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def test_wheel_holds_one_package_with_its_sql_and_builds_the_job_elsewhere(tmp_path):
    source = _tracked_copy(tmp_path / "source")
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--wheel-dir", str(wheels), str(source)], check=True)
    (wheel,) = wheels.glob("fishweight-*.whl")
    target = tmp_path / "target"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target), str(wheel)], check=True)

    top_level = {p.name for p in target.iterdir() if not p.name.endswith(".dist-info")}
    assert top_level - {"bin"} == {"fishweight"}, top_level
    installed_sql = sorted(p.name for p in (target / "fishweight" / "sql").glob("*.sql"))
    assert installed_sql == sorted(p.name for p in (source / "sql").glob("*.sql"))
    assert (target / "fishweight" / "scenarios" / "default.toml").is_file()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # A clean environment: no settings, and none of the PYFLINK_* flags that an earlier
    # test in this process may have set (they would forbid starting a JVM gateway).
    # Nor the FLINK_* paths PyFlink exports into this process, nor an empty JAVA_HOME
    # (which PyFlink would turn into `bin/java`): the wheel must find its own way.
    inherited = inherit_env()
    env = {k: v for k, v in inherited.items()
           if not k.startswith(("FISHWEIGHT_", "FLINK_")) and not (k == "JAVA_HOME" and not v)}
    env["PYTHONPATH"] = str(target)
    done = subprocess.run([sys.executable, "-c", PLAN_SCRIPT], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stderr[-3000:], {
        k: v for k, v in inherited.items() if k.startswith("FLINK_") or "JAVA" in k})
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["package"].startswith(str(target)), result["package"]
    assert result["state_dir"] == "./var"
    assert (elsewhere / "var" / "models" / "CURRENT").is_file()  # relative to the cwd
    operators = "\n".join(result["operators"])
    # The planner's descriptions, and the operators' names (jobs/operator_names.py).
    for step in ("score_measurement(", "IntervalJoin(", "predictions out: Writer",
                 "diffs out: Writer", "windows out: Writer", "retrain events out: Writer",
                 "dead letters out: Writer"):
        assert step in operators, step

"""The closed loop end to end: real broker, real MiniCluster, real trainer process.

Runs the demo orchestrator (the code behind `make demo`) on an accelerated scenario
and checks the drift, the single retrain and the recovery from its report summary.
"""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest

from fishweight.jobs.cli import main
from fishweight.jobs.demo import run_demo
from fishweight.runtime.broker import free_port
from fishweight.scenarios import load_scenario
from tests.conftest import fresh_settings

pytestmark = pytest.mark.slow  # a real broker and/or MiniCluster

SCENARIOS = Path(__file__).parent / "scenarios"
SPEED = 20.0


@pytest.mark.parametrize("scenario_file", ["walleye_long.toml", "pike.toml"])
def test_drift_retrain_recovery(kafka, tmp_path, scenario_file):
    run_dir = tmp_path / "run"  # also the state directory, as in `fishweight demo`
    settings = fresh_settings(kafka, run_dir, web_ui_port=free_port())
    scenario = load_scenario(SCENARIOS / scenario_file)
    out = io.StringIO()
    result = run_demo(settings, scenario, SPEED, run_dir, threading.Event(), out=out)
    s = result.summary
    print(out.getvalue())
    print((run_dir / "report.md").read_text())
    assert result.completed, "not every fish was predicted and joined"
    assert "Flink web UI: http://localhost:" in out.getvalue()
    assert (run_dir / "report.png").stat().st_size > 10_000

    # `fishweight report` redraws the same report from the run directory.
    (run_dir / "report.png").unlink()
    assert main(["report", "--run-dir", str(run_dir), "--scenario",
                 str(SCENARIOS / scenario_file)]) == 0
    assert (run_dir / "report.png").stat().st_size > 10_000
    assert json.loads((run_dir / "summary.json").read_text()) == json.loads(json.dumps(s))

    counts = s["counts"]
    assert counts["measurements_produced"] == scenario.fish_count
    assert counts["accounted"] and counts["predictions"] == scenario.fish_count
    assert counts["joined_pairs"] == scenario.fish_count

    first, drift, returning = s["per_phase"]
    assert first["mean_error"] < 0.05
    drift_start = s["drift_start_fish_id"]
    assert drift_start == drift["first_fish_id"]
    assert s["retrain_events"], "no retrain event fired"
    assert all(e["Fish_Id_End"] >= drift_start for e in s["retrain_events"]), \
        "a retrain event fired before the new species arrived"
    assert s["decisions"]["promoted"] == 1, "one drift must promote exactly one version"
    (version,) = s["versions_promoted"]
    assert version["species"] == sorted({"salmon", drift["species"]})
    assert drift["fish_after_recovery"] >= 10
    assert drift["mean_error_after_recovery"] < 0.05
    assert returning["fish_after_recovery"] == 60
    assert returning["mean_error_after_recovery"] < 0.05


def _descendants(pid):
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/task/{p}/children") as fh:
                kids = [int(k) for k in fh.read().split()]
        except OSError:
            continue
        out.update(kids)
        todo.extend(kids)
    return out


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


def test_ctrl_c_stops_the_demo_and_leaves_no_process(tmp_path):
    """`fishweight demo` on its own embedded broker, interrupted mid-run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "FISHWEIGHT_STATE_DIR": str(tmp_path),
           "FISHWEIGHT_WEB_UI_PORT": str(free_port())}
    env.pop("FISHWEIGHT_BOOTSTRAP_SERVERS", None)
    demo = subprocess.Popen([sys.executable, "-m", "fishweight.jobs.cli", "demo", "--speed", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    seen = set()
    lines = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = demo.stdout.readline()
        lines.append(line)
        seen |= _descendants(demo.pid)
        if line.startswith("fish ") and not line.startswith("fish 0/"):
            break
    assert any("Flink web UI" in x for x in lines), "".join(lines)
    seen |= _descendants(demo.pid)
    assert len(seen) >= 3, "expected broker, trainer and prediction job processes"
    demo.send_signal(signal.SIGINT)
    rest, _ = demo.communicate(timeout=120)
    assert demo.returncode == 1, rest  # stopped early: says so, still writes a report
    assert "the report covers what ran" in rest
    time.sleep(1)
    assert not [p for p in seen if _alive(p)], "processes left behind"
    run_dirs = list((tmp_path / "demo").iterdir())
    assert len(run_dirs) == 1 and (run_dirs[0] / "report.md").exists()

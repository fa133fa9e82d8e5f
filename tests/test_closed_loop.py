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

from jobs.broker import free_port
from jobs.cli import main
from jobs.demo import run_demo
from jobs.scenario import load_scenario
from tests.conftest import fresh_settings

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

"""The closed loop end to end: real broker, real MiniCluster, real trainer process.

Runs the demo orchestrator (the code behind `make demo`) on an accelerated scenario
and checks the drift, the single retrain and the recovery from its report summary.
"""

from __future__ import annotations

import dataclasses
import io
import json
import threading
import time
from pathlib import Path

import pytest

from fishweight.jobs.cli import main
from fishweight.jobs.demo import run_demo
from fishweight.runtime.processes import alive, descendants, free_port
from fishweight.scenarios import load_scenario
from tests.conftest import fresh_settings

pytestmark = pytest.mark.slow  # a real broker and/or MiniCluster

SCENARIOS = Path(__file__).parent / "scenarios"
SPEED = 5.0  # the demo's default: serving delays cost fish as they would there


def _run(kafka, tmp_path, scenario_file, drift_at_s=None, speed=SPEED, **changes):
    """The demo on a scenario. ``drift_at_s``: where in its 1-minute window (by the weight's
    event time, as windows are kept) the first fish of the second block falls."""
    run_dir = tmp_path / "run"  # also the state directory, as in `fishweight demo`
    settings = fresh_settings(kafka, run_dir, web_ui_port=free_port())
    scenario = dataclasses.replace(load_scenario(scenario_file and SCENARIOS / scenario_file),
                                   **changes)
    start_ms = None
    if drift_at_s is not None:
        first = scenario.sequence[0].count * scenario.interval_s + scenario.weight_delay_s
        now_minute = int(time.time()) // 60 * 60 + 120  # ahead of now: a fresh window
        start_ms = round((now_minute + drift_at_s - first) * 1000)
    out = io.StringIO()
    result = run_demo(settings, scenario, speed, run_dir, threading.Event(), out=out,
                      start_ms=start_ms)
    print(out.getvalue())
    print((run_dir / "report.md").read_text())
    assert result.completed, "not every fish was predicted and joined"
    counts = result.summary["counts"]
    assert counts["accounted"] and counts["predictions"] == scenario.fish_count
    assert counts["joined_pairs"] == scenario.fish_count
    return run_dir, out.getvalue(), result.summary


def _promotions_per_drift(summary):
    return [sum(1 for v in summary["versions_promoted"] if v["trigger_species"] == [d["species"]])
            for d in summary["drifts"] if not d["known_at_start"]]


@pytest.mark.extended  # the same scenario runs in `make test` on the tutorial's wire format
def test_default_scenario_adapts_while_the_walleye_arrive(kafka, tmp_path):
    """60 salmon, 60 walleye, 60 salmon: the tutorial mispredicted 16 fish."""
    run_dir, out, s = _run(kafka, tmp_path, None)
    assert "Flink web UI: http://localhost:" in out
    assert (run_dir / "report.png").stat().st_size > 10_000
    # `fishweight report` redraws the same report from the run directory.
    (run_dir / "report.png").unlink()
    assert main(["report", "--run-dir", str(run_dir)]) == 0
    assert (run_dir / "report.png").stat().st_size > 10_000
    assert json.loads((run_dir / "summary.json").read_text()) == json.loads(json.dumps(s))
    _check_the_default_scenario(s)


def test_default_scenario_on_the_tutorials_wire_format(kafka, tmp_path):
    """The same loop fed as the tutorial's producers feed it: String keys and ids, no
    Timestamp (the Kafka record time is the event time). Same bounds as our own format."""
    _, _, s = _run(kafka, tmp_path, None, wire="tutorial")
    _check_the_default_scenario(s)


def _check_the_default_scenario(s):
    assert s["per_phase"][0]["mean_error"] < 0.05
    walleye, returning = s["drifts"]
    assert not walleye["known_at_start"] and returning["known_at_start"]
    assert walleye["over_threshold_until_recovery"] <= 12
    assert walleye["mean_error_after_recovery"] <= 0.045
    assert returning["over_threshold_until_recovery"] == 0
    assert returning["mean_error_after_recovery"] <= 0.025
    assert all(e["Fish_Id_End"] >= walleye["first_fish_id"] for e in s["retrain_events"]), \
        "a retrain event fired before the new species arrived"
    assert 1 <= s["decisions"]["promoted"] <= 2, "at most two promotions per drift"


@pytest.mark.extended  # the longest scenario (~2 min); the default one covers a new species
def test_three_species_in_turn_and_no_forgetting(kafka, tmp_path):
    _, _, s = _run(kafka, tmp_path, "three_species.toml")
    walleye, pike, salmon = s["drifts"]
    for drift in (walleye, pike):
        assert drift["over_threshold_until_recovery"] <= 20, drift
        assert drift["fish_until_recovery"] < drift["fish"], drift
    # The newest 50 records held no salmon when pike were learnt; memory kept them.
    assert salmon["known_at_start"] and salmon["fish_until_recovery"] == 0, salmon
    assert salmon["mean_error_after_recovery"] < s["threshold"]
    assert all(n <= 2 for n in _promotions_per_drift(s)), _promotions_per_drift(s)


@pytest.mark.extended
def test_a_species_only_slightly_off_is_recovered_within_20_fish(kafka, tmp_path):
    _, _, s = _run(kafka, tmp_path, "slight_drift.toml")
    (trout,) = s["drifts"]
    assert trout["fish_until_recovery"] <= 20, trout


@pytest.mark.extended
def test_gradual_drift_ends_near_the_noise_floor(kafka, tmp_path):
    _, _, s = _run(kafka, tmp_path, "gradual_drift.toml")
    last_walleye = [d for d in s["drifts"] if d["species"] == "walleye"][-1]
    assert last_walleye["error_to_noise_floor"] <= 1.5, last_walleye


# A drift inside one species (same name): caught by the change rule wherever it falls in
# a window, learnt from the records since the change, refined to the noise floor. The
# mid-window cases (the window rule's blind spot) run in `make test`, the boundary ones
# in `make test-extended`.
AT_BOUNDARY = pytest.param(0, id="at-boundary", marks=pytest.mark.extended)
MID_WINDOW = pytest.param(30, id="mid-window")


def _check_same_species_drift(drift):
    assert not drift["known_at_start"], drift
    assert drift["over_threshold_until_recovery"] <= 12, drift
    assert drift["over_threshold_after_recovery"] <= 1, drift
    assert drift["error_to_noise_floor_30"] <= 1.5, drift


@pytest.mark.parametrize("drift_at_s", [AT_BOUNDARY, MID_WINDOW])
def test_a_species_that_gets_heavier_is_caught_anywhere_in_a_window(kafka, tmp_path,
                                                                     drift_at_s):
    """Salmon 25 % heavier from fish 61 on, under the same name."""
    _, _, s = _run(kafka, tmp_path, "salmon_heavier.toml", drift_at_s)
    (drift,) = s["drifts"]
    _check_same_species_drift(drift)
    assert s["decisions"]["promoted"] <= 2


@pytest.mark.parametrize("drift_at_s", [AT_BOUNDARY, MID_WINDOW])
def test_a_recalibrated_camera_is_caught_anywhere_in_a_window(kafka, tmp_path, drift_at_s):
    """Lengths read 25 % too long: the same fish, other input."""
    _, _, s = _run(kafka, tmp_path, "camera_recalibrated.toml", drift_at_s)
    (drift,) = s["drifts"]
    _check_same_species_drift(drift)
    assert s["decisions"]["promoted"] <= 2


# A drift within the error threshold (no error over it): only the bias rule sees it.
@pytest.mark.extended
@pytest.mark.parametrize("scenario", ["salmon_slightly_heavier.toml",
                                      "camera_slightly_off.toml"])
def test_a_drift_within_the_threshold_is_healed_to_the_noise_floor(kafka, tmp_path,
                                                                   scenario):
    """Salmon 8 % heavier (5 % of the fish mis-weighed throughout), or lengths read 6 %
    long: the model would serve 3-4x the noise floor for good. The bias rule fires; the
    first model that learnt it is served within 20 fish of the drift, near the noise
    floor."""
    _, _, s = _run(kafka, tmp_path, scenario, 30)
    (drift,) = s["drifts"]
    assert drift["over_threshold_until_recovery"] <= 1, drift  # an outlier's error
    assert drift["fish_until_served"] is not None and drift["fish_until_served"] <= 20, drift
    assert drift["error_to_noise_floor_30"] <= 1.3, drift
    first = next(v for v in s["versions_promoted"] if v["reason"] == "bias")
    assert first["training_species"] == {"salmon": first["training_species"]["salmon"]}
    assert s["decisions"]["promoted"] <= 2, s["decisions"]


@pytest.mark.extended
def test_a_change_and_its_reversal_are_both_healed(kafka, tmp_path):
    """Salmon 20 % heavier for 45 fish, then as before: two drifts of one species."""
    _, _, s = _run(kafka, tmp_path, "salmon_heavier_back.toml", 15)
    heavier, back = s["drifts"]
    for drift in (heavier, back):
        _check_same_species_drift(drift)
    assert s["decisions"]["promoted"] <= 4


@pytest.mark.extended
def test_outliers_in_a_stationary_stream_promote_nothing(kafka, tmp_path):
    """900 salmon (30 minutes of event time), 3 % of them mis-weighed by +40 %. At 20x:
    with nothing to adapt to, no serving delay can matter."""
    _, _, s = _run(kafka, tmp_path, "stationary_outliers.toml", speed=20.0)
    assert s["drifts"] == []
    assert s["decisions"]["promoted"] == 0, s["decisions"]
    print("retrain events:", len(s["retrain_events"]), s["decisions"])


def _mixed_scale_scenario(path: Path, pairs_before: int, pairs_after: int) -> Path:
    """Salmon and walleye in turn, two of each, from the first fish (the bootstrap model
    knows salmon only); after ``pairs_before`` rounds the weigh scale reads every fish
    20 % heavy."""
    profiles = {
        "salmon": ("88.0, sd = 5.0", "19.0, sd = 1.0", "length = 0.05, height = 0.01"),
        "walleye": ("81.0, sd = 8.0", "17.0, sd = 2.0", "length = 0.02, height = 0.04"),
    }
    lines = ["seed = 1111", "interval_s = 2.0", "weight_delay_s = 10.0"]
    for name, (length, height, weight) in profiles.items():
        lines += [f"[species.{name}]", f"length = {{ mean = {length} }}",
                  f"height = {{ mean = {height} }}",
                  f"weight = {{ intercept = 0.0, {weight}, noise_sd = 0.1 }}",
                  f"[species.{name}_scale]", f'base = "{name}"', "weight_scale = 1.2"]
    for rounds, suffix in ((pairs_before, ""), (pairs_after, "_scale")):
        for _ in range(rounds):
            for name in profiles:
                lines += ["[[sequence]]", f'species = "{name}{suffix}"', "count = 2"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.extended
def test_a_mixed_stream_learns_a_new_species_early_and_heals_a_scale_for_every_species(
        kafka, tmp_path):
    """Walleye among salmon from the start, before the store holds 10 records: the first
    events are too early, and are retried as records arrive. Then the scale reads every
    fish 20 % heavy: each species' change is learnt, the second one without waiting for a
    second event under the version that refit the first."""
    scenario = _mixed_scale_scenario(tmp_path / "mixed_scale.toml", 20, 20)
    run_dir, _, s = _run(kafka, tmp_path, scenario)
    first = s["versions_promoted"][0]
    assert first["trigger_species"] == ["walleye"] and first["first_fish_id_served"] <= 24
    changed = {sp for v in s["versions_promoted"] if v["reason"] == "change"
               for sp in v["training_species"]}
    assert changed == {"salmon", "walleye"}, s["versions_promoted"]
    diffs = [json.loads(line)["value"] for line in (run_dir / "topics/diffs.jsonl").open()]
    # About the noise floor: E|N(0, 0.1)| = 0.08 kg over the mean weight read (x 1.2).
    for species, mean_weight in (("salmon", 0.05 * 88 + 0.01 * 19),
                                 ("walleye", 0.02 * 81 + 0.04 * 17)):
        noise_floor = 0.08 / (1.2 * mean_weight)
        last = sorted((d for d in diffs if d["Species"] == species),
                      key=lambda d: d["Fish_Id"])[-20:]
        mean = sum(d["Error"] for d in last) / len(last)
        print(f"{species}: mean error of its last 20 fish {mean:.4f}")
        assert mean < 2 * noise_floor, (species, mean, noise_floor)


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
        seen |= set(descendants(demo.pid))
        if line.startswith("fish ") and not line.startswith("fish 0/"):
            break
    assert any("Flink web UI" in x for x in lines), "".join(lines)
    seen |= set(descendants(demo.pid))
    assert len(seen) >= 3, "expected broker, trainer and prediction job processes"
    demo.send_signal(signal.SIGINT)
    rest, _ = demo.communicate(timeout=120)
    assert demo.returncode == 1, rest  # stopped early: says so, still writes a report
    assert "the report covers what ran" in rest
    time.sleep(1)
    assert not [p for p in seen if alive(p)], "processes left behind"
    run_dirs = list((tmp_path / "demo").iterdir())
    assert len(run_dirs) == 1 and (run_dirs[0] / "report.md").exists()

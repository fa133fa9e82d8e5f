"""The trainer SIGKILLed at every step of a promotion, then restarted (``crash_sweep``).

At each kill point: ``CURRENT`` names a version that verifies (before and after the
restart), no half-written version is ever served, and the restarted trainer decides
the redelivered event once: one promotion, recorded once, every offset committed, every
joined record stored once.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from fishweight.models.bootstrap import bootstrap_model
from fishweight.models.decisions import window_key
from fishweight.runtime.kafka import produce
from fishweight.runtime.processes import inherit_env
from tests.test_trainer import T0, diff_records, retrain_event

pytestmark = [pytest.mark.slow, pytest.mark.extended]  # a broker; ~62 trainer runs (~30 s)

REPO = Path(__file__).resolve().parent.parent


def test_trainer_killed_at_every_step_of_a_promotion(settings, tmp_path):
    records = diff_records(1, [("salmon", 30), ("walleye", 12)], T0, np.random.default_rng(5))
    event = retrain_event([1], 31, 42, end_ms=records[-1]["Timestamp"] + 1000,
                          timestamp_end=records[-1]["Timestamp"])
    produce(settings.bootstrap_servers, settings.topic_diff, records)
    produce(settings.bootstrap_servers, settings.topic_retrain, [event])
    template = tmp_path / "template"
    bootstrap_model(settings.replace(state_dir=str(template)))
    config = tmp_path / "sweep.json"
    config.write_text(json.dumps({
        "settings": dataclasses.asdict(settings.replace(state_dir=str(template))),
        "template": str(template), "work": str(tmp_path / "work"), "timeout_s": 60}))
    results = tmp_path / "results.jsonl"
    subprocess.run([sys.executable, "-m", "tests.crash_sweep", str(config), str(results)],
                   cwd=REPO, check=True, timeout=1200,
                   env=inherit_env(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1"))

    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert lines[-1].get("end"), "the sweep stopped before the trainer ran through"
    kills = lines[:-1]
    where = Counter(k["killed_at"].split(":")[0] for k in kills)
    print(f"\n{len(kills)} kill points: {dict(where)}")
    assert len(kills) >= 20
    assert {"fit", "sign", "dump", "rename", "point_to", "record", "commit"} <= set(where)
    key = window_key(event)
    orphans = 0
    for k in kills:
        label = f"kill {k['point']} at {k['killed_at']}"
        assert k["first_exit"] == -9, label
        for phase in ("after_kill", "after_restart"):
            seen = k[phase]
            # CURRENT names a complete version that verifies; nothing else is served.
            assert seen["current"] in (int(v) for v in seen["verified"]), (label, phase)
            assert seen["verified"][str(seen["current"])] and seen["current_loads"], label
        assert k["restart_exit"] == 0 and k["restart"]["committed_all"], label
        assert k["restart"]["stored"] == len(records), label  # each joined record once
        after = k["after_restart"]
        served = after["manifests"][str(after["current"])]
        # One promotion for the event, from the bootstrapped version 1.
        assert served["parent"] == 1 and served["reason"] == "window", label
        assert window_key(served["trigger"]) == key, label
        decided = [d for d in after["decisions"] if d["action"] != "skipped_duplicate"]
        assert [(d["action"], d["version"]) for d in decided] == [
            ("promoted", after["current"])], (label, after["decisions"])
        # A version written but never pointed to (killed before CURRENT moved) stays
        # unserved; the restart publishes its own.
        unserved = [v for v in after["manifests"] if int(v) not in (1, after["current"])]
        orphans += bool(unserved)
        assert not after["leftovers"], (label, after["leftovers"])
    print(f"{orphans} kill points left a complete but never served version")

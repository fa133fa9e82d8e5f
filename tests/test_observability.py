"""What an operator watches: Prometheus from the job and the trainer, the Grafana
dashboard's queries, the job graph's operator names, and ``fishweight status``.

One run: ``fishweight predict`` (a MiniCluster in its own process, Prometheus on) and a
trainer (its /metrics on) over a backlog of 70 fish in the past (50 salmon, then 20
walleye the model does not know), with hostile records, a repeated Fish_Id, a weight
without a measurement and a measurement without a weight; then, once every fish is
joined, a measurement and a weight from the backlog's beginning (late). Every figure on
the scrapes is compared with what the output topics hold.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections import Counter
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from fishweight import sql
from fishweight.jobs.cli import main
from fishweight.jobs.train import TrainerService
from fishweight.models.bootstrap import bootstrap_model
from fishweight.models.decisions import species_of
from fishweight.models.registry import ModelRegistry
from fishweight.records import reason_class
from fishweight.runtime.flink_rest import local_url, rest, wait_until_running
from fishweight.runtime.kafka import produce
from fishweight.runtime.processes import (
    ChildProcess,
    PortInUse,
    free_port,
    python_module,
    settings_env,
)
from fishweight.runtime.prometheus import job_group, metrics_url, scrape
from tests.conftest import fresh_settings
from tests.kafka_helpers import read_values

pytestmark = pytest.mark.slow

DASHBOARD = Path(__file__).resolve().parents[1] / "docker/grafana/dashboards/fishweight.json"
SALMON, WALLEYE = 50, 20
NO_WEIGHT_ID, LONELY_WEIGHT_ID = 7, 9999
LATE_MEASUREMENT_ID, LATE_WEIGHT_ID = 8001, 8002  # sent behind the watermark


def _backlog(start_ms: int):
    measurements, weights = [], []
    for i in range(1, SALMON + WALLEYE + 1):
        species = "salmon" if i <= SALMON else "walleye"
        t = start_ms + 2000 * i
        length, height = (88.0 + i % 5, 19.0) if species == "salmon" else (81.0 + i % 7, 17.0)
        weight = (0.05 * length + 0.01 * height if species == "salmon"
                  else 0.02 * length + 0.04 * height)
        measurements.append(({"Species": species, "Fish_Id": i, "Length": length,
                              "Height": height, "Timestamp": t}, t))
        if i != NO_WEIGHT_ID:
            weights.append(({"Species": species, "Fish_Id": i, "Weight": round(weight, 3),
                             "Timestamp": t + 5000}, t + 5000))
    # A repeated Fish_Id (dead letter), a weight nobody measured (unmatched).
    measurements.append(({"Species": "salmon", "Fish_Id": 3, "Length": 88.0, "Height": 19.0,
                          "Timestamp": start_ms + 2000 * 3 + 500}, start_ms + 2000 * 3 + 500))
    weights.append(({"Species": "salmon", "Fish_Id": LONELY_WEIGHT_ID, "Weight": 4.5,
                     "Timestamp": start_ms + 20_000}, start_ms + 20_000))
    return measurements, weights


HOSTILE = [b"not json", b"{\"Species\": \"salmon\"}", b"[1, 2]"]


@pytest.fixture(scope="module")
def run(kafka, tmp_path_factory):
    """The job and the trainer with metrics on, after the backlog was processed."""
    tmp = tmp_path_factory.mktemp("observability")
    s = fresh_settings(kafka, tmp / "state", web_ui_port=free_port(), metrics_port=free_port(),
                       trainer_metrics_port=free_port(), checkpoint_interval_s=2)
    bootstrap_model(s)
    start_ms = int(time.time() * 1000) - 200_000
    measurements, weights = _backlog(start_ms)
    produce(s.bootstrap_servers, s.topic_measurement, [m for m, _ in measurements],
            keys=[m["Fish_Id"] for m, _ in measurements], timestamps=[t for _, t in measurements])
    produce(s.bootstrap_servers, s.topic_weight, [w for w, _ in weights],
            keys=[w["Fish_Id"] for w, _ in weights], timestamps=[t for _, t in weights])
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=s.bootstrap_servers)
    for payload in HOSTILE:
        producer.send(s.topic_measurement, payload, key=b"x").get(10)
    producer.close()

    job = ChildProcess("prediction job", python_module("fishweight.jobs.cli", "predict"),
                       tmp / "predict.log", settings_env(s, trainer=False)).start()
    trainer = TrainerService(s)
    stop = threading.Event()
    thread = threading.Thread(target=trainer.run, args=(stop,), daemon=True)
    thread.start()
    url = local_url(s.web_ui_port)
    try:
        job_id = wait_until_running(url, timeout_s=180)
        diffs = read_values(s, s.topic_diff, SALMON + WALLEYE - 1)
        # Every fish joined, so the watermark is near the backlog's end: a measurement
        # and a weight from its beginning are late now, and unmatched as such.
        time.sleep(2)
        late = start_ms + 1000
        produce(s.bootstrap_servers, s.topic_measurement,
                [{"Species": "salmon", "Fish_Id": LATE_MEASUREMENT_ID, "Length": 88.0,
                  "Height": 19.0, "Timestamp": late}],
                keys=[LATE_MEASUREMENT_ID], timestamps=[late])
        produce(s.bootstrap_servers, s.topic_weight,
                [{"Species": "salmon", "Fish_Id": LATE_WEIGHT_ID, "Weight": 4.5,
                  "Timestamp": late}], keys=[LATE_WEIGHT_ID], timestamps=[late])
        topics = {"predictions": read_values(s, s.topic_prediction, SALMON + WALLEYE + 1),
                  "diffs": diffs}
        for name, topic in (("windows", s.topic_windows), ("retrains", s.topic_retrain),
                            ("unmatched", s.topic_unmatched),
                            ("dead_letters", s.topic_dead_letter)):
            topics[name] = read_values(s, topic)  # until 5 s without news
        # The metrics stage counts per second. The trainer stores as it reads, counts
        # a decision after a fit and may refine a model later: wait until it stored
        # every diff, decided every event and two scrapes a second apart agree with
        # each other and with the registry.
        time.sleep(4)
        registry = ModelRegistry.for_settings(s)
        deadline = time.monotonic() + 60
        trainer_samples = scrape(metrics_url(s.trainer_metrics_port))
        while time.monotonic() < deadline:
            time.sleep(1)
            before, current = trainer_samples, registry.current_version()
            trainer_samples = scrape(metrics_url(s.trainer_metrics_port))
            figures = {x.name: x.value for x in trainer_samples}
            decided = sum(x.value for x in trainer_samples
                          if x.name == "fishweight_trainer_decisions_total")
            if (figures.get("fishweight_trainer_records_stored_total", 0) >= len(topics["diffs"])
                    and decided >= len(topics["retrains"])
                    and figures.get("fishweight_trainer_model_version") == current
                    and _values(before) == _values(trainer_samples)):
                break
        yield {
            "settings": s, "url": url, "job_id": job_id, "topics": topics,
            "job_samples": scrape(metrics_url(s.metrics_port)),
            "trainer_samples": trainer_samples,
            "sent": {"measurements": len(measurements) + len(HOSTILE) + 1,
                     "weights": len(weights) + 1},
            "status": _status(s),
            "vertices": [v["name"] for v in rest(url, f"/jobs/{job_id}")["vertices"]],
            "current": registry.current_version(),
        }
    finally:
        stop.set()
        thread.join(30)
        job.stop()
    assert not thread.is_alive()


def _values(samples) -> dict:
    """A scrape's figures, without the ones that move on their own (time, process)."""
    return {(x.name, tuple(sorted(x.labels.items()))): x.value for x in samples
            if x.name.startswith("fishweight_trainer_") and "seconds" not in x.name
            and "age" not in x.name}


def _status(settings, *args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["status", "--web-ui-port", str(settings.web_ui_port), "--metrics-port",
                     str(settings.metrics_port), "--trainer-metrics-port",
                     str(settings.trainer_metrics_port), *args])
    return code, out.getvalue() + err.getvalue()


def _one(group: dict[str, list[float]], name: str) -> float:
    values = group.get(name)
    assert values, f"{name} is not on the scrape; it has {sorted(group)}"
    return max(values) if name.endswith(("Ppm", "modelVersion", "changeErrorsOver")) \
        else sum(values)


def test_the_jobs_prometheus_metrics_match_its_outputs(run):
    s, t = run["settings"], run["topics"]
    group = job_group(run["job_samples"], job_id=run["job_id"])
    diffs, windows, retrains = t["diffs"], t["windows"], t["retrains"]
    print("\nfishweight metrics on the job's Prometheus scrape:")
    for name in sorted(group):
        print(f"  {name} = {group[name]}")

    # Records in: what the sources read, as Flink counts it (summed over subtasks: the
    # module also runs at FISHWEIGHT_PARALLELISM=2).
    sources: Counter[str] = Counter()
    for x in run["job_samples"]:
        if (x.name == "flink_taskmanager_job_task_operator_numRecordsIn"
                and x.labels.get("operator_name", "").startswith("Source:")):
            sources[x.labels["operator_name"]] += x.value
    assert sources == {"Source:_measurements_in": run["sent"]["measurements"],
                       "Source:_weights_in": run["sent"]["weights"]}
    lags = {x.labels["operator_name"]: x.value for x in run["job_samples"]
            if x.name == "flink_taskmanager_job_task_operator_watermarkLag"}
    assert set(lags) == set(sources) and all(lag > 0 for lag in lags.values()), lags

    # A repeated Fish_Id is predicted, then dead-lettered.
    assert _one(group, "predictions") == len(t["predictions"]) + 1
    # The time spent predicting, in counters (Flink's Prometheus reporter exports a
    # PyFlink distribution as 0): every batch takes some microseconds.
    assert _one(group, "predictBatches") >= 1
    assert _one(group, "predictMicros") >= _one(group, "predictBatches")
    assert _one(group, "joinedPairs") == len(diffs)
    assert _one(group, "windowsClosed") == len(windows) > 0
    assert _one(group, "retrainEvents") == len(retrains) > 0
    by_species = Counter(d["Species"] for d in diffs)
    assert by_species == {"salmon": SALMON - 1, "walleye": WALLEYE}
    for species in ("salmon", "walleye"):
        mine = [d for d in diffs if d["Species"] == species]
        assert _one(group, f"species.{species}.joinedPairs") == len(mine)
        assert _one(group, f"species.{species}.retrainEvents") == sum(
            1 for r in retrains if r["Species"] == [species])
        closed = sorted((w for w in windows if w["Species"] == [species]),
                        key=lambda w: w["WindowEnd"])
        assert _one(group, f"species.{species}.windowsClosed") == len(closed)
        if closed:
            assert _one(group, f"species.{species}.lastWindowErrorAvgPpm") == pytest.approx(
                closed[-1]["ErrorAvg"] * 1e6, abs=1)
        # The current window: the running AVG(Error) of the species' newest window.
        window_ms = int(s.window_s * 1000)
        newest = max(d["Timestamp"] // window_ms for d in mine)
        errors = [d["Error"] for d in mine if d["Timestamp"] // window_ms == newest]
        assert _one(group, f"species.{species}.windowErrorAvgPpm") == pytest.approx(
            sum(errors) / len(errors) * 1e6, abs=1)
        over = _one(group, f"species.{species}.changeErrorsOver")
        assert 0 <= over <= s.change_records
        # The bias rule's lean: the mean signed error of its last records (arrival order).
        signed = [(d["PredictedWeight"] - d["ActualWeight"]) / d["ActualWeight"] for d in mine]
        lean = _one(group, f"species.{species}.biasLeanPpm")
        assert min(signed) * 1e6 - 1 <= lean <= max(signed) * 1e6 + 1, (lean, signed)
    # The model knows salmon: none of the last five is over the threshold, and they lean
    # by the noise only; the salmon model predicts walleye far off. The lean is that of
    # the serving version's records (the rule's key): the trainer may promote a model of
    # walleye while the backlog's last walleye are still to be predicted, and then the
    # gauge shows the new version's lean, which is small.
    assert _one(group, "species.salmon.changeErrorsOver") == 0
    assert abs(_one(group, "species.salmon.biasLeanPpm")) < 30_000
    walleye: dict[int, list[float]] = {}
    for d in diffs:
        if d["Species"] == "walleye":
            walleye.setdefault(d["ModelVersion"], []).append(
                (d["PredictedWeight"] - d["ActualWeight"]) / d["ActualWeight"])
    assert min(walleye[1]) > 0.15, walleye[1]
    lean = _one(group, "species.walleye.biasLeanPpm")
    assert any(min(v) * 1e6 - 1 <= lean <= max(v) * 1e6 + 1 for v in walleye.values()), (
        lean, walleye)
    if set(walleye) == {1}:
        assert lean > 150_000

    unmatched = {(u["Kind"], u["Fish_Id"]): u["Reason"] for u in t["unmatched"]}
    assert len(unmatched) == len(t["unmatched"]) == 4, t["unmatched"]
    assert unmatched[("measurement", NO_WEIGHT_ID)].startswith("no weight from")
    assert unmatched[("weight", LONELY_WEIGHT_ID)].startswith("no measurement of this Fish_Id")
    assert unmatched[("measurement", LATE_MEASUREMENT_ID)].startswith(
        "late: the measurement arrived behind the watermark")
    assert unmatched[("weight", LATE_WEIGHT_ID)].startswith(
        "late: the weight arrived behind the watermark")
    assert _one(group, "unmatched.measurement.noWeight") == 1
    assert _one(group, "unmatched.measurement.late") == 1
    assert _one(group, "unmatched.weight.noMeasurement") == 1
    assert _one(group, "unmatched.weight.late") == 1
    assert _one(group, "unmatchedWeights") == _one(group, "unmatchedMeasurements") == 2
    classes = Counter(reason_class(d["Reason"]) for d in t["dead_letters"])
    assert classes["duplicateFishId"] == 1 and sum(classes.values()) == len(HOSTILE) + 1
    for name, n in classes.items():
        assert _one(group, f"deadLetters.{name}") == n
    # The version that scored the newest batch (a newer one is swapped in at the next).
    versions = {p["Prediction"]["ModelVersion"] for p in t["predictions"]}
    assert _one(group, "modelVersion") == max(versions)
    assert _one(group, "modelSwaps") == len(versions) - 1


def test_the_trainers_prometheus_metrics_match_what_it_did(run):
    t = run["topics"]
    samples = {(x.name, tuple(sorted(x.labels.items()))): x.value
               for x in run["trainer_samples"]}
    value = lambda name, **labels: samples.get((name, tuple(sorted(labels.items()))))  # noqa: E731
    assert value("fishweight_trainer_records_stored_total") == len(t["diffs"])
    assert value("fishweight_trainer_events_total") == len(t["retrains"])
    decisions = Counter()  # by action, over the reasons
    for (name, labels), v in samples.items():
        if name == "fishweight_trainer_decisions_total":
            decisions[dict(labels)["action"]] += v
    assert sum(decisions.values()) >= len(t["retrains"]), decisions
    assert value("fishweight_trainer_model_version") == run["current"]
    served = ModelRegistry.for_settings(run["settings"]).load(run["current"])
    assert value("fishweight_trainer_model_species") == len(species_of(served)) >= 1
    assert value("fishweight_trainer_dead_letters_total") == 0
    assert value("fishweight_trainer_store_errors_total") == 0
    if decisions.get("promoted"):
        assert 0 < value("fishweight_trainer_candidate_error") < value(
            "fishweight_trainer_current_error")


def test_every_metric_the_dashboard_queries_is_on_the_scrapes(run):
    names = {x.name for x in run["job_samples"] + run["trainer_samples"]}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"]]
    used, patterns = set(), set()
    for expr in exprs:
        patterns |= set(re.findall(r'__name__=~"([^"]+)"', expr))
        rest = re.sub(r'__name__=~"[^"]+"', "", expr)
        used |= set(re.findall(r"\b((?:flink|fishweight)_[A-Za-z0-9_]+)\b", rest))
    missing = sorted(n for n in used if n not in names)
    assert not missing, f"the dashboard queries metrics no scrape has: {missing}"
    for pattern in patterns:
        assert any(re.fullmatch(pattern, n) for n in names), pattern
    assert len(used) >= 20


def test_the_job_graph_names_each_operator_for_what_it_does(run):
    vertices = run["vertices"]
    print("\njob graph:\n  " + "\n  ".join(vertices))
    text = " | ".join(vertices)
    labels = ({m.label for stage in sql.STAGES for m in stage.materialized}
              | set(sql.SINK_LABELS.values()) | set(sql.SOURCE_LABELS.values()))
    assert not [label for label in labels if label not in text]
    # No planner names are left (`Calc[12]`, `TableToDataSteam`, `*anonymous...`).
    assert not re.search(r"\w\[\d+\]|TableToDataSteam|anonymous", text), text


def test_fishweight_status_reads_the_running_job(run):
    code, out = run["status"]
    print("\n" + out)
    assert code == 0, out
    assert "RUNNING" in out and "metrics from Prometheus" in out
    assert f"measurements {run['sent']['measurements']}" in out
    assert f"joined {len(run['topics']['diffs'])}" in out
    assert "salmon: joined" in out and "walleye: joined" in out
    assert f"model v{run['current']}" in out and "trainer: events" in out
    assert re.search(rf"; model v{run['current']} knows [1-9]\d* species", out), out
    assert re.search(r"event-time lag \(now - watermark\): measurements [\d.]+ s", out)


def test_fishweight_status_without_a_job_says_so(run):
    code, out = _status(run["settings"].replace(web_ui_port=free_port()))
    assert code == 1
    assert "no Flink REST API answers" in out and "--web-ui-port" in out


def test_a_taken_metrics_port_is_a_one_line_error(run, tmp_path):
    s = run["settings"]
    taken = s.replace(state_dir=str(tmp_path), trainer_metrics_port=s.trainer_metrics_port)
    with pytest.raises(PortInUse, match="trainer metrics port .* is not free"):
        TrainerService(taken)
    out = io.StringIO()
    with redirect_stderr(out):
        code = main(["predict", "--metrics-port", str(s.metrics_port), "--web-ui-port", "0",
                     "--bootstrap-servers", s.bootstrap_servers,
                     "--state-dir", str(tmp_path)])
    assert code == 2
    assert out.getvalue().count("\n") == 1 and "metrics_port" in out.getvalue(), out.getvalue()

"""Fast tier: the job's SQL (validation, prediction, join, window, dead letters) on
in-memory rows. A MiniCluster runs the production SQL files; no broker is involved.
"""

from __future__ import annotations

import pytest

from fishweight.jobs.predict import build_pipeline
from fishweight.models.bootstrap import bootstrap_model
from fishweight.models.registry import ModelRegistry
from fishweight.runtime.settings import Settings
from tests.pipeline_plan import CHECKS, PlanRun, build_plan
from tests.sql_harness import run_in_memory


@pytest.fixture(scope="module", params=["kafka", "payload"])
def run(request, tmp_path_factory):
    # Parallelism 2 (as in the Kafka test): a keying bug shows as a lost or doubled join.
    # Both event-time sources: the Kafka record time (default) and the payload's Timestamp.
    state = tmp_path_factory.mktemp("state")
    settings = Settings.load(state_dir=str(state), web_ui_port=0, parallelism=2,
                             checkpoint_interval_s=0, event_time_source=request.param,
                             min_window_count=5)
    bootstrap_model(settings)
    model = ModelRegistry.for_settings(settings).load_current()
    plan = build_plan(model.estimator)
    outputs = run_in_memory(settings, plan.measurements, plan.weights, state / "outputs")
    return PlanRun(settings, model, plan, outputs)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_job_sql_on_in_memory_rows(run, check):
    check(run)


@pytest.fixture(scope="module")
def kafka_plan(tmp_path_factory) -> list[dict]:
    """The operators of the Kafka job with the default settings, at parallelism 2: only
    its plan is built (no broker is contacted)."""
    settings = Settings.load(state_dir=str(tmp_path_factory.mktemp("plan")), web_ui_port=0,
                             bootstrap_servers="127.0.0.1:9", parallelism=2)
    bootstrap_model(settings)
    return build_pipeline(settings).stream_graph()


def test_kafka_plan_reads_predicts_and_joins_once(kafka_plan):
    """The planner must not copy a source, the prediction UDF or the join into branches."""
    nodes = kafka_plan
    contents = [node["contents"] for node in nodes]

    def count(text):
        return sum(text in c for c in contents)

    # Validation and prediction of a measurement are one Python stage.
    assert count("score_measurement(") == 1 and count("parse_weight(") == 1
    assert count("PythonCalc(") == 3  # score, parse weights, the metrics stage
    # By default (validation = python) no record is checked in SQL, and the event time
    # is the Kafka record time (event_time_source = kafka): the JVM parses no JSON.
    assert count("REGEXP(") == 0
    assert not [c for c in contents if "TableSourceScan(" in c and "JSON_VALUE(" in c]
    # The watermark is generated in the Kafka source, per partition, over the event time
    # that ignores a record time far ahead of the job's clock (sql/params.py).
    scans = [c for c in contents if "TableSourceScan(" in c and "_raw," in c]
    assert len(scans) == 2 and all("watermark=[" in c and "CURRENT_TIMESTAMP()" in c
                                   for c in scans)
    # One join state: the diffs and the unmatched records are the two outputs of one
    # FULL OUTER interval join (sql/22_pairs.sql splits it).
    assert count("IntervalJoin(joinType=[FullOuterJoin]") == 1
    assert count("IntervalJoin(") == 1
    # One duplicate check per input stream, shared by the join and the dead letters.
    assert count("OverAggregate(partitionBy=[Fish_Id]") == 2
    assert count("table=[[default_catalog, default_database, measurement_raw") == 1
    assert count("table=[[default_catalog, default_database, weight_raw") == 1

    # The metrics stage counts per second keyed by (kind, species, window), spread over
    # the subtasks; every count then reaches one subtask of its UDF, which keeps each
    # species' gauges in one place (udfs/metrics.py). Up the chain from the UDF to the
    # edge that feeds it:
    by_id = {node["id"]: node for node in nodes}
    (node,) = [node for node in nodes if "observe_pipeline(" in node["contents"]]
    edges: list[dict] = []
    while not edges:
        inputs = node.get("predecessors", [])
        assert len(inputs) == 1, node["contents"]
        if inputs[0]["ship_strategy"] != "FORWARD":
            edges = inputs
        node = by_id[inputs[0]["id"]]
    assert [e["ship_strategy"] for e in edges] == ["GLOBAL"]
    assert "TableToDataSteam(" in node["contents"] and "`Records`" in node["contents"]


def test_bundle_time_per_python_stage(tmp_path):
    """The measurements' stage (the predictions' latency) has its own bundle time bound;
    the weights' and the metrics' stages, which no prediction waits for, have theirs."""
    settings = Settings.load(state_dir=str(tmp_path), web_ui_port=0,
                             bootstrap_servers="127.0.0.1:9", bundle_time_ms=17,
                             weight_bundle_time_ms=230)
    bootstrap_model(settings)
    pipeline = build_pipeline(settings)
    pipeline.stream_graph()  # attaches the statement set; keeps the transformations
    graph = pipeline.env._j_stream_execution_environment.getStreamGraph(False)
    bundle_times = {}
    for node in graph.getStreamNodes().toArray():
        factory = node.getOperatorFactory()
        if factory is None or "SimpleOperatorFactory" not in factory.getClass().getName():
            continue  # sources and sinks: no operator object behind the factory
        operator = factory.getOperator()
        if "python" in operator.getClass().getName().lower():
            conf = operator.getConfiguration().toMap()
            bundle_times[node.getOperatorName()] = conf.get("python.fn-execution.bundle.time")
    assert bundle_times == {"score": "17", "parse weights": "230", "metrics": "230"}


def test_event_time_source_payload_parses_the_timestamp_on_the_jvm(tmp_path):
    """``event_time_source = payload``: the payload's Timestamp, bounded by the skew."""
    settings = Settings.load(state_dir=str(tmp_path), web_ui_port=0,
                             bootstrap_servers="127.0.0.1:9", event_time_source="payload")
    bootstrap_model(settings)
    contents = [node["contents"] for node in build_pipeline(settings).stream_graph()]
    scans = [c for c in contents if "TableSourceScan(" in c and "_raw," in c]
    assert len(scans) == 2 and all("JSON_VALUE(" in c and "$.Timestamp" in c
                                   and "CURRENT_TIMESTAMP()" in c for c in scans)


def test_no_unbounded_over_keeps_state_that_the_ttl_does_not_expire(kafka_plan):
    """An unbounded processing-time OVER expires only its accumulator row (the platform
    fact below); a DISTINCT's map, ARRAY_AGG's list and the like would outlive it, one per
    key. The window rule's OVER has a key per window: it must use none of them."""
    overs = [node["contents"] for node in kafka_plan
             if "OverAggregate(" in node["contents"]
             and "UNBOUNDED PRECEDING" in node["contents"]]
    assert len(overs) == 6, overs  # first seen (2), the window rule's figures, 3 crossings
    for contents in overs:
        for kept_apart in ("DISTINCT", "ARRAY_AGG(", "COLLECT(", "LISTAGG(", "JSON_ARRAYAGG("):
            assert kept_apart not in contents, contents


def test_flink_keeps_a_distinct_map_of_an_unbounded_over_past_the_ttl():
    """The platform fact behind the test above (Flink 2.0): once the state TTL has expired
    a key's accumulator, the next row starts a fresh COUNT, but its DISTINCT map is still
    there, so a value seen before the expiry is not new and ARRAY_AGG(DISTINCT) has
    nothing. If this fails, a Flink release expires such maps too."""
    from pyflink.table import EnvironmentSettings, TableEnvironment

    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    t_env.get_config().set("parallelism.default", "1")
    t_env.get_config().set("table.exec.state.ttl", "100 ms")
    # Rows 500 ms apart, after a burst of up to three (the rate limiter's stored permits):
    # the later rows find their accumulator expired.
    # `v` is nullable, else the planner declares the array NOT NULL and the job fails.
    t_env.execute_sql("""
        CREATE TEMPORARY TABLE paced (i BIGINT, proc AS PROCTIME()) WITH (
            'connector' = 'datagen', 'rows-per-second' = '2', 'number-of-rows' = '6',
            'fields.i.kind' = 'sequence', 'fields.i.start' = '1', 'fields.i.end' = '6')""")
    result = t_env.execute_sql("""
        SELECT i, COUNT(*) OVER w AS n, ARRAY_AGG(DISTINCT v) OVER w AS vs
        FROM (SELECT i, 'one key' AS k, CASE WHEN i > 0 THEN 7 END AS v, proc FROM paced)
        WINDOW w AS (PARTITION BY k ORDER BY proc
                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)""")
    with result.collect() as rows:
        seen = sorted((row[0], row[1], row[2]) for row in rows)
    assert seen[0] == (1, 1, [7])
    expired = [(i, vs) for i, n, vs in seen[1:] if n == 1]
    assert expired, f"no accumulator expired between rows 500 ms apart: {seen}"
    assert all(vs is None for _, vs in expired), seen


def test_windows_and_bounds_of_100_s_and_more_plan(tmp_path):
    """`INTERVAL '300' SECOND` fails to plan (a leading precision of 2): every duration
    in the SQL is a DAY TO SECOND literal."""
    from fishweight.sql.params import interval_literal

    assert interval_literal(300) == "INTERVAL '0 00:05:00.000' DAY TO SECOND(3)"
    assert interval_literal(0.25) == "INTERVAL '0 00:00:00.250' DAY TO SECOND(3)"
    assert interval_literal(90_061.5) == "INTERVAL '1 01:01:01.500' DAY TO SECOND(3)"
    settings = Settings.load(state_dir=str(tmp_path), web_ui_port=0,
                             bootstrap_servers="127.0.0.1:9", window_s=300, join_bound_s=120,
                             watermark_delay_s=100, idle_timeout_s=300, state_ttl_s=1200)
    bootstrap_model(settings)
    contents = " | ".join(n["contents"] for n in build_pipeline(settings).stream_graph())
    assert "TUMBLE(time_col=[row_time], size=[5 min])" in contents  # the windows
    assert "row_time + 120000:INTERVAL DAY TO SECOND(3)" in contents  # the join bound
    assert "100000:INTERVAL DAY TO SECOND(3)" in contents  # the watermark delay


def test_the_window_rule_names_the_window_weight_windows_closes(tmp_path):
    """A record's window is its event time's (the Kafka record time by default), for the
    closed windows and for the window rule alike, even when the payload's Timestamp, a
    few seconds off the record time, falls in the window before."""
    import pandas as pd

    from tests.pipeline_helpers import Sent
    from tests.pipeline_plan import T0, S

    settings = Settings.load(state_dir=str(tmp_path), web_ui_port=0, parallelism=1,
                             checkpoint_interval_s=0, min_window_count=3)
    bootstrap_model(settings)
    model = ModelRegistry.for_settings(settings).load_current()
    measurements, weights = [], []
    for i in range(1, 6):  # all five in window 1 by record time; 1-4 in window 0 by payload
        measured, weighed = T0 + (60 + i) * S, T0 + (70 + i) * S
        record = {"Species": "salmon", "Fish_Id": i, "Length": 88.0 + i, "Height": 19.0}
        frame = pd.DataFrame([{k: record[k] for k in ("Species", "Length", "Height")}])
        predicted = float(model.estimator.predict(frame)[0])
        measurements.append(Sent({**record, "Timestamp": measured - 5 * S}, measured, key=i))
        weights.append(Sent({"Species": "salmon", "Fish_Id": i, "Weight": predicted / 1.5,
                             "Timestamp": weighed - 15 * S}, weighed, key=i))
    out = run_in_memory(settings, measurements, weights, tmp_path / "outputs")

    window_1 = pd.Timestamp(T0 + 60 * S, unit="ms").strftime("%Y-%m-%dT%H:%M:%S")
    (closed,) = out.values("windows")
    assert closed["WindowStart"][:19] == window_1 and closed["Count"] == 5
    fired = [e for e in out.values("retrains") if e["Rule"] == "window"]
    assert [(e["WindowStart"][:19], e["Species"]) for e in fired] == [(window_1, ["salmon"])]
    assert fired[0]["Count"] == settings.min_window_count


def test_the_bias_rule_fires_once_on_a_species_whose_errors_lean_one_way(tmp_path):
    """A drift too small for the threshold: salmon's errors are all below it but lean one
    way (about 6 % heavy predictions), trout's are as large but scatter around 0. The bias
    rule fires once for salmon, on the record that fills its bias_records, with the span
    it looked at; never for trout; and neither threshold rule fires for them. Pike lean 3 %
    but scatter too much for the rule, after one absurd weight (a microgram): its signed
    error is clamped, so its square cannot swallow the small squares added while it is in
    the rule's sliding sums, which would leave their variance far too small (a false
    event)."""
    import pandas as pd

    from tests.pipeline_helpers import Sent
    from tests.pipeline_plan import T0, S

    settings = Settings.load(state_dir=str(tmp_path), web_ui_port=0, parallelism=1,
                             checkpoint_interval_s=0)
    bootstrap_model(settings)
    model = ModelRegistry.for_settings(settings).load_current()
    n = settings.bias_records
    measurements, weights = [], []
    fish = [("salmon" if i % 2 else "trout", i) for i in range(1, 2 * n + 1)]
    fish += [("pike", 100 + i) for i in range(2 * n)]
    for k, (species, i) in enumerate(fish):
        if species == "salmon":
            lean = 0.06 + 0.01 * ((i % 5) - 2)
        elif species == "pike":
            lean = 0.03 + 0.04 * (-1) ** i  # t = 2.8 over 15 records
        else:
            lean = 0.05 * (-1) ** (i // 2)
        record = {"Species": species, "Fish_Id": i, "Length": 88.0 + i % 7, "Height": 19.0}
        frame = pd.DataFrame([{k: record[k] for k in ("Species", "Length", "Height")}])
        predicted = float(model.estimator.predict(frame)[0])
        weight = 1e-9 if i == 100 else round(predicted / (1 + lean), 6)
        measured, weighed = T0 + 2 * k * S, T0 + (2 * k + 10) * S
        measurements.append(Sent({**record, "Timestamp": measured}, measured, key=i))
        weights.append(Sent({"Species": species, "Fish_Id": i, "Weight": weight,
                             "Timestamp": weighed}, weighed, key=i))
    out = run_in_memory(settings, measurements, weights, tmp_path / "outputs")

    diffs = {d["Fish_Id"]: d for d in out.values("diffs")}
    assert len(diffs) == 4 * n
    assert max(d["Error"] for d in diffs.values() if d["Fish_Id"] != 100) < 0.1
    events = out.values("retrains")
    bias = {e["Species"][0]: e for e in events if e["Rule"] == "bias"}
    assert set(bias) == {"salmon"} and sum(e["Rule"] == "bias" for e in events) == 1, events
    assert not [e for e in events if e["Species"][0] in ("salmon", "trout")
                and e["Rule"] != "bias"], events
    event = bias["salmon"]
    salmon = sorted(i for i, d in diffs.items() if d["Species"] == "salmon")
    assert event["Count"] == n
    assert (event["Fish_Id_Start"], event["Fish_Id_End"]) == (salmon[0], salmon[n - 1])
    assert event["Change_Fish_Id"] == salmon[0]
    assert event["Change_Timestamp"] == diffs[salmon[0]]["Timestamp"]
    assert event["Timestamp_End"] == diffs[salmon[n - 1]]["Timestamp"]
    assert event["ModelVersions"] == [1] and event["ModelVersionMax"] == 1
    assert event["ErrorAvg"] == pytest.approx(
        sum(diffs[i]["Error"] for i in salmon[:n]) / n, abs=1e-9)

"""The bench runs: its cheapest part end to end (no figure is asserted, only that each
number it reports was measured and written)."""

from __future__ import annotations

import json

import pytest

from fishweight.jobs.bench import BenchConfig, run_bench
from fishweight.jobs.bench.output import table, write
from fishweight.runtime.settings import Settings

pytestmark = pytest.mark.slow  # an embedded broker


def test_bench_http_part_measures_and_writes_json(tmp_path):
    settings = Settings.load(state_dir=str(tmp_path), web_ui_port=0)
    results = run_bench(settings, BenchConfig(http_seconds=0.5), {"http"})
    assert results.http["requests"] > 0 and results.http["p99_ms"] > 0
    assert results.peak_rss_mb > 0  # the broker and this process were sampled
    text = table(results)
    assert "HTTP per event" in text and "peak RSS" in text
    written = json.loads(write(results, settings).read_text())
    assert written["http"]["requests"] == results.http["requests"]


def test_load_generator_sends_the_burst_then_the_paced_fish_with_their_weights(settings):
    """The latency part's load, run as the bench runs it (its own process)."""
    import subprocess
    import sys
    import time

    from tests.kafka_helpers import read_values

    now_ms = time.time() * 1000
    out = subprocess.run(
        [sys.executable, "-m", "fishweight.jobs.bench", "generate", settings.bootstrap_servers,
         settings.topic_measurement, settings.topic_weight, "20", "1.5", "7",
         str(now_ms + 500), str(now_ms + 60_000)],
        capture_output=True, text=True, timeout=60, check=True)
    sent, counted = map(int, out.stdout.split())
    assert sent == 7 + 30  # the burst, then 20/s for 1.5 s
    measurements = read_values(settings, settings.topic_measurement, expected=sent)
    weights = read_values(settings, settings.topic_weight, expected=sent)
    assert sorted(m["Fish_Id"] for m in measurements) == list(range(1, sent + 1))
    assert sorted(w["Fish_Id"] for w in weights) == list(range(1, sent + 1))
    # A paced fish's weight is stamped WEIGHT_DELAY_S after its measurement.
    by_id = {m["Fish_Id"]: m["Timestamp"] for m in measurements}
    assert all(w["Timestamp"] - by_id[w["Fish_Id"]] == 1000 for w in weights
               if w["Fish_Id"] > 7)
    # The count reported for the measured window: the paced fish stamped inside it (the
    # burst is warm-up, never measured).
    assert 0 < counted == sum(now_ms + 500 <= t < now_ms + 60_000
                              for fish, t in by_id.items() if fish > 7)


@pytest.mark.extended  # installs a commit and runs a pair: ~50 s (the default suite < 15 min)
def test_ab_runs_each_commits_own_code_and_measures_it(tmp_path):
    """``fishweight bench --ab``: a commit is installed apart and its run imports it.

    Here as an A/A pair run together (``--ab-together``): both runs at once, each with its
    own broker and state directory.
    """
    from fishweight.jobs.bench import ab

    head = ab.resolve("HEAD")
    assert len(head) == 40 and ab.resolve(ab.WORKTREE) == ab.WORKTREE
    root = tmp_path / "bench" / "ab"  # where bench_ab installs, under the state directory
    site = ab.install(head, root)
    assert (site / "fishweight" / "sql" / "10_score.sql").is_file()  # package data too
    assert ab.install(head, root) == site  # kept for the next call
    assert ab.install(ab.WORKTREE, root) is None  # the code installed here
    # run_once raises unless a run imported the commit's code from `site`.
    together = ab.bench_ab(Settings.load(state_dir=str(tmp_path)), "HEAD", "HEAD", pairs=1,
                           fish=2_000, parallelism=1, together=True)
    assert together["input_records"] == 4_000 and together["together"]
    base, new = together["records_per_s"]["base"], together["records_per_s"]["new"]
    assert len(base) == len(new) == 1 and base[0] > 0 and new[0] > 0
    assert together["ratios"] == [new[0] / base[0]]
    logs = sorted(p.name for p in (root / "runs").glob("*/*.log"))
    assert logs == ["ab-base-1.broker.log", "ab-base-1.log", "ab-new-1.broker.log",
                    "ab-new-1.log"]  # each run's stderr and its broker's, kept
    result = {"base": head, "new": ab.WORKTREE, "records_per_s": {"base": [2.0, 4.0],
                                                                   "new": [3.0, 4.0]},
              "ratios": [1.5, 1.0], "median_ratio": 1.25, "mean_ratio_of_means": 7 / 6}
    assert "| 1 | 2 | 3 | 1.50x |" in ab.table(result) and "**1.25x**" in ab.table(result)


@pytest.mark.extended  # two Flink runs of the bench, ~45 s: the default suite stays < 15 min
def test_throughput_part_pairs_a_passthrough_with_the_full_job_and_writes_both_rates(
        tmp_path, monkeypatch):
    # As after the bench's earlier parts ran Flink in this process: PyFlink's flags in
    # os.environ must not reach the runs (their own JVM would not start).
    monkeypatch.setenv("PYFLINK_GATEWAY_DISABLED", "true")
    # A setting given to the bench (as `--sink-linger-ms 7` would) reaches each run.
    settings = Settings.load(state_dir=str(tmp_path), web_ui_port=0, sink_linger_ms=7,
                             store_uri="mongodb://fish:secret@db:27017/fishweight",
                             metrics_port=9249)
    config = BenchConfig(job_fish=2_000, passthrough_fish=2_000, parallelisms=(1,),
                         throughput_pairs=1)
    results = run_bench(settings, config, {"throughput"})
    p1 = results.throughput["p1"]
    for name in ("passthrough", "full_job"):
        (run,) = p1[name]
        assert run["input_records"] == 4_000 and run["output_span_s"] > 0
        assert run["settings"]["sink_linger_ms"] == 7 and run["settings"]["parallelism"] == 1
        assert run["settings"]["metrics_port"] == 0  # runs side by side cannot share one
        # The trainer's store settings stay out of a run (settings_env, trainer=False).
        assert run["settings"]["store_uri"] == "" and "secret" not in json.dumps(run)
        assert p1[f"median_{name}_steady"] == run["steady"] > 0
    assert p1["median_ratio_steady"] == p1["full_job"][0]["steady"] / p1["passthrough"][0]["steady"]
    assert p1["median_ratio_warm"] == p1["full_job"][0]["warm"] / p1["passthrough"][0]["warm"]
    assert "full job / passthrough, p=1 (median of 1 pairs)" in table(results)
    written = json.loads(write(results, settings).read_text())
    assert written["throughput"]["p1"]["ratio_warm"] == p1["ratio_warm"]


def test_rates_steady_over_the_whole_output_warm_over_its_second_half():
    from fishweight.jobs.bench.runs import rates

    # 9 output records: the first half over 6 s (a slow start), the second over 1 s.
    stamps = [0, 1_500, 3_000, 4_500, 6_000, 6_250, 6_500, 6_750, 7_000]
    r = rates(stamps, 8)
    assert r["output_span_s"] == 7.0 and r["steady"] == 8 / 7.0
    assert r["warm"] == 4 / 1.0  # half the input records in the 1 s from 6 s to 7 s


def test_latency_rounds_take_each_job_run_against_the_floor_of_its_own_round():
    from fishweight.jobs.bench import Results
    from fishweight.jobs.bench.latency import FLOOR, latency_medians

    def run(rate, p50, p99, job="full job"):
        return {"job": job, "rate_per_s": rate, "seconds": 60, "predicted": 6000, "sent": 6000,
                "p50_ms": p50, "p99_ms": p99, "max_ms": 2 * p99, "checkpoints_completed": 9,
                "checkpoints_failed": 0, "state_backend": "hashmap",
                "last_checkpoint_mb": 4.0, "last_checkpoint_ms": 30, "restarts": 0}

    # The third round's host was slow: job and floor alike. Against its own floor the
    # job is +70 / +130 ms there, against the median floor it would look +90 / +190.
    rounds = [{"100": run(100, 100, 200), "1000": run(1000, 200, 450),
               FLOOR: run(100, 35, 80, "passthrough")},
              {"100": run(100, 90, 180), "1000": run(1000, 210, 400),
               FLOOR: run(100, 33, 70, "passthrough")},
              {"100": run(100, 125, 270), "1000": run(1000, 190, 500),
               FLOOR: run(100, 55, 140, "passthrough")}]
    medians = latency_medians(rounds)
    assert medians["100"] == {"rounds": 3, "p50_ms": 100.0, "p99_ms": 200.0,
                              "p50_ms_above_floor": 65.0, "p99_ms_above_floor": 120.0}
    assert medians["1000"] == {"rounds": 3, "p50_ms": 200.0, "p99_ms": 450.0}
    assert medians[FLOOR] == {"rounds": 3, "p50_ms": 35.0, "p99_ms": 80.0}
    shown = table(Results(latency={"rounds": rounds, "medians": medians}))
    assert "| latency at 100/s, full job, round 3 (60 s after 0 s warm-up) | p50 125 ms" in shown
    assert ("| latency at 100/s, full job, median of 3 rounds | p50 100 ms, p99 200 ms; "
            "above its round's floor p50 +65, p99 +120 ms |") in shown


def test_the_command_line_sets_the_sizes_of_the_bench_and_refuses_what_cannot_run():
    from fishweight.jobs.bench import BenchConfig
    from fishweight.jobs.cli import bench_config, build_parser

    def config(*argv: str) -> BenchConfig:
        return bench_config(build_parser().parse_args(["bench", *argv]), BenchConfig())

    assert config() == BenchConfig()  # nothing given, nothing changed
    long = config("--job-fish", "750000", "--passthrough-fish", "1000000",
                  "--throughput-pairs", "2", "--parallelisms", "2", "--rates", "100,1000",
                  "--latency-rounds", "3")
    assert (long.job_fish, long.passthrough_fish, long.throughput_pairs) == (750_000,
                                                                             1_000_000, 2)
    assert long.parallelisms == (2,) and long.rates == (100, 1000)
    assert long.latency_rounds == 3
    for argv, option in ((("--job-fish", "0"), "--job-fish"),
                         (("--latency-rounds", "-1"), "--latency-rounds"),
                         (("--parallelisms", "1,0"), "--parallelisms"),
                         (("--parallelisms", "two"), "--parallelisms"),
                         (("--rates", ""), None)):
        if option is None:  # an empty --rates keeps the default rates
            assert config(*argv).rates == BenchConfig().rates
            continue
        with pytest.raises(ValueError, match=option):
            config(*argv)

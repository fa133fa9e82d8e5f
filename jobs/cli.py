"""``fishweight`` command line: one subcommand per process of the pipeline.

Every setting of ``fishweight.runtime.settings.Settings`` is also an option
(``--bootstrap-servers``, ``--window-s``, ...), so explicit options win over
environment variables.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from fishweight.runtime.options import (
    configure_logging,
    settings_from,
    settings_parser,
    stop_event_on_signals,
)
from fishweight.runtime.settings import Settings

# Subcommands ---------------------------------------------------------------------

def cmd_broker(args: argparse.Namespace, settings: Settings) -> int:
    from fishweight.runtime.broker import EmbeddedBroker
    from fishweight.runtime.kafka import create_topics

    stop = stop_event_on_signals()
    with EmbeddedBroker(port=args.port) as broker:
        create_topics(broker.bootstrap_servers, settings.all_topics, settings.topic_partitions)
        print(f"embedded Kafka broker (Tansu, memory storage) on {broker.bootstrap_servers}",
              flush=True)
        print(f"  export FISHWEIGHT_BOOTSTRAP_SERVERS={broker.bootstrap_servers}", flush=True)
        print("Ctrl-C stops it; its data is gone then.", flush=True)
        stop.wait()
    return 0


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from fishweight.jobs.simulate import simulate
    from fishweight.runtime.kafka import create_topics, require_kafka
    from fishweight.scenarios import load_scenario

    scenario = with_wire(load_scenario(args.scenario), args.wire)
    servers = require_kafka(settings, "simulate")
    create_topics(servers, [settings.topic_measurement, settings.topic_weight],
                  settings.topic_partitions, settings.topic_replication_factor)
    stop = stop_event_on_signals()
    result = simulate(settings, settings.bootstrap_servers, scenario, speed=args.speed,
                      start_ms=args.start_ms, stop=stop)
    print(f"sent {result.measurements} measurements and {result.weights} weights"
          + (" (stopped early)" if result.stopped_early else ""))
    return 0


def cmd_fetch_jars(args: argparse.Namespace, settings: Settings) -> int:
    from fishweight.runtime import jars

    for path in jars.fetch(settings.resolved_jar_dir):
        print(f"{path}  sha256 ok")
    return 0


def cmd_predict(args: argparse.Namespace, settings: Settings) -> int:
    from fishweight.jobs.predict import run_local

    return run_local(settings, stop_event_on_signals())


def cmd_bootstrap_model(args: argparse.Namespace, settings: Settings) -> int:
    from fishweight.models.bootstrap import bootstrap_model

    version, scores = bootstrap_model(settings, args.scenario, force=args.force)
    where = settings.resolved_model_dir
    if version is None:
        print(f"a model is already published in {where}; nothing done (--force publishes anew)")
    else:
        print(f"published model version {version} in {where}")
    print(f"training fit on {scores['n']} salmon: R^2 = {scores['r2']:.3f}, "
          f"MAE = {scores['mae']:.4f} kg, mean relative error = "
          f"{scores['mean_relative_error']:.4f}")
    return 0


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    from fishweight.models.registry import ModelRegistry

    registry = ModelRegistry.for_settings(settings)
    if args.action == "list":
        lines = registry.describe()
        print("\n".join(lines) if lines else f"no models in {settings.resolved_model_dir}")
        return 0
    version = registry.rollback(args.version)
    print(f"now serving model version {version}")
    return 0


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from fishweight.jobs.train import TrainerService
    from fishweight.models.registry import ModelRegistry
    from fishweight.runtime.kafka import require_kafka

    ModelRegistry.for_settings(settings).load_current()  # a clear error if none
    require_kafka(settings, "train")
    stats = TrainerService(settings).run(stop_event_on_signals())
    print(f"trainer stopped: {stats}")
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from fishweight.jobs.demo import DEFAULT_SPEED, run_demo
    from fishweight.scenarios import load_scenario, scenario_text

    scenario = with_wire(load_scenario(args.scenario), args.wire)
    run_dir = (Path(settings.state_dir) / "demo" / time.strftime("run-%Y%m%d-%H%M%S")).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "scenario.toml").write_text(scenario_text(args.scenario))
    configure_logging(args.log_level, run_dir / "demo.log")
    print(f"fishweight demo: run directory {run_dir}")
    print(f"  logs: {run_dir}/demo.log, predict.log, trainer.log, broker.log")
    stop = stop_event_on_signals()
    try:
        result = run_demo(settings.replace(state_dir=str(run_dir)), scenario,
                          DEFAULT_SPEED if args.speed is None else args.speed,
                          run_dir, stop)
    except (RuntimeError, TimeoutError) as exc:
        print(f"\nfishweight demo failed: {exc}", file=sys.stderr)
        return 1
    if result.summary:
        c = result.summary["counts"]
        print(f"report: {run_dir / 'report.md'} and {run_dir / 'report.png'}")
        print(f"  {c['measurements_produced']} fish, {c['predictions']} predictions, "
              f"{c['joined_pairs']} joined, {c['retrain_events']} retrain events, "
              f"decisions {result.summary['decisions']}, recovery from fish "
              f"{result.summary['recovery_fish_id']}")
    if not result.completed:
        print("the run did not complete (stopped early or timed out); the report covers "
              "what ran", file=sys.stderr)
        return 1
    return 0


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from fishweight.jobs.report import RunData
    from fishweight.jobs.report_files import write_report
    from fishweight.scenarios import load_scenario

    run_dir = args.run_dir.resolve()
    if not args.from_kafka and not (run_dir / "topics").is_dir():
        raise FileNotFoundError(f"{run_dir} is not a demo run's directory (it has no topics/); "
                                "runs are under <state_dir>/demo/run-*")
    scenario_file = run_dir / "scenario.toml"
    scenario = load_scenario(args.scenario or (scenario_file if scenario_file.exists() else None))
    settings = settings.replace(state_dir=str(run_dir))
    if args.from_kafka:
        from fishweight.jobs.demo import read_run_from_kafka

        data = read_run_from_kafka(settings)
    else:
        data = RunData.load(run_dir, settings)
    summary = write_report(data, scenario, settings, run_dir)
    print(f"report: {run_dir / 'report.md'} and {run_dir / 'report.png'}")
    print(json.dumps(summary["counts"]))
    return 0


def cmd_cluster(args: argparse.Namespace, settings: Settings) -> int:
    from fishweight.runtime import cluster

    try:
        if args.action == "start":
            started = cluster.start(settings, timeout_s=args.timeout)
            print("\n".join(cluster.start_lines(started, settings)), flush=True)
            return 0
        if args.action == "stop":
            print("\n".join(cluster.stop(settings, savepoint=not args.no_savepoint)))
            return 0
        if args.action == "add-taskmanager":
            print("\n".join(cluster.add_taskmanager(settings, timeout_s=args.timeout).lines()))
            return 0
        current = cluster.status(settings)
        print("\n".join(current.lines()))
        return 0 if current.running else 3
    except cluster.ClusterError as exc:
        print(f"fishweight cluster {args.action}: {exc}", file=sys.stderr)
        return 1


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from fishweight.jobs.status import job_status, lines
    from fishweight.runtime.flink_rest import local_url

    status = job_status(settings, args.url or local_url(settings.web_ui_port))
    print("\n".join(lines(status)), file=sys.stdout if status.running else sys.stderr)
    return 0 if status.running else 1


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from fishweight.jobs.bench import PARTS, BenchConfig, run_bench
    from fishweight.jobs.bench.output import table, write

    if args.ab:
        return _bench_ab(args, settings)
    try:
        config = bench_config(args, BenchConfig.quick() if args.quick else BenchConfig())
    except ValueError as exc:
        print(f"fishweight bench: {exc}", file=sys.stderr)
        return 2
    parts = set(args.parts.split(","))
    unknown = parts - PARTS
    if unknown:
        print(f"fishweight bench: unknown part(s) {sorted(unknown)}; choose from "
              f"{sorted(PARTS)}", file=sys.stderr)
        return 2
    results = run_bench(settings, config, parts)
    print(table(results))
    print(f"results: {write(results, settings)}")
    return 0


def bench_config(args: argparse.Namespace, config):
    """``config`` (a ``BenchConfig``) with what the command line sets.

    ValueError, with the option's name, for a value out of range.
    """
    if args.rates:
        config.rates = _counts(args.rates, "--rates")
    if args.rate_seconds:
        config.rate_seconds = args.rate_seconds
    if args.parallelisms:
        config.parallelisms = _counts(args.parallelisms, "--parallelisms")
    for name in ("latency_rounds", "job_fish", "passthrough_fish", "throughput_pairs"):
        if (value := getattr(args, name)) is not None:
            if value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
            setattr(config, name, value)
    return config


def _counts(text: str, option: str) -> tuple[int, ...]:
    """A comma-separated list of whole numbers of at least 1."""
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise ValueError(f"{option} takes whole numbers of at least 1, comma-separated, "
                         f"not {text!r}")
    return counts


def _bench_ab(args: argparse.Namespace, settings: Settings) -> int:
    from fishweight.jobs.bench import ab
    from fishweight.jobs.bench.output import write_json

    base, _, new = args.ab.partition("..")
    result = ab.bench_ab(settings, base, new or ab.WORKTREE, args.pairs, args.ab_fish,
                         args.ab_parallelism, together=args.ab_together)
    print(ab.table(result))
    print(f"results: {write_json(result, settings, 'ab')}")
    return 0


def with_wire(scenario, wire: str | None):
    """The scenario with its records in ``wire`` format (``--wire``), else as it says."""
    import dataclasses

    return scenario if wire is None else dataclasses.replace(scenario, wire=wire)


def _wire_option(p: argparse.ArgumentParser) -> None:
    from fishweight.scenarios import WIRES

    p.add_argument("--wire", choices=WIRES, default=None,
                   help="record format: fishweight (integer Fish_Id, Timestamp) or tutorial "
                        "(the tutorial's producers: Fish_Id a string, no Timestamp); "
                        "default: the scenario's `wire`, else fishweight")


def build_parser() -> argparse.ArgumentParser:
    parent = settings_parser()
    parser = argparse.ArgumentParser(prog="fishweight", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("broker", parents=[parent], help="run an embedded Kafka broker")
    p.add_argument("--port", type=int, default=9092, help="loopback port (0 = any free)")
    p.set_defaults(func=cmd_broker)

    p = sub.add_parser("simulate", parents=[parent], help="produce the factory's fish")
    p.add_argument("--scenario", type=Path, default=None, help="scenario TOML file")
    p.add_argument("--speed", type=_speed, default=1.0,
                   help="simulated seconds per wall second (0 = as fast as possible)")
    p.add_argument("--start-ms", type=int, default=None,
                   help="event time of the first measurement, epoch ms (default: now; "
                        "earlier with --speed above 1, so that the last record time is now)")
    _wire_option(p)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("fetch-jars", parents=[parent], help="cache the Kafka connector jars")
    p.set_defaults(func=cmd_fetch_jars)

    p = sub.add_parser("predict", parents=[parent],
                       help="run the prediction job in a local MiniCluster with the web UI")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("status", parents=[parent],
                       help="the running prediction job: state, records, error per species, "
                            "model, dead letters, lag (exit code 1 when not running)")
    p.add_argument("--url", default=None,
                   help="Flink REST address (default http://127.0.0.1:<web_ui_port>; a "
                        "session cluster's is in `fishweight cluster status`)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("bootstrap-model", parents=[parent],
                       help="train the initial model (100 simulated salmon) and publish it")
    p.add_argument("--scenario", type=Path, default=None,
                   help="scenario TOML whose salmon profile to sample")
    p.add_argument("--force", action="store_true", help="publish even if a model exists")
    p.set_defaults(func=cmd_bootstrap_model)

    p = sub.add_parser("models", parents=[parent], help="list or roll back model versions")
    p.add_argument("action", choices=["list", "rollback"])
    p.add_argument("version", type=int, nargs="?", default=None,
                   help="rollback target (default: the version before the current one)")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("train", parents=[parent],
                       help="run the trainer: store joined records, retrain on trigger events")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("demo", parents=[parent],
                       help="run the whole loop on embedded defaults and write a report")
    p.add_argument("--scenario", type=Path, default=None, help="scenario TOML file")
    p.add_argument("--speed", type=_speed, default=None,
                   help="simulated seconds per wall second (default 5; 1 = real time)")
    _wire_option(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("cluster", parents=[parent],
                       help="start, stop or query a local Flink session cluster for `flink run`")
    p.add_argument("action", choices=["start", "stop", "status", "add-taskmanager"])
    p.add_argument("--timeout", type=float, default=120.0,
                   help="start, add-taskmanager: seconds to wait for the TaskManagers")
    p.add_argument("--no-savepoint", action="store_true",
                   help="stop: cancel running jobs instead of stopping them with a savepoint")
    p.set_defaults(func=cmd_cluster)

    p = sub.add_parser("bench", parents=[parent],
                       help="serving, throughput, latency, drift, memory, HTTP baseline")
    p.add_argument("--quick", action="store_true", help="smaller sizes and shorter rates")
    p.add_argument("--parts", default="serving,http,throughput,profile,latency,drift",
                   help="comma-separated: serving, http, throughput, profile, latency, drift")
    p.add_argument("--rates", default="", help="latency rates per second, e.g. 100,1000,5000")
    p.add_argument("--rate-seconds", type=float, default=0.0,
                   help="seconds per latency rate (default 60, --quick 20)")
    p.add_argument("--latency-rounds", type=int, default=None,
                   help="latency: rounds of every rate and its own floor (default 1); the "
                        "table gives the medians (two runs differ by as much as the "
                        "target's margin)")
    p.add_argument("--job-fish", type=int, default=None,
                   help="throughput: fish per full-job run (default 250000, --quick 40000)")
    p.add_argument("--passthrough-fish", type=int, default=None,
                   help="throughput: fish per passthrough run (default 500000, --quick 200000)")
    p.add_argument("--throughput-pairs", type=int, default=None,
                   help="throughput: pairs of runs at each parallelism (default 3, --quick 1)")
    p.add_argument("--parallelisms", default="",
                   help="throughput: comma-separated parallelisms (default 1,2, --quick 1)")
    p.add_argument("--ab", default="", metavar="BASE[..NEW]",
                   help="instead of the parts: the full job's throughput at two commits, "
                        "interleaved (NEW default: this working tree), and each pair's ratio")
    p.add_argument("--pairs", type=int, default=5, help="--ab: runs of each commit")
    p.add_argument("--ab-fish", type=int, default=125_000, help="--ab: fish per run")
    p.add_argument("--ab-parallelism", type=int, default=1, help="--ab: the jobs' parallelism")
    p.add_argument("--ab-together", action="store_true",
                   help="--ab: run each pair's two runs at the same time (a slow spell of the "
                        "machine then moves both, not their ratio)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("report", parents=[parent], help="redraw the report of a finished run")
    p.add_argument("--run-dir", type=Path, required=True, help="the demo's run directory")
    p.add_argument("--scenario", type=Path, default=None,
                   help="scenario TOML (default: the copy in the run directory)")
    p.add_argument("--from-kafka", action="store_true",
                   help="re-read the output topics from Kafka instead of the run's copies")
    p.set_defaults(func=cmd_report)
    return parser


def _speed(text: str) -> float:
    """A --speed (argparse's type): 0 (as fast as possible) or a finite number >= 0.01."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value == 0 or 0.01 <= value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be 0 (as fast as possible) or >= 0.01, got "
                                         f"{text}")
    return value


def main(argv: list[str] | None = None) -> int:
    from fishweight.models.registry import ModelError
    from fishweight.models.store import StoreError
    from fishweight.runtime import MissingExtra, SnapshotMisfit
    from fishweight.runtime.jars import MissingJarsError
    from fishweight.runtime.kafka import KafkaNotConfigured
    from fishweight.runtime.processes import PortInUse
    from fishweight.scenarios import ScenarioError

    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        settings = settings_from(args)
    except (ValueError, TypeError) as exc:
        print(f"fishweight {args.command}: {exc}", file=sys.stderr)
        return 2
    try:
        return args.func(args, settings)
    except (ScenarioError, KafkaNotConfigured, ModelError, StoreError, MissingExtra,
            MissingJarsError, PortInUse, SnapshotMisfit, subprocess.CalledProcessError,
            OSError) as exc:
        # Problems the user can fix: say what is wrong and how, without a traceback. An
        # OSError is the environment's (a broker that does not answer: TimeoutError; a
        # file that is missing or not readable).
        print(f"fishweight {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

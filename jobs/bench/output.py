"""A bench run's results as a markdown table (``table``) and as JSON (``write``)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from fishweight.jobs.bench.latency import FLOOR
from fishweight.jobs.bench.serving import TUNED
from fishweight.runtime.settings import Settings

if TYPE_CHECKING:
    from fishweight.jobs.bench import Results


def table(r: Results) -> str:
    rows = ["| figure | value |", "|---|---|"]
    if r.serving:
        d, t = r.serving["default"], r.serving["tuned"]
        rows.append(f"| UDF serving, default bundles | {d['predictions_per_s']:,.0f} "
                    "predictions/s |")
        rows.append(f"| UDF serving, tuned bundles {TUNED} | {t['predictions_per_s']:,.0f} "
                    "predictions/s |")
        rows.append(f"| model alone in Python (batch 10k, no Flink) | "
                    f"{r.serving['model_in_python']['predictions_per_s']:,.0f} predictions/s |")
    if r.http:
        rows.append(f"| HTTP per event, single-threaded server (tutorial) | "
                    f"{r.http['requests_per_s']:,.0f} predictions/s "
                    f"(p99 {r.http['p99_ms']:.1f} ms) |")
    if r.serving and r.http:
        best = max(r.serving["default"]["predictions_per_s"],
                   r.serving["tuned"]["predictions_per_s"])
        rows.append(f"| UDF / HTTP per event | {best / r.http['requests_per_s']:,.0f}x |")
    for key, value in sorted(r.throughput.items()):
        pairs = len(value["ratio_steady"])
        for name in ("passthrough", "full_job"):
            rows.append(f"| {name.replace('_', ' ')}, {key[:1]}={key[1:]} "
                        f"({value[name][0]['input_records']:,} records, median of {pairs} "
                        f"runs) | steady {value[f'median_{name}_steady']:,.0f} / warm "
                        f"{value[f'median_{name}_warm']:,.0f} records/s |")
        rows.append(f"| full job / passthrough, {key[:1]}={key[1:]} (median of {pairs} pairs) "
                    f"| steady {value['median_ratio_steady']:.3f} / warm "
                    f"{value['median_ratio_warm']:.3f} |")
    for number, runs in enumerate(r.latency.get("rounds", ()), start=1):
        for lat in runs.values():
            rows.append(_latency_row(lat, number if len(r.latency["rounds"]) > 1 else None))
    for key, m in r.latency.get("medians", {}).items():
        if len(r.latency["rounds"]) < 2 or m["p50_ms"] is None:
            continue
        above = ("" if m.get("p50_ms_above_floor") is None else
                 f"; above its round's floor p50 +{m['p50_ms_above_floor']:.0f}, "
                 f"p99 +{m['p99_ms_above_floor']:.0f} ms")
        what = "100/s, passthrough" if key == FLOOR else f"{key}/s, full job"
        rows.append(f"| latency at {what}, median of {m['rounds']} rounds | "
                    f"p50 {m['p50_ms']:.0f} ms, p99 {m['p99_ms']:.0f} ms{above} |")
    if r.profile:
        rows.append(f"| profile: {r.profile['fish']:,} fish backlog, full job "
                    f"(p={1}) | {r.profile['records_per_s']:,.0f} records/s incl. start-up |")
        for t in r.profile["tasks"][:4]:
            rows.append(f"| busy {t['busy_ms_per_s']:.0f} / back-pressured "
                        f"{t['backpressured_ms_per_s']:.0f} ms/s | {t['task']} |")
        cpu = r.profile["cpu"]
        for kind, used in cpu["cpu_s_by_process"].items():
            if used < 0.05:
                continue
            rows.append(f"| CPU of {kind} | {used:.1f} s of {cpu['seconds']:.1f} s x "
                        f"{cpu['cpus']} cores |")
        for name, used in list(cpu["cpu_s_by_jvm_thread"].items())[:8]:
            rows.append(f"| CPU of JVM thread `{name}` | {used:.1f} s |")
    if r.drift:
        d = r.drift

        def sec(key: str) -> str:
            return "n/a" if d[key] is None else f"{d[key]:.2f} s"

        rows.append(f"| drift at {d['rate_per_s']} fish/s, weight {d['weight_delay_s']:.0f} s "
                    f"after: first walleye -> retrain event | {sec('drift_to_event_s')} |")
        rows.append(f"| retrain event -> new version published (trainer) | "
                    f"{sec('event_to_published_s')} |")
        rows.append(f"| published -> first prediction by it | {sec('published_to_served_s')} |")
        rows.append(f"| retrain event -> new version served | {sec('event_to_served_s')} "
                    f"({d['walleye_predicted_by_old_model']} walleye predicted by the old "
                    "model) |")
    rows.append(f"| peak RSS of the stack | {r.peak_rss_mb:,.0f} MB |")
    return "\n".join(rows)


def write(r: Results, settings: Settings) -> Path:
    return write_json(asdict(r), settings, "bench")


def write_json(data: dict, settings: Settings, prefix: str) -> Path:
    """``data`` as ``<state_dir>/bench/<prefix>-<time>.json``; returns the path."""
    out_dir = Path(settings.state_dir) / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def _latency_row(lat: dict, round_number: int | None) -> str:
    """One latency run: its percentiles, checkpoints, restarts and the broker's CPU."""
    where = "" if round_number is None else f", round {round_number}"
    return (f"| latency at {lat['rate_per_s']}/s, {lat.get('job', 'full job')}{where} "
            f"({lat['seconds']:.0f} s after "
            f"{lat.get('warmup_seconds', 0):.0f} s warm-up) | "
            + (f"p50 {lat['p50_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms, "
               f"max {lat['max_ms']:.0f} ms; " if lat["predicted"] else "")
            + f"{lat['predicted']}/{lat['sent']} predicted, checkpoints "
            f"{lat['checkpoints_completed']} ok / {lat['checkpoints_failed']} failed "
            f"({lat['state_backend']}, last {lat['last_checkpoint_mb']:.1f} MB in "
            f"{lat['last_checkpoint_ms']} ms), {lat['restarts']} restarts"
            + (f"; broker {lat['broker_cores_first']:.2f} -> "
               f"{lat['broker_cores_last']:.2f} cores"
               if lat.get("broker_cores_last") is not None else "") + " |")

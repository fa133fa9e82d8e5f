"""One measured run over a backlog, in a process of its own, against a fresh broker.

The run is of the full job or of the raw passthrough; the throughput part and ``--ab``
both measure this way. A run in the bench's own process would share one JVM with every run
before it (its JIT-compiled code, its heap) and one broker that slows as it fills
(docs/performance.md, "What limits it"); a fresh process and a fresh broker give every
run, of either kind, the same start.

A run's figures come from the broker times of its output (one record per fish on each of
two topics: predictions and diffs for the job, the copies for the passthrough):

- ``steady``: the input records over the span from the first to the last output record,
  so neither start-up nor the end of a bounded job counts, but the JVM's warm-up does;
- ``warm``: the second half of the output over its span (from the median output record's
  time to the last one), once the JIT has compiled the hot code, as in a job that has run
  for a while.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fishweight.runtime.broker import EmbeddedBroker
from fishweight.runtime.kafka import read_topic
from fishweight.runtime.processes import inherit_env, settings_env
from fishweight.runtime.settings import Settings, redact_uri

KINDS = ("job", "passthrough")

# A run: it prints where its fishweight came from (``--ab`` checks it), the settings it ran
# with and the two output topics that get one record per fish.
_RUN = """
import dataclasses, json, sys
import fishweight.udfs
from fishweight.jobs.bench.load import fresh, produce_fish
from fishweight.models.bootstrap import bootstrap_model
from fishweight.runtime.settings import Settings

kind, servers, state_dir, tag, fish, parallelism = sys.argv[1:7]
s = fresh(Settings.load(state_dir=state_dir), servers, tag, parallelism=int(parallelism),
          checkpoint_interval_s=0, web_ui_port=0)
bounds = produce_fish(s, int(fish))
if kind == "job":
    from fishweight.jobs.predict import build_pipeline
    bootstrap_model(s)
    build_pipeline(s, bounds=bounds).execute()
else:
    from fishweight.jobs.bench.throughput import passthrough_statements
    passthrough_statements(s, bounds).execute().wait()
print(json.dumps({"code": fishweight.udfs.__file__, "settings": dataclasses.asdict(s),
                  "topics": [s.topic_prediction, s.topic_diff]}))
"""


def output_stamps(servers: str, topics: tuple[str, ...], expected: int) -> list[int]:
    """The broker times (ms) of the output records in ``topics``, sorted; ``expected`` each."""
    stamps = sorted(r.timestamp for topic in topics
                    for r in read_topic(servers, topic, expected=expected, idle_s=2.0,
                                        timeout_s=600.0))
    if len(stamps) < len(topics) * expected:
        raise RuntimeError(f"throughput: {len(stamps)} output records in {topics}, "
                           f"expected {len(topics) * expected}")
    return stamps


def rates(stamps: list[int], input_records: int) -> dict:
    """``steady`` and ``warm`` records/s of a run (module docstring) from its output times."""
    span_s = max((stamps[-1] - stamps[0]) / 1000, 1e-3)
    half = (len(stamps) - 1) // 2
    warm_span_s = max((stamps[-1] - stamps[half]) / 1000, 1e-3)
    # The share of the output that arrived after its median record, as input records.
    share = (len(stamps) - 1 - half) / max(len(stamps) - 1, 1)
    return {"input_records": input_records, "output_span_s": span_s,
            "steady": input_records / span_s, "warm": input_records * share / warm_span_s}


def _report(stdout: str, tag: str, log_path: Path) -> dict:
    """The run's report: its last line that is one (the JVM may print to stdout too)."""
    for line in reversed(stdout.splitlines()):
        try:
            report = json.loads(line)
        except ValueError:
            continue
        if isinstance(report, dict) and "topics" in report:
            return report
    raise RuntimeError(f"bench: the run {tag} printed no report (stdout: {stdout[-500:]!r}); "
                       f"its log is {log_path}")


def run_once(kind: str, site: Path | None, state_dir: Path, tag: str, fish: int,
             parallelism: int, log_path: Path, settings: Settings | None = None) -> dict:
    """One run of ``kind`` over ``fish`` fish: its ``rates`` and the settings it ran with.

    ``site`` (``--ab``): a directory with another commit's ``fishweight``, put first on
    ``PYTHONPATH`` (the run fails unless it imported that code); None: the code installed
    here. ``settings`` (the bench's, e.g. ``--state-backend``) reach the run through its
    environment; its topics, broker and state directory are its own. The run's stderr
    goes to ``log_path``, the broker's log beside it.
    """
    if kind not in KINDS:
        raise ValueError(f"run_once: kind must be one of {KINDS}, not {kind!r}")
    env = settings_env(settings, trainer=False) if settings is not None else inherit_env()
    # No Prometheus port: two runs side by side (``--ab-together``) would both bind it.
    env["FISHWEIGHT_METRICS_PORT"] = "0"
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            [str(site), *filter(None, [env.get("PYTHONPATH")])])
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with EmbeddedBroker(log_path=log_path.with_suffix(".broker.log")) as broker, \
            open(log_path, "w") as stderr:
        done = subprocess.run(
            [sys.executable, "-c", _RUN, kind, broker.bootstrap_servers, str(state_dir), tag,
             str(fish), str(parallelism)],
            # Another commit's run is not started in the checkout: ``python -c`` puts its
            # directory first on sys.path, and the checkout's ``fishweight/`` would shadow
            # the commit's. Otherwise here, where relative paths in ``settings`` point.
            cwd=log_path.parent if site is not None else None, env=env,
            stdout=subprocess.PIPE, stderr=stderr, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"bench: the run {tag} failed (exit {done.returncode}); "
                               f"its output is in {log_path}")
        ran = _report(done.stdout, tag, log_path)
        if site is not None and not Path(ran["code"]).is_relative_to(site):
            raise RuntimeError(f"ab: the run {tag} imported fishweight from {ran['code']}, "
                               f"not from {site}")
        stamps = output_stamps(broker.bootstrap_servers, tuple(ran["topics"]), fish)
    # As the bench writes it: no password of a URI setting (store_uri) in the JSON.
    ran_with = {name: redact_uri(value) if isinstance(value, str) else value
                for name, value in ran["settings"].items()}
    return {**rates(stamps, 2 * fish), "settings": ran_with}

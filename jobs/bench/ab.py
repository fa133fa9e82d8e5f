"""``fishweight bench --ab BASE[..NEW]``: the full job's throughput at two commits, interleaved.

The machine this is measured on is a virtual machine whose speed drifts by 15-30 % within
an hour (docs/performance.md), so a rate measured at one commit in one run and at another
commit later says little. This part runs the same backlog through the job of each commit
in turn, ``pairs`` times (BASE, NEW, BASE, NEW, ...), each run in a fresh process with a
fresh embedded broker, and reports every pair's ratio and their median.

Each commit's code is extracted (``git archive``) and installed without dependencies into
its own directory under ``<state_dir>/bench/ab/<commit>/`` (kept for the next call); a run
puts that directory first on ``PYTHONPATH``, so the client, the job and its Python workers
import that commit's ``fishweight``, with this environment's PyFlink and libraries. NEW
may be ``worktree``: the code installed here, uncommitted changes included. A run uses only
what every commit of the bench has had (``fresh``, ``produce_fish``, ``build_pipeline``):
its job reads a backlog of ``fish`` fish (two records each) and stops at its end; the rate
is the throughput part's steady rate (input records over the span between the first and the
last output record's broker time, ``output_span_s``), read here by this commit's code.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from fishweight.jobs.bench.throughput import output_span_s
from fishweight.runtime.broker import EmbeddedBroker
from fishweight.runtime.settings import Settings

log = logging.getLogger("fishweight.bench")

WORKTREE = "worktree"

# One run, in a process of its own, with the commit's code first on PYTHONPATH. It prints
# where its fishweight came from and the two output topics that get one record per fish.
_RUN = """
import json, sys
import fishweight.udfs
from fishweight.jobs.bench.load import fresh, produce_fish
from fishweight.jobs.predict import build_pipeline
from fishweight.models.bootstrap import bootstrap_model
from fishweight.runtime.settings import Settings

servers, state_dir, tag, fish, parallelism = sys.argv[1:6]
s = fresh(Settings.load(state_dir=state_dir), servers, tag, parallelism=int(parallelism),
          checkpoint_interval_s=0, web_ui_port=0)
bootstrap_model(s)
bounds = produce_fish(s, int(fish))
build_pipeline(s, bounds=bounds).execute()
print(json.dumps({"code": fishweight.udfs.__file__,
                  "topics": [s.topic_prediction, s.topic_diff]}))
"""


def resolve(commit: str) -> str:
    """The full hash of ``commit`` (``worktree`` stays as it is)."""
    if commit == WORKTREE:
        return commit
    return _git("rev-parse", "--verify", f"{commit}^{{commit}}").strip()


def install(commit: str, root: Path) -> Path | None:
    """A directory holding ``commit``'s ``fishweight`` package (None: the installed code)."""
    if commit == WORKTREE:
        return None
    site = root / commit / "site"
    if (site / "fishweight").is_dir():
        return site
    with tempfile.TemporaryDirectory(prefix="fishweight-ab-") as tmp:
        archive = Path(tmp) / "tree.tar"
        _git("archive", "--format=tar", f"--output={archive}", commit)
        tree = Path(tmp) / "tree"
        with tarfile.open(archive) as tar:
            tar.extractall(tree, filter="data")
        staged = root / commit / "site.partial"
        shutil.rmtree(staged, ignore_errors=True)  # left by an install that failed
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                        "--target", str(staged), str(tree)], check=True)
        staged.replace(site)
    log.info("ab: %s installed in %s", commit[:12], site)
    return site


def run_once(site: Path | None, state_dir: Path, tag: str, fish: int, parallelism: int,
             log_path: Path) -> float:
    """Records/s of one run of the full job at the code in ``site``, on a fresh broker."""
    env = dict(os.environ)
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            [str(site), *filter(None, [env.get("PYTHONPATH")])])
    with EmbeddedBroker(log_path=log_path.with_suffix(".broker.log")) as broker, \
            open(log_path, "w") as stderr:
        done = subprocess.run(
            [sys.executable, "-c", _RUN, broker.bootstrap_servers, str(state_dir), tag,
             str(fish), str(parallelism)],
            # Not in the checkout: ``python -c`` puts its directory first on sys.path,
            # and the checkout's own ``fishweight/`` would shadow the commit's.
            cwd=log_path.parent, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True,
            check=False)
        if done.returncode != 0:
            raise RuntimeError(f"ab: the run {tag} failed (exit {done.returncode}); "
                               f"its output is in {log_path}")
        ran = json.loads(done.stdout.strip().splitlines()[-1])
        if site is not None and not Path(ran["code"]).is_relative_to(site):
            raise RuntimeError(f"ab: the run {tag} imported fishweight from {ran['code']}, "
                               f"not from {site}")
        topics = tuple(ran["topics"])
        return 2 * fish / output_span_s(broker.bootstrap_servers, topics, fish)


def bench_ab(settings: Settings, base: str, new: str, pairs: int, fish: int,
             parallelism: int) -> dict:
    """``pairs`` interleaved runs of each commit; every pair's ratio NEW / BASE."""
    root = Path(settings.state_dir).resolve() / "bench" / "ab"
    commits = {"base": resolve(base), "new": resolve(new)}
    sites = {role: install(commit, root) for role, commit in commits.items()}
    run_dir = root / "runs" / time.strftime("%Y%m%d-%H%M%S")  # each run's log
    run_dir.mkdir(parents=True, exist_ok=True)
    rates: dict[str, list[float]] = {"base": [], "new": []}
    for i in range(1, pairs + 1):
        for role in ("base", "new"):
            tag = f"ab-{role}-{i}"
            rate = run_once(sites[role], root / "state" / commits[role], tag, fish,
                            parallelism, run_dir / f"{tag}.log")
            rates[role].append(rate)
            log.info("ab pair %d, %s (%s): %.0f records/s", i, role, commits[role][:12], rate)
    ratios = [n / b for b, n in zip(rates["base"], rates["new"], strict=True)]
    return {"base": commits["base"], "new": commits["new"], "fish": fish,
            "input_records": 2 * fish, "parallelism": parallelism,
            "records_per_s": rates, "ratios": ratios,
            "median_ratio": statistics.median(ratios),
            "mean_ratio_of_means": statistics.mean(rates["new"]) / statistics.mean(rates["base"])}


def table(result: dict) -> str:
    """The pairs as a markdown table, then the median and the means' ratio."""
    def short(c: str) -> str:
        return c if c == WORKTREE else c[:7]

    rows = [f"| pair | {short(result['base'])} (base) | {short(result['new'])} (new) | "
            "new / base |", "|---|---|---|---|"]
    for i, (b, n, r) in enumerate(zip(result["records_per_s"]["base"],
                                      result["records_per_s"]["new"], result["ratios"],
                                      strict=True), start=1):
        rows.append(f"| {i} | {b:,.0f} | {n:,.0f} | {r:.2f}x |")
    rows.append(f"| median ratio | | | **{result['median_ratio']:.2f}x** |")
    rows.append(f"| ratio of the means | {statistics.mean(result['records_per_s']['base']):,.0f}"
                f" | {statistics.mean(result['records_per_s']['new']):,.0f} | "
                f"{result['mean_ratio_of_means']:.2f}x |")
    return "\n".join(rows)


def _git(*args: str) -> str:
    top = Path(__file__).resolve().parents[2]
    done = subprocess.run(["git", "-C", str(top), *args], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ab: git {' '.join(args)}: {done.stderr.strip()} (the A/B needs "
                           "the project's git checkout)")
    return done.stdout

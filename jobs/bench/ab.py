"""``fishweight bench --ab BASE[..NEW]``: the full job's throughput at two commits, interleaved.

The machine this is measured on is a virtual machine whose speed drifts by 15-30 % within
an hour (docs/performance.md), so a rate measured at one commit in one run and at another
commit later says little. This part runs the same backlog through the job of each commit
in turn, ``pairs`` times (BASE, NEW, then NEW, BASE, ...), each run in a fresh process with a
fresh embedded broker, and reports every pair's ratio and their median.

Each commit's code is extracted (``git archive``) and installed without dependencies into
its own directory under ``<state_dir>/bench/ab/<commit>/`` (kept for the next call); a run
puts that directory first on ``PYTHONPATH``, so the client, the job and its Python workers
import that commit's ``fishweight``, with this environment's PyFlink and libraries. NEW
may be ``worktree``: the code installed here, uncommitted changes included. A run
(``runs.run_once``) uses only what every commit of the bench has had (``fresh``,
``produce_fish``, ``build_pipeline``): its job reads a backlog of ``fish`` fish (two records
each) and stops at its end; the rate is the run's steady rate (input records over the span
between the first and the last output record's broker time), read by this code.

``together`` runs each pair's two runs at the same time instead (the start order
alternating), each with its own broker and state. Both then share whatever the machine
does during that minute, so a slow spell of the host moves both rates and not their
ratio: on 2026-12-06 six pairs of one commit side by side gave 0.964-1.014x, where
pairs run one after the other spread over 0.64-1.32x in the same hour. Each run has
half the machine, so its rate is not the job's rate alone; the ratio is the figure.
"""

from __future__ import annotations

import logging
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

from fishweight.jobs.bench import runs
from fishweight.runtime.settings import Settings

log = logging.getLogger("fishweight.bench")

WORKTREE = "worktree"


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


def bench_ab(settings: Settings, base: str, new: str, pairs: int, fish: int,
             parallelism: int, together: bool = False) -> dict:
    """``pairs`` interleaved (or ``together``: simultaneous) runs of each commit.

    Every pair's ratio NEW / BASE, their median and the ratio of the means.
    """
    root = Path(settings.state_dir).resolve() / "bench" / "ab"
    commits = {"base": resolve(base), "new": resolve(new)}
    sites = {role: install(commit, root) for role, commit in commits.items()}
    run_dir = root / "runs" / time.strftime("%Y%m%d-%H%M%S")  # each run's log
    run_dir.mkdir(parents=True, exist_ok=True)
    rates: dict[str, list[float]] = {"base": [], "new": []}

    def run(role: str, i: int) -> float:
        tag = f"ab-{role}-{i}"
        # A state directory per role: the two runs of an A/A pair run at the same time.
        return runs.run_once("job", sites[role], root / "state" / f"{role}-{commits[role]}",
                             tag, fish, parallelism, run_dir / f"{tag}.log",
                             settings)["steady"]

    for i in range(1, pairs + 1):
        order = ("base", "new") if i % 2 else ("new", "base")
        pair = _together(run, order, i) if together else {role: run(role, i) for role in order}
        for role in ("base", "new"):
            rates[role].append(pair[role])
            log.info("ab pair %d, %s (%s): %.0f records/s", i, role, commits[role][:12],
                     pair[role])
    ratios = [n / b for b, n in zip(rates["base"], rates["new"], strict=True)]
    return {"base": commits["base"], "new": commits["new"], "fish": fish,
            "input_records": 2 * fish, "parallelism": parallelism, "together": together,
            "records_per_s": rates, "ratios": ratios,
            "median_ratio": statistics.median(ratios),
            "mean_ratio_of_means": statistics.mean(rates["new"]) / statistics.mean(rates["base"])}


def _together(run, order: tuple[str, str], i: int) -> dict[str, float]:
    """Both roles' runs of pair ``i`` at once; a failed run fails the pair."""
    results: dict[str, float] = {}
    errors: list[BaseException] = []

    def one(role: str) -> None:
        try:
            results[role] = run(role, i)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(e)

    threads = [threading.Thread(target=one, args=(role,), name=f"ab-{role}") for role in order]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in errors[1:]:
        log.error("ab pair %d: a second run failed too: %s", i, e)
    if errors:
        raise errors[0]
    return results


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
    if result.get("together"):
        rows.append("\nEach pair's two runs ran at the same time, each on half the machine: "
                    "compare the ratios, not the rates with a run alone.")
    return "\n".join(rows)


def _git(*args: str) -> str:
    top = Path(__file__).resolve().parents[2]
    done = subprocess.run(["git", "-C", str(top), *args], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ab: git {' '.join(args)}: {done.stderr.strip()} (the A/B needs "
                           "the project's git checkout)")
    return done.stdout

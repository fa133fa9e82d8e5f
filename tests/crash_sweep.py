"""Kill the trainer at every step of storing, fitting, signing, publishing and committing.

``tests/test_trainer_kills.py`` runs this as its own process::

    python -m tests.crash_sweep CONFIG.json RESULTS.jsonl

It imports the trainer once, then for kill point K = 1, 2, ... forks twice on a fresh
copy of a prepared state directory (model registry, signing key, empty store):

1. the trainer with a hook that SIGKILLs it at its K-th step (a step is the moment just
   before or just after one call of the functions in ``STEPS``);
2. the restarted trainer, without the hook, until every offset of its topics is
   committed (the event decided, the diffs stored).

After each child the driver reads the model directory and the decision log (files only:
the parent holds no Kafka client and starts no thread, so forking it is safe) and writes
one JSON line per kill point; the test asserts on them. The sweep ends at the first K
the trainer never reaches: it then handled everything with the hook armed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

import joblib

from fishweight.jobs.train import TrainerService
from fishweight.models import decisions
from fishweight.models.decisions import Trainer, read_decisions
from fishweight.models.registry import ModelError, ModelRegistry
from fishweight.models.store import SqliteStore, open_store
from fishweight.runtime.settings import Settings

# (owner, attribute, label): every call is two kill points, before and after it.
STEPS = [
    (SqliteStore, "append", "store"),
    (decisions, "fit", "fit"),
    (ModelRegistry, "sign", "sign"),
    (joblib, "dump", "dump"),
    (tempfile, "mkstemp", "mkstemp"),
    (os, "fsync", "fsync"),
    (os, "replace", "rename"),
    (ModelRegistry, "point_to", "point_to"),
    (Trainer, "_record", "record"),
    (TrainerService, "_commit", "commit"),
]


def arm(point: int, where: Path) -> None:
    """Wrap the steps so that the process SIGKILLs itself at its ``point``-th one."""
    seen = [0]

    def step(label: str, phase: str) -> None:
        seen[0] += 1
        if seen[0] == point:
            where.write_text(f"{label}:{phase}")
            os.kill(os.getpid(), signal.SIGKILL)

    for owner, name, label in STEPS:
        original = getattr(owner, name)

        def wrapper(*args, _original=original, _label=label, **kwargs):
            step(_label, "before")
            result = _original(*args, **kwargs)
            step(_label, "after")
            return result

        setattr(owner, name, wrapper)


def run_trainer(settings: Settings, timeout_s: float, report: Path | None) -> int:
    """Poll until every record up to the end offsets at start is handled; 0 when done.

    ``poll_once`` stores and decides synchronously and commits before it returns, so a
    consumer position at the end offset means handled and committed. (Not ``committed
    >= end``: a transactional topic ends with a commit marker, past the last record.)
    """
    service = TrainerService(settings)
    parts = service.retrain_parts + service.diff_parts
    ends = service.consumer.end_offsets(parts)
    deadline = time.monotonic() + timeout_s
    done = False
    with service.trainer.registry.exclusive_writer():
        while not done and time.monotonic() < deadline:
            service.poll_once(timeout_ms=100)
            done = all(service.consumer.position(tp) >= ends[tp]
                       and (ends[tp] == 0 or service.consumer.committed(tp) is not None)
                       for tp in parts)
    if report is not None:
        report.write_text(json.dumps({"committed_all": done,
                                      "stored": service.trainer.store.count()}))
    service.close()
    return 0 if done else 1


def stored_by_trainer(settings: Settings, timeout_s: float = 120,
                      wait_for_all: bool = True) -> int:
    """Run the trainer until it has handled every record; how many its store holds.

    ``wait_for_all=False``: for 30 s at most, whatever it can read by then (a
    read_committed reader may not reach the end offsets).
    """
    if wait_for_all:
        assert run_trainer(settings, timeout_s, None) == 0, "the trainer did not catch up"
    else:
        run_trainer(settings, 30, None)
    store = open_store(settings.resolved_store_uri)
    try:
        return store.count()
    finally:
        store.close()


def in_child(function, *args) -> int:
    """Run ``function`` in a forked child; its exit code, or -signal when killed."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = function(*args)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def observe(settings: Settings) -> dict:
    """What a reader of the model directory sees now, and what the decision log says."""
    registry = ModelRegistry.for_settings(settings)
    current = registry.current_version()
    verified = {}
    for version in registry.versions():
        try:
            registry.load(version)
            verified[version] = True
        except ModelError:
            verified[version] = False
    manifests = {}
    for version in registry.versions():
        try:
            m = registry.manifest(version)
            manifests[version] = {"parent": m.get("parent_version"),
                                  "trigger": m.get("trigger"), "reason": m.get("reason")}
        except ModelError:
            manifests[version] = None
    try:
        registry.load_current()
        current_loads = True
    except ModelError:
        current_loads = False
    leftovers = sorted(p.name for p in registry.root.rglob(".*")
                       if p.name not in (".lock", ".trainer.lock"))
    return {
        "current": current, "current_loads": current_loads,
        "verified": verified, "manifests": manifests, "leftovers": leftovers,
        "decisions": [{k: d.get(k) for k in ("action", "reason", "version", "event")}
                      for d in read_decisions(settings)],
    }


def sweep(config: dict, results: Path, max_points: int = 400) -> None:
    base = Settings(**config["settings"])
    template = Path(config["template"])
    with open(results, "w") as out:
        for point in range(1, max_points + 1):
            state = Path(config["work"]) / f"k{point:03d}"
            shutil.copytree(template, state)
            settings = dataclasses.replace(base, state_dir=str(state),
                                           consumer_group=f"{base.consumer_group}-k{point}")
            where, report = state / "killed-at", state / "restart.json"

            def killed(settings=settings, point=point, where=where):
                arm(point, where)
                return run_trainer(settings, config["timeout_s"], None)

            first = in_child(killed)
            if first == 0:  # the hook never fired: every step was swept
                out.write(json.dumps({"point": point, "end": True}) + "\n")
                return
            after_kill = observe(settings)
            second = in_child(run_trainer, settings, config["timeout_s"], report)
            out.write(json.dumps({
                "point": point, "first_exit": first,
                "killed_at": where.read_text() if where.exists() else None,
                "after_kill": after_kill, "restart_exit": second,
                "restart": json.loads(report.read_text()) if report.exists() else None,
                "after_restart": observe(settings),
            }) + "\n")
            out.flush()


if __name__ == "__main__":
    sweep(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))

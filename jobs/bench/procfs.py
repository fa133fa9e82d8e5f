"""What /proc says about a tree of processes: resident memory and CPU seconds per thread.

The peak-RSS sampler (part e) and the CPU figures of the profile and latency parts.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from fishweight.runtime.processes import descendants


def tree_rss_mb(roots: list[int]) -> float:
    """Resident memory of these processes and all their descendants, in MB."""
    pids = set(roots).union(*(descendants(r) for r in roots))
    total = 0
    for pid in pids:
        try:  # statm: size resident shared ... (pages)
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total * os.sysconf("SC_PAGE_SIZE") / 2**20


class RssSampler(threading.Thread):
    def __init__(self, roots: list[int], every_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.roots, self.every_s = roots, every_s
        self.peak_mb = 0.0
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(self.every_s):
            self.peak_mb = max(self.peak_mb, tree_rss_mb(self.roots))


_TICK = os.sysconf("SC_CLK_TCK")


def _kind(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    text = b" ".join(argv).decode(errors="replace")
    if pid == os.getpid():
        # With python_workers = loopback, the UDFs run inside the client process too.
        return "Python process (Flink client, bench clients; loopback UDF worker if any)"
    if argv and argv[0].endswith(b"java"):
        return "JVM (Flink MiniCluster)"
    if "tansu" in text:
        return "broker"
    if "pyflink" in text or "beam" in text:
        return "Python UDF workers"
    return "other"


def _stat(path: str) -> tuple[str, float] | None:
    """A process's or thread's name and the CPU seconds it has used, from /proc."""
    try:
        stat = Path(path).read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return stat[stat.index("(") + 1:stat.rindex(")")], (int(fields[11]) + int(fields[12])) / _TICK


def thread_cpu(roots: list[int]) -> dict[tuple[int, int], tuple[str, str, float]]:
    """(pid, tid) -> (process kind, thread name, CPU seconds so far)."""
    out = {}
    for pid in set(roots).union(*(descendants(r) for r in roots)):
        kind = _kind(pid)
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            if (stat := _stat(f"/proc/{pid}/task/{tid}/stat")) is not None:
                out[(pid, int(tid))] = (kind, *stat)
    return out


def cpu_profile(before: dict, after: dict, seconds: float) -> dict:
    """CPU seconds per process kind and per JVM thread name over ``seconds``.

    Flink names a task's thread after the task; Linux cuts the name to 15 characters.
    """
    kinds: dict[str, float] = {}
    threads: dict[str, float] = {}
    for key, (kind, name, cpu) in after.items():
        used = cpu - (before[key][2] if key in before else 0.0)
        kinds[kind] = kinds.get(kind, 0.0) + used
        if kind.startswith("JVM"):
            threads[name] = threads.get(name, 0.0) + used
    top = sorted(threads.items(), key=lambda t: -t[1])[:12]
    return {"seconds": seconds, "cpus": os.cpu_count(),
            "cpu_s_by_process": dict(sorted(kinds.items(), key=lambda k: -k[1])),
            "cpu_s_by_jvm_thread": dict(top)}


def cpu_s(pid: int | None) -> float:
    """CPU seconds a process has used so far (0 when it is gone or not given)."""
    stat = _stat(f"/proc/{pid}/stat") if pid else None
    return stat[1] if stat else 0.0

"""Child processes that never outlive their parent and stop by their own PID."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from fishweight.runtime.settings import TRAINER_ONLY, Settings

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


# Loaded here, in the parent: between fork and exec a child of a process with threads
# (the bench's runs side by side) must not load a library or take a lock.
_LIBC = _libc() if sys.platform.startswith("linux") else None


def die_with_parent() -> None:
    """Run in the child between fork and exec: SIGTERM it when the parent dies (Linux).

    The kernel sends it when the thread that started the child ends, so a child is
    stopped by the thread that started it (``ChildProcess.stop``).
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def descendants(root: int) -> list[int]:
    """Every live process below ``root`` (by parent pid, whichever thread forked it)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            children.setdefault(int(stat[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class ChildProcess:
    """A command run in its own session, output to a log file, tied to our lifetime."""

    def __init__(self, name: str, command: list[str], log_path: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.command = command
        self.log_path = log_path
        self.env = env
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> ChildProcess:
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                self.command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, start_new_session=True,  # Ctrl-C reaches us, we stop children
                preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        atexit.register(self.stop)
        log.info("%s started, pid %d", self.name, self.process.pid)
        return self

    def exited(self) -> int | None:
        """The exit code if the process ended, else None."""
        return None if self.process is None else self.process.poll()

    def stop(self, first: signal.Signals = signal.SIGTERM, timeout_s: float = 20.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(first)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %d) ignored %s for %.0fs; killing it", self.name, proc.pid,
                        first.name, timeout_s)
            proc.kill()
            proc.wait(timeout=10)
        log.info("%s (pid %d) stopped with code %s", self.name, proc.pid, proc.returncode)


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def inherit_env(**extra: str) -> dict[str, str]:
    """Our environment for a child, without PyFlink's process-internal variables.

    After a Flink job ran in this process, PyFlink leaves flags such as
    ``PYFLINK_GATEWAY_DISABLED`` in ``os.environ``; a child Flink client that inherited
    them would refuse to start its own JVM gateway. An empty ``JAVA_HOME`` is dropped
    too.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYFLINK_", "_PYFLINK"))
           # An empty JAVA_HOME (left by a test or a shell) makes PyFlink run `bin/java`.
           and not (k == "JAVA_HOME" and not v)}
    return {**env, **extra}


def settings_env(settings: Settings, *, trainer: bool) -> dict[str, str]:
    """A child's environment with ``settings`` as FISHWEIGHT_* variables (``inherit_env``).

    Only a trainer (``trainer=True``) gets the store's credentials; for every other child
    they are left out, also when this process inherited them from its own environment.
    """
    env = inherit_env(**settings.as_env(trainer=trainer))
    if not trainer:
        for name in TRAINER_ONLY:
            env.pop(Settings.env_name(name), None)
    return env


# Ports --------------------------------------------------------------------------------

class PortInUse(RuntimeError):
    """A port a setting names is taken; the message names the setting to change."""


def require_free_ports(settings, *names: str) -> None:
    """``PortInUse`` naming the setting when a port the settings name is taken (0 = off)."""
    for name in names:
        port = getattr(settings, name)
        if port and port_in_use(port):
            env = type(settings).__dataclass_fields__[name].metadata["env"]
            raise PortInUse(f"{name} {port} is taken (another job or cluster?); choose "
                            f"another with --{name.replace('_', '-')} or {env} (0 = off)")


def free_port() -> int:
    """A loopback port nothing listens on now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    """Something answers on this loopback port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def cmdline(pid: int) -> list[str]:
    """The command line of ``pid`` (empty when it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        pass
    try:  # no /proc (macOS)
        return subprocess.run(["ps", "-p", str(pid), "-o", "args="], capture_output=True,
                              text=True, check=False).stdout.split()
    except OSError:
        return []


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def started(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot, from /proc); None when unknown.

    Tells a process from a later one that reuses its number.
    """
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def terminate(pids: list[int], timeout_s: float = 30.0) -> None:
    """SIGTERM each pid, SIGKILL those still alive after ``timeout_s``.

    Only the processes that were signalled: a pid reused meanwhile is left alone.
    """
    born = {pid: started(pid) for pid in pids}
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.2)
    for pid in pids:
        if alive(pid) and started(pid) == born[pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

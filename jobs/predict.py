"""The prediction job's entry point, for ``fishweight predict`` and ``flink run``.

Local MiniCluster with the web UI::

    fishweight predict --bootstrap-servers 127.0.0.1:9092

Session cluster (arguments follow the script; there is no -pyargs)::

    flink run -d -py jobs/predict.py --bootstrap-servers kafka:9092 --model-dir /models
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading

from jobs.broker import create_topics, wait_until_ready
from jobs.pipeline import build_pipeline
from jobs.settings import Settings
from models.registry import ModelError

log = logging.getLogger(__name__)


def check_ready(settings: Settings) -> None:
    """Fail early and clearly: Kafka reachable, topics present, a model published."""
    if not settings.bootstrap_servers:
        raise SystemExit("predict needs Kafka: pass --bootstrap-servers or set "
                         "FISHWEIGHT_BOOTSTRAP_SERVERS (e.g. from `fishweight broker`)")
    wait_until_ready(settings.bootstrap_servers)
    create_topics(settings.bootstrap_servers, settings.all_topics, settings.topic_partitions)


def run_local(settings: Settings, stop: threading.Event) -> int:
    """Run in a local MiniCluster until ``stop`` is set, then cancel the job."""
    check_ready(settings)
    try:
        pipeline = build_pipeline(settings, local=True)
    except ModelError as exc:
        print(f"fishweight predict: {exc}", file=sys.stderr)
        return 2
    job = pipeline.execute_async()
    if settings.web_ui_port:
        print(f"Flink web UI: http://localhost:{settings.web_ui_port}", flush=True)
    print(f"prediction job {job.get_job_id()} running; Ctrl-C stops it", flush=True)
    while not stop.wait(1.0):
        status = str(job.get_job_status().result())
        if status in ("FAILED", "CANCELED", "FINISHED"):
            print(f"prediction job ended: {status}", file=sys.stderr)
            return 0 if status == "FINISHED" else 1
    job.cancel().result()
    print("prediction job cancelled", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``flink run -py jobs/predict.py [settings options]``: submit to the cluster."""
    from jobs.cli import configure_logging, settings_from, settings_parser

    parser = argparse.ArgumentParser(prog="jobs/predict.py", parents=[settings_parser()],
                                     description=__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    settings = settings_from(args)
    check_ready(settings)
    try:
        pipeline = build_pipeline(settings, local=False)
    except ModelError as exc:
        print(f"jobs/predict.py: {exc}", file=sys.stderr)
        return 2
    job = pipeline.execute_async()
    print(f"submitted prediction job {job.get_job_id()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

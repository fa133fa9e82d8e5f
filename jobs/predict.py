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

from jobs.broker import KafkaNotConfigured, create_topics, require_kafka
from jobs.pipeline import build_pipeline
from jobs.settings import Settings
from models.registry import ModelError

log = logging.getLogger(__name__)


def start_job(settings: Settings, *, local: bool):
    """Check Kafka and the model, create missing topics, submit the job; return its client.

    Raises ``KafkaNotConfigured`` or ``ModelError`` with a message naming the fix.
    """
    servers = require_kafka(settings, "predict")
    create_topics(servers, settings.all_topics, settings.topic_partitions)
    return build_pipeline(settings, local=local).execute_async()


def run_local(settings: Settings, stop: threading.Event) -> int:
    """Run in a local MiniCluster until ``stop`` is set, then cancel the job."""
    job = start_job(settings, local=True)
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
    try:
        job = start_job(settings_from(args), local=False)
    except (KafkaNotConfigured, ModelError) as exc:
        print(f"jobs/predict.py: {exc}", file=sys.stderr)
        return 2
    print(f"submitted prediction job {job.get_job_id()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

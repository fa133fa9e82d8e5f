#!/usr/bin/env bash
# One-shot helper of docker/compose.yaml, installed in the image as
# /opt/fishweight/bin/submit.sh (it runs as the flink user, with the fishweight settings
# from the FISHWEIGHT_* environment).
#
#   submit.sh topics   create the pipeline's topics that are missing (names and
#                      partition count from the settings; existing ones are kept)
#   submit.sh job      submit the prediction job to the session cluster with
#                      `flink run -d -py .../fishweight/jobs/predict.py`, unless the
#                      prediction job is already live there; the job restores
#                      the newest savepoint or retained checkpoint (FISHWEIGHT_RESUME_FROM)
set -euo pipefail

PYTHON=/opt/fishweight/venv/bin/python
JOBMANAGER=${FLINK_JOBMANAGER:-jobmanager:8081}
JOB_NAMES=(fishweight-predict fishweight)  # jobs/predict.py's job name, its pipeline.name
JOB_FILE=${PREDICT_JOB_FILE:?PREDICT_JOB_FILE is set by the image}

create_topics() {
    "$PYTHON" - <<'EOF'
import logging

from fishweight.runtime.kafka import create_topics, partition_counts, wait_until_ready
from fishweight.runtime.settings import Settings

logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
logging.getLogger("kafka").setLevel(logging.WARNING)
s = Settings.load()
if not s.bootstrap_servers:
    raise SystemExit("submit.sh topics: FISHWEIGHT_BOOTSTRAP_SERVERS is not set")
wait_until_ready(s.bootstrap_servers, timeout_s=120)
create_topics(s.bootstrap_servers, s.all_topics, s.topic_partitions,
              s.topic_replication_factor)
for topic, count in sorted(partition_counts(s.bootstrap_servers, s.all_topics).items()):
    note = "" if count == s.topic_partitions else (
        f" (not FISHWEIGHT_TOPIC_PARTITIONS={s.topic_partitions}: an existing topic keeps "
        "its partitions; add some with kafka-topics.sh --alter)")
    print(f"topic {topic}: {count} partitions{note}", flush=True)
EOF
}

live_jobs() {
    "$PYTHON" - "$JOBMANAGER" "${JOB_NAMES[@]}" <<'EOF'
import json
import sys
import urllib.request

address, names = sys.argv[1], sys.argv[2:]
with urllib.request.urlopen(f"http://{address}/jobs/overview", timeout=10) as response:
    jobs = json.load(response)["jobs"]
print(" ".join(job["jid"] for job in jobs
               if job["name"] in names and job["state"] not in ("FAILED", "CANCELED", "FINISHED")))
EOF
}

submit_job() {
    local live
    live=$(live_jobs)
    if [[ -n "$live" ]]; then
        echo "submit.sh: the prediction job is already running on $JOBMANAGER (job $live);" \
             "not submitting it again"
        return 0
    fi
    echo "submit.sh: submitting $JOB_FILE to $JOBMANAGER" \
         "(delivery ${FISHWEIGHT_DELIVERY_GUARANTEE:-at-least-once}," \
         "parallelism ${FISHWEIGHT_PARALLELISM:-1}, resume from ${FISHWEIGHT_RESUME_FROM:-latest})"
    exec flink run -m "$JOBMANAGER" -d \
        -pyclientexec "$PYTHON" -pyexec "$PYTHON" \
        -py "$JOB_FILE"
}

case "${1:-job}" in
    topics) create_topics ;;
    job) submit_job ;;
    *) echo "usage: submit.sh topics|job" >&2; exit 2 ;;
esac

"""The latency part's load generator as a process: ``python -m fishweight.jobs.bench generate``."""

import sys

from fishweight.jobs.bench.load import generate

if __name__ == "__main__":  # the latency part's load generator, in its own process
    if len(sys.argv) == 10 and sys.argv[1] == "generate":
        servers, topic_m, topic_w, *numbers = sys.argv[2:]
        print(*generate(servers, topic_m, topic_w, *map(float, numbers[:2]), int(numbers[2]),
                        *map(float, numbers[3:])), flush=True)
    else:
        sys.exit("usage: python -m fishweight.jobs.bench generate SERVERS TOPIC_MEASUREMENT "
                 "TOPIC_WEIGHT RATE SECONDS WARM_FISH COUNT_FROM_MS COUNT_TO_MS")

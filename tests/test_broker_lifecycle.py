"""The embedded broker never outlives its owner."""

import os
import signal
import subprocess
import sys
import time

import pytest

from fishweight.runtime.kafka import wait_until_ready

pytestmark = pytest.mark.slow  # a real broker and/or MiniCluster


def _gone(pid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().split()[2] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


def _children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as fh:
        return [int(c) for c in fh.read().split()]


def test_broker_dies_with_a_killed_owner():
    owner = subprocess.Popen(
        [sys.executable, "-c",
         "import time\nfrom fishweight.runtime.broker import EmbeddedBroker\n"
         "b = EmbeddedBroker().start()\nprint(b.pid, b.bootstrap_servers, flush=True)\n"
         "time.sleep(120)\n"],
        stdout=subprocess.PIPE, text=True)
    pid, servers = owner.stdout.readline().split()
    wait_until_ready(servers)
    owner.kill()  # SIGKILL: no atexit, no finally
    owner.wait()
    assert _gone(int(pid)), "broker outlived a SIGKILLed owner"


def test_fishweight_broker_stops_on_ctrl_c():
    cli = subprocess.Popen([sys.executable, "-m", "fishweight.jobs.cli", "broker", "--port", "0"],
                           stdout=subprocess.PIPE, text=True)
    first = cli.stdout.readline()
    assert "embedded Kafka broker" in first
    servers = first.split()[-1]
    wait_until_ready(servers)
    children = _children(cli.pid)
    assert children, "no broker child process"
    os.kill(cli.pid, signal.SIGINT)
    assert cli.wait(timeout=15) == 0
    assert all(_gone(c) for c in children)

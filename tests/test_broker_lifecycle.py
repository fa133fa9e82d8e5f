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


def test_waiting_for_a_broker_that_is_still_starting_logs_no_error(caplog):
    """Until a server accepts connections the wait probes the port, not a Kafka client
    (kafka-python logs an ERROR for every refused connection: seen at every embedded
    broker's start in `make bench`)."""
    import logging
    import threading

    from fishweight.runtime.broker import EmbeddedBroker
    from fishweight.runtime.processes import free_port

    port = free_port()
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TimeoutError, match=f"127.0.0.1:{port} not ready after 0.5s: .*refused"):
        wait_until_ready(f"127.0.0.1:{port}", timeout_s=0.5)
    with pytest.raises(TimeoutError, match="is not host:port"):
        wait_until_ready("localhost", timeout_s=0.2)

    waited: list[BaseException | None] = []

    def wait() -> None:
        try:
            wait_until_ready(f"127.0.0.1:{port}", timeout_s=30)  # returns once it answers
            waited.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            waited.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(1.0)  # refused for a second: the broker is not there yet
    # Started from this thread: the broker dies with the thread that started it.
    with EmbeddedBroker(port=port):
        waiter.join(timeout=40)
    assert waited == [None]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


def test_a_second_broker_on_a_taken_port_is_a_one_line_error():
    """It must not find the first one's listener and report itself ready."""
    from fishweight.runtime.broker import EmbeddedBroker

    with EmbeddedBroker() as first:
        cli = subprocess.run([sys.executable, "-m", "fishweight.jobs.cli", "broker", "--port",
                              str(first.port)], capture_output=True, text=True, timeout=60)
        assert first.exited() is None
    assert cli.returncode == 2, cli.stderr
    assert cli.stderr.startswith(f"fishweight broker: port {first.port} is taken"), cli.stderr
    assert "Traceback" not in cli.stderr and "embedded Kafka broker" not in cli.stdout


def test_common_mistakes_on_the_command_line_are_one_line_errors(tmp_path):
    """A broker that does not answer, a run directory that is not one, a negative speed."""
    from fishweight.runtime.processes import free_port

    def fishweight(*args):
        return subprocess.run([sys.executable, "-m", "fishweight.jobs.cli", *args,
                               "--state-dir", str(tmp_path)],
                              capture_output=True, text=True, timeout=120)

    down = fishweight("simulate", "--bootstrap-servers", f"127.0.0.1:{free_port()}")
    assert down.returncode == 2 and "not ready after 20.0s" in down.stderr, down.stderr
    not_a_run = fishweight("report", "--run-dir", str(tmp_path))
    assert not_a_run.returncode == 2 and "is not a demo run's directory" in not_a_run.stderr
    negative = fishweight("demo", "--speed", "-1")
    assert negative.returncode == 2 and "must be 0 (as fast as possible)" in negative.stderr
    assert all("Traceback" not in result.stderr for result in (down, not_a_run, negative))
    assert len(down.stderr.splitlines()) == len(not_a_run.stderr.splitlines()) == 1, (
        down.stderr, not_a_run.stderr)  # argparse adds its usage to the third


def test_terminate_kills_what_ignores_sigterm_and_only_that():
    from fishweight.runtime.processes import alive, started, terminate

    stubborn = subprocess.Popen(["bash", "-c", "trap '' TERM; while :; do sleep 0.1; done"])
    time.sleep(0.3)
    born = started(stubborn.pid)
    assert born is not None
    terminate([stubborn.pid], timeout_s=1.0)
    assert stubborn.wait(timeout=10) == -signal.SIGKILL and not alive(stubborn.pid)
    assert started(os.getpid()) != born  # the start time tells processes apart

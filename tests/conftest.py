"""Shared fixtures: one real embedded Kafka broker per test session, fresh topics per test."""

from __future__ import annotations

import itertools
import os
import uuid

import pytest

from fishweight.runtime.broker import EmbeddedBroker
from fishweight.runtime.kafka import create_topics
from fishweight.runtime.processes import alive
from fishweight.runtime.settings import Settings

_broker_pids: list[int] = []


@pytest.fixture(scope="session")
def kafka():
    """Bootstrap servers of an embedded Tansu broker (or FISHWEIGHT_TEST_BOOTSTRAP_SERVERS)."""
    external = os.environ.get("FISHWEIGHT_TEST_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    with EmbeddedBroker() as broker:
        _broker_pids.append(broker.pid)
        yield broker.bootstrap_servers


_counter = itertools.count()


def fresh_settings(kafka: str, state_dir, **overrides) -> Settings:
    """Settings with topics unique to the caller, created with 3 partitions."""
    suffix = f"{next(_counter)}-{uuid.uuid4().hex[:6]}"
    given = {"web_ui_port": 0, **overrides}
    s = Settings.load(bootstrap_servers=kafka, state_dir=str(state_dir), **given).suffixed(
        suffix)
    create_topics(kafka, s.all_topics, s.topic_partitions)
    return s


@pytest.fixture
def settings(kafka, tmp_path) -> Settings:
    return fresh_settings(kafka, tmp_path / "state")


def pytest_collection_modifyitems(config, items):
    """Keep the fast tier fast: a test that needs the broker must be marked slow."""
    unmarked = [item.nodeid for item in items
                if "kafka" in getattr(item, "fixturenames", ())
                and not item.get_closest_marker("slow")]
    if unmarked:
        raise pytest.UsageError("tests that use the broker must be marked slow: "
                                + ", ".join(unmarked))


def pytest_sessionfinish(session, exitstatus):
    """Fail the run if a broker started by the tests outlived them."""
    stray = [pid for pid in _broker_pids if alive(pid)]
    if stray:
        session.exitstatus = 1
        print(f"\nERROR: embedded broker process(es) still running after tests: {stray}")

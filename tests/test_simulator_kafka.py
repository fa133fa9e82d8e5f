"""The simulator against a real (embedded) Kafka broker."""

import dataclasses
import json

import pytest

from fishweight.jobs.simulate import simulate
from fishweight.runtime.kafka import partition_counts, read_topic
from fishweight.scenarios import (
    MEASUREMENT,
    WEIGHT,
    Block,
    events,
    load_scenario,
    parse_scenario,
)

pytestmark = pytest.mark.slow  # a real broker and/or MiniCluster

START = 1_700_000_000_000


def test_topics_created_with_three_partitions(settings):
    counts = partition_counts(settings.bootstrap_servers, settings.all_topics)
    assert counts == {topic: 3 for topic in settings.all_topics}


def _read(settings, topic, n):
    return read_topic(settings.bootstrap_servers, topic, expected=n)


def test_default_scenario_lands_in_kafka(settings):
    scenario = load_scenario()
    result = simulate(settings, settings.bootstrap_servers, scenario, speed=0, start_ms=START)
    assert (result.measurements, result.weights) == (180, 180)
    measurements = _read(settings, settings.topic_measurement, 180)
    weights = _read(settings, settings.topic_weight, 180)
    assert len(measurements) == 180 and len(weights) == 180
    expected = {(kind, r["Fish_Id"]): r for _, kind, r in events(scenario, START)}
    for kind, records in ((MEASUREMENT, measurements), (WEIGHT, weights)):
        for msg in records:
            value = json.loads(msg.value)
            assert value == expected[(kind, value["Fish_Id"])]
            assert msg.key == str(value["Fish_Id"]).encode()
            assert msg.timestamp == value["Timestamp"]  # Kafka record time = event time
    # A fish's measurement and weight share a key, hence a partition number.
    part_m = {json.loads(m.value)["Fish_Id"]: m.partition for m in measurements}
    part_w = {json.loads(m.value)["Fish_Id"]: m.partition for m in weights}
    assert part_m == part_w
    assert len(set(part_m.values())) == 3


def test_the_tutorial_wire_format(settings):
    """`--wire tutorial`: the tutorial's producers' records, String keys, record time."""
    scenario = dataclasses.replace(load_scenario(), wire="tutorial",
                                   sequence=(Block("salmon", 3), Block("walleye", 2)))
    simulate(settings, settings.bootstrap_servers, scenario, speed=0, start_ms=START)
    for topic, fields, delay in ((settings.topic_measurement, ["Length", "Height"], 0),
                                 (settings.topic_weight, ["Weight"], 10_000)):
        records = sorted(_read(settings, topic, 5), key=lambda m: int(m.key))
        assert len(records) == 5
        for i, msg in enumerate(records):
            value = json.loads(msg.value)
            assert list(value) == ["Species", "Fish_Id", *fields]  # no Timestamp
            assert value["Fish_Id"] == str(i + 1) and msg.key == value["Fish_Id"].encode()
            assert value["Species"] == ("salmon" if i < 3 else "walleye")
            assert msg.timestamp == START + 2000 * i + delay  # the event time


def test_event_time_does_not_depend_on_speed(settings):
    scenario = parse_scenario({
        "seed": 3, "interval_s": 2.0, "weight_delay_s": 10.0,
        "species": {"salmon": {"length": {"mean": 88, "sd": 5}, "height": {"mean": 19, "sd": 1},
                               "weight": {"length": 0.05, "height": 0.01, "noise_sd": 0.1}}},
        "sequence": [{"species": "salmon", "count": 8}],
    })
    # 8 fish span 24 simulated seconds; at speed 40 that is 0.6 s of wall time.
    simulate(settings, settings.bootstrap_servers, scenario, speed=40, start_ms=START)
    fast_topic = settings.topic_measurement
    fast = sorted(json.loads(m.value)["Timestamp"] for m in _read(settings, fast_topic, 8))
    weights = {json.loads(m.value)["Fish_Id"]: json.loads(m.value)["Timestamp"]
               for m in _read(settings, settings.topic_weight, 8)}
    assert fast == [START + 2000 * i for i in range(8)]
    assert [weights[i] for i in range(1, 9)] == [START + 2000 * i + 10_000 for i in range(8)]

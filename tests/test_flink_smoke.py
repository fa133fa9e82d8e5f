"""Flink local MiniCluster: Kafka JSON -> Python UDF -> Kafka, every record read back."""

import json

import pytest
from pyflink.table import DataTypes
from pyflink.table.udf import udf

from fishweight.runtime.flink_env import create_table_env
from fishweight.runtime.kafka import produce, read_topic
from tests.kafka_helpers import bounded_offsets

pytestmark = pytest.mark.slow  # a real broker and/or MiniCluster


def test_kafka_to_python_udf_to_kafka(settings):
    settings = settings.replace(parallelism=2)
    rows = [{"Fish_Id": i, "Length": 80.0 + i / 10} for i in range(1, 201)]
    ends = produce(settings.bootstrap_servers, settings.topic_measurement, rows,
                   keys=[r["Fish_Id"] for r in rows])
    t_env = create_table_env(settings)
    t_env.execute_sql(f"""
        CREATE TABLE source_rows (Fish_Id BIGINT, Length DOUBLE) WITH (
            'connector' = 'kafka', 'topic' = '{settings.topic_measurement}',
            'properties.bootstrap.servers' = '{settings.bootstrap_servers}',
            'scan.startup.mode' = 'earliest-offset',
            'scan.bounded.mode' = 'specific-offsets',
            'scan.bounded.specific-offsets' = '{bounded_offsets(ends)}',
            'format' = 'json')""")
    t_env.execute_sql(f"""
        CREATE TABLE sink_rows (Fish_Id BIGINT, Doubled DOUBLE) WITH (
            'connector' = 'kafka', 'topic' = '{settings.topic_prediction}',
            'properties.bootstrap.servers' = '{settings.bootstrap_servers}',
            'format' = 'json')""")
    t_env.create_temporary_function(
        "doubled", udf(lambda x: x * 2, result_type=DataTypes.DOUBLE()))
    t_env.execute_sql(
        "INSERT INTO sink_rows SELECT Fish_Id, doubled(Length) FROM source_rows").wait()

    out = read_topic(settings.bootstrap_servers, settings.topic_prediction, expected=200)
    got = sorted((json.loads(m.value)["Fish_Id"], json.loads(m.value)["Doubled"]) for m in out)
    assert got == [(r["Fish_Id"], r["Length"] * 2) for r in rows]

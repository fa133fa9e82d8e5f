-- Input topics, read as raw text so that a malformed record becomes a dead letter
-- instead of failing the job. Event time is the record's own Timestamp (epoch ms)
-- when it parses and lies within {max_skew_s} s of the Kafka record time; otherwise
-- the Kafka record time (such records are rejected by validation anyway). This keeps
-- one hostile Timestamp from moving the watermark.

CREATE TEMPORARY TABLE measurement_raw (
    payload         STRING,
    kafka_partition INT              METADATA FROM 'partition' VIRTUAL,
    kafka_offset    BIGINT           METADATA FROM 'offset' VIRTUAL,
    kafka_time      TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
    event_time AS CASE
        WHEN ABS(TIMESTAMPDIFF(SECOND, kafka_time, TO_TIMESTAMP_LTZ(
                 TRY_CAST(JSON_VALUE(payload, '$.Timestamp') AS BIGINT), 3))) <= {max_skew_s}
        THEN TO_TIMESTAMP_LTZ(TRY_CAST(JSON_VALUE(payload, '$.Timestamp') AS BIGINT), 3)
        ELSE kafka_time
    END,
    WATERMARK FOR event_time AS event_time - INTERVAL '{watermark_delay}' SECOND
) WITH (
    'connector' = 'kafka',
    'topic'     = '{topic_measurement}',
    'format'    = 'raw',
    {measurement_source_options}
);

-- The same columns, event time and watermark; only the topic and scan options differ.
CREATE TEMPORARY TABLE weight_raw WITH (
    'topic' = '{topic_weight}',
    {weight_source_options}
) LIKE measurement_raw (OVERWRITING OPTIONS);

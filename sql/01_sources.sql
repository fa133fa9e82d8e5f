-- Input topics, read as raw bytes so that no payload (not even invalid UTF-8) can
-- fail the job: the parse UDFs decode and check them, and reject with a reason. The columns below are the contract every source of
-- the job fills (the fast test tier fills them from in-memory rows): payload,
-- kafka_partition, kafka_offset, kafka_time, and event_time with its watermark.

CREATE TEMPORARY TABLE measurement_raw (
    payload         BYTES,
    kafka_partition INT              METADATA FROM 'partition' VIRTUAL,
    kafka_offset    BIGINT           METADATA FROM 'offset' VIRTUAL,
    kafka_time      TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
    event_time AS {event_time},
    -- event_time - watermark_delay, passing over a record time far ahead of the job's
    -- clock (sql/params.py, `watermark`)
    WATERMARK FOR event_time AS {watermark}
) WITH (
    {measurement_source}
);

-- The same columns, event time and watermark; only the topic and scan options differ.
CREATE TEMPORARY TABLE weight_raw WITH (
    {weight_source}
) LIKE measurement_raw (OVERWRITING OPTIONS);

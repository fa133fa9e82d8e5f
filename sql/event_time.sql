-- Event time of a raw input record: its own Timestamp (epoch ms) when that parses
-- and lies within {max_skew_s} s of the Kafka record time; otherwise the Kafka record
-- time (such records are rejected by validation anyway). One hostile Timestamp
-- therefore cannot move the watermark. Columns: payload (BYTES; decoded leniently
-- here, strictly by the parse UDFs), {kafka_time} (the Kafka record time; the fast test
-- tier passes its own expression for it).
CASE
    WHEN ABS(TIMESTAMPDIFF(SECOND, {kafka_time}, TO_TIMESTAMP_LTZ(
             TRY_CAST(JSON_VALUE(CAST(payload AS STRING), '$.Timestamp') AS BIGINT), 3))) <= {max_skew_s}
    THEN TO_TIMESTAMP_LTZ(TRY_CAST(JSON_VALUE(CAST(payload AS STRING), '$.Timestamp') AS BIGINT), 3)
    ELSE {kafka_time}
END

-- Event time of a raw input record: its own Timestamp (epoch ms) when that parses
-- and lies within {max_skew_s} s of the Kafka record time; otherwise the Kafka record
-- time (such records are rejected by validation anyway). One hostile Timestamp
-- therefore cannot move the watermark. Columns: payload (BYTES; decoded leniently
-- here, strictly by the parse UDFs), {kafka_time} (the Kafka record time; the fast test
-- tier passes its own expression for it). Compared as times, not by TIMESTAMPDIFF (an INT
-- of seconds that wraps at 2^31: a Timestamp 2^32 s ahead would pass as 0 s apart).
CASE
    WHEN TO_TIMESTAMP_LTZ(TRY_CAST(JSON_VALUE(CAST(payload AS STRING), '$.Timestamp') AS BIGINT), 3)
             BETWEEN {kafka_time} - {max_skew_interval} AND {kafka_time} + {max_skew_interval}
    THEN TO_TIMESTAMP_LTZ(TRY_CAST(JSON_VALUE(CAST(payload AS STRING), '$.Timestamp') AS BIGINT), 3)
    ELSE {kafka_time}
END

-- Validate every actual weight. The job materializes `weight_validated` once (as
-- `weight_validated_once`), shared by the join and the dead-letter sink.
--
-- The same optional fast path as for measurements (sql/10_score.sql): with
-- `validation = sql-fast-path` a clean record in the producers' shape is validated
-- here and never crosses to Python; `parse_weight` (udfs/validation.py) checks the
-- others and alone writes the reasons. By default every weight goes to Python.

CREATE TEMPORARY VIEW weight_sorted AS
SELECT kafka_partition, kafka_offset, kafka_time, event_time, payload,
       Species, Fish_Id, Weight, `Timestamp`,
       COALESCE(shaped
                AND Species IS NOT NULL AND Fish_Id IS NOT NULL AND `Timestamp` IS NOT NULL
                AND Weight > 0 AND Weight <= {max_weight}
                AND `Timestamp` < 100000000000000
                AND TO_TIMESTAMP_LTZ(`Timestamp`, 3) BETWEEN kafka_time - {max_skew_interval}
                                                         AND kafka_time + {max_skew_interval}
                {fast_path_clock},
                FALSE) AS clean
FROM (
    SELECT kafka_partition, kafka_offset, kafka_time, event_time, payload, shaped,
           CASE WHEN shaped THEN JSON_VALUE(text, '$.Species') END                 AS Species,
           CASE WHEN shaped THEN CAST(JSON_VALUE(text, '$.Fish_Id') AS BIGINT) END AS Fish_Id,
           CASE WHEN shaped THEN CAST(JSON_VALUE(text, '$.Weight') AS DOUBLE) END AS Weight,
           CASE WHEN shaped THEN CAST(JSON_VALUE(text, '$.Timestamp') AS BIGINT) END
                                                                                   AS `Timestamp`
    FROM (
        SELECT kafka_partition, kafka_offset, kafka_time, event_time, payload, text,
               {weight_shaped} AS shaped
        FROM (
            SELECT kafka_partition, kafka_offset, kafka_time, event_time, payload,
                   CAST(payload AS STRING) AS text
            FROM weight_raw
        )
    )
);

CREATE TEMPORARY VIEW weight_validated AS
SELECT kafka_partition, kafka_offset, kafka_time, event_time,
       CAST(NULL AS STRING) AS reason,
       CAST(NULL AS STRING) AS payload_text, CAST(NULL AS INT) AS payload_size,
       CAST(NULL AS STRING) AS payload_sha256,
       Species, Fish_Id, Weight, `Timestamp`
FROM weight_sorted
WHERE clean
UNION ALL
SELECT kafka_partition, kafka_offset, kafka_time, event_time,
       w.reason,
       w.payload_text, w.payload_size, w.payload_sha256,
       w.Species, w.Fish_Id, w.Weight, w.`Timestamp`
FROM (
    SELECT kafka_partition, kafka_offset, kafka_time, event_time,
           parse_weight(payload, kafka_time) AS w
    FROM weight_sorted
    WHERE NOT clean
);

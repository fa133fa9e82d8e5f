-- Validate every measurement and predict the valid ones, in one Python stage
-- (`score_measurement`, udfs/scoring.py). The job materializes `measurement_scored`
-- exactly once (see jobs/predict.py) before the prediction sink and the join use it,
-- so each measurement is predicted once and the error is computed against the very
-- prediction that was published.
--
-- The SQL fast path (setting `validation = sql-fast-path`; off by default, see
-- docs/performance.md for when it pays): a record in the producers' shape
-- (udfs/validation.py, clean_shape_pattern: exactly the five fields, plain numbers,
-- printable ASCII) whose values pass the limits is validated here, in SQL, and
-- reaches Python as typed fields, without its payload. Every other record, valid or
-- not, goes to Python as bytes and is checked there, which alone writes the reasons.
-- Both ways accept the same records with the same values (tests/test_fast_path.py).
-- With `validation = python`, `shaped` is FALSE and the planner drops the fast path.

CREATE TEMPORARY VIEW measurement_shaped AS
SELECT kafka_partition, kafka_offset, kafka_time, event_time, payload, text,
       {measurement_shaped} AS shaped
FROM (
    SELECT kafka_partition, kafka_offset, kafka_time, event_time, payload,
           CAST(payload AS STRING) AS text
    FROM measurement_raw
);

-- The fields of a shaped record (the pattern rules out everything JSON_VALUE and
-- Python's json could disagree on).
CREATE TEMPORARY VIEW measurement_fields AS
SELECT kafka_partition, kafka_offset, kafka_time, event_time, payload, shaped,
       CASE WHEN shaped THEN JSON_VALUE(text, '$.Species') END                AS Species,
       CASE WHEN shaped THEN CAST(JSON_VALUE(text, '$.Fish_Id') AS BIGINT) END AS Fish_Id,
       CASE WHEN shaped THEN CAST(JSON_VALUE(text, '$.Length') AS DOUBLE) END AS Length,
       CASE WHEN shaped THEN CAST(JSON_VALUE(text, '$.Height') AS DOUBLE) END AS Height,
       CASE WHEN shaped THEN CAST(JSON_VALUE(text, '$.Timestamp') AS BIGINT) END
                                                                               AS `Timestamp`
FROM measurement_shaped;

-- Clean: shaped and within the limits _check applies (the Timestamp within
-- {max_skew_s} s of the Kafka record time, counted in whole seconds as there: less than
-- {max_skew_s} + 1 s apart; compared as times, since TIMESTAMPDIFF(SECOND, ...) is an INT
-- that wraps at 2^31 s, so a Timestamp 2^32 s ahead would pass as 0 s apart), and the
-- record time not too far ahead of the job's clock (`fast_path_clock`, sql/params.py).
CREATE TEMPORARY VIEW measurement_sorted AS
SELECT kafka_partition, kafka_offset, kafka_time, event_time, payload,
       Species, Fish_Id, Length, Height, `Timestamp`,
       COALESCE(shaped
                AND Species IS NOT NULL AND Fish_Id IS NOT NULL AND `Timestamp` IS NOT NULL
                AND Length > 0 AND Length <= {max_length}
                AND Height > 0 AND Height <= {max_height}
                AND `Timestamp` < 100000000000000
                AND TO_TIMESTAMP_LTZ(`Timestamp`, 3) BETWEEN kafka_time - {max_skew_interval}
                                                         AND kafka_time + {max_skew_interval}
                {fast_path_clock},
                FALSE) AS clean
FROM measurement_fields;

-- Python gets the payload only of the records SQL could not vouch for.
CREATE TEMPORARY VIEW measurement_checked AS
SELECT
    kafka_partition, kafka_offset, kafka_time, event_time,
    score_measurement(CASE WHEN clean THEN CAST(NULL AS BYTES) ELSE payload END, kafka_time,
                      clean, Species, COALESCE(Fish_Id, 0), Length, Height,
                      COALESCE(`Timestamp`, 0)) AS m
FROM measurement_sorted;

CREATE TEMPORARY VIEW measurement_scored AS
SELECT
    kafka_partition, kafka_offset, kafka_time, event_time,
    m.reason,
    m.payload_text, m.payload_size, m.payload_sha256,
    m.Species, m.Fish_Id, m.Length, m.Height, m.`Timestamp`,
    CAST(ROW(m.PredictedWeight, m.ModelTime, m.ModelVersion, m.SpeciesKnown)
         AS ROW<Weight DOUBLE, ModelTime STRING, ModelVersion INT, SpeciesKnown BOOLEAN>)
        AS Prediction
FROM measurement_checked;

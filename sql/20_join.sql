-- Dead letters and the interval join of predictions with actual weights. The
-- `*_once` views are materialized views with their event time as `row_time`; the
-- `*_outcomes_once` views count each Fish_Id's records (`seen`, sql/18_first_seen.sql).

-- Each fish's first measurement record: predicted (reason NULL) or rejected.
CREATE TEMPORARY VIEW first_measurements AS
SELECT Species, Fish_Id, Length, Height, `Timestamp`, Prediction, reason, row_time
FROM measurement_outcomes_once
WHERE seen = 1;

CREATE TEMPORARY VIEW predictions AS
SELECT Species, Fish_Id, Length, Height, `Timestamp`, Prediction, row_time
FROM first_measurements
WHERE reason IS NULL;

CREATE TEMPORARY VIEW weights AS
SELECT Species, Fish_Id, Weight, `Timestamp`, late, row_time
FROM weight_outcomes_once
WHERE seen = 1;

CREATE TEMPORARY VIEW dead_letters AS
SELECT '{topic_measurement}' AS SourceTopic, kafka_partition, kafka_offset, kafka_time,
       Fish_Id, reason, payload_text, payload_size, payload_sha256
FROM measurement_scored_once
WHERE reason IS NOT NULL
UNION ALL
SELECT '{topic_measurement}' AS SourceTopic, kafka_partition, kafka_offset, kafka_time,
       Fish_Id,
       'duplicate Fish_Id: ' || CAST(Fish_Id AS STRING) || ' was measured before '
           || '(record ' || CAST(seen AS STRING) || '; the first one is the fish''s)',
       JSON_OBJECT('Species' VALUE Species, 'Fish_Id' VALUE Fish_Id, 'Length' VALUE Length,
                   'Height' VALUE Height, 'Timestamp' VALUE `Timestamp`),
       CAST(NULL AS INT), CAST(NULL AS STRING)
FROM measurement_outcomes_once
WHERE seen > 1 AND reason IS NULL
UNION ALL
SELECT '{topic_weight}' AS SourceTopic, kafka_partition, kafka_offset, kafka_time,
       Fish_Id, reason, payload_text, payload_size, payload_sha256
FROM weight_validated_once
WHERE reason IS NOT NULL
UNION ALL
SELECT '{topic_weight}' AS SourceTopic, kafka_partition, kafka_offset, kafka_time,
       Fish_Id,
       'duplicate Fish_Id: ' || CAST(Fish_Id AS STRING) || ' was weighed before '
           || '(record ' || CAST(seen AS STRING) || '; the first one is the fish''s)',
       JSON_OBJECT('Species' VALUE Species, 'Fish_Id' VALUE Fish_Id, 'Weight' VALUE Weight,
                   'Timestamp' VALUE `Timestamp`),
       CAST(NULL AS INT), CAST(NULL AS STRING)
FROM weight_outcomes_once
WHERE seen > 1;

-- A prediction meets the actual weight of its Fish_Id measured within the join bounds
-- around it: up to {join_bound} s after (the weighing delay) and up to {join_before} s
-- before. Each machine's clock stamps its own records, so a weigh machine whose clock
-- lags by more than the weighing delay puts the weight "before" its measurement; the
-- tutorial's ksqlDB join (`WITHIN 1 MINUTE`) is symmetric for that reason. Fish_Id
-- names one fish (sql/18_first_seen.sql), so a wider bound cannot pair two fish; it
-- costs only keeping each weight in the join state that much longer.
CREATE TEMPORARY VIEW diffs AS
SELECT
    p.Fish_Id,
    p.Species,
    p.Length,
    p.Height,
    p.Prediction.Weight                                          AS PredictedWeight,
    w.Weight                                                     AS ActualWeight,
    ROUND(ABS(p.Prediction.Weight - w.Weight) / w.Weight, 3)     AS Error,
    p.Prediction.ModelTime                                       AS ModelTime,
    p.Prediction.ModelVersion                                    AS ModelVersion,
    w.`Timestamp`                                                AS `Timestamp`,
    w.row_time                                                   AS event_time
FROM predictions AS p
JOIN weights AS w
  ON p.Fish_Id = w.Fish_Id
 AND w.row_time BETWEEN p.row_time - INTERVAL '{join_before}' SECOND
                    AND p.row_time + INTERVAL '{join_bound}' SECOND;

-- Every valid record is accounted for: the same interval join as a FULL OUTER join,
-- with the rejected first measurements on the left too, emits each record that found
-- no partner when the watermark passes its bound, or at once when it arrives too late
-- for the join. Pairs of a prediction and a weight are `diffs` and dropped here; so is
-- a rejected measurement without a weight (it is a dead letter). Append-only.
CREATE TEMPORARY VIEW unmatched AS
SELECT
    CASE WHEN w.Fish_Id IS NOT NULL THEN 'weight' ELSE 'measurement' END AS Kind,
    COALESCE(w.Fish_Id, m.Fish_Id)                                        AS Fish_Id,
    COALESCE(w.Species, m.Species)                                        AS Species,
    COALESCE(w.`Timestamp`, m.`Timestamp`)                                AS `Timestamp`,
    CASE
        WHEN w.Fish_Id IS NULL
            THEN 'no weight from {join_before} s before to {join_bound} s after the measurement'
        WHEN m.Fish_Id IS NOT NULL
            THEN 'measurement rejected: ' || m.reason
        WHEN w.late
            THEN 'late: the weight arrived behind the watermark, after its measurement '
                 || 'could be joined'
        ELSE 'no measurement of this Fish_Id from {join_bound} s before to {join_before} s '
             || 'after the weight'
    END                                                                   AS Reason
FROM first_measurements AS m
FULL OUTER JOIN weights AS w
  ON m.Fish_Id = w.Fish_Id
 AND w.row_time BETWEEN m.row_time - INTERVAL '{join_before}' SECOND
                    AND m.row_time + INTERVAL '{join_bound}' SECOND
WHERE (m.Fish_Id IS NULL OR w.Fish_Id IS NULL OR m.reason IS NOT NULL)
  AND NOT (w.Fish_Id IS NULL AND m.reason IS NOT NULL);

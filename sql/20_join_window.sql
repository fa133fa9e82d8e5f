-- Everything after the prediction: weights, dead letters, the interval join with the
-- actual weight and the tumbling-window trigger. `measurement_scored_once` is the
-- materialized measurement_scored, with its event time as `row_time`.

CREATE TEMPORARY VIEW predictions AS
SELECT Species, Fish_Id, Length, Height, `Timestamp`, Prediction, row_time
FROM measurement_scored_once
WHERE reason IS NULL;

CREATE TEMPORARY VIEW weight_checked AS
SELECT
    payload, kafka_partition, kafka_offset, kafka_time, event_time,
    parse_weight(payload) AS w
FROM weight_raw;

CREATE TEMPORARY VIEW weight_validated AS
SELECT
    payload, kafka_partition, kafka_offset, kafka_time, event_time,
    CASE
        WHEN w.reason IS NOT NULL THEN w.reason
        WHEN ABS(TIMESTAMPDIFF(SECOND, kafka_time, TO_TIMESTAMP_LTZ(w.`Timestamp`, 3)))
             > {max_skew_s}
        THEN 'implausible Timestamp: more than {max_skew_s} s from the Kafka record time'
    END AS reason,
    w.Species, w.Fish_Id, w.Weight, w.`Timestamp`
FROM weight_checked;

CREATE TEMPORARY VIEW weights AS
SELECT Species, Fish_Id, Weight, `Timestamp`, event_time
FROM weight_validated
WHERE reason IS NULL;

CREATE TEMPORARY VIEW dead_letters AS
SELECT '{topic_measurement}' AS SourceTopic, kafka_partition, kafka_offset, kafka_time,
       reason, payload
FROM measurement_scored_once
WHERE reason IS NOT NULL
UNION ALL
SELECT '{topic_weight}' AS SourceTopic, kafka_partition, kafka_offset, kafka_time,
       reason, payload
FROM weight_validated
WHERE reason IS NOT NULL;

-- A prediction meets the actual weight measured within the join bound after it.
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
    w.event_time                                                 AS event_time
FROM predictions AS p
JOIN weights AS w
  ON p.Fish_Id = w.Fish_Id
 AND w.event_time BETWEEN p.row_time AND p.row_time + INTERVAL '{join_bound}' SECOND;

-- One row per tumbling window of joined records (by the weight's event time).
CREATE TEMPORARY VIEW window_errors AS
SELECT
    window_start                   AS WindowStart,
    window_end                     AS WindowEnd,
    ARRAY_AGG(DISTINCT Species)    AS Species,
    MIN(Fish_Id)                   AS Fish_Id_Start,
    MAX(Fish_Id)                   AS Fish_Id_End,
    AVG(Error)                     AS ErrorAvg,
    COUNT(*)                       AS `Count`,
    ARRAY_AGG(DISTINCT ModelVersion) AS ModelVersions,
    MAX(ModelVersion)              AS ModelVersionMax
FROM TABLE(TUMBLE(TABLE diffs, DESCRIPTOR(event_time), INTERVAL '{window}' SECOND))
GROUP BY window_start, window_end;

CREATE TEMPORARY VIEW retrain_events AS
SELECT *
FROM window_errors
WHERE ErrorAvg > {error_threshold};

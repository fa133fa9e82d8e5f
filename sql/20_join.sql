-- Dead letters and the interval join of predictions with actual weights. The
-- `*_once` views are materialized views with their event time as `row_time`.

CREATE TEMPORARY VIEW predictions AS
SELECT Species, Fish_Id, Length, Height, `Timestamp`, Prediction, row_time
FROM measurement_scored_once
WHERE reason IS NULL;

CREATE TEMPORARY VIEW weights AS
SELECT Species, Fish_Id, Weight, `Timestamp`, row_time
FROM weight_validated_once
WHERE reason IS NULL;

CREATE TEMPORARY VIEW dead_letters AS
SELECT '{topic_measurement}' AS SourceTopic, kafka_partition, kafka_offset, kafka_time,
       reason, payload_text, payload_size, payload_sha256
FROM measurement_scored_once
WHERE reason IS NOT NULL
UNION ALL
SELECT '{topic_weight}' AS SourceTopic, kafka_partition, kafka_offset, kafka_time,
       reason, payload_text, payload_size, payload_sha256
FROM weight_validated_once
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
    w.row_time                                                   AS event_time
FROM predictions AS p
JOIN weights AS w
  ON p.Fish_Id = w.Fish_Id
 AND w.row_time BETWEEN p.row_time AND p.row_time + INTERVAL '{join_bound}' SECOND;

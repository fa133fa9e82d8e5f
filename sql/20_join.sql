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

-- Every valid record is accounted for: the same interval join as a FULL OUTER join
-- emits, besides the pairs (dropped here, they are `diffs`), each weight and each
-- prediction that found no partner, when the watermark passes its bound, or at once
-- when it arrives too late for the join. Append-only, like the inner join.
CREATE TEMPORARY VIEW unmatched AS
SELECT
    CASE WHEN w.Fish_Id IS NOT NULL THEN 'weight' ELSE 'measurement' END AS Kind,
    COALESCE(w.Fish_Id, p.Fish_Id)                                        AS Fish_Id,
    COALESCE(w.Species, p.Species)                                        AS Species,
    COALESCE(w.`Timestamp`, p.`Timestamp`)                                AS `Timestamp`,
    CASE WHEN w.Fish_Id IS NOT NULL
         THEN 'no prediction of this Fish_Id within {join_bound} s before the weight '
              || '(never measured, measurement rejected, or the weight came too late)'
         ELSE 'no weight within {join_bound} s after the measurement'
    END                                                                   AS Reason
FROM predictions AS p
FULL OUTER JOIN weights AS w
  ON p.Fish_Id = w.Fish_Id
 AND w.row_time BETWEEN p.row_time AND p.row_time + INTERVAL '{join_bound}' SECOND
WHERE p.Fish_Id IS NULL OR w.Fish_Id IS NULL;

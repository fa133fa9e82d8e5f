-- The two outputs of the one interval join (sql/20_join.sql, materialized as
-- `pairs_once` with the weight's event time as `row_time`).

-- A prediction and the actual weight of its fish: the error the windows and the rules
-- average (weight-diff).
CREATE TEMPORARY VIEW diffs AS
SELECT
    m_Fish_Id                                                    AS Fish_Id,
    m_Species                                                    AS Species,
    Length,
    Height,
    Prediction.Weight                                            AS PredictedWeight,
    Weight                                                       AS ActualWeight,
    ROUND(ABS(Prediction.Weight - Weight) / Weight, 3)           AS Error,
    Prediction.ModelTime                                         AS ModelTime,
    Prediction.ModelVersion                                      AS ModelVersion,
    w_Timestamp                                                  AS `Timestamp`,
    row_time                                                     AS event_time
FROM pairs_once
WHERE m_Fish_Id IS NOT NULL AND w_Fish_Id IS NOT NULL AND reason IS NULL;

-- Every valid record is accounted for: a record that found no partner, and a weight
-- whose fish's measurement was rejected (weight-unmatched). Append-only. A record that
-- arrived behind its own stream's watermark (`m_late`, `w_late`: out of order by more
-- than the watermark delay, e.g. a producer that buffered during an outage) is named
-- late: its partner may well have come, and gone from the join state before it.
CREATE TEMPORARY VIEW unmatched AS
SELECT
    CASE WHEN w_Fish_Id IS NOT NULL THEN 'weight' ELSE 'measurement' END AS Kind,
    COALESCE(w_Fish_Id, m_Fish_Id)                                        AS Fish_Id,
    COALESCE(w_Species, m_Species)                                        AS Species,
    COALESCE(w_Timestamp, m_Timestamp)                                    AS `Timestamp`,
    CASE
        WHEN w_Fish_Id IS NULL AND m_late
            THEN 'late: the measurement arrived behind the watermark, after its weight '
                 || 'could be joined'
        WHEN w_Fish_Id IS NULL
            THEN 'no weight from {join_before} s before to {join_bound} s after the measurement'
        WHEN m_Fish_Id IS NOT NULL
            THEN 'measurement rejected: ' || reason
        WHEN w_late
            THEN 'late: the weight arrived behind the watermark, after its measurement '
                 || 'could be joined'
        ELSE 'no measurement of this Fish_Id from {join_bound} s before to {join_before} s '
             || 'after the weight'
    END                                                                   AS Reason
FROM pairs_once
WHERE m_Fish_Id IS NULL OR w_Fish_Id IS NULL OR reason IS NOT NULL;

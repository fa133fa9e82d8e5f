-- The tumbling-window trigger over the joined stream. `diffs_once` is the
-- materialized `diffs`, with the weight's event time as `row_time`.

-- One row per tumbling window of joined records (by the weight's event time).
CREATE TEMPORARY VIEW window_errors AS
SELECT
    window_start                     AS WindowStart,
    window_end                       AS WindowEnd,
    ARRAY_AGG(DISTINCT Species)      AS Species,
    MIN(Fish_Id)                     AS Fish_Id_Start,
    MAX(Fish_Id)                     AS Fish_Id_End,
    AVG(Error)                       AS ErrorAvg,
    COUNT(*)                         AS `Count`,
    ARRAY_AGG(DISTINCT ModelVersion) AS ModelVersions,
    MAX(ModelVersion)                AS ModelVersionMax
FROM TABLE(TUMBLE(TABLE diffs_once, DESCRIPTOR(row_time), INTERVAL '{window}' SECOND))
GROUP BY window_start, window_end;

CREATE TEMPORARY VIEW retrain_events AS
SELECT *
FROM window_errors
WHERE ErrorAvg > {error_threshold};

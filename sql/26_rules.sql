-- The retrain rules over the running figures of 25_window.sql (materialized as
-- `window_running_once` and `change_running_once`, arrival order in `proc_time`).

-- The window rule: one event per window and species, the first time its running
-- AVG(Error) exceeds the threshold with at least {min_count} joined records (so one noisy
-- fish cannot retrain). A second OVER counts the crossings; a ROW_NUMBER deduplication
-- would make the stream updating, which an append-only Kafka topic cannot take.
-- `ModelVersions`: the lowest and the highest version that scored the window's records
-- so far, one entry when they are the same (25_window.sql says why not all of them;
-- the trainer needs the lowest, to skip a window an older version scored).
CREATE TEMPORARY VIEW window_events AS
SELECT
    WindowStart, WindowEnd, ARRAY[Species] AS Species, Fish_Id_Start, Fish_Id_End,
    Timestamp_End, ErrorAvg, `Count`,
    CASE WHEN ModelVersionMin IS NULL OR ModelVersionMin = ModelVersionMax
         THEN ARRAY[ModelVersionMax]
         ELSE ARRAY[ModelVersionMin, ModelVersionMax] END AS ModelVersions,
    ModelVersionMax,
    CAST('window' AS STRING) AS `Rule`, Change_Fish_Id, Change_Timestamp
FROM (
    SELECT *,
        COUNT(*) OVER (PARTITION BY WindowStart, Species ORDER BY proc_time
                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS crossing
    FROM window_running_once
    WHERE ErrorAvg > {error_threshold} AND `Count` >= {min_count}
)
WHERE crossing = 1;

-- The change rule: a change inside a species (a season, a recalibrated scale or camera)
-- that starts in the middle of a window is averaged with the window's earlier,
-- well-predicted fish, and the window rule sees it late or never. So, per species,
-- over its {change_records} most recent joined records scored by the serving model
-- version (arrival order): fire when {change_over} of them exceed the threshold. Unlike a
-- running mean, one outlier cannot fire it and one good fish cannot hide a change; it
-- waits for no window boundary (README, "Adaptation"). One event per species and model
-- version: a version that fired has had its verdict, the next one starts afresh. The
-- event's window is the span of the records the rule looked at. State: {change_records}
-- rows per species and version, expiring after state_ttl_s like all keyed state.
CREATE TEMPORARY VIEW change_events AS
SELECT
    CAST(TO_TIMESTAMP_LTZ(SpanStart, 3) AS TIMESTAMP(3)) AS WindowStart,
    CAST(TO_TIMESTAMP_LTZ(SpanEnd, 3) AS TIMESTAMP(3))   AS WindowEnd,
    ARRAY[Species] AS Species, Fish_Id_Start, Fish_Id_End, SpanEnd AS Timestamp_End,
    ErrorAvg, `Count`, ARRAY[ModelVersion] AS ModelVersions, ModelVersion AS ModelVersionMax,
    CAST('change' AS STRING) AS `Rule`, Change_Fish_Id, Change_Timestamp
FROM (
    SELECT *,
        COUNT(*) OVER (PARTITION BY Species, ModelVersion ORDER BY proc_time
                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS crossing
    FROM change_running_once
    WHERE OverThreshold >= {change_over}
)
WHERE crossing = 1;

-- The bias rule: a drift too small for the threshold (a scale reading 5 % heavy, a
-- season's fatter fish) leaves every error below it, so neither rule above fires and
-- the model would serve several times the noise floor for good. The signed errors
-- ((predicted - actual) / actual) of such a species all lean one way. So, per species,
-- over its {bias_records} most recent joined records scored by the serving model version
-- (arrival order): fire when their mean signed error is more than bias_t standard errors
-- from 0 (a t statistic, so each species is judged against its own noise: walleye's
-- relative noise is twice salmon's) and at least {bias_min} from 0. An outlier widens
-- the standard deviation and cannot fire it. Written without a square root:
-- mean^2 * n > t^2 * variance, with mean = BiasSum / n and variance from BiasSquares.
-- One event per species and model version, insert-only like the others; its window is
-- the span of those records, its change start their earliest Timestamp (the trainer
-- finds where the errors shifted). State: {bias_records} rows per species
-- and version, expiring after state_ttl_s.
CREATE TEMPORARY VIEW bias_events AS
SELECT
    CAST(TO_TIMESTAMP_LTZ(BiasSpanStart, 3) AS TIMESTAMP(3)) AS WindowStart,
    CAST(TO_TIMESTAMP_LTZ(BiasSpanEnd, 3) AS TIMESTAMP(3))   AS WindowEnd,
    ARRAY[Species] AS Species, BiasFish_Id_Start AS Fish_Id_Start,
    BiasFish_Id_End AS Fish_Id_End, BiasSpanEnd AS Timestamp_End,
    BiasErrorAvg AS ErrorAvg, BiasCount AS `Count`, ARRAY[ModelVersion] AS ModelVersions,
    ModelVersion AS ModelVersionMax,
    CAST('bias' AS STRING) AS `Rule`, BiasFirst_Fish_Id AS Change_Fish_Id,
    BiasSpanStart AS Change_Timestamp
FROM (
    SELECT *,
        COUNT(*) OVER (PARTITION BY Species, ModelVersion ORDER BY proc_time
                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS crossing
    FROM change_running_once
    WHERE {bias_on} AND BiasCount = {bias_records}
      AND ABS(BiasSum) > {bias_min} * BiasCount
      AND BiasSum * BiasSum * ({bias_records} - 1)
          > {bias_t_squared} * (BiasSquares * BiasCount - BiasSum * BiasSum)
)
WHERE crossing = 1;

-- Every retrain event, from any rule: the trainer tells them apart by `Rule`.
CREATE TEMPORARY VIEW retrain_events AS
SELECT * FROM window_events
UNION ALL
SELECT * FROM change_events
UNION ALL
SELECT * FROM bias_events;

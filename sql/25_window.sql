-- Error windows over the joined stream. `diffs_once` is the materialized `diffs`,
-- with the weight's event time as `row_time`. Windows are tumbling, {window} s long,
-- aligned to the epoch (by the weight's event time), and kept per species: a new
-- species is not averaged away by the fish it arrives among, and each species has its
-- own verdict. `Species` stays an array (of one) for the tutorial's record shape.

-- Every window's final figures (weight-windows, for monitoring and the report). This
-- closes when the watermark passes the window's end, which the interval join holds
-- back by its bound: about a join bound after the window ends.
CREATE TEMPORARY VIEW window_errors AS
SELECT
    window_start                     AS WindowStart,
    window_end                       AS WindowEnd,
    ARRAY[Species]                   AS Species,
    MIN(Fish_Id)                     AS Fish_Id_Start,
    MAX(Fish_Id)                     AS Fish_Id_End,
    MAX(`Timestamp`)                 AS Timestamp_End,
    AVG(Error)                       AS ErrorAvg,
    COUNT(*)                         AS `Count`,
    ARRAY_AGG(DISTINCT ModelVersion) AS ModelVersions,
    MAX(ModelVersion)                AS ModelVersionMax
FROM TABLE(TUMBLE(TABLE diffs_once, DESCRIPTOR(row_time), INTERVAL '{window}' SECOND))
GROUP BY window_start, window_end, Species;

-- The retrain trigger: the same windows, evaluated as each joined record arrives
-- (like ksqlDB's EMIT CHANGES), so a drift is acted on when the evidence is there,
-- not when the watermark closes the window. Processing-time OVER aggregates are
-- insert-only and wait for no watermark.
CREATE TEMPORARY VIEW diffs_by_window AS
SELECT
    Fish_Id, Species, Error, ModelVersion, `Timestamp`,
    CAST(TO_TIMESTAMP_LTZ(`Timestamp` - MOD(`Timestamp`, {window_ms}), 3) AS TIMESTAMP(3))
                                     AS WindowStart,
    PROCTIME()                       AS proc_time
FROM diffs_once;

-- The running figures of each window, one row per joined record.
CREATE TEMPORARY VIEW window_running AS
SELECT
    WindowStart,
    WindowStart + INTERVAL '{window}' SECOND AS WindowEnd,
    Species,
    MIN(Fish_Id)                     OVER w AS Fish_Id_Start,
    MAX(Fish_Id)                     OVER w AS Fish_Id_End,
    MAX(`Timestamp`)                 OVER w AS Timestamp_End,
    AVG(Error)                       OVER w AS ErrorAvg,
    COUNT(*)                         OVER w AS `Count`,
    ARRAY_AGG(DISTINCT ModelVersion) OVER w AS ModelVersions,
    MAX(ModelVersion)                OVER w AS ModelVersionMax,
    -- Where the change began, as far as this window saw: its first record over the
    -- threshold (FIRST_VALUE skips NULLs).
    FIRST_VALUE(CASE WHEN Error > {error_threshold} THEN Fish_Id END) OVER w
                                            AS Change_Fish_Id,
    MIN(CASE WHEN Error > {error_threshold} THEN `Timestamp` END) OVER w
                                            AS Change_Timestamp,
    proc_time
FROM diffs_by_window
WINDOW w AS (PARTITION BY WindowStart, Species ORDER BY proc_time
             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW);

-- The window rule: one event per window and species, the first time its running
-- AVG(Error) exceeds the threshold with at least {min_count} joined records (so one noisy
-- fish cannot retrain). A second OVER counts the crossings; a ROW_NUMBER deduplication
-- would make the stream updating, which an append-only Kafka topic cannot take.
CREATE TEMPORARY VIEW window_events AS
SELECT
    WindowStart, WindowEnd, ARRAY[Species] AS Species, Fish_Id_Start, Fish_Id_End,
    Timestamp_End, ErrorAvg, `Count`, ModelVersions, ModelVersionMax,
    CAST('window' AS STRING) AS `Rule`, Change_Fish_Id, Change_Timestamp
FROM (
    SELECT *,
        COUNT(*) OVER (PARTITION BY WindowStart, Species ORDER BY proc_time
                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS crossing
    FROM window_running
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
CREATE TEMPORARY VIEW change_running AS
SELECT
    Species,
    ModelVersion,
    MIN(`Timestamp`)                 OVER c AS SpanStart,
    MAX(`Timestamp`)                 OVER c AS SpanEnd,
    MIN(Fish_Id)                     OVER c AS Fish_Id_Start,
    MAX(Fish_Id)                     OVER c AS Fish_Id_End,
    AVG(Error)                       OVER c AS ErrorAvg,
    COUNT(*)                         OVER c AS `Count`,
    SUM(CASE WHEN Error > {error_threshold} THEN 1 ELSE 0 END) OVER c AS OverThreshold,
    FIRST_VALUE(CASE WHEN Error > {error_threshold} THEN Fish_Id END) OVER c
                                            AS Change_Fish_Id,
    MIN(CASE WHEN Error > {error_threshold} THEN `Timestamp` END) OVER c
                                            AS Change_Timestamp,
    proc_time
FROM diffs_by_window
WINDOW c AS (PARTITION BY Species, ModelVersion ORDER BY proc_time
             ROWS BETWEEN {change_preceding} PRECEDING AND CURRENT ROW);

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
    FROM change_running
    WHERE OverThreshold >= {change_over}
)
WHERE crossing = 1;

-- Every retrain event, from either rule: the trainer tells them apart by `Rule`.
CREATE TEMPORARY VIEW retrain_events AS
SELECT * FROM window_events
UNION ALL
SELECT * FROM change_events;

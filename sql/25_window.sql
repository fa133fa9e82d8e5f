-- Error windows over the joined stream. `diffs_once` is the materialized `diffs`,
-- with the weight's event time as `row_time`. Windows are tumbling, {window} s long,
-- aligned to the epoch (by the weight's event time), and kept per species: a new
-- species is not averaged away by the fish it arrives among, and each species has its
-- own verdict. `Species` stays an array (of one) for the tutorial's record shape.
-- The running figures of the retrain rules are materialized after this file
-- (`window_running_once`, `change_running_once`, with a fresh `proc_time`) and read by
-- the rules (26_rules.sql); the change and bias rules', with each joined record's own
-- Error and window, also by the metrics stage (28_metrics.sql).

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
FROM TABLE(TUMBLE(TABLE diffs_once, DESCRIPTOR(row_time), {window_interval}))
GROUP BY window_start, window_end, Species;

-- The retrain trigger: the same windows, evaluated as each joined record arrives
-- (like ksqlDB's EMIT CHANGES), so a drift is acted on when the evidence is there,
-- not when the watermark closes the window. Processing-time OVER aggregates are
-- insert-only and wait for no watermark.
-- A record's window is the one weight-windows puts it in: by its event time
-- (`row_time`, the weight's), aligned to the epoch in epoch milliseconds (the session
-- time zone is UTC). Not by the payload's `Timestamp`, which may differ from the event
-- time (within max_clock_skew_s) when a producer's record time is not its payload's.
CREATE TEMPORARY VIEW diffs_by_window AS
SELECT
    Fish_Id, Species, Error, SignedError, ModelVersion, `Timestamp`,
    CAST(TO_TIMESTAMP_LTZ(WindowStartMs, 3) AS TIMESTAMP(3)) AS WindowStart,
    WindowStartMs,
    PROCTIME()                       AS proc_time
FROM (
    SELECT Fish_Id, Species, Error, SignedError, ModelVersion, `Timestamp`,
           event_ms - MOD(event_ms, {window_ms}) AS WindowStartMs
    FROM (
        SELECT Fish_Id, Species, Error, ModelVersion, `Timestamp`,
               -- Within +-1: an absurd weight (a gram for a salmon) would leave its
               -- square's rounding in the bias rule's sliding sums for good.
               GREATEST(-1.0, LEAST(1.0, (PredictedWeight - ActualWeight) / ActualWeight))
                   AS SignedError,
               EXTRACT(EPOCH FROM CAST(row_time AS TIMESTAMP(3))) * 1000
                   + EXTRACT(MILLISECOND FROM CAST(row_time AS TIMESTAMP(3))) AS event_ms
        FROM diffs_once
    )
);

-- The running figures of each window, one row per joined record. Only aggregates whose
-- accumulator is one value: Flink 2.0's processing-time OVER gives its accumulator row
-- the state TTL (`state_ttl_s`) but keeps the map of a DISTINCT (or the list of an
-- ARRAY_AGG) in keyed state of its own, which nothing expires. With a key per window,
-- such a map would stay behind for every window and species, forever. The versions that
-- scored the window are therefore its lowest and highest (ModelVersionMin, -Max).
CREATE TEMPORARY VIEW window_running AS
SELECT
    WindowStart,
    WindowStart + {window_interval} AS WindowEnd,
    Species,
    MIN(Fish_Id)                     OVER w AS Fish_Id_Start,
    MAX(Fish_Id)                     OVER w AS Fish_Id_End,
    MAX(`Timestamp`)                 OVER w AS Timestamp_End,
    AVG(Error)                       OVER w AS ErrorAvg,
    COUNT(*)                         OVER w AS `Count`,
    MIN(ModelVersion)                OVER w AS ModelVersionMin,
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

-- The change rule's and the bias rule's running figures (26_rules.sql explains both
-- rules): per species and model version, its {change_records} and its {bias_records}
-- most recent joined records in arrival order. Flink plans one OVER window per SELECT,
-- so the bias rule's (`b`) is computed in the inner one and the change rule's (`c`) on
-- its rows. One row per joined record, which also carries that record's own `Error` and
-- window (`WindowStartMs`) for the metrics stage (28_metrics.sql).
CREATE TEMPORARY VIEW change_running AS
SELECT
    Species,
    ModelVersion,
    Error,
    WindowStartMs,
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
    BiasSpanStart, BiasSpanEnd, BiasFish_Id_Start, BiasFish_Id_End, BiasFirst_Fish_Id,
    BiasErrorAvg, BiasCount, BiasSum, BiasSquares,
    proc_time
FROM (
    SELECT
        Fish_Id, Species, Error, ModelVersion, `Timestamp`, WindowStartMs, proc_time,
        -- The bias rule's: the sum and the sum of squares of the signed relative errors
        -- ((predicted - actual) / actual) give their mean and standard deviation.
        MIN(`Timestamp`)             OVER b AS BiasSpanStart,
        MAX(`Timestamp`)             OVER b AS BiasSpanEnd,
        MIN(Fish_Id)                 OVER b AS BiasFish_Id_Start,
        MAX(Fish_Id)                 OVER b AS BiasFish_Id_End,
        FIRST_VALUE(Fish_Id)         OVER b AS BiasFirst_Fish_Id,
        AVG(Error)                   OVER b AS BiasErrorAvg,
        COUNT(SignedError)           OVER b AS BiasCount,
        SUM(SignedError)             OVER b AS BiasSum,
        SUM(SignedError * SignedError) OVER b AS BiasSquares
    FROM diffs_by_window
    WINDOW b AS (PARTITION BY Species, ModelVersion ORDER BY proc_time
                 ROWS BETWEEN {bias_preceding} PRECEDING AND CURRENT ROW)
)
WINDOW c AS (PARTITION BY Species, ModelVersion ORDER BY proc_time
             ROWS BETWEEN {change_preceding} PRECEDING AND CURRENT ROW);

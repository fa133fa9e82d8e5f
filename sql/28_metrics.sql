-- What the pipeline's metrics stage observes: every output stream (the `*_once` views
-- are the outputs, computed once and shared with their sinks), counted per second of
-- processing time in SQL, so the Python UDF `observe_pipeline` (udfs/metrics.py) gets a
-- handful of rows per second instead of one per record. The counters and gauges
-- therefore trail by up to a second. The counts are materialized as
-- `observation_counts_once`, every row to the UDF's first subtask, so one Python
-- instance keeps each species' gauges at any parallelism (sql/__init__.py, STAGES).
--
-- Joined pairs are the one stream with a row per fish here, and each crosses this
-- stage's shuffle once: `change_running_once` has one row per joined record carrying
-- the record's own Error and window start beside the change rule's count, so that single
-- row feeds the joined-pairs counters, the running window gauge (Python adds up each
-- window's errors) and the change rule's gauge. (Until 2026-12-06 the window rule's
-- running rows were a second row per fish here; one row instead of two gave the job
-- ~6 % more records/s, docs/performance.md.)
--   Kind      what was observed
--   Species   the species it is about (NULL for dead letters)
--   Detail    a class: a dead letter's reason class ({reason_class}: the prefixes of
--             fishweight/records.py, REASON_CLASSES), an unmatched record's reason
--             class, a retrain event's rule, a joined record's window start (epoch ms:
--             joined records arrive out of event-time order across partitions, and the
--             gauges follow the species' newest window, not the one that heard last)
--   Total     a figure that is summed: a joined record's Error
--   Latest    a figure whose latest value is kept: a closed window's ErrorAvg, the
--             number of the change rule's last {change_records} errors over the
--             threshold as of a joined record
--   Lean      the same for the bias rule: the mean signed error of the species' last
--             {bias_records} joined records (serving version) as of a joined record

CREATE TEMPORARY VIEW observations AS
SELECT Kind, Species, Detail, Total, Latest, Lean, PROCTIME() AS proc_time
FROM (
    SELECT 'unmatched_' || Kind AS Kind, Species,
           CASE
               WHEN Reason LIKE 'no weight %' THEN 'noWeight'
               WHEN Reason LIKE 'no measurement %' THEN 'noMeasurement'
               WHEN Reason LIKE 'late:%' THEN 'late'
               WHEN Reason LIKE 'measurement rejected:%' THEN 'measurementRejected'
               ELSE 'other'
           END AS Detail,
           CAST(NULL AS DOUBLE) AS Total, CAST(NULL AS DOUBLE) AS Latest,
           CAST(NULL AS DOUBLE) AS Lean
    FROM unmatched_once
    UNION ALL
    SELECT CAST('window' AS STRING), Species[1], CAST(NULL AS STRING),
           CAST(NULL AS DOUBLE), ErrorAvg, CAST(NULL AS DOUBLE)
    FROM window_errors_once
    UNION ALL
    SELECT CAST('retrain' AS STRING), Species[1], `Rule`, CAST(NULL AS DOUBLE),
           CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE)
    FROM retrain_events_once
    UNION ALL
    SELECT CAST('joined' AS STRING), Species,
           CAST(WindowStartMs AS STRING), Error,
           CAST(OverThreshold AS DOUBLE), BiasSum / BiasCount
    FROM change_running_once
    UNION ALL
    SELECT CAST('dead_letter' AS STRING), CAST(NULL AS STRING), {reason_class},
           CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE)
    FROM dead_letters_once
);

CREATE TEMPORARY VIEW observation_counts AS
SELECT Kind, Species, Detail, COUNT(*) AS Records, SUM(Total) AS Total,
       LAST_VALUE(Latest) AS Latest, LAST_VALUE(Lean) AS Lean
FROM TABLE(TUMBLE(TABLE observations, DESCRIPTOR(proc_time), INTERVAL '1' SECOND))
GROUP BY window_start, window_end, Kind, Species, Detail;

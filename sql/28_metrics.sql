-- What the pipeline's metrics stage observes: every output stream (the `*_once` views
-- are the outputs, computed once and shared with their sinks), counted per second of
-- processing time in SQL, so the Python UDF `observe_pipeline` (udfs/metrics.py) gets
-- a handful of rows per second instead of one per output record. A dead letter is
-- counted by the class of its reason ({reason_class}: the same prefixes as
-- fishweight/records.py, REASON_CLASSES). The counters therefore trail by up to a second.

CREATE TEMPORARY VIEW observations AS
SELECT Kind, Detail, `Value`, PROCTIME() AS proc_time
FROM (
    SELECT CAST('joined' AS STRING) AS Kind, CAST(NULL AS STRING) AS Detail,
           CAST(NULL AS DOUBLE) AS `Value`
    FROM diffs_once
    UNION ALL
    SELECT 'unmatched_' || Kind, CAST(NULL AS STRING), CAST(NULL AS DOUBLE)
    FROM unmatched_once
    UNION ALL
    SELECT CAST('window' AS STRING), CAST(NULL AS STRING), ErrorAvg
    FROM window_errors_once
    UNION ALL
    SELECT CAST('retrain' AS STRING), CAST(NULL AS STRING), CAST(NULL AS DOUBLE)
    FROM retrain_events_once
    UNION ALL
    SELECT CAST('dead_letter' AS STRING), {reason_class}, CAST(NULL AS DOUBLE)
    FROM dead_letters_once
);

CREATE TEMPORARY VIEW observation_counts AS
SELECT Kind, Detail, COUNT(*) AS Records, LAST_VALUE(`Value`) AS LastValue
FROM TABLE(TUMBLE(TABLE observations, DESCRIPTOR(proc_time), INTERVAL '1' SECOND))
GROUP BY window_start, window_end, Kind, Detail;

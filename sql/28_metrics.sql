-- What the pipeline's metrics stage observes: every output stream (the `*_once` views
-- are the outputs, computed once and shared with their sinks) and the retrain rules'
-- running figures, counted per second of processing time in SQL, so the Python UDF
-- `observe_pipeline` (udfs/metrics.py) gets a handful of rows per second instead of one
-- per record. The counters and gauges therefore trail by up to a second. The joined
-- pairs are counted from `window_running_once`, which has one row per joined record,
-- rather than from a further branch over `diffs_once`: one row per fish fewer into this
-- stage's shuffle.
--   Kind      what was observed
--   Species   the species it is about (NULL for dead letters)
--   Detail    a class: a dead letter's reason class ({reason_class}: the prefixes of
--             fishweight/records.py, REASON_CLASSES), an unmatched record's reason
--             class, a retrain event's rule, a running window's start (epoch ms: joined
--             records arrive out of event-time order across partitions, and the gauge
--             follows the species' newest window, not the one that heard last)
--   Value     a figure whose latest value is kept: a closed window's ErrorAvg, the
--             running ErrorAvg of a species' current window, the number of the change
--             rule's last {change_records} errors over the threshold

CREATE TEMPORARY VIEW observations AS
SELECT Kind, Species, Detail, `Value`, PROCTIME() AS proc_time
FROM (
    SELECT 'unmatched_' || Kind AS Kind, Species,
           CASE
               WHEN Reason LIKE 'no weight %' THEN 'noWeight'
               WHEN Reason LIKE 'no measurement %' THEN 'noMeasurement'
               WHEN Reason LIKE 'late:%' THEN 'late'
               WHEN Reason LIKE 'measurement rejected:%' THEN 'measurementRejected'
               ELSE 'other'
           END AS Detail,
           CAST(NULL AS DOUBLE) AS `Value`
    FROM unmatched_once
    UNION ALL
    SELECT CAST('window' AS STRING), Species[1], CAST(NULL AS STRING), ErrorAvg
    FROM window_errors_once
    UNION ALL
    SELECT CAST('retrain' AS STRING), Species[1], `Rule`, CAST(NULL AS DOUBLE)
    FROM retrain_events_once
    UNION ALL
    SELECT CAST('window_running' AS STRING), Species,
           CAST(Timestamp_End - MOD(Timestamp_End, {window_ms}) AS STRING), ErrorAvg
    FROM window_running_once
    UNION ALL
    SELECT CAST('change_running' AS STRING), Species, CAST(NULL AS STRING),
           CAST(OverThreshold AS DOUBLE)
    FROM change_running_once
    UNION ALL
    SELECT CAST('dead_letter' AS STRING), CAST(NULL AS STRING), {reason_class},
           CAST(NULL AS DOUBLE)
    FROM dead_letters_once
);

CREATE TEMPORARY VIEW observation_counts AS
SELECT Kind, Species, Detail, COUNT(*) AS Records, LAST_VALUE(`Value`) AS LastValue
FROM TABLE(TUMBLE(TABLE observations, DESCRIPTOR(proc_time), INTERVAL '1' SECOND))
GROUP BY window_start, window_end, Kind, Species, Detail;

-- What the pipeline's metrics stage observes: one row per output record, of every
-- output stream (the `*_once` views are the outputs, computed once and shared with
-- their sinks). The job materializes this union before the Python UDF
-- `observe_pipeline` (udfs/metrics.py) so that the UDF runs in one stage.

CREATE TEMPORARY VIEW observations AS
SELECT CAST('joined' AS STRING) AS Kind, Species AS Detail, Error AS `Value`
FROM diffs_once
UNION ALL
SELECT 'unmatched_' || Kind, Reason, CAST(NULL AS DOUBLE)
FROM unmatched_once
UNION ALL
SELECT CAST('window' AS STRING), Species[1], ErrorAvg
FROM window_errors_once
UNION ALL
SELECT CAST('retrain' AS STRING), Species[1], ErrorAvg
FROM retrain_events_once
UNION ALL
SELECT CAST('dead_letter' AS STRING), reason, CAST(NULL AS DOUBLE)
FROM dead_letters_once;

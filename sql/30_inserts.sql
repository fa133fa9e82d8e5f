-- The job's statement set: one INSERT per output topic, executed together.

INSERT INTO prediction_sink
SELECT Species, Fish_Id, Length, Height, `Timestamp`, Prediction
FROM predictions;

INSERT INTO diff_sink
SELECT Fish_Id, Species, Length, Height, PredictedWeight, ActualWeight, Error,
       ModelTime, ModelVersion, `Timestamp`
FROM diffs_once;

INSERT INTO window_sink
SELECT * FROM window_errors_once;

INSERT INTO retrain_sink
SELECT WindowStart, WindowEnd, Species, Fish_Id_Start, Fish_Id_End, Timestamp_End, ErrorAvg,
       `Count`, ModelVersions, ModelVersionMax, `Rule`, Change_Fish_Id, Change_Timestamp
FROM retrain_events_once;

INSERT INTO unmatched_sink
SELECT * FROM unmatched_once;

INSERT INTO dead_letter_sink
SELECT * FROM dead_letters_once;

-- The pipeline's metrics (web UI and REST, group `fishweight`, see udfs/metrics.py).
INSERT INTO metrics_sink
SELECT observe_pipeline(Kind, Species, Detail, Records, Total, Latest, Lean)
FROM observation_counts_once;

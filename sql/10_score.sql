-- Validate every measurement and predict the valid ones, in one Python stage
-- (`score_measurement`, udfs/predict.py: one round trip per bundle instead of one for
-- parsing and one for predicting). The job materializes this view exactly once (see
-- jobs/predict.py) before the prediction sink and the join use it, so each
-- measurement is predicted once and the error is computed against the very
-- prediction that was published.

CREATE TEMPORARY VIEW measurement_checked AS
SELECT
    kafka_partition, kafka_offset, kafka_time, event_time,
    score_measurement(payload, kafka_time) AS m
FROM measurement_raw;

CREATE TEMPORARY VIEW measurement_scored AS
SELECT
    kafka_partition, kafka_offset, kafka_time, event_time,
    m.reason,
    m.payload_text, m.payload_size, m.payload_sha256,
    m.Species, m.Fish_Id, m.Length, m.Height, m.`Timestamp`,
    CAST(ROW(m.PredictedWeight, m.ModelTime, m.ModelVersion, m.SpeciesKnown)
         AS ROW<Weight DOUBLE, ModelTime STRING, ModelVersion INT, SpeciesKnown BOOLEAN>)
        AS Prediction
FROM measurement_checked;

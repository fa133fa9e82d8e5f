-- Validate every measurement and predict the valid ones. The job materializes this
-- view exactly once (see jobs/predict.py) before the prediction sink and the join
-- use it, so each measurement is predicted once and the error is computed against
-- the very prediction that was published.

CREATE TEMPORARY VIEW measurement_checked AS
SELECT
    kafka_partition, kafka_offset, kafka_time, event_time,
    parse_measurement(payload, kafka_time) AS m
FROM measurement_raw;

CREATE TEMPORARY VIEW measurement_scored AS
SELECT
    kafka_partition, kafka_offset, kafka_time, event_time,
    m.reason,
    m.payload_text, m.payload_size, m.payload_sha256,
    m.Species, m.Fish_Id, m.Length, m.Height, m.`Timestamp`,
    predict_weight(m.Species, m.Length, m.Height) AS Prediction
FROM measurement_checked;

-- Validate every measurement and predict the valid ones. The job materializes this
-- view exactly once (see jobs/predict.py) before the prediction sink and the join
-- use it, so each measurement is predicted once and the error is computed against
-- the very prediction that was published.

CREATE TEMPORARY VIEW measurement_checked AS
SELECT
    payload, kafka_partition, kafka_offset, kafka_time, event_time,
    parse_measurement(payload) AS m
FROM measurement_raw;

CREATE TEMPORARY VIEW measurement_scored AS
SELECT
    payload, kafka_partition, kafka_offset, kafka_time, event_time,
    CASE
        WHEN m.reason IS NOT NULL THEN m.reason
        WHEN ABS(TIMESTAMPDIFF(SECOND, kafka_time, TO_TIMESTAMP_LTZ(m.`Timestamp`, 3)))
             > {max_skew_s}
        THEN 'implausible Timestamp: more than {max_skew_s} s from the Kafka record time'
    END AS reason,
    m.Species, m.Fish_Id, m.Length, m.Height, m.`Timestamp`,
    predict_weight(m.Species, m.Length, m.Height) AS Prediction
FROM measurement_checked;

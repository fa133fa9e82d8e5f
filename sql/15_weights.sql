-- Validate every actual weight. The job materializes `weight_validated` once (as
-- `weight_validated_once`), shared by the join and the dead-letter sink.

CREATE TEMPORARY VIEW weight_checked AS
SELECT
    payload, kafka_partition, kafka_offset, kafka_time, event_time,
    parse_weight(payload) AS w
FROM weight_raw;

CREATE TEMPORARY VIEW weight_validated AS
SELECT
    payload, kafka_partition, kafka_offset, kafka_time, event_time,
    CASE
        WHEN w.reason IS NOT NULL THEN w.reason
        WHEN ABS(TIMESTAMPDIFF(SECOND, kafka_time, TO_TIMESTAMP_LTZ(w.`Timestamp`, 3)))
             > {max_skew_s}
        THEN 'implausible Timestamp: more than {max_skew_s} s from the Kafka record time'
    END AS reason,
    w.Species, w.Fish_Id, w.Weight, w.`Timestamp`
FROM weight_checked;

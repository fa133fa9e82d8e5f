-- Validate every actual weight. The job materializes `weight_validated` once (as
-- `weight_validated_once`), shared by the join and the dead-letter sink.

CREATE TEMPORARY VIEW weight_checked AS
SELECT
    kafka_partition, kafka_offset, kafka_time, event_time,
    parse_weight(payload, kafka_time) AS w
FROM weight_raw;

CREATE TEMPORARY VIEW weight_validated AS
SELECT
    kafka_partition, kafka_offset, kafka_time, event_time,
    w.reason,
    w.payload_text, w.payload_size, w.payload_sha256,
    w.Species, w.Fish_Id, w.Weight, w.`Timestamp`
FROM weight_checked;

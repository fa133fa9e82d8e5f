-- One Fish_Id, one fish. The `*_once` views are materialized views with their event
-- time as `row_time`.
--
-- A Fish_Id names one fish. Its first measurement record that carries a valid
-- Fish_Id (predicted, or rejected for another field) and its first valid weight are
-- the fish's; a later record with the same Fish_Id, while the id is remembered
-- (state_ttl_s after its last record), is a dead letter "duplicate Fish_Id". So each
-- weight meets at most one measurement and each fish gives at most one diff. "First"
-- is arrival order: the producers key records by Fish_Id, so one id stays in one
-- partition, in order.

-- The job materializes the two views once each, as `*_outcomes_once` with `row_time`
-- again: the planner does not share a plan with PROCTIME() between its readers.
CREATE TEMPORARY VIEW measurement_outcomes AS
SELECT kafka_partition, kafka_offset, kafka_time, reason,
       payload_text, payload_size, payload_sha256,
       Species, Fish_Id, Length, Height, `Timestamp`, Prediction, late, event_time,
    COUNT(*) OVER (PARTITION BY Fish_Id ORDER BY proc_time
                   ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS seen
FROM (
    SELECT kafka_partition, kafka_offset, kafka_time, reason,
           payload_text, payload_size, payload_sha256,
           Species, Fish_Id, Length, Height, `Timestamp`, Prediction,
           row_time AS event_time,
           -- Behind its own stream's watermark on arrival (as a weight's `late`, below).
           row_time <= CURRENT_WATERMARK(row_time) AS late,
           PROCTIME() AS proc_time
    FROM measurement_scored_once
    WHERE Fish_Id IS NOT NULL
);

CREATE TEMPORARY VIEW weight_outcomes AS
SELECT kafka_partition, kafka_offset, kafka_time,
       payload_text, payload_size, payload_sha256,
       Species, Fish_Id, Weight, `Timestamp`, late, event_time,
    COUNT(*) OVER (PARTITION BY Fish_Id ORDER BY proc_time
                   ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS seen
FROM (
    SELECT kafka_partition, kafka_offset, kafka_time,
           payload_text, payload_size, payload_sha256,
           Species, Fish_Id, Weight, `Timestamp`, row_time AS event_time,
           -- Behind its own stream's watermark on arrival: out of order by more than
           -- the watermark delay (the reason, should it find no prediction).
           row_time <= CURRENT_WATERMARK(row_time) AS late,
           PROCTIME() AS proc_time
    FROM weight_validated_once
    WHERE reason IS NULL
);

-- Dead letters and the interval join of predictions with actual weights. The
-- `*_once` views are materialized views with their event time as `row_time`; the
-- `*_outcomes_once` views count each Fish_Id's records (`seen`, sql/18_first_seen.sql).

-- Each fish's first measurement record: predicted (reason NULL) or rejected; not one
-- rejected for a record time far ahead of the job's clock: its event time would keep it
-- in the join's state until the watermark reaches it.
CREATE TEMPORARY VIEW first_measurements AS
SELECT Species, Fish_Id, Length, Height, `Timestamp`, Prediction, reason, late, row_time
FROM measurement_outcomes_once
WHERE seen = 1 AND (reason IS NULL OR reason NOT LIKE '{ahead_of_clock}%');

CREATE TEMPORARY VIEW predictions AS
SELECT Species, Fish_Id, Length, Height, `Timestamp`, Prediction, row_time
FROM first_measurements
WHERE reason IS NULL;

CREATE TEMPORARY VIEW weights AS
SELECT Species, Fish_Id, Weight, `Timestamp`, late, row_time
FROM weight_outcomes_once
WHERE seen = 1;

CREATE TEMPORARY VIEW dead_letters AS
SELECT '{topic_measurement}' AS SourceTopic, kafka_partition, kafka_offset, kafka_time,
       Fish_Id, reason, payload_text, payload_size, payload_sha256
FROM measurement_scored_once
WHERE reason IS NOT NULL
UNION ALL
SELECT '{topic_measurement}' AS SourceTopic, kafka_partition, kafka_offset, kafka_time,
       Fish_Id,
       'duplicate Fish_Id: ' || CAST(Fish_Id AS STRING) || ' was measured before '
           || '(record ' || CAST(seen AS STRING) || '; the first one is the fish''s)',
       JSON_OBJECT('Species' VALUE Species, 'Fish_Id' VALUE Fish_Id, 'Length' VALUE Length,
                   'Height' VALUE Height, 'Timestamp' VALUE `Timestamp`),
       CAST(NULL AS INT), CAST(NULL AS STRING)
FROM measurement_outcomes_once
WHERE seen > 1 AND reason IS NULL
UNION ALL
SELECT '{topic_weight}' AS SourceTopic, kafka_partition, kafka_offset, kafka_time,
       Fish_Id, reason, payload_text, payload_size, payload_sha256
FROM weight_validated_once
WHERE reason IS NOT NULL
UNION ALL
SELECT '{topic_weight}' AS SourceTopic, kafka_partition, kafka_offset, kafka_time,
       Fish_Id,
       'duplicate Fish_Id: ' || CAST(Fish_Id AS STRING) || ' was weighed before '
           || '(record ' || CAST(seen AS STRING) || '; the first one is the fish''s)',
       JSON_OBJECT('Species' VALUE Species, 'Fish_Id' VALUE Fish_Id, 'Weight' VALUE Weight,
                   'Timestamp' VALUE `Timestamp`),
       CAST(NULL AS INT), CAST(NULL AS STRING)
FROM weight_outcomes_once
WHERE seen > 1;

-- One interval join, FULL OUTER, pairs each fish's first measurement (predicted or
-- rejected) with its first valid weight, measured within the join bounds around it: up
-- to {join_bound} s after (the weighing delay) and up to {join_before} s before. Each
-- machine's clock stamps its own records, so a weigh machine whose clock lags by more
-- than the weighing delay puts the weight "before" its measurement; the tutorial's
-- ksqlDB join (`WITHIN 1 MINUTE`) is symmetric for that reason. Fish_Id names one fish
-- (sql/18_first_seen.sql), so a wider bound cannot pair two fish; it costs only keeping
-- each weight in the join state that much longer.
--
-- A pair is emitted when its second record arrives; a record that found no partner when
-- the watermark passes its bound (or at once when it arrives too late for the join).
-- 22_pairs.sql splits the one output (materialized as `pairs_once`) into the diffs (a
-- prediction and its weight) and the unmatched records, so both read one join state.
-- A rejected measurement without a weight is neither (it is a dead letter) and is
-- dropped here. `row_time` is the weight's event time, the measurement's for a
-- measurement without a weight. The join's own watermark holds back by the larger of its
-- bounds, so a pair is behind it only if its weight arrived far out of order (behind its
-- own stream's watermark by more than that bound) while its measurement was still kept
-- (up to join_before_s before it): such a diff reaches weight-diff, the retrain rules and
-- the trainer, but the closed window it belongs to (weight-windows) has already been
-- written without it.
CREATE TEMPORARY VIEW pairs AS
SELECT
    m.Fish_Id                                                    AS m_Fish_Id,
    m.Species                                                    AS m_Species,
    m.Length,
    m.Height,
    m.`Timestamp`                                                AS m_Timestamp,
    m.Prediction,
    m.reason,
    m.late                                                       AS m_late,
    w.Fish_Id                                                    AS w_Fish_Id,
    w.Species                                                    AS w_Species,
    w.Weight,
    w.`Timestamp`                                                AS w_Timestamp,
    w.late                                                       AS w_late,
    CAST(COALESCE(w.row_time, m.row_time) AS TIMESTAMP_LTZ(3))   AS row_time
FROM first_measurements AS m
FULL OUTER JOIN weights AS w
  ON m.Fish_Id = w.Fish_Id
 AND w.row_time BETWEEN m.row_time - {join_before_interval}
                    AND m.row_time + {join_bound_interval}
WHERE NOT (w.Fish_Id IS NULL AND m.reason IS NOT NULL);

-- Output tables (JSON). Their WITH options come from the job: Kafka topics in
-- production, files in the fast test tier.

CREATE TEMPORARY TABLE prediction_sink (
    Species     STRING,
    Fish_Id     BIGINT,
    Length      DOUBLE,
    Height      DOUBLE,
    `Timestamp` BIGINT,
    Prediction  ROW<Weight DOUBLE, ModelTime STRING, ModelVersion INT, SpeciesKnown BOOLEAN>
) WITH (
    {prediction_sink}
);

CREATE TEMPORARY TABLE diff_sink (
    Fish_Id         BIGINT,
    Species         STRING,
    Length          DOUBLE,
    Height          DOUBLE,
    PredictedWeight DOUBLE,
    ActualWeight    DOUBLE,
    Error           DOUBLE,
    ModelTime       STRING,
    ModelVersion    INT,
    `Timestamp`     BIGINT
) WITH (
    {diff_sink}
);

-- Every closed window of one species, final figures (weight-windows).
CREATE TEMPORARY TABLE window_sink (
    WindowStart     TIMESTAMP(3),
    WindowEnd       TIMESTAMP(3),
    Species         ARRAY<STRING>,
    Fish_Id_Start   BIGINT,
    Fish_Id_End     BIGINT,
    Timestamp_End   BIGINT,
    ErrorAvg        DOUBLE,
    `Count`         BIGINT,
    ModelVersions   ARRAY<INT>,
    ModelVersionMax INT
) WITH (
    {window_sink}
);

-- Retrain events (weight-retrain): the window's fields (figures so far) plus which rule
-- fired and where the change began (sql/26_rules.sql).
CREATE TEMPORARY TABLE retrain_sink (
    `Rule`           STRING,  -- window | change | bias
    Change_Fish_Id   BIGINT,  -- the first record over the threshold the rule saw (bias:
                              -- the first of the records it looked at)
    Change_Timestamp BIGINT   -- its Timestamp (epoch ms)
) WITH (
    {retrain_sink}
) LIKE window_sink (OVERWRITING OPTIONS);

-- Valid records that found no partner: a weight without a prediction within the bound
-- before it (or arriving after the watermark passed it), a measurement without a weight.
CREATE TEMPORARY TABLE unmatched_sink (
    Kind        STRING,  -- weight | measurement
    Fish_Id     BIGINT,
    Species     STRING,
    `Timestamp` BIGINT,
    Reason      STRING
) WITH (
    {unmatched_sink}
);

CREATE TEMPORARY TABLE dead_letter_sink (
    SourceTopic    STRING,
    `Partition`    INT,
    `Offset`       BIGINT,
    KafkaTimestamp TIMESTAMP_LTZ(3),
    Fish_Id        BIGINT,  -- when the record names a valid one
    Reason         STRING,
    Payload        STRING,  -- as text (invalid UTF-8 escaped), cut to a limit; for a
                            -- duplicate, its fields as JSON
    PayloadSize    INT,     -- bytes (NULL for a duplicate: it was valid)
    PayloadSha256  STRING
) WITH (
    {dead_letter_sink}
);

-- The pipeline's metrics stage writes nowhere: its counters are the output.
CREATE TEMPORARY TABLE metrics_sink (
    Observed BOOLEAN
) WITH (
    'connector' = 'blackhole'
);

-- Output topics (JSON).

CREATE TEMPORARY TABLE prediction_sink (
    Species     STRING,
    Fish_Id     BIGINT,
    Length      DOUBLE,
    Height      DOUBLE,
    `Timestamp` BIGINT,
    Prediction  ROW<Weight DOUBLE, ModelTime STRING, ModelVersion INT, SpeciesKnown BOOLEAN>
) WITH (
    'connector' = 'kafka',
    'topic'     = '{topic_prediction}',
    'format'    = 'json',
    {sink_options}
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
    'connector' = 'kafka',
    'topic'     = '{topic_diff}',
    'format'    = 'json',
    {sink_options}
);

CREATE TEMPORARY TABLE retrain_sink (
    WindowStart     TIMESTAMP(3),
    WindowEnd       TIMESTAMP(3),
    Species         ARRAY<STRING>,
    Fish_Id_Start   BIGINT,
    Fish_Id_End     BIGINT,
    ErrorAvg        DOUBLE,
    `Count`         BIGINT,
    ModelVersions   ARRAY<INT>,
    ModelVersionMax INT
) WITH (
    'connector' = 'kafka',
    'topic'     = '{topic_retrain}',
    'format'    = 'json',
    'json.timestamp-format.standard' = 'ISO-8601',
    {sink_options}
);

-- Every closed window has the retrain event's fields.
CREATE TEMPORARY TABLE window_sink WITH (
    'topic' = '{topic_windows}'
) LIKE retrain_sink (OVERWRITING OPTIONS);

CREATE TEMPORARY TABLE dead_letter_sink (
    SourceTopic    STRING,
    `Partition`    INT,
    `Offset`       BIGINT,
    KafkaTimestamp TIMESTAMP_LTZ(3),
    Reason         STRING,
    Payload        STRING
) WITH (
    'connector' = 'kafka',
    'topic'     = '{topic_dead_letter}',
    'format'    = 'json',
    'json.timestamp-format.standard' = 'ISO-8601',
    {sink_options}
);

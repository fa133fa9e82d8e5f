"""One frozen settings object for every fishweight process.

Resolution order for each field: explicit argument > environment variable > default.
The environment variable names live here and only here (see ``ENV``); the table in
docs/settings.md is generated from the same data (``python -m fishweight.runtime.settings``).

Longer than most modules on purpose: every setting is declared once, with its variable,
default and documentation, and the checks that span settings sit beside them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

MAX_DURATION_S = 99 * 86_400.0  # a duration the job's SQL can write (sql/params.py)

# The settings that take one of a few words, and those words (checked in ``__post_init__``).
CHOICES = {
    "delivery_guarantee": ("at-least-once", "exactly-once", "none"),
    "state_backend": ("hashmap", "rocksdb"),
    "python_workers": ("loopback", "process"),
    "event_time_source": ("kafka", "payload"),
    "validation": ("python", "sql-fast-path"),
}
# Settings only the trainer needs: the store's credentials stay out of other processes
# (``Settings.as_env(trainer=False)``).
TRAINER_ONLY = ("store_uri", "store_password_file")


@dataclass(frozen=True)
class Settings:
    """Every tunable of the pipeline, shared by the jobs, the trainer and the tools."""

    bootstrap_servers: str = field(
        default="",
        metadata={"env": "FISHWEIGHT_BOOTSTRAP_SERVERS",
                  "doc": "Kafka bootstrap servers; empty = start the embedded broker"},
    )
    topic_measurement: str = field(
        default="machine-measurement",
        metadata={"env": "FISHWEIGHT_TOPIC_MEASUREMENT", "doc": "Measurements (input)"},
    )
    topic_weight: str = field(
        default="machine-weight",
        metadata={"env": "FISHWEIGHT_TOPIC_WEIGHT", "doc": "Actual weights (input)"},
    )
    topic_prediction: str = field(
        default="weight-prediction",
        metadata={"env": "FISHWEIGHT_TOPIC_PREDICTION", "doc": "Predictions (output)"},
    )
    topic_diff: str = field(
        default="weight-diff",
        metadata={"env": "FISHWEIGHT_TOPIC_DIFF", "doc": "Prediction joined with actual weight"},
    )
    topic_windows: str = field(
        default="weight-windows",
        metadata={"env": "FISHWEIGHT_TOPIC_WINDOWS",
                  "doc": "Every closed error window (monitoring; retrain events are a subset)"},
    )
    topic_retrain: str = field(
        default="weight-retrain",
        metadata={"env": "FISHWEIGHT_TOPIC_RETRAIN", "doc": "Retrain events (side sink)"},
    )
    topic_unmatched: str = field(
        default="weight-unmatched",
        metadata={"env": "FISHWEIGHT_TOPIC_UNMATCHED",
                  "doc": "Valid weights and measurements that found no partner within the "
                         "join bound (or came too late), with the reason"},
    )
    topic_dead_letter: str = field(
        default="fishweight-dead-letter",
        metadata={"env": "FISHWEIGHT_TOPIC_DEAD_LETTER",
                  "doc": "Rejected input records with the reason"},
    )
    topic_partitions: int = field(
        default=3,
        metadata={"env": "FISHWEIGHT_TOPIC_PARTITIONS", "doc": "Partitions for created topics"},
    )
    topic_replication_factor: int = field(
        default=1,
        metadata={"env": "FISHWEIGHT_TOPIC_REPLICATION_FACTOR",
                  "doc": "Replicas of each topic the job, the simulator or `submit.sh topics` "
                         "creates (existing topics are left as they are); on a Kafka cluster "
                         "of three or more brokers, 3"},
    )
    model_dir: str = field(
        default="",
        metadata={"env": "FISHWEIGHT_MODEL_DIR",
                  "doc": "Shared model registry directory (default `<state_dir>/models`)"},
    )
    model_key_file: str = field(
        default="",
        metadata={"env": "FISHWEIGHT_MODEL_KEY_FILE",
                  "doc": "Secret key that signs and verifies models, outside the model "
                         "directory (default `model-signing.key` next to it; created 0400)"},
    )
    store_uri: str = field(
        default="",
        repr=False,  # may hold a password: never in a log line or a traceback
        metadata={"env": "FISHWEIGHT_STORE_URI",
                  "doc": "Training store: `mongodb://...` or `sqlite:///path` "
                         "(default `sqlite:///<state_dir>/training.sqlite`)"},
    )
    store_password_file: str = field(
        default="",
        metadata={"env": "FISHWEIGHT_STORE_PASSWORD_FILE",
                  "doc": "File holding the MongoDB password, so it is in no URI, argv or "
                         "environment (the URI then names the user only)"},
    )
    state_dir: str = field(
        default="./var",
        metadata={"env": "FISHWEIGHT_STATE_DIR",
                  "doc": "Local state: models, training store, logs, reports"},
    )
    join_bound_s: float = field(
        default=60.0,
        metadata={"env": "FISHWEIGHT_JOIN_BOUND_S",
                  "doc": "Interval join: weight within this many seconds after measurement"},
    )
    join_before_s: float = field(
        default=60.0,
        metadata={"env": "FISHWEIGHT_JOIN_BEFORE_S",
                  "doc": "Interval join: a weight's event time may also be up to this many "
                         "seconds before its measurement's (a weigh machine whose clock lags "
                         "by more than the weighing delay); 60 with `join_bound_s` 60 is the "
                         "tutorial's symmetric `WITHIN 1 MINUTE`, 0 = weights only after"},
    )
    window_s: float = field(
        default=60.0,
        metadata={"env": "FISHWEIGHT_WINDOW_S", "doc": "Tumbling error window size in seconds"},
    )
    watermark_delay_s: float = field(
        default=2.0,
        metadata={"env": "FISHWEIGHT_WATERMARK_DELAY_S",
                  "doc": "Allowed out-of-orderness of event time, seconds"},
    )
    max_clock_skew_s: float = field(
        default=3600.0,
        metadata={"env": "FISHWEIGHT_MAX_CLOCK_SKEW_S",
                  "doc": "Reject a record whose Timestamp is further than this from its "
                         "Kafka record time, or whose Kafka record time is further than "
                         "this ahead of the job's clock on arrival (keeps one bad clock "
                         "from moving the watermark)"},
    )
    event_time_source: str = field(
        default="kafka",
        metadata={"env": "FISHWEIGHT_EVENT_TIME_SOURCE",
                  "doc": "`kafka`: event time is the Kafka record time (as in ksqlDB; the "
                         "payload's Timestamp is still checked against it); `payload`: the "
                         "payload's Timestamp, parsed on the JVM, when within "
                         "`max_clock_skew_s` of the record time"},
    )
    max_payload_bytes: int = field(
        default=4096,
        metadata={"env": "FISHWEIGHT_MAX_PAYLOAD_BYTES",
                  "doc": "A larger input record is dead-lettered unparsed"},
    )
    max_species_chars: int = field(
        default=64,
        metadata={"env": "FISHWEIGHT_MAX_SPECIES_CHARS",
                  "doc": "Longest accepted Species (printable characters only)"},
    )
    max_length: float = field(
        default=500.0,
        metadata={"env": "FISHWEIGHT_MAX_LENGTH",
                  "doc": "Largest plausible Length (cm); above it a record is dead-lettered"},
    )
    max_height: float = field(
        default=200.0,
        metadata={"env": "FISHWEIGHT_MAX_HEIGHT", "doc": "Largest plausible Height (cm)"},
    )
    max_weight: float = field(
        default=1000.0,
        metadata={"env": "FISHWEIGHT_MAX_WEIGHT", "doc": "Largest plausible Weight (kg)"},
    )
    dead_letter_payload_chars: int = field(
        default=1024,
        metadata={"env": "FISHWEIGHT_DEAD_LETTER_PAYLOAD_CHARS",
                  "doc": "A dead letter quotes this much of the payload (plus its size and "
                         "SHA-256)"},
    )
    idle_timeout_s: float = field(
        default=120.0,
        metadata={"env": "FISHWEIGHT_IDLE_TIMEOUT_S",
                  "doc": "A source partition without data stops holding the watermark after "
                         "this long; more than `join_bound_s`, so a producer pause within the "
                         "join bound followed by its backlog loses no join"},
    )
    error_threshold: float = field(
        default=0.15,
        metadata={"env": "FISHWEIGHT_ERROR_THRESHOLD",
                  "doc": "Retrain when a window's AVG(Error) exceeds this"},
    )
    min_window_count: int = field(
        default=3,
        metadata={"env": "FISHWEIGHT_MIN_WINDOW_COUNT",
                  "doc": "Joined records a window needs before its running AVG(Error) may "
                         "trigger a retrain (one noisy fish cannot)"},
    )
    change_records: int = field(
        default=5,
        metadata={"env": "FISHWEIGHT_CHANGE_RECORDS",
                  "doc": "Change rule: it looks at each species' most recent joined records "
                         "scored by the serving model version, this many"},
    )
    change_over: int = field(
        default=3,
        metadata={"env": "FISHWEIGHT_CHANGE_OVER",
                  "doc": "Change rule: a retrain event when this many of those records exceed "
                         "`error_threshold` (robust to an outlier, unlike a mean)"},
    )
    bias_records: int = field(
        default=15,
        metadata={"env": "FISHWEIGHT_BIAS_RECORDS",
                  "doc": "Bias rule: it looks at each species' most recent joined records "
                         "scored by the serving model version, this many, for a drift too "
                         "small for `error_threshold` (0 = off)"},
    )
    bias_t: float = field(
        default=5.5,
        metadata={"env": "FISHWEIGHT_BIAS_T",
                  "doc": "Bias rule: a retrain event when those records' mean signed error "
                         "is this many standard errors from 0 (a t statistic) ..."},
    )
    bias_min: float = field(
        default=0.02,
        metadata={"env": "FISHWEIGHT_BIAS_MIN",
                  "doc": "... and more than this far from 0 (a relative error: 0.02 = 2 %)"},
    )
    change_min_records: int = field(
        default=4,
        metadata={"env": "FISHWEIGHT_CHANGE_MIN_RECORDS",
                  "doc": "The trainer adapts a changed species on its records since the "
                         "change; it waits (up to 5 s) for this many, so a burst of outliers "
                         "shows a good fish among them and is refused"},
    )
    state_ttl_s: float = field(
        default=600.0,
        metadata={"env": "FISHWEIGHT_STATE_TTL_S",
                  "doc": "Keyed state idle this long is forgotten: the duplicate Fish_Id "
                         "check (an id repeated later is a new fish) and the retrain "
                         "trigger's running window figures; >= 2 * (window + join bound)"},
    )
    retrain_samples: int = field(
        default=50,
        metadata={"env": "FISHWEIGHT_RETRAIN_SAMPLES",
                  "doc": "Train on this many most recent joined records"},
    )
    memory_per_species: int = field(
        default=25,
        metadata={"env": "FISHWEIGHT_MEMORY_PER_SPECIES",
                  "doc": "Species memory: a species with fewer records among the newest "
                         "`retrain_samples` is topped up with its own newest, up to this many"},
    )
    max_species: int = field(
        default=50,
        metadata={"env": "FISHWEIGHT_MAX_SPECIES",
                  "doc": "Most species a model learns (Species names come from the input): "
                         "the trainer refuses to learn more (`skipped_species_limit`), whose "
                         "fish keep the shared line; also the species with metrics of their "
                         "own, the rest counted as `_other`"},
    )
    decision_log_max_mb: float = field(
        default=16.0,
        metadata={"env": "FISHWEIGHT_DECISION_LOG_MAX_MB",
                  "doc": "The trainer's decision log (`trainer-decisions.jsonl`) rolls over "
                         "to `trainer-decisions.jsonl.1` past this size; the two are what "
                         "the trainer reads at start (10,000 decisions or more each)"},
    )
    refine_min_records: int = field(
        default=15,
        metadata={"env": "FISHWEIGHT_REFINE_MIN_RECORDS",
                  "doc": "The trainer refits by itself once a species has this many records "
                         "and had fewer when the serving model was promoted (0 = never)"},
    )
    model_poll_s: float = field(
        default=0.25,
        metadata={"env": "FISHWEIGHT_MODEL_POLL_S",
                  "doc": "The UDF checks for a new model version at most this often"},
    )
    parallelism: int = field(
        default=1,
        metadata={"env": "FISHWEIGHT_PARALLELISM", "doc": "Flink default parallelism"},
    )
    taskmanagers: int = field(
        default=1,
        metadata={"env": "FISHWEIGHT_TASKMANAGERS",
                  "doc": "TaskManagers `fishweight cluster start` starts, each with "
                         "max(2, parallelism) slots; the job's slots are spread over them"},
    )
    checkpoint_interval_s: float = field(
        default=10.0,
        metadata={"env": "FISHWEIGHT_CHECKPOINT_INTERVAL_S",
                  "doc": "Flink checkpoint interval (0 = off)"},
    )
    state_backend: str = field(
        default="hashmap",
        metadata={"env": "FISHWEIGHT_STATE_BACKEND",
                  "doc": "Flink state backend: `hashmap` (state on the heap) or `rocksdb` "
                         "(on local disk, for state larger than memory)"},
    )
    checkpoint_dir: str = field(
        default="",
        metadata={"env": "FISHWEIGHT_CHECKPOINT_DIR",
                  "doc": "Durable checkpoint and savepoint storage, a path or URI shared by "
                         "the cluster (default `<state_dir>/checkpoints`)"},
    )
    resume_from: str = field(
        default="latest",
        metadata={"env": "FISHWEIGHT_RESUME_FROM",
                  "doc": "`fishweight predict` restores `latest` (the newest savepoint or "
                         "retained checkpoint in `checkpoint_dir`), `none`, or this path"},
    )
    delivery_guarantee: str = field(
        default="at-least-once",
        metadata={"env": "FISHWEIGHT_DELIVERY_GUARANTEE",
                  "doc": "Kafka sinks: `at-least-once`, `exactly-once` (needs Apache Kafka) "
                         "or `none` (not flushed at checkpoints: a failure may lose "
                         "records)"},
    )
    restart_attempts: int = field(
        default=6,
        metadata={"env": "FISHWEIGHT_RESTART_ATTEMPTS",
                  "doc": "Flink restarts a failed job this often, 1, 2, 4 ... 30 s apart "
                         "(so a lost TaskManager is outlasted), then fails it; counted "
                         "afresh after 10 minutes without a failure"},
    )
    validation: str = field(
        default="python",
        metadata={"env": "FISHWEIGHT_VALIDATION",
                  "doc": "`python`: the UDFs check every record; `sql-fast-path`: records in "
                         "the producers' shape are checked in SQL, the rest in Python (faster "
                         "only where the JVM has CPU to spare: docs/performance.md)"},
    )
    bundle_size: int = field(
        default=1000,
        metadata={"env": "FISHWEIGHT_BUNDLE_SIZE",
                  "doc": "Python UDF bundle size (records per round trip)"},
    )
    bundle_time_ms: int = field(
        default=10,
        metadata={"env": "FISHWEIGHT_BUNDLE_TIME_MS",
                  "doc": "Python UDF bundle time of the measurements' stage, milliseconds: "
                         "under a steady input a bundle closes every 2x this (PyFlink's "
                         "check, docs/platform.md), the largest part of a prediction's "
                         "latency above the broker's"},
    )
    weight_bundle_time_ms: int = field(
        default=100,
        metadata={"env": "FISHWEIGHT_WEIGHT_BUNDLE_TIME_MS",
                  "doc": "Python UDF bundle time bound of the weights' and the metrics' "
                         "stages, milliseconds: no prediction waits for them (a weight's "
                         "diff follows its measurement by the weighing delay anyway)"},
    )
    python_workers: str = field(
        default="process",
        metadata={"env": "FISHWEIGHT_PYTHON_WORKERS",
                  "doc": "`loopback`: a local run's Python operators are threads of the "
                         "client process (one interpreter lock); `process`: one worker "
                         "process per Python operator, locally and on a cluster "
                         "(docs/performance.md)"},
    )
    sink_linger_ms: int = field(
        default=5,
        metadata={"env": "FISHWEIGHT_SINK_LINGER_MS",
                  "doc": "Kafka producer `linger.ms` of every sink (Kafka 4.0's default): "
                         "a record waits up to this long for others to share its batch; "
                         "0 sends each at once (docs/performance.md)"},
    )
    buffer_timeout_ms: int = field(
        default=10,
        metadata={"env": "FISHWEIGHT_BUFFER_TIMEOUT_MS",
                  "doc": "Flink network buffer flush interval between tasks, milliseconds "
                         "(Flink's default 100 adds up to 100 ms per exchange)"},
    )
    arrow_batch_size: int = field(
        default=1000,
        metadata={"env": "FISHWEIGHT_ARROW_BATCH_SIZE",
                  "doc": "Rows per Arrow batch for pandas UDFs (<= bundle size)"},
    )
    web_ui_port: int = field(
        default=8081,
        metadata={"env": "FISHWEIGHT_WEB_UI_PORT",
                  "doc": "Flink web UI / REST port for local runs (0 = off)"},
    )
    metrics_port: int = field(
        default=0,
        metadata={"env": "FISHWEIGHT_METRICS_PORT",
                  "doc": "Prometheus port of the prediction job (Flink's reporter, on every "
                         "interface: docs/security.md); 0 = off. A session cluster takes "
                         "it and the next 8 (JobManager, TaskManagers)"},
    )
    trainer_metrics_port: int = field(
        default=0,
        metadata={"env": "FISHWEIGHT_TRAINER_METRICS_PORT",
                  "doc": "Prometheus port of the trainer; 0 = off"},
    )
    trainer_metrics_host: str = field(
        default="127.0.0.1",
        metadata={"env": "FISHWEIGHT_TRAINER_METRICS_HOST",
                  "doc": "Address the trainer's metrics port binds (`0.0.0.0` in docker/)"},
    )
    jar_dir: str = field(
        default="",
        metadata={"env": "FISHWEIGHT_JAR_DIR",
                  "doc": "Kafka connector jar cache (default `$XDG_CACHE_HOME/fishweight/jars`, "
                         "`~/.cache/fishweight/jars` without it)"},
    )
    consumer_group: str = field(
        default="fishweight",
        metadata={"env": "FISHWEIGHT_CONSUMER_GROUP",
                  "doc": "Prefix of the consumer group ids (Flink source, trainer)"},
    )

    @classmethod
    def load(cls, **overrides: object) -> Settings:
        """Build settings: explicit keyword arguments > environment > defaults.

        ``None`` values in ``overrides`` count as "not given", so CLI options can be
        passed through unconditionally.
        """
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            explicit = overrides.pop(f.name, None)
            if explicit is not None:
                values[f.name] = _coerce(f, explicit)
                continue
            raw = os.environ.get(f.metadata["env"])
            if raw is not None and raw != "":
                values[f.name] = _coerce(f, raw)
        if overrides:
            raise TypeError(f"unknown settings: {', '.join(sorted(overrides))}")
        return cls(**values)

    def __post_init__(self) -> None:
        problems = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                problems.append(f"{f.name} must be a finite number, got {value}")
        for name in ("topic_measurement", "topic_weight", "topic_prediction", "topic_diff",
                     "topic_windows", "topic_retrain", "topic_unmatched", "topic_dead_letter",
                     "consumer_group"):
            value = getattr(self, name)
            if not KAFKA_NAME.fullmatch(value) or value in (".", ".."):
                problems.append(f"{name} {value!r} is not a valid Kafka name (1-249 of "
                                "letters, digits, '.', '_', '-')")
        for name in ("join_bound_s", "window_s", "model_poll_s", "idle_timeout_s"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be > 0")
        if self.watermark_delay_s < 0 or self.join_before_s < 0:
            problems.append("watermark_delay_s and join_before_s must be >= 0")
        if not 0 < self.error_threshold:
            problems.append("error_threshold must be > 0")
        if self.retrain_samples < 4:
            problems.append("retrain_samples must be >= 4")
        if self.max_species < 1:
            problems.append("max_species must be >= 1")
        if not self.decision_log_max_mb > 0:
            problems.append("decision_log_max_mb must be > 0")
        if self.memory_per_species < 0 or self.refine_min_records < 0:
            problems.append("memory_per_species and refine_min_records must be >= 0")
        join_span_s = max(self.join_bound_s, self.join_before_s)
        if self.idle_timeout_s <= join_span_s + self.watermark_delay_s:
            problems.append("idle_timeout_s must exceed join_bound_s (and join_before_s) + "
                            "watermark_delay_s (else records after a pause are late for the "
                            "join)")
        if self.min_window_count < 1:
            problems.append("min_window_count must be >= 1")
        if not 1 <= self.change_over <= self.change_records <= 1000:
            problems.append("change_over and change_records must satisfy "
                            "1 <= change_over <= change_records <= 1000")
        if not (self.bias_records == 0 or 3 <= self.bias_records <= 1000):
            problems.append("bias_records must be 0 (off) or in 3..1000")
        if not (0 < self.bias_t <= 100 and 0 <= self.bias_min < 1):
            problems.append("bias_t must be in (0, 100] and bias_min in [0, 1)")
        if self.change_min_records < 3:  # the trainer refits a changed species on 3 or more
            problems.append("change_min_records must be >= 3")
        if self.state_ttl_s < 2 * (self.window_s + join_span_s):
            problems.append("state_ttl_s must be >= 2 * (window_s + join_bound_s) and "
                            ">= 2 * (window_s + join_before_s)")
        if self.parallelism < 1 or self.topic_partitions < 1:
            problems.append("parallelism and topic_partitions must be >= 1")
        if self.topic_replication_factor < 1:
            problems.append("topic_replication_factor must be >= 1")
        if self.taskmanagers < 1:
            problems.append("taskmanagers must be >= 1")
        for name in ("max_payload_bytes", "max_species_chars", "max_length", "max_height",
                     "max_weight", "dead_letter_payload_chars", "bundle_size",
                     "bundle_time_ms", "weight_bundle_time_ms", "arrow_batch_size"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0")
        if self.max_clock_skew_s <= 0:
            problems.append("max_clock_skew_s must be > 0")
        # The SQL writes durations as DAY TO SECOND literals with two digits of days.
        for name in ("window_s", "join_bound_s", "join_before_s", "watermark_delay_s",
                     "max_clock_skew_s"):
            if getattr(self, name) >= MAX_DURATION_S:
                problems.append(f"{name} must be below 99 days ({MAX_DURATION_S:g} s)")
        if self.sink_linger_ms < 0:
            problems.append("sink_linger_ms must be >= 0")
        if self.restart_attempts < 1:  # Flink refuses fewer, once the job starts
            problems.append("restart_attempts must be >= 1")
        if self.store_password_file and not _names_user(self.store_uri):
            problems.append("store_password_file needs a user in store_uri "
                            "(scheme://user@host)")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                problems.append(f"{name} must be one of: {', '.join(allowed)}")
        for name in ("web_ui_port", "metrics_port", "trainer_metrics_port"):
            if not 0 <= getattr(self, name) <= 65535:
                problems.append(f"{name} must be a port number (0-65535, 0 = off)")
        if self.arrow_batch_size > self.bundle_size:
            problems.append("arrow_batch_size must be <= bundle_size")
        if problems:
            raise ValueError("invalid settings: " + "; ".join(problems))

    # Derived values -------------------------------------------------------------

    @property
    def plausible_maxima(self) -> dict[str, float]:
        """The largest Length, Height and Weight a valid record may have."""
        return {"Length": self.max_length, "Height": self.max_height,
                "Weight": self.max_weight}

    @property
    def resolved_model_dir(self) -> Path:
        return Path(self.model_dir) if self.model_dir else Path(self.state_dir) / "models"

    @property
    def resolved_store_uri(self) -> str:
        """The store URI, with the password from ``store_password_file`` when one is set."""
        if self.store_uri and self.store_password_file:
            return with_password(self.store_uri, Path(self.store_password_file).read_text()
                                 .strip())
        if self.store_uri:
            return self.store_uri
        return f"sqlite:///{Path(self.state_dir).resolve() / 'training.sqlite'}"

    @property
    def resolved_checkpoint_uri(self) -> str:
        """Checkpoint storage as a URI (a plain path becomes an absolute file:// URI)."""
        target = self.checkpoint_dir or str(Path(self.state_dir) / "checkpoints")
        return target if "://" in target else Path(target).resolve().as_uri()

    @property
    def resolved_jar_dir(self) -> Path:
        if self.jar_dir:
            return Path(self.jar_dir)
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        return cache / "fishweight" / "jars"

    TOPICS = ("topic_measurement", "topic_weight", "topic_prediction", "topic_diff",
              "topic_windows", "topic_retrain", "topic_unmatched", "topic_dead_letter")

    @property
    def all_topics(self) -> list[str]:
        return [getattr(self, name) for name in self.TOPICS]

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)

    def as_env(self, *, trainer: bool) -> dict[str, str]:
        """These settings as the environment ``load`` reads: for a process started by this one.

        ``trainer=False`` leaves out ``TRAINER_ONLY`` (the store's credentials), for the
        prediction job and every other process that does not train; the caller says which
        (no default hands out credentials by accident).
        """
        return {f.metadata["env"]: str(getattr(self, f.name)) for f in dataclasses.fields(self)
                if trainer or f.name not in TRAINER_ONLY}

    @classmethod
    def env_name(cls, name: str) -> str:
        """The environment variable of the setting ``name``."""
        return cls.__dataclass_fields__[name].metadata["env"]

    def suffixed(self, suffix: str, **changes: object) -> Settings:
        """Every topic and the consumer group renamed ``<name>-<suffix>``.

        A pipeline of its own on a shared broker (tests, bench parts).
        """
        names = {name: f"{getattr(self, name)}-{suffix}"
                 for name in (*self.TOPICS, "consumer_group")}
        return self.replace(**names, **changes)


KAFKA_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


def redact_uri(uri: str) -> str:
    """Hide the password in a URI (``scheme://user:***@host``) for messages and logs."""
    if "@" not in uri or "://" not in uri:
        return uri
    scheme, rest = uri.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def _names_user(uri: str) -> bool:
    """Whether ``uri`` is ``scheme://user@host``."""
    return "@" in uri.partition("://")[2]


def with_password(uri: str, password: str) -> str:
    """``scheme://user@host`` with ``password`` filled in (URL-quoted)."""
    if not _names_user(uri):
        raise ValueError("store_password_file needs a user in store_uri (scheme://user@host)")
    scheme, rest = uri.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:{urllib.parse.quote(password, safe='')}@{host}"


def _coerce(f: dataclasses.Field, raw: object) -> object:
    kind = f.type if isinstance(f.type, type) else {"int": int, "float": float, "str": str}[f.type]
    try:
        return kind(raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"setting {f.name} ({f.metadata['env']}): cannot read {raw!r} as {kind.__name__}"
        ) from exc


def markdown_table() -> str:
    """The settings table of docs/settings.md, generated from the dataclass."""
    rows = ["| Setting | Environment variable | Default | Meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(Settings):
        shown = f"`{f.default}`" if f.default != "" else "(empty)"
        rows.append(f"| `{f.name}` | `{f.metadata['env']}` | {shown} | {f.metadata['doc']} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())

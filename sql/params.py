"""The placeholders of the job's SQL files, filled from the settings.

``sql_params`` gives every tunable ``{placeholder}`` the files use; the connectors'
``WITH (...)`` bodies come from ``fishweight.jobs.connectors`` through ``with_options``,
the one place SQL string literals are escaped.
"""

from __future__ import annotations

from fishweight import sql
from fishweight.records import REASON_CLASSES
from fishweight.runtime.settings import Settings
from fishweight.udfs.validation import (
    AHEAD_OF_CLOCK,
    MEASUREMENT_NUMBERS,
    WEIGHT_NUMBERS,
    Limits,
    clean_shape_pattern,
)


def seconds_literal(value: float) -> str:
    """A seconds literal for INTERVAL '...' SECOND: whole or with milliseconds."""
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


def interval_literal(seconds: float) -> str:
    """A DAY TO SECOND interval literal of ``seconds`` (to the millisecond).

    Not ``INTERVAL 'n' SECOND``: its leading precision is 2, so 100 s or more fails to
    plan ("exceeds precision of SECOND(2) field"); days take two digits here (99 days).
    """
    millis = round(float(seconds) * 1000)
    days, rest = divmod(millis, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"INTERVAL '{days} {hours:02d}:{minutes:02d}:{secs:02d}.{ms:03d}' DAY TO SECOND(3)"


def sql_string(value: object) -> str:
    """A value as the inside of a SQL string literal (quotes doubled)."""
    return str(value).replace("'", "''")


def with_options(options: dict[str, str]) -> str:
    """The body of a WITH (...) clause, every key and value escaped."""
    return ",\n    ".join(f"'{sql_string(k)}' = '{sql_string(v)}'" for k, v in options.items())


def sql_params(settings: Settings) -> dict[str, str]:
    """Every tunable placeholder the SQL files use (connector options come separately)."""
    params = {
        "topic_measurement": sql_string(settings.topic_measurement),
        "topic_weight": sql_string(settings.topic_weight),
        "watermark_delay": seconds_literal(settings.watermark_delay_s),
        "max_skew_s": str(int(settings.max_clock_skew_s)),
        # Less than max_skew_s + 1 s apart, to the millisecond: what udfs/validation.py's
        # whole seconds (abs(diff_ms) // 1000 <= max_skew_s) accept.
        "max_skew_interval": interval_literal(int(settings.max_clock_skew_s) + 0.999),
        "event_time_source": settings.event_time_source,
        "join_bound": seconds_literal(settings.join_bound_s),
        "join_before": seconds_literal(settings.join_before_s),
        "window": seconds_literal(settings.window_s),
        "window_ms": str(round(settings.window_s * 1000)),
        "watermark_delay_interval": interval_literal(settings.watermark_delay_s),
        "join_bound_interval": interval_literal(settings.join_bound_s),
        "join_before_interval": interval_literal(settings.join_before_s),
        "window_interval": interval_literal(settings.window_s),
        "min_count": str(settings.min_window_count),
        "change_records": str(settings.change_records),
        "change_preceding": str(settings.change_records - 1),
        "change_over": str(settings.change_over),
        "error_threshold": repr(float(settings.error_threshold)),
        # The bias rule (26_rules.sql); bias_records = 0 turns it off (one row, never fires).
        "bias_on": "TRUE" if settings.bias_records else "FALSE",
        "bias_records": str(max(settings.bias_records, 1)),
        "bias_preceding": str(max(settings.bias_records - 1, 0)),
        "bias_t_squared": repr(float(settings.bias_t) ** 2),
        "bias_min": repr(float(settings.bias_min)),
        # The SQL fast path of validation (udfs/validation.py, clean_shape_pattern).
        "max_length": repr(float(settings.max_length)),
        "max_height": repr(float(settings.max_height)),
        "max_weight": repr(float(settings.max_weight)),
    }
    limits = Limits.from_settings(settings)
    params["reason_class"] = "CASE " + " ".join(
        f"WHEN reason LIKE '{sql_string(prefix)}%' THEN '{name}'"
        for prefix, name in REASON_CLASSES) + " ELSE 'other' END"
    for name, numbers in (("measurement", MEASUREMENT_NUMBERS), ("weight", WEIGHT_NUMBERS)):
        # `text` is the payload as a string; FALSE sends every record to Python.
        params[f"{name}_shaped"] = "FALSE" if settings.validation == "python" else (
            f"COALESCE(CHAR_LENGTH(text) <= {int(settings.max_payload_bytes)} AND REGEXP(text, "
            f"'{sql_string(clean_shape_pattern(numbers, limits))}'), FALSE)")
    params["event_time"] = event_time(params, "kafka_time")
    params["watermark"] = watermark(params, "kafka_time")
    params["ahead_of_clock"] = sql_string(AHEAD_OF_CLOCK)
    # The fast path accepts a record without Python: not one whose record time is too far
    # ahead of the job's clock (``watermark`` below). Only with the fast path on, so that
    # the default plan reads no clock per row.
    params["fast_path_clock"] = "" if settings.validation == "python" else (
        f"AND kafka_time <= CURRENT_TIMESTAMP + {params['max_skew_interval']}")
    return params


def watermark(params: dict[str, str], kafka_time: str) -> str:
    """The watermark expression of a raw source (over ``event_time`` and ``kafka_time``).

    A record time further ahead of the job's clock than max_clock_skew_s (a producer's
    clock a day off, microseconds sent as milliseconds) would move its partition's
    watermark that far: every later record of the partition would be late, and with one
    partition, or the others idle, the whole stream. The watermark passes over such a
    record (the epoch instead: a watermark only rises), and validation rejects it
    (``ahead_of_clock``, udfs/validation.py, on the Python worker's clock a moment later:
    so it never rejects a record that moved the watermark). Only here, in the source's
    watermark generator: the rows keep their event time, and no operator is added to the
    source chains.
    """
    return (f"CASE WHEN {kafka_time} > CURRENT_TIMESTAMP + {params['max_skew_interval']} "
            f"THEN TO_TIMESTAMP_LTZ(0, 3) ELSE event_time END "
            f"- {params['watermark_delay_interval']}")


def event_time(params: dict[str, str], kafka_time: str) -> str:
    """The event-time expression of a raw source, over the SQL expression ``kafka_time``.

    With ``event_time_source = kafka`` (the default) it is the Kafka record time itself:
    no per-record JSON parse on the JVM, and no payload can move the watermark. The
    payload's Timestamp is then only checked (the skew rule in udfs/validation.py).
    """
    if params["event_time_source"] == "kafka":
        return kafka_time
    return sql.render_expression(sql.EVENT_TIME, {**params, "kafka_time": kafka_time})



"""Input validation: every raw Kafka payload becomes fields or a dead-letter reason.

Payloads arrive as bytes. ``check_measurement`` and ``check_weight`` are pure
functions (unit-testable) that never raise: a payload that is too large, not UTF-8,
not JSON (including nesting too deep to parse and integers too long to convert), of
the wrong shape, or outside the plausible ranges gets a reason, and so does anything
unexpected (the exception's class and message). ``check_frame`` applies them to a
batch; ``parse_weight`` and ``score_measurement`` (udfs/scoring.py, which also
predicts) wrap that as vectorized Flink UDFs returning a ROW whose ``reason``
is NULL for a valid record; a rejected record also carries what its dead letter
needs: the payload as text cut to a limit, its size and its SHA-256, and its
Fish_Id when that alone is valid (every other field is NULL).
"""

from __future__ import annotations

import functools
import json
import math
import time
from dataclasses import dataclass

import pandas as pd
from pyflink.table import DataTypes
from pyflink.table.udf import udf

from fishweight.records import payload_evidence, record_id

MEASUREMENT_NUMBERS = ("Length", "Height")
WEIGHT_NUMBERS = ("Weight",)
REASON_CHARS = 500  # a reason quotes values; keep it readable
# The start of the reason for a record time far ahead of the job's clock (sql/20_join.sql
# keeps such a measurement out of the join: its time would keep it in the state).
AHEAD_OF_CLOCK = "implausible Timestamp: the Kafka record time was more than"

@dataclass(frozen=True)
class Limits:
    """What a record may be; from the settings (``Limits.from_settings``)."""

    max_payload_bytes: int = 4096
    max_species_chars: int = 64
    max_value: tuple[tuple[str, float], ...] = (("Length", 500.0), ("Height", 200.0),
                                                ("Weight", 1000.0))
    max_clock_skew_s: float = 3600.0
    dead_letter_payload_chars: int = 1024

    @functools.cached_property
    def maxima(self) -> dict[str, float]:
        """``max_value`` as a dict, built once (every record is checked against it)."""
        return dict(self.max_value)

    @classmethod
    def from_settings(cls, settings) -> Limits:
        return cls(max_payload_bytes=settings.max_payload_bytes,
                   max_species_chars=settings.max_species_chars,
                   max_value=tuple(settings.plausible_maxima.items()),
                   max_clock_skew_s=settings.max_clock_skew_s,
                   dead_letter_payload_chars=settings.dead_letter_payload_chars)


DEFAULT_LIMITS = Limits()


def _empty(numbers: tuple[str, ...]) -> dict:
    out: dict = {"reason": None, "Species": None, "Fish_Id": None, "Timestamp": None}
    out.update(dict.fromkeys(numbers))
    return out


def _reject(out: dict, reason: str) -> dict:
    out["reason"] = reason[:REASON_CHARS]
    return out


def _as_bytes(payload: bytes | str | None) -> bytes | None:
    if payload is None or isinstance(payload, bytes):
        return payload
    if isinstance(payload, bytearray | memoryview):
        return bytes(payload)
    return payload.encode("utf-8", "surrogatepass")


def ahead_of_clock(kafka_ms: int | None, now_ms: float | None, limits: Limits) -> bool:
    """Whether a Kafka record time is more than ``max_clock_skew_s`` ahead of ``now_ms``.

    The sources' watermark passes over such a record (sql/params.py, ``watermark``), so
    one producer clock far ahead cannot make every later record late; validation
    rejects it. Measured as there: more than ``max_clock_skew_s`` + 0.999 s.
    """
    return (kafka_ms is not None and now_ms is not None
            and kafka_ms > now_ms + int(limits.max_clock_skew_s) * 1000 + 999)


def _check(payload: bytes | str | None, numbers: tuple[str, ...], limits: Limits,
           kafka_ms: int | None = None, now_ms: float | None = None) -> dict:
    """Validate one payload; returns the fields plus ``reason`` (None when valid).

    ``kafka_ms`` is the Kafka record time: a Timestamp further than
    ``max_clock_skew_s`` from it is implausible (whole seconds, as the event-time
    expression in ``sql/event_time.sql`` counts them). ``now_ms``: the job's clock; a
    record time too far ahead of it is also implausible (``ahead_of_clock``), and that
    reason comes first, whatever else is wrong with the record: sql/20_join.sql keeps
    such a measurement out of the join by it (its event time would keep it in the state).
    """
    out = _empty(numbers)
    try:
        checked = _check_fields(_as_bytes(payload), numbers, limits, out, kafka_ms)
        reason = None
        if ahead_of_clock(kafka_ms, now_ms, limits):
            reason = (f"{AHEAD_OF_CLOCK} {limits.max_clock_skew_s:g} s ahead of the job's "
                      "clock on arrival")
        elif checked["reason"] is not None:
            return checked
        elif kafka_ms is not None and (abs(checked["Timestamp"] - kafka_ms) // 1000
                                       > limits.max_clock_skew_s):
            reason = (f"implausible Timestamp: more than {limits.max_clock_skew_s:g} s from "
                      "the Kafka record time")
        if reason is not None:
            rejected = _empty(numbers)
            rejected["Fish_Id"] = checked["Fish_Id"]
            return _reject(rejected, reason)
        return checked
    except Exception as exc:  # noqa: BLE001 - the job must survive any input
        return _reject(_empty(numbers), f"unexpected {type(exc).__name__}: {exc}")


def _check_fields(raw: bytes | None, numbers: tuple[str, ...], limits: Limits,
                  out: dict, kafka_ms: int | None) -> dict:
    if raw is None or not raw.strip():
        return _reject(out, "empty record")
    if len(raw) > limits.max_payload_bytes:
        return _reject(out, f"payload too large: {len(raw)} bytes, the limit is "
                            f"{limits.max_payload_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _reject(out, f"not UTF-8: {exc.reason} at byte {exc.start}")
    try:
        record = json.loads(text)
    except RecursionError:
        return _reject(out, "not valid JSON: nested too deeply")
    except ValueError as exc:
        where = f" at char {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
        return _reject(out, f"not valid JSON: {getattr(exc, 'msg', exc)}{where}")
    if not isinstance(record, dict):
        return _reject(out, f"not a JSON object but {type(record).__name__}")
    # A rejected record keeps its Fish_Id when that is valid: the job can then tell a
    # weight that its fish's measurement was rejected (and the dead letter names it).
    fish_id, fish_id_problem = record_id(record.get("Fish_Id"), "Fish_Id")
    out["Fish_Id"] = fish_id
    # The tutorial's producers send no Timestamp: like ksqlDB, the job then takes the
    # Kafka record time as the event time (sql/event_time.sql falls back to it too).
    record_time = kafka_ms if kafka_ms is not None and kafka_ms > 0 else None
    missing = [k for k in ("Species", "Fish_Id", *numbers) if record.get(k) is None]
    if record.get("Timestamp") is None and record_time is None:
        missing.append("Timestamp")  # and the Kafka record has no time to take instead
    if missing:
        return _reject(out, "missing field(s): " + ", ".join(missing))
    species = record["Species"]
    if not isinstance(species, str) or not species.strip():
        return _reject(out, f"wrong type: Species must be a non-empty string, got {species!r}")
    species = species.strip()
    if len(species) > limits.max_species_chars:
        return _reject(out, f"Species too long: {len(species)} characters, the limit is "
                            f"{limits.max_species_chars}")
    if not species.isprintable():
        return _reject(out, f"Species has control characters: {species!r}")
    if fish_id_problem:
        return _reject(out, fish_id_problem)
    ids = {"Fish_Id": fish_id, "Timestamp": record_time}
    if record.get("Timestamp") is not None:
        ids["Timestamp"], problem = record_id(record["Timestamp"], "Timestamp")
        if problem:
            return _reject(out, problem)
    maxima = limits.maxima
    values = {}
    for name in numbers:
        value = record[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            return _reject(out, f"wrong type: {name} must be a number, got {value!r}")
        try:
            value = float(value)
        except OverflowError:  # an integer beyond any float
            return _reject(out, f"out of range: {name} is an integer too large for a number, "
                                f"above the plausible maximum {maxima.get(name, math.inf):g}")
        if not math.isfinite(value):
            return _reject(out, f"non-finite number: {name} = {value}")
        if value <= 0:
            return _reject(out, f"non-positive number: {name} = {value:g}")
        if value > maxima.get(name, math.inf):
            return _reject(out, f"out of range: {name} = {value:g} is above the plausible "
                                f"maximum {maxima[name]:g}")
        values[name] = value
    out.update(values, Species=species, **ids)
    return out


# ---------------------------------------------------------------- the SQL fast path
#
# Most records are clean and in the producers' shape. The job checks those in SQL
# (sql/10_score.sql, sql/15_weights.sql): a record whose text matches this pattern and
# whose values pass the same limits is valid for ``_check`` too, with the very same
# values, so it skips the Python round trip (weights) or the per-record Python parsing
# (measurements). Anything else, valid or not, goes to ``_check``, which alone writes
# reasons. The pattern is deliberately narrow, so that JSON's corners (escapes,
# exponents, duplicate or extra keys, other whitespace, non-ASCII, huge integers) never
# reach SQL: exactly the record's fields, each once (all of them must be present and
# there are no more members than fields), printable ASCII only, so characters = bytes.

# Possessive (*+) where what follows cannot be the same character: no backtracking.
_WS = r"[ \t\n\r]*+"  # JSON's whitespace only (Java's \s also takes \f and \x0B)
_INT = r"[1-9][0-9]{0,17}+"  # positive and below 2**63 (18 digits at most)
_DEC = r"(?:0|[1-9][0-9]{0,14}+)(?:\.[0-9]{1,17}+)?"  # finite; sign and range in SQL


def _species_pattern(max_chars: int) -> str:
    # What _check keeps as it is: no surrounding whitespace (it strips), printable.
    edge, inner = "[A-Za-z0-9_.-]", "[A-Za-z0-9 _.-]"
    if max_chars <= 1:
        return f'"{edge}"'
    return f'"{edge}(?:{inner}{{0,{max_chars - 2}}}{edge})?"'


def clean_shape_pattern(numbers: tuple[str, ...], limits: Limits) -> str:
    """A Java regular expression for the payload text of a record the SQL may check."""
    member = (f'(?:"Species"{_WS}:{_WS}{_species_pattern(limits.max_species_chars)}'
              f'|"(?:Fish_Id|Timestamp)"{_WS}:{_WS}{_INT}'
              f'|"(?:{"|".join(numbers)})"{_WS}:{_WS}{_DEC})')
    more = 2 + len(numbers)  # members after the first
    return rf"\A{_WS}\{{{_WS}{member}(?:{_WS},{_WS}{member}){{{more}}}{_WS}\}}{_WS}\z"


def check_measurement(payload: bytes | str | None, limits: Limits = DEFAULT_LIMITS,
                      kafka_ms: int | None = None, now_ms: float | None = None) -> dict:
    return _check(payload, MEASUREMENT_NUMBERS, limits, kafka_ms, now_ms)


def check_weight(payload: bytes | str | None, limits: Limits = DEFAULT_LIMITS,
                 kafka_ms: int | None = None, now_ms: float | None = None) -> dict:
    return _check(payload, WEIGHT_NUMBERS, limits, kafka_ms, now_ms)


def row_type(numbers: tuple[str, ...]):
    return DataTypes.ROW(
        [DataTypes.FIELD("reason", DataTypes.STRING()),
         DataTypes.FIELD("Species", DataTypes.STRING()),
         DataTypes.FIELD("Fish_Id", DataTypes.BIGINT())]
        + [DataTypes.FIELD(n, DataTypes.DOUBLE()) for n in numbers]
        + [DataTypes.FIELD("Timestamp", DataTypes.BIGINT()),
           DataTypes.FIELD("payload_text", DataTypes.STRING()),
           DataTypes.FIELD("payload_size", DataTypes.INT()),
           DataTypes.FIELD("payload_sha256", DataTypes.STRING())]
    )


def _epoch_ms(times: pd.Series) -> list[int | None]:
    """Epoch milliseconds of a batch's Kafka record times (None for NULL)."""
    if pd.api.types.is_datetime64_any_dtype(times.dtype):
        # One vectorized division instead of a pd.Timestamp per row (~1.4 us each); in
        # nanoseconds first, whatever unit the batch came in (PyFlink gives [ms] or [ns]).
        ms = (times.array.as_unit("ns").asi8 // 1_000_000).tolist()
        if times.hasnans:
            return [None if missing else m for m, missing in zip(ms, times.isna(), strict=True)]
        return ms
    return [None if pd.isna(t) else int(pd.Timestamp(t).value // 1_000_000) for t in times]


def check_frame(payloads: pd.Series, kafka_times: pd.Series, numbers: tuple[str, ...],
                limits: Limits, now_ms: float | None = None) -> pd.DataFrame:
    """``_check`` over a batch of payloads and Kafka record times; ``now_ms``: the clock."""
    fields = ("reason", "Species", "Fish_Id", *numbers, "Timestamp")
    rows = []
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    for payload, kafka_ms in zip(payloads, _epoch_ms(kafka_times), strict=True):
        checked = _check(payload, numbers, limits, kafka_ms, now_ms)
        evidence = _NO_EVIDENCE
        if checked["reason"] is not None:
            evidence = payload_evidence(_as_bytes(payload), limits.dead_letter_payload_chars)
        rows.append((*(checked[name] for name in fields), *evidence))
    columns = (*fields, *_EVIDENCE)
    values = list(zip(*rows, strict=True)) if rows else [()] * len(columns)
    # Numbers as doubles (NaN for a rejected row); everything else keeps Python values
    # and None (object dtype): PyFlink's Arrow conversion rejects pandas' nullable
    # Int64, which a column of ints and None would otherwise become.
    return pd.DataFrame({name: pd.Series(column, dtype=float if name in numbers else object)
                         for name, column in zip(columns, values, strict=True)})


_EVIDENCE = ("payload_text", "payload_size", "payload_sha256")
_NO_EVIDENCE = (None, None, None)


def parse_weight(limits: Limits = DEFAULT_LIMITS):
    """The UDF ``parse_weight(payload BYTES, kafka_time TIMESTAMP_LTZ(3))``."""
    return udf(lambda payload, kafka_time: check_frame(payload, kafka_time, WEIGHT_NUMBERS,
                                                       limits),
               result_type=row_type(WEIGHT_NUMBERS), func_type="pandas")

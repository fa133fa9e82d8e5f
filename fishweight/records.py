"""The records' contract, shared by the job and the trainer; imports no PyFlink.

The trainer (``fishweight.jobs.train``) is a plain Python service: what it shares with
the job (id bounds, how a dead letter quotes a payload, the dead-letter reason classes,
the checks of the job's records it consumes: ``diff_problem``, ``event_problem``) lives
here, so importing it does not start PyFlink (~1 s and ~100 MB before the first
record).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
from typing import Any

_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit would take "²" or "١"
MAX_ID = 2**63 - 1  # ids and timestamps are BIGINT in the job's tables


def utc_iso(epoch_ms: int | None = None) -> str:
    """ISO-8601 in UTC to the millisecond (now, or ``epoch_ms``), as the job writes times.

    For example ``2026-12-07T13:11:19.123Z``.
    """
    at = (dt.datetime.now(dt.UTC) if epoch_ms is None
          else dt.datetime.fromtimestamp(epoch_ms / 1000, dt.UTC))
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_id(value: object, name: str) -> tuple[int | None, str | None]:
    """An id field (``Fish_Id``, ``Timestamp``) as an int, or None and the reason.

    A JSON integer or a string of ASCII decimal digits (the tutorial's producers send
    ``"Fish_Id": "1"``); leading zeros are dropped, so ``"0001"``, ``"1"`` and ``1`` are
    one id. Anything else (a float such as ``1.0`` or ``1e3``, a sign, whitespace, an
    empty string, a boolean) is refused: two spellings of one fish must not pass as two.
    """
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        digits = value.lstrip("0") or "0"
        if len(digits) > len(str(MAX_ID)):  # never convert a huge string
            return None, (f"out of range: {name} must be positive and below 2**63, got a "
                          f"{len(digits)}-digit number")
        value = int(digits)
    elif isinstance(value, bool) or not isinstance(value, int):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
        return None, (f"wrong type: {name} must be an integer or a string of decimal "
                      f"digits, got {shown}")
    if not 0 < value <= MAX_ID:
        return None, f"out of range: {name} must be positive and below 2**63, got {value}"
    return value, None


# Every dead-letter reason starts with one of these; the class names the metric
# ``fishweight.deadLetters.<class>`` (udfs/metrics.py). Duplicates come from SQL.
REASON_CLASSES = (
    ("empty record", "empty"),
    ("payload too large", "tooLarge"),
    ("not UTF-8", "notUtf8"),
    ("not valid JSON", "notJson"),
    ("not a JSON object", "notObject"),
    ("missing field", "missingField"),
    ("wrong type", "wrongType"),
    ("Species too long", "speciesTooLong"),
    ("Species has control characters", "speciesControlChars"),
    ("out of range", "outOfRange"),
    ("non-finite number", "nonFinite"),
    ("non-positive number", "nonPositive"),
    ("implausible Timestamp", "implausibleTimestamp"),
    ("duplicate Fish_Id", "duplicateFishId"),
    ("unexpected", "unexpected"),
)


def reason_class(reason: str | None) -> str:
    """The metric class of a dead-letter reason (``other`` for one not listed)."""
    for prefix, name in REASON_CLASSES:
        if reason is not None and reason.startswith(prefix):
            return name
    return "other"


def payload_evidence(raw: bytes | None, chars: int) -> tuple[str | None, int | None, str | None]:
    """(text cut to ``chars``, size in bytes, SHA-256) of a payload, for a dead letter.

    Bytes that are not UTF-8 are shown as backslash escapes, so the text is always valid.
    """
    if raw is None:
        return None, None, None
    text = raw[:chars * 4].decode("utf-8", "backslashreplace")[:chars]
    return text, len(raw), hashlib.sha256(raw).hexdigest()


# ---------------------------------------------- what the trainer consumes from the job
RULES = ("window", "change", "bias")  # the job's retrain rules (sql/26_rules.sql)
# The rules that fire once per species and serving version (their events name it in
# ModelVersionMax); the window rule fires once per window and species.
PER_VERSION_RULES = ("change", "bias")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def diff_problem(record: Any, maxima: dict[str, float] | None = None) -> str | None:
    """Why a weight-diff record cannot be stored for training, or None when it can.

    ``maxima``: the job's plausible maxima (``Length``, ``Height``, ``Weight``, from the
    settings); a record above them cannot have come from the job's validation.
    """
    if not isinstance(record, dict):
        return f"not a JSON object but {type(record).__name__}"
    for name in ("Fish_Id", "Timestamp"):
        if not _is_int(record.get(name)) or not 0 < record[name] <= MAX_ID:
            return f"{name} must be an integer in 1..2^63-1, got {record.get(name)!r}"[:300]
    species = record.get("Species")
    if not isinstance(species, str) or not species.strip() or len(species) > 200:
        return f"Species must be a short non-empty string, got {species!r}"[:300]
    maxima = maxima or {}
    for name, limit in (("Length", maxima.get("Length")), ("Height", maxima.get("Height")),
                        ("ActualWeight", maxima.get("Weight"))):
        if not _is_number(record.get(name)) or record[name] <= 0:
            return f"{name} must be a positive finite number, got {record.get(name)!r}"[:300]
        if limit is not None and record[name] > limit:
            return f"{name} = {record[name]:g} is above the plausible maximum {limit:g}"
    return None


def utc_time(text: str) -> dt.datetime:
    """An ISO-8601 time as an aware UTC datetime (ValueError if ``text`` is not one).

    A time without an offset is UTC, as the job writes them.
    """
    if not isinstance(text, str):
        raise ValueError(f"not a string but {type(text).__name__}")
    parsed = dt.datetime.fromisoformat(text.removesuffix("Z"))
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC)
    try:
        return parsed.astimezone(dt.UTC)
    except OverflowError as exc:  # e.g. 9999-12-31T23:59:59-01:00 is after year 9999 in UTC
        raise ValueError(f"{text!r} is outside the years 1-9999 in UTC") from exc


def event_problem(event: Any) -> str | None:
    """Why a weight-retrain record cannot be acted on, or None when it can."""
    if not isinstance(event, dict):
        return f"not a JSON object but {type(event).__name__}"
    for name in ("WindowStart", "WindowEnd"):
        try:
            utc_time(event.get(name))
        except ValueError:
            return f"{name} is not an ISO-8601 time: {event.get(name)!r}"[:300]
    species = event.get("Species")
    if (not isinstance(species, list) or not species
            or not all(isinstance(x, str) and x.strip() for x in species)):
        return f"Species must be a list of non-empty strings, got {species!r}"[:300]
    versions = event.get("ModelVersions")
    if not isinstance(versions, list) or not all(v is None or _is_int(v) for v in versions):
        return f"ModelVersions must be a list of integers, got {versions!r}"[:300]
    # Below MAX_ID: the trainer reads the records up to Timestamp_End + 1.
    for name in ("Timestamp_End", "Change_Timestamp", "Change_Fish_Id"):
        if event.get(name) is not None and not (_is_int(event[name])
                                                and 0 < event[name] < MAX_ID):
            return f"{name} must be a positive integer below 2**63 - 1, got {event[name]!r}"[:300]
    if event.get("Rule", "window") not in RULES:
        return f"Rule must be one of {', '.join(RULES)}, got {event.get('Rule')!r}"[:300]
    if event.get("Rule") in PER_VERSION_RULES and not _is_int(event.get("ModelVersionMax")):
        return (f"a {event['Rule']} event needs ModelVersionMax (an integer), got "
                f"{event.get('ModelVersionMax')!r}")[:300]
    return None

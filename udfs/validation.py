"""Input validation: every raw Kafka payload becomes fields or a dead-letter reason.

``check_measurement`` and ``check_weight`` are pure functions (unit-testable);
``parse_measurement`` and ``parse_weight`` wrap them as vectorized Flink UDFs that
return a ROW whose ``reason`` is NULL for a valid record.
"""

from __future__ import annotations

import json
import math

import pandas as pd
from pyflink.table import DataTypes
from pyflink.table.udf import udf

MEASUREMENT_NUMBERS = ("Length", "Height")
WEIGHT_NUMBERS = ("Weight",)


def _check(payload: str | None, numbers: tuple[str, ...]) -> dict:
    """Validate one payload; returns the fields plus ``reason`` (None when valid)."""
    out: dict = {"reason": None, "Species": None, "Fish_Id": None, "Timestamp": None}
    out.update(dict.fromkeys(numbers))
    if payload is None:
        out["reason"] = "empty record"
        return out
    try:
        record = json.loads(payload)
    except ValueError as exc:
        out["reason"] = f"not valid JSON: {exc.msg} at char {exc.pos}"
        return out
    if not isinstance(record, dict):
        out["reason"] = f"not a JSON object but {type(record).__name__}"
        return out
    missing = [k for k in ("Species", "Fish_Id", *numbers, "Timestamp")
               if record.get(k) is None]
    if missing:
        out["reason"] = "missing field(s): " + ", ".join(missing)
        return out
    species, fish_id, timestamp = record["Species"], record["Fish_Id"], record["Timestamp"]
    if not isinstance(species, str) or not species.strip():
        out["reason"] = f"wrong type: Species must be a non-empty string, got {species!r}"
        return out
    for name, value in (("Fish_Id", fish_id), ("Timestamp", timestamp)):
        if isinstance(value, bool) or not isinstance(value, int):
            out["reason"] = f"wrong type: {name} must be an integer, got {value!r}"
            return out
        if value <= 0 or value >= 2**63:
            out["reason"] = f"out of range: {name} must be positive, got {value}"
            return out
    for name in numbers:
        value = record[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            out["reason"] = f"wrong type: {name} must be a number, got {value!r}"
            return out
        if not math.isfinite(value):
            out["reason"] = f"non-finite number: {name} = {value}"
            return out
        if value <= 0:
            out["reason"] = f"non-positive number: {name} = {value}"
            return out
        out[name] = float(value)
    out.update(Species=species.strip(), Fish_Id=fish_id, Timestamp=timestamp)
    return out


def check_measurement(payload: str | None) -> dict:
    return _check(payload, MEASUREMENT_NUMBERS)


def check_weight(payload: str | None) -> dict:
    return _check(payload, WEIGHT_NUMBERS)


def _row_type(numbers: tuple[str, ...]):
    return DataTypes.ROW(
        [DataTypes.FIELD("reason", DataTypes.STRING()),
         DataTypes.FIELD("Species", DataTypes.STRING()),
         DataTypes.FIELD("Fish_Id", DataTypes.BIGINT())]
        + [DataTypes.FIELD(n, DataTypes.DOUBLE()) for n in numbers]
        + [DataTypes.FIELD("Timestamp", DataTypes.BIGINT())]
    )


def _frame(checked: list[dict], numbers: tuple[str, ...]) -> pd.DataFrame:
    columns = ["reason", "Species", "Fish_Id", *numbers, "Timestamp"]
    frame = pd.DataFrame.from_records(checked, columns=columns)
    # A rejected row has no Fish_Id/Timestamp: keep Python ints and None (object
    # dtype), which PyFlink's Arrow conversion accepts; pandas' Int64 it does not.
    for name in ("Fish_Id", "Timestamp"):
        frame[name] = pd.Series([checked_row[name] for checked_row in checked], dtype=object)
    return frame


@udf(result_type=_row_type(MEASUREMENT_NUMBERS), func_type="pandas")
def parse_measurement(payload: pd.Series) -> pd.DataFrame:
    return _frame([check_measurement(p) for p in payload], MEASUREMENT_NUMBERS)


@udf(result_type=_row_type(WEIGHT_NUMBERS), func_type="pandas")
def parse_weight(payload: pd.Series) -> pd.DataFrame:
    return _frame([check_weight(p) for p in payload], WEIGHT_NUMBERS)

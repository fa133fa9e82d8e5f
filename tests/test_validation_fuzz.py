"""Hostile input, generated: thousands of mutated records through the job's Python checks.

Each case starts from a record the producers write (ours, or the tutorial's: ids as
strings, no Timestamp) and is mutated: bytes flipped, cut, inserted or repeated; a field
dropped, duplicated, renamed or given a value of another kind (huge or negative numbers,
NaN, nesting, control characters, lone surrogates, very long strings). Every batch goes
through the UDFs' own functions (``check_frame`` for weights, ``merge_checked`` for
measurements) and then through PyFlink's own conversion to Arrow with the UDFs' result
types, which is where a value the job cannot carry would fail the job. Every row must
be either valid, with values inside the limits, or rejected with a known reason and the
evidence of its payload. The seed is fixed: a failure is reproducible.
"""

from __future__ import annotations

import hashlib
import json
import math
import random

import pandas as pd
import pytest
from pyflink.table.types import create_arrow_schema
from pyflink.table.utils import pandas_to_arrow

from fishweight.records import MAX_ID, reason_class
from udfs.scoring import merge_checked, score_type
from udfs.validation import (
    DEFAULT_LIMITS,
    MEASUREMENT_NUMBERS,
    REASON_CHARS,
    WEIGHT_NUMBERS,
    check_frame,
    row_type,
)

KAFKA_MS = 1_765_000_000_000
CASES = 4000
BATCH = 200

ODD_VALUES = [
    None, True, False, 0, -1, 1, 2**63 - 1, 2**63, -(2**63), 10**30, 1e308, -1e308, 1e-320,
    0.0, -0.0, 88.5, "88.5", "", " ", "1", "0001", "-1", "1e3", "١٢٣", "\u0000", "\ud800",
    "sal\u202emon", "x" * 70, "x" * 5000, [], [1], {}, {"a": 1}, [[[[]]]],
]
NUMBER_TEXT = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-0", b"00", b"1.", b".5",
               b"9" * 400, b"0x10", b"1_000", b"\"\\ud800\"", b"\"\\u0000\""]


def _records(rng: random.Random, numbers: tuple[str, ...]):
    """A record as a producer writes it: ours (int ids, Timestamp) or the tutorial's."""
    record = {"Species": rng.choice(["salmon", "walleye", "Salmo salar"]),
              "Fish_Id": rng.randint(1, 10**6)}
    for name in numbers:
        record[name] = round(rng.uniform(0.5, 120.0), 3)
    if rng.random() < 0.5:
        record["Timestamp"] = KAFKA_MS + rng.randint(-5000, 5000)
    else:
        record["Fish_Id"] = str(record["Fish_Id"])
    return record


def _mutate_record(rng: random.Random, record: dict) -> bytes:
    keys = list(record)
    action = rng.randrange(6)
    if action == 0:
        record.pop(rng.choice(keys))
    elif action == 1:
        record[rng.choice(keys)] = rng.choice(ODD_VALUES)
    elif action == 2:
        record[rng.choice(keys).lower()] = record.pop(rng.choice(keys), None)
    elif action == 3:
        record[rng.choice(["extra", "Fish_Id", "Species"])] = rng.choice(ODD_VALUES)
    text = json.dumps(record, ensure_ascii=rng.random() < 0.5)
    if action == 4:  # a duplicate key: JSON's last one wins
        key = rng.choice(keys)
        text = text[:-1] + f', "{key}": {json.dumps(rng.choice(ODD_VALUES))}}}'
    elif action == 5:  # a number spelled as JSON does not allow (or Python's json does)
        key = rng.choice(keys)
        text = text[:-1] + f', "{key}": ' + rng.choice(NUMBER_TEXT).decode() + "}"
    return text.encode("utf-8", "surrogatepass")


def _mutate_bytes(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        action = rng.randrange(5)
        at = rng.randrange(len(data) + 1)
        if action == 0 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif action == 1:
            del data[at:at + rng.randint(1, 8)]
        elif action == 2:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        elif action == 3:
            data[at:at] = rng.choice([b"{", b"[" * 2000, b"\"", b"\\", b"\xef\xbb\xbf",
                                      b"\xed\xa0\x80", b"\x00", b" " * 5000])
        else:
            data = data[:at]
    return bytes(data)


def _payloads(rng: random.Random, numbers: tuple[str, ...]) -> list[bytes | None]:
    out = []
    for _ in range(CASES):
        raw = _mutate_record(rng, _records(rng, numbers))
        if rng.random() < 0.5:
            raw = _mutate_bytes(rng, raw)
        out.append(raw if rng.random() > 0.01 else None)  # a Kafka tombstone
    return out


def _kafka_times(rng: random.Random, n: int) -> pd.Series:
    # Mostly now; sometimes missing, or far from the payload's Timestamp.
    times = [None if rng.random() < 0.01 else KAFKA_MS + rng.choice([0, 1, -7_200_000])
             for _ in range(n)]
    return pd.Series(pd.to_datetime(times, unit="ms", utc=True))


def _to_arrow(frame: pd.DataFrame, result_type) -> None:
    """What PyFlink does with a pandas UDF's ROW result (pyflink.table.utils)."""
    schema = create_arrow_schema(["result"], [result_type])
    pandas_to_arrow(schema, "UTC", [result_type], [frame])


def _check_rows(frame: pd.DataFrame, payloads, times: pd.Series, numbers) -> dict[str, int]:
    limits = DEFAULT_LIMITS
    classes: dict[str, int] = {}
    assert len(frame) == len(payloads)
    for row, payload, kafka_time in zip(frame.to_dict("records"), payloads, times,
                                        strict=True):
        reason = row["reason"]
        fish_id = row["Fish_Id"]
        assert fish_id is None or (isinstance(fish_id, int) and 0 < fish_id <= MAX_ID), row
        if reason is None:
            classes["valid"] = classes.get("valid", 0) + 1
            species = row["Species"]
            assert isinstance(species, str) and species == species.strip() and species
            assert species.isprintable() and len(species) <= limits.max_species_chars
            assert isinstance(fish_id, int), row
            for name in numbers:
                value = row[name]
                assert math.isfinite(value) and 0 < value <= limits.maxima[name], row
            assert isinstance(row["Timestamp"], int) and 0 < row["Timestamp"] <= MAX_ID
            if not pd.isna(kafka_time):  # else the payload's Timestamp stands unchecked
                kafka_ms = kafka_time.value // 1_000_000
                assert abs(row["Timestamp"] - kafka_ms) // 1000 <= limits.max_clock_skew_s
            assert row["payload_text"] is None and row["payload_size"] is None
            continue
        assert isinstance(reason, str) and 0 < len(reason) <= REASON_CHARS
        name = reason_class(reason)
        # A reason the checks did not foresee is a gap in them, even if the job survives.
        assert name not in ("other", "unexpected", "duplicateFishId"), (payload, reason)
        classes[name] = classes.get(name, 0) + 1
        if payload is None:
            assert row["payload_size"] is None
            continue
        assert row["payload_size"] == len(payload)
        assert row["payload_sha256"] == hashlib.sha256(payload).hexdigest()
        assert len(row["payload_text"]) <= limits.dead_letter_payload_chars
        row["payload_text"].encode("utf-8")  # always valid text
        assert all(pd.isna(row[n]) for n in numbers) and row["Species"] is None
    return classes


@pytest.mark.parametrize("kind", ["measurement", "weight"])
def test_mutated_records_are_valid_or_rejected_with_a_known_reason(kind):
    rng = random.Random(f"fishweight-{kind}")
    numbers = MEASUREMENT_NUMBERS if kind == "measurement" else WEIGHT_NUMBERS
    payloads = _payloads(rng, numbers)
    seen: dict[str, int] = {}
    for start in range(0, CASES, BATCH):
        batch = pd.Series(payloads[start:start + BATCH], dtype=object)
        times = _kafka_times(rng, len(batch))
        if kind == "measurement":  # the measurement stage, as with `validation = python`
            none = pd.Series([None] * len(batch), dtype=object)
            frame = merge_checked(batch, times, pd.Series([False] * len(batch)), none, none,
                                  none, none, none, DEFAULT_LIMITS)
            result_type = row_type(MEASUREMENT_NUMBERS)
        else:
            frame = check_frame(batch, times, WEIGHT_NUMBERS, DEFAULT_LIMITS)
            result_type = row_type(WEIGHT_NUMBERS)
        _to_arrow(frame, result_type)
        for name, n in _check_rows(frame, list(batch), times, numbers).items():
            seen[name] = seen.get(name, 0) + n
    print(f"\n{kind}: {CASES} mutated records: {dict(sorted(seen.items()))}")
    # The mutations reach the checks' branches, and leave some records valid.
    assert seen.get("valid", 0) >= CASES // 20
    assert {"notJson", "notUtf8", "missingField", "wrongType", "outOfRange",
            "nonFinite", "nonPositive", "implausibleTimestamp"} <= set(seen), seen


def test_the_scored_rows_convert_to_arrow_with_the_prediction_fields():
    """The measurement stage's full result type (the checks plus the prediction) takes a
    batch of rejected and valid rows alike."""
    rng = random.Random("fishweight-scored")
    payloads = _payloads(rng, MEASUREMENT_NUMBERS)[:BATCH]
    batch = pd.Series(payloads, dtype=object)
    times = _kafka_times(rng, len(batch))
    none = pd.Series([None] * len(batch), dtype=object)
    checked = merge_checked(batch, times, pd.Series([False] * len(batch)), none, none, none,
                            none, none, DEFAULT_LIMITS)
    valid = checked["reason"].isna()
    predicted = pd.DataFrame({
        "PredictedWeight": [4.2 if v else None for v in valid],
        "ModelTime": ["2026-12-07T00:00:00Z"] * len(batch),
        "ModelVersion": [1] * len(batch),
        "SpeciesKnown": [bool(v) for v in valid]})
    _to_arrow(pd.concat([checked, predicted], axis=1), score_type())
    assert 0 < valid.sum() < len(batch)

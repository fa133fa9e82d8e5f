import hashlib
import json
import time

import pandas as pd
import pytest

from fishweight.records import reason_class
from fishweight.udfs.validation import (
    AHEAD_OF_CLOCK,
    MEASUREMENT_NUMBERS,
    Limits,
    ahead_of_clock,
    check_frame,
    check_measurement,
    check_weight,
)

GOOD_M = {"Species": "salmon", "Fish_Id": 7, "Length": 88.1, "Height": 19.2,
          "Timestamp": 1_700_000_000_000}
GOOD_W = {"Species": "salmon", "Fish_Id": 7, "Weight": 4.5, "Timestamp": 1_700_000_010_000}


def _with(base, **changes):
    record = {**base, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not ...})


def test_valid_records_pass_through():
    m = check_measurement(json.dumps(GOOD_M))
    assert m == {"reason": None, **GOOD_M}
    w = check_weight(json.dumps(GOOD_W))
    assert w == {"reason": None, **GOOD_W}


@pytest.mark.parametrize("payload, reason", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "not a JSON object"),
    (_with(GOOD_M, Length=...), "missing field(s): Length"),
    (_with(GOOD_M, Species=None, Height=...), "missing field(s): Species, Height"),
    (_with(GOOD_M, Length="88"), "wrong type: Length must be a number"),
    (_with(GOOD_M, Fish_Id="7.0"), "wrong type: Fish_Id must be an integer"),
    (_with(GOOD_M, Fish_Id=True), "wrong type: Fish_Id must be an integer"),
    (_with(GOOD_M, Species=""), "wrong type: Species must be a non-empty string"),
    (_with(GOOD_M, Length=float("nan")), "non-finite number: Length = nan"),
    ('{"Species":"salmon","Fish_Id":1,"Length":Infinity,"Height":1,"Timestamp":1}',
     "non-finite number: Length = inf"),
    (_with(GOOD_M, Height=0), "non-positive number: Height = 0"),
    (_with(GOOD_M, Length=-3.5), "non-positive number: Length = -3.5"),
    (_with(GOOD_M, Timestamp=-5), "out of range: Timestamp must be positive"),
])
def test_bad_measurements_get_a_reason(payload, reason):
    checked = check_measurement(payload)
    assert checked["reason"].startswith(reason), checked["reason"]
    assert reason_class(checked["reason"]) != "other"
    # Only a valid Fish_Id survives a rejection (the job uses it to explain the weight).
    valid_id = '"Fish_Id": 7,' in payload or '"Fish_Id":1,' in payload
    assert checked["Fish_Id"] == ((7 if "7" in payload else 1) if valid_id else None)
    assert all(checked[k] is None for k in ("Species", "Length", "Height", "Timestamp"))


KAFKA_MS = 1_700_000_000_000  # the Kafka record time of the tutorial's records below


@pytest.mark.parametrize("fish_id, accepted_as, reason", [
    (7, 7, None),
    ("1", 1, None),           # the tutorial's producers write ids as strings
    ("0001", 1, None),        # leading zeros: the same fish as "1" and 1
    ("9223372036854775807", 2**63 - 1, None),
    ("1.0", None, "wrong type: Fish_Id must be an integer or a string of decimal digits, "
                  "got '1.0'"),
    (" 1", None, "wrong type: Fish_Id must be an integer or a string of decimal digits, "
                 "got ' 1'"),
    ("", None, "wrong type: Fish_Id must be an integer or a string of decimal digits, got ''"),
    ("-1", None, "wrong type: Fish_Id must be an integer or a string of decimal digits"),
    ("\u0661", None, "wrong type: Fish_Id must be an integer or a string of decimal digits"),
    (1e3, None, "wrong type: Fish_Id must be an integer or a string of decimal digits, "
                "got 1000.0"),
    ("12345678901234567890", None,
     "out of range: Fish_Id must be positive and below 2**63, got a 20-digit number"),
    ("9223372036854775808", None, "out of range: Fish_Id must be positive and below 2**63"),
    ("0", None, "out of range: Fish_Id must be positive and below 2**63, got 0"),
    ("0" * 30 + "5", 5, None),
])
def test_fish_id_as_integer_or_decimal_string(fish_id, accepted_as, reason):
    record = {"Species": "salmon", "Fish_Id": fish_id, "Length": 86.37, "Height": 18.74}
    checked = check_measurement(json.dumps(record), kafka_ms=KAFKA_MS)
    assert (checked["reason"] is None) is (reason is None), checked["reason"]
    assert (checked["reason"] or "").startswith(reason or ""), checked["reason"]
    assert checked["Fish_Id"] == accepted_as
    weight = check_weight(json.dumps({"Species": "salmon", "Fish_Id": fish_id, "Weight": 4.44}),
                          kafka_ms=KAFKA_MS)
    assert (weight["reason"], weight["Fish_Id"]) == (checked["reason"], accepted_as)


@pytest.mark.parametrize("timestamp, event_ms, reason", [
    (..., KAFKA_MS, None),            # absent (the tutorial): the Kafka record time
    (None, KAFKA_MS, None),           # null: the same
    (KAFKA_MS - 10_000, KAFKA_MS - 10_000, None),  # present: its own, within the skew
    (str(KAFKA_MS + 5), KAFKA_MS + 5, None),       # a decimal string, like the ids
    (KAFKA_MS - 3_601_000, None, "implausible Timestamp: more than 3600 s"),
    ("now", None, "wrong type: Timestamp must be an integer or a string of decimal digits"),
    (1.7e12, None, "wrong type: Timestamp must be an integer or a string of decimal digits"),
    (-5, None, "out of range: Timestamp must be positive"),
])
def test_timestamp_is_optional_and_checked_when_present(timestamp, event_ms, reason):
    record = {"Species": "salmon", "Fish_Id": "1", "Weight": 4.4399, "Timestamp": timestamp}
    checked = check_weight(_with(record, Timestamp=timestamp), kafka_ms=KAFKA_MS)
    assert (checked["reason"] or "").startswith(reason or ""), checked["reason"]
    assert (checked["reason"] is None) is (reason is None)
    assert checked["Timestamp"] == event_ms


def test_the_tutorial_records_as_its_producers_write_them():
    """The two records the tutorial's article shows (String ids, no Timestamp)."""
    m = check_measurement(b'{ "Species": "salmon", "Fish_Id": "1", "Length": 86.370, '
                          b'"Height": 18.740 }', kafka_ms=KAFKA_MS)
    w = check_weight(b'{ "Species": "salmon", "Fish_Id": "1", "Weight": 4.43990 }',
                     kafka_ms=KAFKA_MS + 10_000)
    assert m == {"reason": None, "Species": "salmon", "Fish_Id": 1, "Length": 86.37,
                 "Height": 18.74, "Timestamp": KAFKA_MS}
    assert w == {"reason": None, "Species": "salmon", "Fish_Id": 1, "Weight": 4.4399,
                 "Timestamp": KAFKA_MS + 10_000}
    # Without a Kafka record time (or with none on the record) there is no event time.
    for kafka_ms in (None, -1):
        missing = check_weight(b'{"Species": "salmon", "Fish_Id": "1", "Weight": 4.4}',
                               kafka_ms=kafka_ms)
        assert missing["reason"] == "missing field(s): Timestamp" and missing["Fish_Id"] == 1


@pytest.mark.parametrize("weight, reason", [
    (0, "non-positive number: Weight = 0"),
    (-1.2, "non-positive number: Weight = -1.2"),
    ("heavy", "wrong type: Weight must be a number"),
    (..., "missing field(s): Weight"),
])
def test_bad_weights_get_a_reason(weight, reason):
    assert check_weight(_with(GOOD_W, Weight=weight))["reason"].startswith(reason)


def test_empty_record():
    assert check_measurement(None)["reason"] == "empty record"
    assert check_measurement(b"")["reason"] == "empty record"
    assert check_measurement(b"  \n")["reason"] == "empty record"


BIG = "9" * 4301  # Python refuses to convert integers with more than 4300 digits


@pytest.mark.parametrize("payload, reason", [
    (b"\x00\xff\xfe garbage", "not UTF-8: invalid start byte at byte 1"),
    (b"[" * 1000 + b"]" * 1000, "not valid JSON: nested too deeply"),
    (b"[" * 100_000, "payload too large"),
    (_with(GOOD_M, Length=1e308).encode(), "out of range: Length = 1e+308 is above"),
    (_with(GOOD_M, Height=201).encode(), "out of range: Height = 201 is above"),
    (_with(GOOD_M, Species="x" * 900_000).encode(), "payload too large"),
    (_with(GOOD_M, Species="s" * 65).encode(), "Species too long: 65 characters"),
    (_with(GOOD_M, Species="sal\x00mon").encode(), "Species has control characters"),
    (_with(GOOD_M, Fish_Id=2**63).encode(), "out of range: Fish_Id must be positive"),
    ('{"Species":"salmon","Fish_Id":1,"Length":1%s,"Height":1,"Timestamp":1}' % ("0" * 400),
     "out of range: Length is an integer too large for a number"),
    ("null", "not a JSON object but NoneType"),
    ('"just a string"', "not a JSON object but str"),
])
def test_hostile_payloads_are_rejected_never_raised(payload, reason):
    checked = check_measurement(payload)
    assert checked["reason"].startswith(reason), checked["reason"]
    assert checked["Species"] is None and checked["Length"] is None
    assert len(checked["reason"]) <= 500
    assert reason_class(checked["reason"]) != "other"  # a metric per reason class


def test_an_integer_too_long_to_convert_is_rejected():
    payload = _with(GOOD_M, Fish_Id=...).replace("{", '{"Fish_Id": ' + BIG + ", ", 1)
    checked = check_measurement(payload, Limits(max_payload_bytes=10_000))
    assert checked["reason"].startswith("not valid JSON: Exceeds the limit (4300 digits)")


def test_implausible_timestamp_against_the_kafka_time():
    limits = Limits(max_clock_skew_s=3600)
    ts = GOOD_M["Timestamp"]
    assert check_measurement(json.dumps(GOOD_M), limits, ts + 3_600_999)["reason"] is None
    late = check_measurement(json.dumps(GOOD_M), limits, ts - 3_601_000)
    assert late["reason"].startswith("implausible Timestamp: more than 3600 s")
    assert late["Fish_Id"] == 7 and late["Timestamp"] is None


def test_a_record_time_far_ahead_of_the_jobs_clock_is_implausible():
    """The sources' watermark passes over such a record (sql/params.py), and validation
    rejects it (the live test is in tests/test_pipeline.py)."""
    limits = Limits(max_clock_skew_s=3600)
    ts = GOOD_M["Timestamp"]
    record = json.dumps({k: v for k, v in GOOD_M.items() if k != "Timestamp"})
    now = ts - 3_601_000  # the record time is 3,601 s ahead of the clock
    ahead = check_measurement(record, limits, ts, now_ms=now)
    assert ahead["reason"] == ("implausible Timestamp: the Kafka record time was more than "
                               "3600 s ahead of the job's clock on arrival")
    assert ahead["reason"].startswith(AHEAD_OF_CLOCK)
    assert ahead["Fish_Id"] == 7 and ahead["Length"] is None
    assert check_weight(json.dumps(GOOD_W), limits, ts, now)["reason"].startswith(
        AHEAD_OF_CLOCK)
    for behind_ms in (3_600_999, 0, -86_400_000):  # ahead by 1 h 0.999 s at most, or behind
        assert check_measurement(record, limits, ts, ts - behind_ms)["reason"] is None
    assert not ahead_of_clock(None, now, limits) and not ahead_of_clock(ts, None, limits)
    # That reason comes first, whatever else is wrong (sql/20_join.sql keeps the record
    # out of the join by it): a malformed payload, a bad field, a Timestamp off the
    # record time.
    for bad in (b"{", json.dumps({**GOOD_M, "Length": -1}),
                json.dumps({**GOOD_M, "Timestamp": ts - 7_200_000})):
        rejected = check_measurement(bad, limits, ts, now)
        assert rejected["reason"].startswith(AHEAD_OF_CLOCK), bad
        assert rejected["Fish_Id"] == (None if bad == b"{" else 7)
    assert check_measurement(b"{", limits, ts, ts)["reason"].startswith("not valid JSON")
    # In a batch, against the clock by default.
    future = time.time() * 1000 + 3_700_000
    times = pd.Series(pd.to_datetime([ts, future], unit="ms", utc=True))
    frame = check_frame(pd.Series([record.encode()] * 2), times, MEASUREMENT_NUMBERS, limits)
    assert frame["reason"].isna().tolist() == [True, False]
    assert frame["payload_text"].tolist() == [None, record]


def test_the_udf_frame_carries_dead_letter_evidence_and_never_raises():
    payloads = pd.Series([json.dumps(GOOD_M).encode(), b"\x00\xff" + b"x" * 3000, None])
    kafka = pd.Series(pd.to_datetime([GOOD_M["Timestamp"]] * 3, unit="ms", utc=True))
    frame = check_frame(payloads, kafka, MEASUREMENT_NUMBERS, Limits(dead_letter_payload_chars=100))
    good, bad, empty = frame.to_dict("records")
    assert good["reason"] is None and good["payload_text"] is None and good["Fish_Id"] == 7
    assert bad["reason"].startswith("not UTF-8")
    assert bad["payload_text"] == "\x00\\xff" + "x" * 95  # invalid bytes escaped, 100 chars
    assert bad["payload_size"] == 3002
    assert bad["payload_sha256"] == hashlib.sha256(payloads[1]).hexdigest()
    assert empty["reason"] == "empty record" and empty["payload_size"] is None


@pytest.mark.parametrize("unit, tz", [("ms", None), ("ns", None), ("ns", "UTC"), ("ms", "UTC")])
def test_the_frame_reads_kafka_times_in_any_unit_and_keeps_its_types(unit, tz):
    """The skew rule needs the record time in ms whatever unit the batch's times come in."""
    stamp = GOOD_M["Timestamp"]
    times = pd.Series(pd.to_datetime([stamp, stamp + 3_601_000, None], unit="ms", utc=tz == "UTC")
                      ).dt.as_unit(unit)
    payloads = pd.Series([json.dumps(GOOD_M).encode()] * 3)
    frame = check_frame(payloads, times, MEASUREMENT_NUMBERS, Limits())
    on_time, skewed, no_time = frame.to_dict("records")
    assert on_time["reason"] is None and on_time["Timestamp"] == stamp
    assert skewed["reason"].startswith("implausible Timestamp")
    assert no_time["reason"] is None  # no record time: the payload's Timestamp stands
    assert frame["Length"].dtype == float and frame["Fish_Id"].dtype == object
    assert check_frame(pd.Series([], dtype=object), pd.Series([], dtype="datetime64[ns]"),
                       MEASUREMENT_NUMBERS, Limits()).columns.tolist() == list(frame.columns)

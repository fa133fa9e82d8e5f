import json

import pytest

from fishweight.udfs.validation import check_measurement, check_weight

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
    (_with(GOOD_M, Fish_Id="7"), "wrong type: Fish_Id must be an integer"),
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
    assert checked["Fish_Id"] is None


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

"""Fast tier: the SQL fast path of validation (``validation = sql-fast-path``) agrees
with the Python checks.

A record SQL finds clean (sql/10_score.sql, sql/15_weights.sql) skips Python's parsing;
every other record is checked by ``udfs.validation._check``. For each payload below,
the job's own views must give exactly what the Python check gives (reason, or the
fields with the same values), and the records in the producers' shape must take the
fast path. The corpus sits on the edges of the pattern: whitespace, key order,
duplicate and extra keys, escapes, exponents, limits and the clock skew bound.
"""

from __future__ import annotations

import json
import math
import time

import pytest

from fishweight.jobs.predict import build_pipeline
from fishweight.models.bootstrap import bootstrap_model
from fishweight.runtime.settings import Settings
from fishweight.udfs.validation import Limits, check_measurement, check_weight
from tests.pipeline_helpers import Sent
from tests.sql_harness import InMemoryConnectors

T = 1_700_000_000_000  # Kafka record time of every record but those AHEAD
AHEAD = int(time.time() * 1000) + 86_400_000  # a day ahead of the job's clock


def m(**fields) -> dict:
    record = {"Species": "salmon", "Fish_Id": 7, "Length": 88.5, "Height": 19.25,
              "Timestamp": T}
    record.update(fields)
    return {k: v for k, v in record.items() if v is not ...}


def w(**fields) -> dict:
    record = {"Species": "salmon", "Fish_Id": 7, "Weight": 4.5, "Timestamp": T}
    record.update(fields)
    return {k: v for k, v in record.items() if v is not ...}


def dumps(record: dict, **kw) -> bytes:
    return json.dumps(record, **kw).encode()


CANONICAL = "canonical"  # must take the fast path
# (payload, expected path): CANONICAL, or None when either path may be taken.
MEASUREMENTS = [
    (dumps(m()), CANONICAL),
    (dumps(m(), separators=(",", ":")), CANONICAL),
    (dumps(dict(reversed(m().items()))), CANONICAL),
    (b'\n\t{ "Species" : "salmon" ,\r\n "Fish_Id":7, "Length":88.5,"Height":19.25,'
     b'"Timestamp":1700000000000 }\n', CANONICAL),
    (dumps(m(Height=18)), CANONICAL),
    (dumps(m(Length=0.5)), CANONICAL),
    (dumps(m(Length=500.0)), CANONICAL),  # the limit itself
    (dumps(m(Length=80.12345678901234567)), CANONICAL),
    (b'{"Species": "salmon", "Fish_Id": 7, "Length": 80.12345678901234567, "Height": 19,'
     b' "Timestamp": 1700000000000}', CANONICAL),
    (dumps(m(Fish_Id=999_999_999_999_999_999)), CANONICAL),
    (dumps(m(Species="a")), CANONICAL),
    (dumps(m(Species="x" * 64)), CANONICAL),
    (dumps(m(Species="Atlantic salmon")), CANONICAL),
    (dumps(m(Timestamp=T + 3_600_999)), CANONICAL),  # 3600 whole seconds: plausible
    (dumps(m(Timestamp=T - 3_600_999)), CANONICAL),
    (dumps(m(Length=500.0000001)), None),
    (dumps(m(Length=0)), None),
    (dumps(m(Length=0.0)), None),
    (dumps(m(Length=-3.5)), None),
    (dumps(m(Height=200.5)), None),
    (dumps(m(Fish_Id=2**63 - 1)), None),
    (dumps(m(Fish_Id=2**63)), None),
    (dumps(m(Fish_Id=7.0)), None),
    (dumps(m(Fish_Id=0)), None),
    (dumps(m(Species=" salmon ")), None),
    (dumps(m(Species="x" * 65)), None),
    (dumps(m(Species="lax\u00f6")), None),
    (dumps(m(Species="lax\u00f6"), ensure_ascii=False), None),
    (dumps(m(Species="sal\tmon")), None),
    (b'{"Species": "\\u0073almon", "Fish_Id": 7, "Length": 88.5, "Height": 19.25,'
     b' "Timestamp": 1700000000000}', None),
    (b'{"Species": "salmon", "Fish_Id": 7, "Length": 88.5, "Length": 89.5,'
     b' "Timestamp": 1700000000000}', None),  # five members, Height missing
    (b'{"Species": "salmon", "Fish_Id": 7, "Length": 88.5, "Length": 89.5,'
     b' "Height": 19.25, "Timestamp": 1700000000000}', None),
    (b'{"Species": "salmon", "Fish_Id": 7, "Fish_Id": 8, "Length": 88.5,'
     b' "Timestamp": 1700000000000}', None),
    (dumps(m(Unit="cm")), None),
    (dumps(m(Length=88.5e0)).replace(b"88.5", b"8.85e1"), None),
    (dumps(m()).replace(b"88.5", b"088.5"), None),
    (dumps(m()).replace(b"88.5", b"1e400"), None),
    (dumps(m()).replace(b"88.5", b"NaN"), None),
    (dumps(m()).replace(b"88.5", b'"88.5"'), None),
    (dumps(m()).replace(b"{", b"\x0c{"), None),  # form feed is not JSON whitespace
    (dumps(m()) + b" " * 5000, None),
    (dumps(m(Timestamp=T + 3_601_000)), None),
    (dumps(m(Timestamp=T - 3_601_000)), None),
    (dumps(m(Timestamp=T + 2**32 * 1000)), None),  # TIMESTAMPDIFF(SECOND) wraps to 0
    (dumps(m(Timestamp=100_000_000_000_000)), None),
    (dumps(m(Timestamp=...)), None),
    (dumps(m(Species=None)), None),
    (b"\xff" + dumps(m()), None),
    (b"", None),
    (b"null", None),
    # Last: the in-memory source sorts by Kafka time (offsets follow this list's order).
    (dumps(m(Timestamp=AHEAD)), None),  # its record time too: a day ahead of the clock
]
WEIGHTS = [
    (dumps(w()), CANONICAL),
    (dumps(w(Weight=4)), CANONICAL),
    (dumps(w(Weight=1000.0)), CANONICAL),
    (dumps(dict(reversed(w().items()))), CANONICAL),
    (dumps(w(Weight=1000.01)), None),
    (dumps(w(Weight=0)), None),
    (dumps(w(Weight="heavy")), None),
    (dumps(w(Weight=...)), None),
    (dumps(w(Length=88.5)), None),  # a measurement's field: not a weight's shape
    (dumps(w(Timestamp=T + 3_601_000)), None),
    (dumps(w(Timestamp=T + 2**32 * 1000 + 5000)), None),
    (dumps(w(Species="salmon ")), None),
    (dumps(w(Timestamp=AHEAD)), None),  # its record time too (last, as above)
]


def kafka_ms(payload: bytes) -> int:
    """Every record's Kafka time is T but for those whose Timestamp is AHEAD."""
    return AHEAD if str(AHEAD).encode() in payload else T


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    settings = Settings.load(state_dir=str(state), web_ui_port=0, parallelism=1,
                             checkpoint_interval_s=0, validation="sql-fast-path")
    bootstrap_model(settings)
    connectors = InMemoryConnectors(
        [Sent(p, kafka_ms(p)) for p, _ in MEASUREMENTS],
        [Sent(p, kafka_ms(p)) for p, _ in WEIGHTS], state / "out")
    t_env = build_pipeline(settings, connectors=connectors).t_env
    # One job: each record's outcome, and whether it took the fast path.
    rows = t_env.sql_query("""
        SELECT 'm', kafka_offset, reason, Species, Fish_Id, Length, Height, `Timestamp`,
               CAST(NULL AS BOOLEAN)
        FROM measurement_scored
        UNION ALL
        SELECT 'w', kafka_offset, reason, Species, Fish_Id, Weight, CAST(NULL AS DOUBLE),
               `Timestamp`, CAST(NULL AS BOOLEAN)
        FROM weight_validated
        UNION ALL
        SELECT 'm?', kafka_offset, CAST(NULL AS STRING), CAST(NULL AS STRING),
               CAST(NULL AS BIGINT), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE),
               CAST(NULL AS BIGINT), clean
        FROM measurement_sorted
        UNION ALL
        SELECT 'w?', kafka_offset, CAST(NULL AS STRING), CAST(NULL AS STRING),
               CAST(NULL AS BIGINT), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE),
               CAST(NULL AS BIGINT), clean
        FROM weight_sorted""").execute().collect()
    checked, clean = {}, {}
    with rows:
        for r in rows:
            if r[0].endswith("?"):
                clean[(r[0][0], r[1])] = r[8]
            else:
                checked[(r[0], r[1])] = tuple(r)[2:8]
    return Limits.from_settings(settings), checked, clean


def _expected(check, payload, numbers, limits):
    out = check(payload, limits, kafka_ms(payload), time.time() * 1000)
    return (out["reason"], out["Species"], out["Fish_Id"],
            *[out[n] for n in numbers], *([None] if len(numbers) == 1 else []),
            out["Timestamp"])


def _same(got, want) -> bool:
    if isinstance(want, float) and isinstance(got, float):
        return got == want or (math.isnan(got) and math.isnan(want))
    return got == want


@pytest.mark.parametrize("kind", ["m", "w"])
def test_sql_and_python_validation_agree(outcomes, kind):
    limits, checked, clean = outcomes
    corpus, check, numbers = ((MEASUREMENTS, check_measurement, ("Length", "Height"))
                              if kind == "m" else (WEIGHTS, check_weight, ("Weight",)))
    assert len([k for k in checked if k[0] == kind]) == len(corpus), "a record went missing"
    for offset, (payload, path) in enumerate(corpus):
        got, want = checked[(kind, offset)], _expected(check, payload, numbers, limits)
        assert all(_same(g, x) for g, x in zip(got, want, strict=True)), \
            f"{payload!r}: SQL path gave {got}, Python gives {want}"
        if path == CANONICAL:
            assert clean[(kind, offset)], f"{payload!r} should take the fast path"
        if clean[(kind, offset)]:
            assert want[0] is None, f"{payload!r} took the fast path but is invalid"
    fast = sum(clean[(kind, o)] for o in range(len(corpus)))
    assert fast == sum(p == CANONICAL for _, p in corpus), \
        "a record outside the canonical list took the fast path"

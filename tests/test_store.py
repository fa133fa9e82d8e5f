"""One contract suite for both training-store backends.

No MongoDB server can run on the build machines, so the MongoDB backend runs this
suite against mongomock, an in-process stand-in for a MongoDB server that speaks
pymongo's API. The same MongoStore code talks to a real server in docker/.
"""

import mongomock
import pytest

from fishweight.models.store import MongoStore, SqliteStore, StoreError, open_store
from fishweight.runtime.settings import redact_uri


@pytest.fixture(params=["sqlite", "mongodb-via-mongomock-stand-in"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path / 'training.sqlite'}")
        assert isinstance(s, SqliteStore)
    else:
        s = MongoStore("mongodb://user:secret@mongo:27017", client=mongomock.MongoClient())
    yield s
    s.close()


def _record(fish_id, ts, error=0.01, species="salmon"):
    return {"Fish_Id": fish_id, "Species": species, "Length": 80.0 + fish_id,
            "Height": 18.0, "ActualWeight": 4.0, "PredictedWeight": 4.04, "Error": error,
            "ModelVersion": 1, "Timestamp": ts}


def test_append_then_latest_newest_first(store):
    store.append([_record(i, 1000 + i) for i in range(1, 11)])
    latest = store.latest(3)
    assert [r["Fish_Id"] for r in latest] == [10, 9, 8]
    assert latest[0] == _record(10, 1010)


def test_reappending_is_idempotent(store):
    batch = [_record(i, 1000 + i) for i in range(5)]
    store.append(batch)
    store.append(batch)  # redelivered after a crash
    store.append([_record(2, 1002, error=0.5)])  # same key, newer content
    assert store.count() == 5
    assert {r["Fish_Id"]: r["Error"] for r in store.latest(10)}[2] == 0.5


def test_latest_orders_by_timestamp_across_out_of_order_inserts(store):
    records = [_record(i, ts) for i, ts in enumerate([5000, 100, 9000, 300, 7000, 2000])]
    store.append(records[:3])
    store.append(records[3:])
    assert [r["Timestamp"] for r in store.latest(50)] == [9000, 7000, 5000, 2000, 300, 100]
    assert [r["Timestamp"] for r in store.latest(2)] == [9000, 7000]


def test_same_fish_at_another_time_is_another_record(store):
    store.append([_record(1, 1000), _record(1, 2000)])
    assert store.count() == 2


def test_records_without_a_key_are_rejected(store):
    with pytest.raises(ValueError, match="Fish_Id and Timestamp"):
        store.append([{"Fish_Id": 1}])


def test_mongo_indexes_exist():
    client = mongomock.MongoClient()
    MongoStore("mongodb://mongo", client=client)
    indexes = client["Weight"]["TrainingData"].index_information()
    keys = [tuple(ix["key"]) for ix in indexes.values()]
    assert (("Timestamp", -1),) in keys
    assert (("Fish_Id", 1), ("Timestamp", 1)) in keys


def test_unsupported_uri_and_redaction():
    with pytest.raises(StoreError, match="unsupported store URI"):
        open_store("postgres://u:pw@db/x")
    assert redact_uri("mongodb://user:secret@mongo:27017/admin") == "mongodb://user:***@mongo:27017/admin"


def test_unreachable_mongodb_is_a_clear_error():
    with pytest.raises(StoreError, match=r"cannot reach MongoDB \(mongodb://u:\*\*\*@127.0.0.1:1\)"):
        MongoStore("mongodb://u:pw@127.0.0.1:1", timeout_ms=300)


def test_latest_before_a_time(store):
    store.append([_record(i, 1000 * i) for i in range(1, 11)])
    assert [r["Fish_Id"] for r in store.latest(3, before_ms=7000)] == [6, 5, 4]
    assert store.latest(3, before_ms=1000) == []


def test_latest_of_one_species_and_counts_per_species(store):
    store.append([_record(i, 1000 * i, species="salmon" if i % 3 else "walleye")
                  for i in range(1, 13)])
    walleye = store.latest(3, species="walleye")
    assert [r["Fish_Id"] for r in walleye] == [12, 9, 6]
    assert [r["Fish_Id"] for r in store.latest(2, before_ms=9000, species="walleye")] == [6, 3]
    assert store.latest(5, species="pike") == []
    assert store.species_counts() == {"salmon": 8, "walleye": 4}
    assert store.species_counts(before_ms=7000) == {"salmon": 4, "walleye": 2}

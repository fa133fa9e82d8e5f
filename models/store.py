"""The training store: joined records (weight-diff) kept for retraining.

Two backends behind one small interface, chosen by URI:

* ``mongodb://...`` (or ``mongodb+srv://``): MongoDB via pymongo, database ``Weight``,
  collection ``TrainingData`` as in the reference tutorial; credentials come only
  from the URI (or the environment variable that holds it).
* ``sqlite:///relative/path`` or ``sqlite:////absolute/path``: an embedded file that
  needs no server (the default).

Appends are idempotent upserts keyed by (Fish_Id, Timestamp), so a record delivered
twice (at-least-once Kafka) is stored once. ``latest(n)`` returns the newest records
by ``Timestamp``, newest first; ``latest(n, before_ms=t)`` the same among the records
older than ``t``; ``latest(n, species=s)`` those of one species (species memory).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from fishweight.runtime import require_extra
from fishweight.runtime.settings import redact_uri

log = logging.getLogger(__name__)

KEY_FIELDS = ("Fish_Id", "Timestamp")


class StoreError(RuntimeError):
    """The training store cannot be opened or written."""


class TrainingStore(Protocol):
    def append(self, records: Iterable[dict[str, Any]]) -> int:
        """Upsert records; returns how many were given."""

    def latest(self, n: int, before_ms: int | None = None, species: str | None = None,
               since_ms: int | None = None) -> list[dict[str, Any]]:
        """The ``n`` newest records by Timestamp, newest first.

        Only records with ``since_ms <= Timestamp < before_ms`` (each bound when given)
        and (when given) of ``species``.
        """

    def species_counts(self, before_ms: int | None = None,
                       since_ms: int | None = None) -> dict[str, int]:
        """Stored records per species (only those ``since_ms <= Timestamp < before_ms``)."""

    def count(self) -> int:
        """How many distinct records are stored."""

    def close(self) -> None:
        """Release connections."""


def _bounds(since_ms: int | None, before_ms: int | None) -> tuple[int, int]:
    """(since, before) for SQL: ``since <= timestamp < before``, open ends filled in."""
    return (0 if since_ms is None else since_ms, 2**63 - 1 if before_ms is None else before_ms)


def _time_match(since_ms: int | None, before_ms: int | None) -> dict[str, Any]:
    """The same bounds as a MongoDB filter on ``Timestamp``."""
    bounds = {op: value for op, value in (("$gte", since_ms), ("$lt", before_ms))
              if value is not None}
    return {"Timestamp": bounds} if bounds else {}


def _key(record: dict[str, Any]) -> tuple[int, int]:
    try:
        return int(record["Fish_Id"]), int(record["Timestamp"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"training record needs integer Fish_Id and Timestamp: {record}") from exc


class SqliteStore:
    """Embedded default: one SQLite file, JSON records, primary key (Fish_Id, Timestamp)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One thread uses the store at a time, but not always the one that opened it.
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS training_data ("
            " fish_id INTEGER NOT NULL, timestamp INTEGER NOT NULL, record TEXT NOT NULL,"
            " PRIMARY KEY (fish_id, timestamp))")
        self._db.execute(
            "CREATE INDEX IF NOT EXISTS training_data_by_time ON training_data (timestamp)")
        self._db.execute(
            "CREATE INDEX IF NOT EXISTS training_data_by_species ON training_data"
            " (json_extract(record, '$.Species'), timestamp)")
        self._db.commit()

    def append(self, records: Iterable[dict[str, Any]]) -> int:
        rows = [(*_key(r), json.dumps(r, sort_keys=True)) for r in records]
        with self._db:
            self._db.executemany(
                "INSERT INTO training_data (fish_id, timestamp, record) VALUES (?, ?, ?) "
                "ON CONFLICT (fish_id, timestamp) DO UPDATE SET record = excluded.record", rows)
        return len(rows)

    def latest(self, n: int, before_ms: int | None = None, species: str | None = None,
               since_ms: int | None = None) -> list[dict[str, Any]]:
        bounds = _bounds(since_ms, before_ms)
        if species is None:
            cursor = self._db.execute(
                "SELECT record FROM training_data WHERE timestamp >= ? AND timestamp < ?"
                " ORDER BY timestamp DESC, fish_id DESC LIMIT ?", (*bounds, n))
        else:
            cursor = self._db.execute(
                "SELECT record FROM training_data WHERE json_extract(record, '$.Species') = ?"
                " AND timestamp >= ? AND timestamp < ?"
                " ORDER BY timestamp DESC, fish_id DESC LIMIT ?", (species, *bounds, n))
        return [json.loads(row[0]) for row in cursor]

    def species_counts(self, before_ms: int | None = None,
                       since_ms: int | None = None) -> dict[str, int]:
        cursor = self._db.execute(
            "SELECT json_extract(record, '$.Species'), COUNT(*) FROM training_data"
            " WHERE timestamp >= ? AND timestamp < ? GROUP BY 1", _bounds(since_ms, before_ms))
        return {species: count for species, count in cursor if species is not None}

    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM training_data").fetchone()[0]

    def close(self) -> None:
        self._db.close()


class MongoStore:
    """MongoDB backend (pymongo): ``Weight.TrainingData``, upserts, index on Timestamp."""

    DATABASE = "Weight"
    COLLECTION = "TrainingData"

    def __init__(self, uri: str, client: Any = None, retries: int = 3,
                 timeout_ms: int = 5000) -> None:
        pymongo = require_extra("pymongo", "mongodb")
        require_extra("pymongo.errors", "mongodb")
        self._pymongo = pymongo
        self.retries = retries
        self._client = client or pymongo.MongoClient(
            uri, serverSelectionTimeoutMS=timeout_ms, appname="fishweight-trainer")
        try:
            self._client.admin.command("ping")
        except pymongo.errors.PyMongoError as exc:
            raise StoreError(f"cannot reach MongoDB ({redact_uri(uri)}): {exc}") from exc
        self._collection = self._client[self.DATABASE][self.COLLECTION]
        self._collection.create_index([("Timestamp", pymongo.DESCENDING)])
        self._collection.create_index([("Fish_Id", 1), ("Timestamp", 1)], unique=True)
        self._collection.create_index([("Species", 1), ("Timestamp", -1)])

    def _with_retries(self, action):
        errors = (self._pymongo.errors.AutoReconnect, self._pymongo.errors.NetworkTimeout)
        for attempt in range(1, self.retries + 1):
            try:
                return action()
            except errors as exc:
                if attempt == self.retries:
                    raise StoreError(f"MongoDB failed {attempt} times: {exc}") from exc
                log.warning("MongoDB error (attempt %d/%d): %s", attempt, self.retries, exc)
                time.sleep(0.5 * 2 ** (attempt - 1))
        return None  # unreachable

    def append(self, records: Iterable[dict[str, Any]]) -> int:
        # One upsert per record rather than one bulk_write: the records come in poll
        # batches at the factory's pace, and pymongo's bulk UpdateOne carries arguments
        # that mongomock (the tests' stand-in for a server) cannot take.
        keyed = [(_key(record), record) for record in records]

        def upsert_all():
            for (fish_id, timestamp), record in keyed:
                self._collection.update_one({"Fish_Id": fish_id, "Timestamp": timestamp},
                                            {"$set": dict(record)}, upsert=True)
        if keyed:
            self._with_retries(upsert_all)
        return len(keyed)

    def latest(self, n: int, before_ms: int | None = None, species: str | None = None,
               since_ms: int | None = None) -> list[dict[str, Any]]:
        where = _time_match(since_ms, before_ms)
        if species is not None:
            where["Species"] = species

        def query():
            cursor = self._collection.find(where, {"_id": False}).sort(
                [("Timestamp", -1), ("Fish_Id", -1)]).limit(n)
            return list(cursor)
        return self._with_retries(query)

    def species_counts(self, before_ms: int | None = None,
                       since_ms: int | None = None) -> dict[str, int]:
        match = _time_match(since_ms, before_ms)
        pipeline = [{"$match": match}, {"$group": {"_id": "$Species", "n": {"$sum": 1}}}]
        rows = self._with_retries(lambda: list(self._collection.aggregate(pipeline)))
        return {row["_id"]: row["n"] for row in rows if row["_id"] is not None}

    def count(self) -> int:
        return self._with_retries(lambda: self._collection.count_documents({}))

    def close(self) -> None:
        self._client.close()


def open_store(uri: str) -> TrainingStore:
    """Open the store a URI names: ``mongodb://``, ``mongodb+srv://`` or ``sqlite:///``."""
    if uri.startswith(("mongodb://", "mongodb+srv://")):
        return MongoStore(uri)
    if uri.startswith("sqlite:///"):
        # SQLAlchemy's convention: sqlite:///relative/path, sqlite:////absolute/path
        return SqliteStore(uri.removeprefix("sqlite:///"))
    raise StoreError(f"unsupported store URI {redact_uri(uri)!r}: use mongodb://... or sqlite:///path")

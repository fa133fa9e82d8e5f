"""The prediction UDF: a vectorized scikit-learn model with hot swap from the registry.

The model is loaded in ``open()``: the version ``CURRENT`` names or, if that one does
not verify, the newest that does. Before a batch, the UDF checks the registry's
``CURRENT`` pointer, at most every ``poll_s`` seconds; a new version is loaded and
verified (SHA-256 and signature, before unpickling), smoke-tested on a fixed batch
off to the side, and swapped in with one assignment, so a batch is always predicted
by exactly one version. A version that fails any step is refused, logged and
counted, and the last good one keeps serving; a version that cannot be read just now
(``ModelUnavailable``: a file system error, the signing key unreadable) is no verdict
and is tried again at the next polls.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
from pyflink.table import DataTypes
from pyflink.table.udf import FunctionContext, ScalarFunction, udf

from fishweight.models.registry import (
    LoadedModel,
    ModelError,
    ModelRegistry,
    ModelUnavailable,
)
from fishweight.udfs.validation import MEASUREMENT_NUMBERS, Limits, check_frame, row_type

log = logging.getLogger(__name__)

PREDICTION_TYPE = DataTypes.ROW([
    DataTypes.FIELD("Weight", DataTypes.DOUBLE()),
    DataTypes.FIELD("ModelTime", DataTypes.STRING()),
    DataTypes.FIELD("ModelVersion", DataTypes.INT()),
    DataTypes.FIELD("SpeciesKnown", DataTypes.BOOLEAN()),
])


# A fixed batch every candidate must predict (finite numbers) before it may serve:
# a known species, one it cannot know, and an unusual size.
SMOKE_BATCH = pd.DataFrame({"Species": ["salmon", "no-such-species", "walleye"],
                            "Length": [88.0, 60.0, 120.0], "Height": [19.0, 12.0, 25.0]})


def smoke_test(model: LoadedModel) -> None:
    """Raise ``ModelError`` unless the model predicts the fixed batch sensibly."""
    try:
        out = np.asarray(model.estimator.predict(SMOKE_BATCH), dtype=float)
    except Exception as exc:  # noqa: BLE001 - any failure refuses the version
        raise ModelError(f"model version {model.version} failed the smoke test: "
                         f"{type(exc).__name__}: {exc}") from exc
    if out.shape != (len(SMOKE_BATCH),) or not np.all(np.isfinite(out)):
        raise ModelError(f"model version {model.version} failed the smoke test: "
                         f"predicted {out!r}")


class ModelServer:
    """Holds the current model and refreshes it from the registry; no Flink inside."""

    def __init__(self, model_dir: str, poll_s: float = 1.0,
                 key_file: str | None = None) -> None:
        self.registry = ModelRegistry(model_dir, key_file)
        self.poll_s = poll_s
        try:
            self.model: LoadedModel = self.registry.load_current()
            smoke_test(self.model)
        except Exception as exc:  # noqa: BLE001 - whatever the files cause: fall back
            self.model = self.registry.load_newest_valid(smoke_test)
            log.error("the current model is unusable (%s); serving version %d, the newest "
                      "that verifies", exc, self.model.version)
        self._next_check = time.monotonic() + poll_s
        self.live_since = self._promoted_at()
        self._refused: set[int] = set()
        self._unreadable: set[int] = set()  # logged once each until they can be read
        self._pointer_problem: str | None = None
        self.swaps = 0
        self.refusals = 0

    def refresh(self, now: float | None = None) -> LoadedModel:
        """Return the model to use for the next batch, switching if a new one is published."""
        now = time.monotonic() if now is None else now
        if now < self._next_check:
            return self.model
        self._next_check = now + self.poll_s
        try:
            version = self.registry.current_version()
        except ModelError as exc:
            if str(exc) != self._pointer_problem:  # once, not at every poll
                self._pointer_problem = str(exc)
                log.error("cannot read the model pointer, keeping version %d: %s",
                          self.model.version, exc)
            return self.model
        self._pointer_problem = None
        if version is None or version == self.model.version or version in self._refused:
            return self.model
        try:
            candidate = self.registry.load(version)
            smoke_test(candidate)
        except ModelUnavailable as exc:
            if version not in self._unreadable:
                self._unreadable.add(version)
                log.error("cannot read model version %d now, keeping version %d; trying "
                          "again at the next polls: %s", version, self.model.version, exc)
            return self.model
        except Exception as exc:  # noqa: BLE001 - a verdict: the files are wrong
            self._refused.add(version)
            self.refusals += 1
            log.error("refusing model version %d, keeping version %d: %s",
                      version, self.model.version, exc)
            return self.model
        log.info("switching model from version %d to %d", self.model.version, version)
        self.model = candidate
        self.live_since = self._promoted_at()
        self.swaps += 1
        return self.model

    def _promoted_at(self) -> float:
        """When the served version was promoted: CURRENT's time if it names that version."""
        try:
            current = self.registry.current_version()
        except ModelError:
            current = None
        promoted = self.registry.promoted_at() if current == self.model.version else None
        return promoted if promoted is not None else time.time()

    def predict(self, species: pd.Series, length: pd.Series, height: pd.Series) -> pd.DataFrame:
        """Predict a batch with one model version; rows with missing inputs get NULLs."""
        model = self.refresh()
        frame = pd.DataFrame({"Species": species.astype(object), "Length": length,
                              "Height": height})
        ok = frame.notna().all(axis=1).to_numpy()
        weight = np.full(len(frame), np.nan)
        if ok.any():
            weight[ok] = model.estimator.predict(frame[ok])
        known = frame["Species"].isin(model.species).to_numpy()
        # Object columns with None for NULL: PyFlink's Arrow conversion rejects pandas'
        # nullable extension dtypes (Int32, boolean).
        return pd.DataFrame({
            "Weight": weight,
            "ModelTime": pd.Series(np.where(ok, model.trained_at, None), dtype=object),
            "ModelVersion": pd.Series([model.version if o else None for o in ok], dtype=object),
            "SpeciesKnown": pd.Series(
                [bool(k) if o else None for k, o in zip(known, ok, strict=True)], dtype=object),
        })


class PredictWeight(ScalarFunction):
    """Flink wrapper: metrics in the web UI, the model server in ``open()``."""

    def __init__(self, model_dir: str, poll_s: float = 1.0,
                 key_file: str | None = None) -> None:
        self.model_dir = model_dir
        self.poll_s = poll_s
        self.key_file = key_file
        self.server: ModelServer | None = None

    def is_deterministic(self) -> bool:
        # The answer depends on the model published at call time.
        return False

    def open(self, function_context: FunctionContext) -> None:
        self.server = ModelServer(self.model_dir, self.poll_s, self.key_file)
        group = function_context.get_metric_group().add_group("fishweight")
        self._predictions = group.counter("predictions")
        self._swaps = group.counter("modelSwaps")
        self._refusals = group.counter("modelRefusals")
        group.gauge("modelVersion", lambda: self.server.model.version)
        # Updated as bundles finish, i.e. while records flow.
        group.gauge("modelAgeSeconds", lambda: int(time.time() - self.server.live_since))
        # Two counters, not PyFlink's distribution: Flink's Prometheus reporter takes
        # only numeric gauges and exports a distribution as 0. The mean time per batch
        # over any span is the ratio of their increases (docs/metrics.md).
        self._batches = group.counter("predictBatches")
        self._micros = group.counter("predictMicros")
        log.info("serving model version %d from %s", self.server.model.version, self.model_dir)

    def eval(self, species: pd.Series, length: pd.Series, height: pd.Series) -> pd.DataFrame:
        return self._predict(species, length, height)

    def _predict(self, species: pd.Series, length: pd.Series, height: pd.Series) -> pd.DataFrame:
        swaps, refusals = self.server.swaps, self.server.refusals
        started = time.perf_counter()
        out = self.server.predict(species, length, height)
        self._batches.inc()
        self._micros.inc(round((time.perf_counter() - started) * 1_000_000))
        self._predictions.inc(int(out["ModelVersion"].notna().sum()))  # not rejected rows
        self._swaps.inc(self.server.swaps - swaps)
        self._refusals.inc(self.server.refusals - refusals)
        return out


class ScoreMeasurement(PredictWeight):
    """Validation and prediction in one Python stage (one round trip per bundle).

    ``score_measurement(payload, kafka_time, clean, Species, Fish_Id, Length, Height,
    Timestamp)``: for a record SQL found clean (``clean``, sql/10_score.sql) the typed
    fields are used as they are and ``payload`` is NULL; any other record is checked
    here from its payload (``check_frame``, udfs/validation.py). Returns the fields of
    ``check_frame`` plus the prediction's four fields, flat (a pandas UDF returns a
    flat ROW); ``sql/10_score.sql`` nests the latter as ``Prediction``.
    """

    def __init__(self, limits: Limits, model_dir: str, poll_s: float = 1.0,
                 key_file: str | None = None) -> None:
        super().__init__(model_dir, poll_s, key_file)
        self.limits = limits

    def eval(self, payload: pd.Series, kafka_time: pd.Series, clean: pd.Series,
             species: pd.Series, fish_id: pd.Series, length: pd.Series, height: pd.Series,
             timestamp: pd.Series) -> pd.DataFrame:
        checked = merge_checked(payload, kafka_time, clean, species, fish_id, length, height,
                                timestamp, self.limits)
        predicted = self._predict(checked["Species"], checked["Length"], checked["Height"])
        return pd.concat([checked, predicted.set_axis(SCORE_FIELDS, axis=1)], axis=1)


def merge_checked(payload: pd.Series, kafka_time: pd.Series, clean: pd.Series,
                  species: pd.Series, fish_id: pd.Series, length: pd.Series,
                  height: pd.Series, timestamp: pd.Series, limits: Limits) -> pd.DataFrame:
    """``check_frame``'s columns: the SQL-checked fields where ``clean``, else Python's."""
    ok = clean.fillna(False).astype(bool).to_numpy()
    if not ok.any():  # always so with `validation = python` (the default)
        return check_frame(payload, kafka_time, MEASUREMENT_NUMBERS, limits)
    n = len(ok)
    columns: dict[str, list] = {
        "reason": [None] * n,
        "Species": [s if c else None for s, c in zip(species, ok, strict=True)],
        "Fish_Id": [int(f) if c else None for f, c in zip(fish_id, ok, strict=True)],
        "Length": [float(v) if c else None for v, c in zip(length, ok, strict=True)],
        "Height": [float(v) if c else None for v, c in zip(height, ok, strict=True)],
        "Timestamp": [int(t) if c else None for t, c in zip(timestamp, ok, strict=True)],
        "payload_text": [None] * n, "payload_size": [None] * n, "payload_sha256": [None] * n,
    }
    slow = np.flatnonzero(~ok)
    if len(slow):
        checked = check_frame(payload.iloc[slow], kafka_time.iloc[slow], MEASUREMENT_NUMBERS,
                              limits)
        for name, values in columns.items():
            for position, value in zip(slow, checked[name], strict=True):
                values[position] = value
    frame = pd.DataFrame({name: pd.Series(values, dtype=object)
                          for name, values in columns.items()})
    for name in MEASUREMENT_NUMBERS:  # doubles (NaN for a rejected record)
        frame[name] = frame[name].astype(float)
    return frame


SCORE_FIELDS = ["PredictedWeight", "ModelTime", "ModelVersion", "SpeciesKnown"]


def score_type():
    return DataTypes.ROW(list(row_type(MEASUREMENT_NUMBERS).fields) + [
        DataTypes.FIELD(name, field.data_type)
        for name, field in zip(SCORE_FIELDS, PREDICTION_TYPE.fields, strict=True)])


def score_measurement(limits: Limits, model_dir: str, poll_s: float = 1.0,
                      key_file: str | None = None):
    """The UDF to register as ``score_measurement(payload, kafka_time, clean, ...)``."""
    return udf(ScoreMeasurement(limits, model_dir, poll_s, key_file), result_type=score_type(),
               func_type="pandas")


def predict_weight(model_dir: str, poll_s: float = 1.0, key_file: str | None = None):
    """The UDF to register as ``predict_weight(Species, Length, Height)``."""
    return udf(PredictWeight(model_dir, poll_s, key_file), result_type=PREDICTION_TYPE,
               func_type="pandas")

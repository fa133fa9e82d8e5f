"""Fitting and scoring weight models on tabular fish records."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import mean_absolute_error, r2_score
from sklearn.pipeline import Pipeline

from fishweight.models.features import INPUT_COLUMNS, TARGET, make_estimator


def to_frame(records: list[dict]) -> pd.DataFrame:
    """Records with Species/Length/Height and Weight (or ActualWeight) -> a training frame."""
    frame = pd.DataFrame.from_records(records)
    if TARGET not in frame and "ActualWeight" in frame:
        frame = frame.rename(columns={"ActualWeight": TARGET})
    missing = [c for c in [*INPUT_COLUMNS, TARGET] if c not in frame]
    if missing:
        raise ValueError(f"training records lack column(s) {missing}")
    return frame


def fit(frame: pd.DataFrame, interactions: bool = True) -> Pipeline:
    estimator = make_estimator(interactions=interactions)
    estimator.fit(frame[INPUT_COLUMNS], frame[TARGET].to_numpy(dtype=float))
    return estimator


def relative_errors(estimator, frame: pd.DataFrame) -> np.ndarray:
    """|pred - actual| / actual per row: the pipeline's Error column, unrounded."""
    actual = frame[TARGET].to_numpy(dtype=float)
    return np.abs(estimator.predict(frame[INPUT_COLUMNS]) - actual) / actual


def metrics(estimator, frame: pd.DataFrame) -> dict[str, float]:
    predicted = estimator.predict(frame[INPUT_COLUMNS])
    actual = frame[TARGET].to_numpy(dtype=float)
    return {
        "n": int(len(frame)),
        "mean_relative_error": float(np.mean(np.abs(predicted - actual) / actual)),
        "mae": float(mean_absolute_error(actual, predicted)),
        "r2": float(r2_score(actual, predicted)) if len(frame) > 1 else float("nan"),
    }


def holdout_split(frame: pd.DataFrame, every: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every ``every``-th record (in the given order) is held out; the rest trains.

    Deterministic, and in time order it samples each phase of the stream evenly.
    """
    mask = (np.arange(len(frame)) % every) == every - 1
    return frame[~mask].reset_index(drop=True), frame[mask].reset_index(drop=True)


def compare_on_holdout(candidate, current, holdout: pd.DataFrame) -> dict:
    """Mean relative error of both models on the same held-out records."""
    return {
        "candidate": metrics(candidate, holdout),
        "current": metrics(current, holdout),
    }

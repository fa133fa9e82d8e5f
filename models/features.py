"""Model features and the estimator the registry stores.

The weight of a fish is close to linear in its length and height, with slopes that
differ by species. ``SpeciesInteractions`` therefore gives each species seen in
training its own intercept and its own length/height slopes (one-hot and one-hot x
Length / Height). A species unseen in training gets all-zero indicator columns and
is predicted by the shared part of the model, never an error. With a single species
the features reduce to Length and Height, the reference tutorial's ``lm``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline

INPUT_COLUMNS = ["Species", "Length", "Height"]
TARGET = "Weight"


class SpeciesInteractions(TransformerMixin, BaseEstimator):
    """Length, Height, plus per-species indicator and slope columns (when > 1 species)."""

    def __init__(self, interactions: bool = True) -> None:
        self.interactions = interactions

    def fit(self, X: pd.DataFrame, y=None) -> SpeciesInteractions:  # noqa: N803 (sklearn API)
        self.species_ = sorted(set(X["Species"].astype(str)))
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        length = X["Length"].to_numpy(dtype=float)
        height = X["Height"].to_numpy(dtype=float)
        columns = [length, height]
        if len(self.species_) > 1:
            species = X["Species"].astype(str).to_numpy()
            for name in self.species_:
                indicator = (species == name).astype(float)
                columns.append(indicator)
                if self.interactions:
                    columns.extend([indicator * length, indicator * height])
        return np.column_stack(columns)

    def feature_names(self) -> list[str]:
        names = ["Length", "Height"]
        if len(self.species_) > 1:
            for name in self.species_:
                names.append(f"species={name}")
                if self.interactions:
                    names.extend([f"species={name}*Length", f"species={name}*Height"])
        return names


def make_estimator(interactions: bool = True) -> Pipeline:
    """An unfitted model: species-aware features followed by least squares."""
    return Pipeline([
        ("features", SpeciesInteractions(interactions=interactions)),
        ("regression", LinearRegression()),
    ])

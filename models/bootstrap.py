"""The initial model (``fishweight bootstrap-model``): the reference's 100 simulated salmon."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fishweight.models.policy import fit, metrics
from fishweight.models.registry import ModelRegistry
from fishweight.runtime.settings import Settings
from fishweight.scenarios import Scenario, load_scenario, sample_species

BOOTSTRAP_SPECIES = "salmon"
BOOTSTRAP_SAMPLES = 100
BOOTSTRAP_SEED = 200


def bootstrap_frame(scenario=None, species: str = BOOTSTRAP_SPECIES,
                    n: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> pd.DataFrame:
    """The reference's initial training set: 100 simulated salmon, seed 200.

    ``scenario``: a ``Scenario``, a scenario file or None (the packaged default): its
    profile keyed ``species``; the default's when it has none.
    """
    loaded = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    profile = loaded.species.get(species) or load_scenario().species[species]
    # The reference set is clean: a profile's mis-weighed outliers are the factory's fault.
    values = sample_species(profile, n, np.random.default_rng(seed), outliers=False)
    return pd.DataFrame({**values, "Species": [species] * n})


def bootstrap_model(settings: Settings, scenario=None, force: bool = False
                    ) -> tuple[int | None, dict]:
    """Train and publish version 1 unless a model exists. Returns (version, metrics).

    ``scenario``: whose salmon it learns (``bootstrap_frame``).
    """
    registry = ModelRegistry.for_settings(settings)
    frame = bootstrap_frame(scenario)
    estimator = fit(frame)
    scores = metrics(estimator, frame)
    if registry.current_version() is not None and not force:
        return None, scores
    version = registry.publish(estimator, {
        "n_samples": len(frame),
        "species": sorted(set(frame["Species"])),
        "species_records": {BOOTSTRAP_SPECIES: len(frame)},
        "evidence": {BOOTSTRAP_SPECIES: len(frame)},
        "model": estimator.describe(),
        "training_window": {"source": f"bootstrap: {len(frame)} simulated "
                                      f"{BOOTSTRAP_SPECIES}, seed {BOOTSTRAP_SEED}"},
        "metrics": {"training": scores},
        "reason": "bootstrap",
    })
    return version, scores

"""Fitting, scoring and the retraining rules: species memory, the gate, refinement.

``admitted_species``         which species a new model may learn (``max_species``).
``select_training_records``  the newest N records up to the trigger, plus species memory.
``loo_gate``                 the candidate's leave-one-out error vs the current model's
                             error on records it has not trained on.
``refinement_due``           species whose stored records crossed R since the last promotion.
``leans``, ``shift_start``   the bias rule's test, and where a species' errors shifted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import mean_absolute_error, r2_score

from fishweight.models.estimator import (
    INPUT_COLUMNS,
    TARGET,
    SpeciesShrinkageRegressor,
    make_estimator,
)


def to_frame(records: list[dict]) -> pd.DataFrame:
    """Records with Species/Length/Height and ActualWeight (or Weight) -> a training frame.

    A weight-diff record's target is its ``ActualWeight``; any other ``Weight`` field it
    carries is not the fish's weight and is ignored.
    """
    frame = pd.DataFrame.from_records(records)
    if "ActualWeight" in frame:
        frame = frame.drop(columns=[TARGET], errors="ignore").rename(
            columns={"ActualWeight": TARGET})
    missing = [c for c in [*INPUT_COLUMNS, TARGET] if c not in frame]
    if missing:
        raise ValueError(f"training records lack column(s) {missing}")
    return frame


def fit(frame: pd.DataFrame) -> SpeciesShrinkageRegressor:
    return make_estimator().fit(frame[INPUT_COLUMNS], frame[TARGET].to_numpy(dtype=float))


def relative_errors(estimator, frame: pd.DataFrame) -> np.ndarray:
    """|pred - actual| / actual per row: the pipeline's Error column, unrounded."""
    actual = frame[TARGET].to_numpy(dtype=float)
    return np.abs(estimator.predict(frame[INPUT_COLUMNS]) - actual) / actual


def signed_errors(estimator, frame: pd.DataFrame) -> np.ndarray:
    """(pred - actual) / actual per row: the bias rule's figure (sql/25_window.sql)."""
    actual = frame[TARGET].to_numpy(dtype=float)
    return (estimator.predict(frame[INPUT_COLUMNS]) - actual) / actual


def leans(signed: np.ndarray, t: float, at_least: float) -> bool:
    """The bias rule (sql/26_rules.sql) on ``signed`` errors.

    Their mean is more than ``t`` standard errors and more than ``at_least`` from 0.
    """
    n = len(signed)
    if n < 2:
        return False
    mean, sd = float(np.mean(signed)), float(np.std(signed, ddof=1))
    return abs(mean) > at_least and abs(mean) * np.sqrt(n) > t * sd


def shift_start(signed: np.ndarray, direction: float, min_before: int = 3,
                min_after: int = 3, min_z: float = 3.0) -> int | None:
    """Where a run of signed errors shifted ``direction`` (+1 or -1), or None.

    The index of the first shifted record; None when no split shows a shift. Each split
    with ``min_before`` records before it and ``min_after`` after is scored by the
    rank-sum z statistic of the records after it (Mann-Whitney): ranks, so a fish
    mis-weighed by 40 % counts as one high rank, not as a mean of its own. The split with
    the largest z, if it reaches ``min_z``.
    """
    ranks = rankdata(direction * np.asarray(signed, dtype=float))
    n = len(ranks)
    best, best_z = None, min_z
    for j in range(min_before, n - min_after + 1):
        after = n - j
        z = ((ranks[j:].sum() - after * (n + 1) / 2)
             / np.sqrt(j * after * (n + 1) / 12))
        if z > best_z:
            best, best_z = j, z
    return best


def metrics(estimator, frame: pd.DataFrame) -> dict[str, float]:
    predicted = estimator.predict(frame[INPUT_COLUMNS])
    actual = frame[TARGET].to_numpy(dtype=float)
    return {
        "n": int(len(frame)),
        "mean_relative_error": float(np.mean(np.abs(predicted - actual) / actual)),
        "mae": float(mean_absolute_error(actual, predicted)),
        "r2": float(r2_score(actual, predicted)) if len(frame) > 1 else float("nan"),
    }


LatestFn = Callable[[int, "int | None", "str | None", "int | None"], list[dict[str, Any]]]


def select_training_records(latest: LatestFn, species_seen: Iterable[str], before_ms: int,
                            n_latest: int = 50, memory_k: int = 25,
                            changes: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """The newest ``n_latest`` records before ``before_ms`` plus species memory.

    ``latest(n, before_ms, species, since_ms)`` returns the ``n`` newest stored records
    with ``since_ms <= Timestamp < before_ms`` (of ``species`` only, when given), newest
    first - the store's ``latest``. ``changes`` maps a species whose own relation
    changed to the Timestamp where the change began: its older records describe a fish
    that no longer comes, so they are left out of both parts (memory must not bring the
    old behaviour back). Pass ``before_ms = trigger
    Timestamp + 1`` to include the triggering record. Every species in
    ``species_seen`` (all species ever stored) that has fewer than ``memory_k`` records
    among the newest is topped up with its own newest records, so a species that is
    absent from the recent stream is not forgotten and a new species gets at least
    ``memory_k`` records once that many exist. Returned oldest first, without duplicates.
    """
    changes = changes or {}

    def current(r: dict[str, Any]) -> bool:
        return r["Timestamp"] >= changes.get(r["Species"], 0)

    chosen = {(r["Fish_Id"], r["Timestamp"]): r
              for r in latest(n_latest, before_ms, None, None) if current(r)}
    counts: dict[str, int] = {}
    for r in chosen.values():
        counts[r["Species"]] = counts.get(r["Species"], 0) + 1
    for species in sorted(set(species_seen)):
        have = counts.get(species, 0)
        if have >= memory_k:
            continue
        for r in latest(memory_k, before_ms, species, changes.get(species)):
            key = (r["Fish_Id"], r["Timestamp"])
            if key not in chosen and have < memory_k:
                chosen[key] = r
                have += 1
    return sorted(chosen.values(), key=lambda r: (r["Timestamp"], r["Fish_Id"]))


def admitted_species(known: Iterable[str], first: Iterable[str], stored: dict[str, int],
                     limit: int) -> set[str]:
    """The species a new model may learn, at most ``limit`` (``max_species``).

    Species names come from the input, so a broken or hostile producer can invent any
    number of them; each would be one more retrain and one more species in every model
    after it. A model keeps every species the current one ``known`` (even beyond a limit
    lowered since), then takes ``first`` (the species the event is about), then the other
    ``stored`` species, most records first, while there is room.
    """
    admitted = set(known)
    for species in [*first, *sorted(stored, key=lambda s: (-stored[s], s))]:
        if len(admitted) >= limit:
            break
        admitted.add(species)
    return admitted


# -- promotion gate ----------------------------------------------------------------
def loo_gate(candidate: SpeciesShrinkageRegressor, current, frame: pd.DataFrame,
             current_trained_until_ms: int | None = None, min_unseen: int = 5,
             margin: float = 0.0) -> dict[str, Any]:
    """Should a fitted candidate replace the current model? A paired, out-of-sample test.

    Both models are scored on the same records of the candidate's training set
    ``frame``: the candidate by its exact leave-one-out relative errors (it never sees
    the record it predicts), the current model by its plain errors. Only records the
    current model cannot have trained on are used - ``Timestamp`` after
    ``current_trained_until_ms``, the newest record of its own training set - when at
    least ``min_unseen`` exist; otherwise all records (conservative: the current model
    is then partly scored in-sample). Promote when the candidate's mean is lower by
    more than ``margin`` (relative).
    """
    mask = np.ones(len(frame), dtype=bool)
    if current_trained_until_ms is not None:
        unseen = frame["Timestamp"].to_numpy() > current_trained_until_ms
        if unseen.sum() >= min_unseen:
            mask = unseen
    cand = float(np.mean(candidate.loo_relative_errors_[mask]))
    curr = float(np.mean(relative_errors(current, frame[mask])))
    return {"candidate_loo": cand, "current": curr, "n": int(mask.sum()),
            "promote": bool(cand < curr * (1.0 - margin))}


# -- refinement --------------------------------------------------------------------
def refinement_due(store_counts: dict[str, int], evidence_at_promotion: dict[str, int],
                   min_records: int) -> list[str]:
    """Species with >= ``min_records`` stored records that had fewer at the last promotion.

    ``evidence_at_promotion[s]`` is, for the current model, max(store count of ``s``
    when it was promoted, records of ``s`` in its training set) - so the bootstrap
    species (trained on 100 records outside the store) is never "refined".
    """
    return sorted(s for s, n in store_counts.items()
                  if n >= min_records > evidence_at_promotion.get(s, 0))

"""Which rule should catch a change inside a species? An event-time simulation.

Run: ``python -m tests.analysis.change_rules [seeds]`` (about a minute; not a test).

The model is the bootstrap model (100 simulated salmon); each run sends 20 well-predicted
salmon, then 60 changed ones, and reports how many changed fish each rule needs to fire
(0 = on the first changed fish). A stationary stream of 900 salmon with 3 % of them
mis-weighed by +40 % counts the false alarms (re-armed after each). The rules are those
the job can express in Flink SQL over the joined records (sql/25_window.sql): a
recursive statistic such as CUSUM or Page-Hinkley needs a stateful UDF, a Python round
trip per record. The numbers are in docs/adaptation.md.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from fishweight.models.bootstrap import bootstrap_frame
from fishweight.models.policy import fit
from fishweight.scenarios import load_scenario, sample_species

THRESHOLD = 0.15
WINDOW_FISH = 30  # a 1-minute window at one fish every 2 s
UNCHANGED = 20  # well-predicted fish before each change


def m_of_k(m: int, k: int):
    def rule(errors: np.ndarray) -> int | None:
        bad = errors > THRESHOLD
        return next((i for i in range(len(bad)) if bad[max(0, i - k + 1):i + 1].sum() >= m),
                    None)
    rule.__name__ = f"{m} of the last {k}"
    return rule


def moving_mean(k: int):
    def rule(errors: np.ndarray) -> int | None:
        return next((i for i in range(k - 1, len(errors))
                     if errors[i - k + 1:i + 1].mean() > THRESHOLD), None)
    rule.__name__ = f"mean of the last {k}"
    return rule


def window_mean(offset: int):
    """The mission's rule, running: AVG(Error) of the window so far, from 3 records; the
    change (at fish ``UNCHANGED``) falls ``offset`` fish into a window."""
    def rule(errors: np.ndarray) -> int | None:
        for i in range(len(errors)):
            start = i - (i - UNCHANGED + offset) % WINDOW_FISH
            so_far = errors[max(0, start):i + 1]
            if len(so_far) >= 3 and so_far.mean() > THRESHOLD:
                return i
        return None
    rule.__name__ = f"1-min window, change {offset * 2} s into it"
    return rule


RULES = [m_of_k(2, 3), m_of_k(3, 3), m_of_k(3, 4), m_of_k(3, 5), m_of_k(4, 6),
         moving_mean(3), moving_mean(5), window_mean(0), window_mean(15), window_mean(25)]
CHANGES = {"weight x1.2": {"weight_scale": 1.2}, "weight x1.25": {"weight_scale": 1.25},
           "weight x1.3": {"weight_scale": 1.3}, "weight x0.8": {"weight_scale": 0.8},
           "length read x1.2": {"length_read": 1.2}, "length read x1.25": {"length_read": 1.25}}


def salmon(n: int, rng, weight_scale=1.0, length_read=1.0, outlier_rate=0.0) -> pd.DataFrame:
    values = sample_species(load_scenario().species["salmon"], n, rng)
    weight = values["Weight"] * weight_scale
    weight = np.where(rng.random(n) < outlier_rate, weight * 1.4, weight)
    return pd.DataFrame({"Species": "salmon", "Length": values["Length"] * length_read,
                         "Height": values["Height"], "Weight": weight})


def errors(model, fish: pd.DataFrame) -> np.ndarray:
    predicted = model.predict(fish[["Species", "Length", "Height"]])
    return np.round(np.abs(predicted - fish["Weight"]) / fish["Weight"], 3).to_numpy()


def main(seeds: int = 200) -> None:
    model = fit(bootstrap_frame())
    print(f"fish of the change until the rule fires, mean / max over {seeds} seeds")
    print("| rule | " + " | ".join(CHANGES) + " | false alarms / 900 fish |")
    print("|---" * (len(CHANGES) + 2) + "|")
    for rule in RULES:
        row = []
        for change in CHANGES.values():
            delays = []
            for seed in range(seeds):
                rng = np.random.default_rng(seed)
                e = np.concatenate([errors(model, salmon(UNCHANGED, rng)),
                                    errors(model, salmon(60, rng, **change))])
                fired = rule(e)
                delays.append(60 if fired is None or fired < UNCHANGED
                              else fired - UNCHANGED)
            row.append(f"{np.mean(delays):.1f} / {max(delays)}")
        alarms = []
        for seed in range(seeds):
            e = errors(model, salmon(900, np.random.default_rng(10_000 + seed),
                                     outlier_rate=0.03))
            count, at = 0, 0
            while (fired := rule(e[at:])) is not None:
                count, at = count + 1, at + fired + 1
            alarms.append(count)
        print(f"| {rule.__name__} | " + " | ".join(row) + f" | {np.mean(alarms):.2f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)

"""Which rule should catch a change inside a species? An event-time simulation.

Run: ``python -m tests.analysis.change_rules [seeds] [--walleye]`` (about a minute; not a test).

The model is the bootstrap model (100 simulated salmon); each run sends 20 well-predicted
salmon, then 60 changed ones, and reports how many changed fish each rule needs to fire
(0 = on the first changed fish; 60 = not within them, or a false alarm before them). A
stationary stream of 900 salmon with 3 % of them mis-weighed by +40 % counts the false
alarms (re-armed after each). ``--walleye`` does the same for walleye, with a model that
knows them (100 of each): their relative noise is twice salmon's. The rules are those
the job can express in Flink SQL over the joined records (sql/25_window.sql): a
recursive statistic such as CUSUM or Page-Hinkley needs a stateful UDF, a Python round
trip per record. The first rules look at the errors above the threshold (large changes);
the t rules at the mean of the signed errors (a drift within the threshold: the bias
rule). The numbers are in docs/adaptation.md.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from fishweight.models.bootstrap import bootstrap_frame
from fishweight.models.policy import fit, leans
from fishweight.scenarios import load_scenario, sample_species

THRESHOLD = 0.15
WINDOW_FISH = 30  # a 1-minute window at one fish every 2 s
UNCHANGED = 20  # well-predicted fish before each change


def m_of_k(m: int, k: int):
    def rule(signed: np.ndarray) -> int | None:
        bad = np.abs(signed) > THRESHOLD
        return next((i for i in range(len(bad)) if bad[max(0, i - k + 1):i + 1].sum() >= m),
                    None)
    rule.__name__ = f"{m} of the last {k}"
    return rule


def moving_mean(k: int):
    def rule(signed: np.ndarray) -> int | None:
        errors = np.abs(signed)
        return next((i for i in range(k - 1, len(errors))
                     if errors[i - k + 1:i + 1].mean() > THRESHOLD), None)
    rule.__name__ = f"mean of the last {k}"
    return rule


def window_mean(offset: int):
    """The mission's rule, running: AVG(Error) of the window so far, from 3 records; the
    change (at fish ``UNCHANGED``) falls ``offset`` fish into a window."""
    def rule(signed: np.ndarray) -> int | None:
        errors = np.abs(signed)
        for i in range(len(errors)):
            start = i - (i - UNCHANGED + offset) % WINDOW_FISH
            so_far = errors[max(0, start):i + 1]
            if len(so_far) >= 3 and so_far.mean() > THRESHOLD:
                return i
        return None
    rule.__name__ = f"1-min window, change {offset * 2} s into it"
    return rule


def bias_t(k: int, t: float, at_least: float = 0.02):
    """The bias rule (sql/26_rules.sql): the mean signed error of the last k records is
    more than t standard errors and ``at_least`` from 0."""
    def rule(signed: np.ndarray) -> int | None:
        return next((i for i in range(k - 1, len(signed))
                     if leans(signed[i - k + 1:i + 1], t, at_least)), None)
    rule.__name__ = f"t > {t} over the last {k}"
    return rule


# Two tables: the rules over the threshold on large changes, the bias rule's options on
# changes within the threshold.
TABLES = [
    ([m_of_k(2, 3), m_of_k(3, 3), m_of_k(3, 4), m_of_k(3, 5), m_of_k(4, 6),
      moving_mean(3), moving_mean(5), window_mean(0), window_mean(15), window_mean(25)],
     {"weight x1.2": {"weight_scale": 1.2}, "weight x1.25": {"weight_scale": 1.25},
      "weight x1.3": {"weight_scale": 1.3}, "weight x0.8": {"weight_scale": 0.8},
      "length read x1.2": {"length_read": 1.2}, "length read x1.25": {"length_read": 1.25}}),
    ([bias_t(10, 5), bias_t(12, 5.5), bias_t(15, 4.5), bias_t(15, 5), bias_t(15, 5.5),
      bias_t(20, 5), bias_t(20, 5.5)],
     {"weight x1.03": {"weight_scale": 1.03}, "weight x1.05": {"weight_scale": 1.05},
      "weight x1.08": {"weight_scale": 1.08}, "weight x0.92": {"weight_scale": 0.92},
      "length read x1.05": {"length_read": 1.05}, "length read x1.1": {"length_read": 1.1}}),
]


def fish(species: str, n: int, rng, weight_scale=1.0, length_read=1.0,
         outlier_rate=0.0) -> pd.DataFrame:
    values = sample_species(load_scenario().species[species], n, rng)
    weight = values["Weight"] * weight_scale
    weight = np.where(rng.random(n) < outlier_rate, weight * 1.4, weight)
    return pd.DataFrame({"Species": species, "Length": values["Length"] * length_read,
                         "Height": values["Height"], "Weight": weight})


def signed(model, fish: pd.DataFrame) -> np.ndarray:
    """The job's Error with its sign, (predicted - actual) / actual, to 4 decimals."""
    predicted = model.predict(fish[["Species", "Length", "Height"]])
    return np.round((predicted - fish["Weight"]) / fish["Weight"], 4).to_numpy()


def main(seeds: int = 200, species: str = "salmon") -> None:
    frame = bootstrap_frame()
    if species != "salmon":
        frame = pd.concat([frame, bootstrap_frame(species=species)], ignore_index=True)
    model = fit(frame)
    print(f"{species}: fish of the change until the rule fires, mean / max over {seeds} seeds")
    for rules, changes in TABLES:
        table(model, species, seeds, rules, changes)


def table(model, species: str, seeds: int, rules, changes: dict) -> None:
    print("\n| rule | " + " | ".join(changes) + " | false alarms / 900 fish |")
    print("|---" * (len(changes) + 2) + "|")
    for rule in rules:
        row = []
        for change in changes.values():
            delays = []
            for seed in range(seeds):
                rng = np.random.default_rng(seed)
                e = np.concatenate([signed(model, fish(species, UNCHANGED, rng)),
                                    signed(model, fish(species, 60, rng, **change))])
                fired = rule(e)
                delays.append(60 if fired is None or fired < UNCHANGED
                              else fired - UNCHANGED)
            row.append(f"{np.mean(delays):.1f} / {max(delays)}")
        alarms = []
        for seed in range(seeds):
            e = signed(model, fish(species, 900, np.random.default_rng(10_000 + seed),
                                   outlier_rate=0.03))
            count, at = 0, 0
            while (fired := rule(e[at:])) is not None:
                count, at = count + 1, at + fired + 1
            alarms.append(count)
        print(f"| {rule.__name__} | " + " | ".join(row) + f" | {np.mean(alarms):.2f} |",
              flush=True)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(int(args[0]) if args else 200, "walleye" if "--walleye" in sys.argv else "salmon")

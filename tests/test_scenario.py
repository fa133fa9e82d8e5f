import dataclasses
import math

import numpy as np
import pytest

from fishweight.scenarios import MEASUREMENT, WEIGHT, ScenarioError, events, load_scenario

START = 1_700_000_000_000


def test_default_scenario_blocks():
    fish = [r for _, kind, r in events(load_scenario(), START) if kind == MEASUREMENT]
    assert len(fish) == 180
    assert [f["Fish_Id"] for f in fish] == list(range(1, 181))
    species = [f["Species"] for f in fish]
    assert species == ["salmon"] * 60 + ["walleye"] * 60 + ["salmon"] * 60


def _within(sample, mean, sd, sigmas=4.0):
    """Sample mean within `sigmas` standard errors; sample sd within `sigmas` of its SE."""
    n = len(sample)
    assert abs(np.mean(sample) - mean) <= sigmas * sd / math.sqrt(n), (np.mean(sample), mean)
    assert abs(np.std(sample, ddof=1) - sd) <= sigmas * sd / math.sqrt(2 * (n - 1)), (
        np.std(sample, ddof=1), sd)


def test_per_species_statistics_match_profiles():
    scenario = load_scenario()
    evs = events(scenario, START)
    weights = {r["Fish_Id"]: r["Weight"] for _, kind, r in evs if kind == WEIGHT}
    for name, profile in scenario.species.items():
        rows = [r for _, kind, r in evs if kind == MEASUREMENT and r["Species"] == name]
        length = np.array([r["Length"] for r in rows])
        height = np.array([r["Height"] for r in rows])
        weight = np.array([weights[r["Fish_Id"]] for r in rows])
        _within(length, profile.length.mean, profile.length.sd)
        _within(height, profile.height.mean, profile.height.sd)
        residual = weight - (profile.intercept + profile.length_coef * length
                             + profile.height_coef * height)
        _within(residual, 0.0, profile.noise_sd)


def test_values_rounded_to_three_decimals():
    for _, _, record in events(load_scenario(), START):
        for key in ("Length", "Height", "Weight"):
            if key in record:
                assert round(record[key], 3) == record[key]


def test_same_seed_same_data_other_seed_other_data():
    scenario = load_scenario()
    assert events(scenario, START) == events(load_scenario(), START)
    other = type(scenario)(**{**scenario.__dict__, "seed": scenario.seed + 1})
    assert events(other, START) != events(scenario, START)


def test_event_clock_spacing():
    evs = events(load_scenario(), START)
    measured = {r["Fish_Id"]: t for t, kind, r in evs if kind == MEASUREMENT}
    weighed = {r["Fish_Id"]: t for t, kind, r in evs if kind == WEIGHT}
    times = [measured[i] for i in sorted(measured)]
    assert np.all(np.diff(times) == 2000)
    assert all(weighed[i] - measured[i] == 10_000 for i in measured)
    assert [t for t, _, _ in evs] == sorted(t for t, _, _ in evs)


def test_tutorial_wire_writes_the_tutorials_records():
    """The same fish and times; ids as strings and no Timestamp, as its producers send."""
    ours = load_scenario()
    tutorial = dataclasses.replace(ours, wire="tutorial")
    for (t1, k1, mine), (t2, k2, theirs) in zip(events(ours, START), events(tutorial, START),
                                                 strict=True):
        assert (t1, k1) == (t2, k2) and mine["Timestamp"] == t1
        assert theirs == {**{k: v for k, v in mine.items() if k != "Timestamp"},
                          "Fish_Id": str(mine["Fish_Id"])}


def test_new_species_needs_only_a_profile(tmp_path):
    path = tmp_path / "pike.toml"
    path.write_text("""
seed = 7
interval_s = 1.0
weight_delay_s = 4.0
[species.pike]
length = { mean = 60.0, sd = 6.0 }
height = { mean = 12.0, sd = 1.5 }
weight = { length = 0.03, height = 0.05, noise_sd = 0.05 }
[[sequence]]
species = "pike"
count = 5
""")
    evs = events(load_scenario(path), START)
    assert {r["Species"] for _, _, r in evs} == {"pike"}
    assert len(evs) == 10
    assert evs[-1][0] - START == 4 * 1000 + 4000


@pytest.mark.parametrize("text, message", [
    ("[[sequence]]\nspecies='x'\ncount=1", "needs at least one \\[species"),
    ("[species.a]\nlength={mean=1,sd=1}\nheight={mean=1,sd=1}\n"
     "weight={length=1,height=1,noise_sd=0}\n[[sequence]]\nspecies='b'\ncount=1",
     "names species 'b'"),
    ("[species.a]\nlength={mean=1}\nheight={mean=1,sd=1}\n"
     "weight={length=1,height=1,noise_sd=0}\n[[sequence]]\nspecies='a'\ncount=1",
     "species.a.length: missing 'sd'"),
    ("not toml [", "not valid TOML"),
    ("wire='avro'\n[species.a]\nlength={mean=1,sd=1}\nheight={mean=1,sd=1}\n"
     "weight={length=1,height=1,noise_sd=0}\n[[sequence]]\nspecies='a'\ncount=1",
     "wire must be one of fishweight, tutorial, got 'avro'"),
])
def test_bad_scenarios_are_explained(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=message):
        load_scenario(path)

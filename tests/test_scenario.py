import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from fishweight.jobs.simulate import default_start_ms
from fishweight.scenarios import (
    MEASUREMENT,
    WEIGHT,
    ScenarioError,
    events,
    generate_fish,
    load_scenario,
    sample_species,
    scenario_text,
)

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


_ONE = ("[species.a]\nlength={mean=1,sd=1}\nheight={mean=1,sd=1}\n"
        "weight={length=1,height=1,noise_sd=0}\n[[sequence]]\nspecies='a'\ncount=1")


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
    # Each of these was accepted, then failed in the simulator or produced nonsense.
    (f"interval_s=nan\n{_ONE}", "interval_s: expected a finite number, got nan"),
    (f"weight_delay_s=inf\n{_ONE}", "weight_delay_s: expected a finite number, got inf"),
    (f"interval_s=0.0004\n{_ONE}", "interval_s must be >= 0.001"),
    (f"seed='abc'\n{_ONE}", "seed: expected an integer >= 0, got 'abc'"),
    (f"first_fish_id=0\n{_ONE}", "first_fish_id: expected an integer >= 1, got 0"),
    (f"weight_delay=3\n{_ONE}", "unknown key\\(s\\) weight_delay"),
    (_ONE.replace("noise_sd=0", "noise_sd=nan"), "noise_sd: expected a finite number"),
    (_ONE.replace("count=1", "count=true"), "count must be a positive integer"),
    (_ONE.replace("count=1", "count=1\nweight_scale=2"), "unknown key\\(s\\) weight_scale"),
    (_ONE.replace("[[sequence]]", "[sequence]"), "sequence must be \\[\\[sequence\\]\\]"),
])
def test_bad_scenarios_are_explained(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=message):
        load_scenario(path)


# Profiles derived from others, same-species drifts, calibration and outliers.

SCENARIOS = Path(__file__).parent / "scenarios"
SALMON = """
[species.salmon]
length = { mean = 88.0, sd = 5.0 }
height = { mean = 19.0, sd = 1.0 }
weight = { intercept = 0.0, length = 0.05, height = 0.01, noise_sd = 0.1 }
"""


def _scenario(tmp_path, text, blocks=(("salmon", 50), ("changed", 50))):
    path = tmp_path / "s.toml"
    path.write_text("seed = 11\n" + SALMON + text + "".join(
        f"[[sequence]]\nspecies = '{key}'\ncount = {n}\n" for key, n in blocks))
    return load_scenario(path)


def _old_generation(scenario):
    """What generate_fish did before profiles could change: the streams must stay."""
    out = []
    for index, block in enumerate(scenario.sequence):
        p = scenario.species[block.species]
        rng = np.random.default_rng([scenario.seed, index])
        length = rng.normal(p.length.mean, p.length.sd, block.count)
        height = rng.normal(p.height.mean, p.height.sd, block.count)
        noise = rng.normal(0.0, p.noise_sd, block.count)
        weight = p.intercept + p.length_coef * length + p.height_coef * height
        out += [(block.species, float(a), float(b), float(c)) for a, b, c in zip(
            np.round(length, 3), np.round(height, 3), np.round(weight + noise, 3), strict=True)]
    return out


@pytest.mark.parametrize("name", [None, "gradual_drift.toml", "slight_drift.toml",
                                  "three_species.toml"])
def test_existing_scenarios_draw_what_they_always_drew(name):
    scenario = load_scenario(name and SCENARIOS / name)
    fish = generate_fish(scenario)
    assert [(f["Species"], f["Length"], f["Height"], f["Weight"]) for f in fish] == (
        _old_generation(scenario))
    assert [f["Profile"] for f in fish] == [f["Species"] for f in fish]
    assert not any(f["Outlier"] for f in fish)


def test_a_profile_may_emit_another_name(tmp_path):
    scenario = _scenario(tmp_path, """
[species.changed]
name = "salmon"
length = { mean = 70.0, sd = 5.0 }
height = { mean = 15.0, sd = 1.0 }
weight = { length = 0.05, height = 0.01, noise_sd = 0.1 }
""")
    assert [b.species for b in scenario.sequence] == ["salmon", "changed"]
    assert scenario.sequence[1].profile == "changed"
    assert scenario.emitted_name("changed") == scenario.species["changed"].name == "salmon"
    fish = generate_fish(scenario)
    assert {f["Species"] for f in fish} == {"salmon"}
    assert [f["Profile"] for f in fish] == ["salmon"] * 50 + ["changed"] * 50
    assert scenario.profile_of(1) == "salmon" and scenario.profile_of(51) == "changed"
    assert scenario.profile_of(0) is None and scenario.profile_of(101) is None
    assert [(b.species, first, last) for b, first, last in scenario.block_ranges()] == [
        ("salmon", 1, 50), ("changed", 51, 100)]


def _same_stream(a, b):
    """Block 1 of both scenarios: the same draws, whatever the profiles make of them."""
    return [f for f in generate_fish(a) if f["Fish_Id"] > 50], [
        f for f in generate_fish(b) if f["Fish_Id"] > 50]


def test_a_derived_profile_copies_its_base(tmp_path):
    same = _scenario(tmp_path, "[species.changed]\nbase = 'salmon'\n"
                     "weight_scale = 1.0\nlength_read_scale = 1.0\noutlier_rate = 0.0\n")
    plain = _scenario(tmp_path, "", blocks=(("salmon", 50), ("salmon", 50)))
    assert same.species["changed"] == plain.species["salmon"]
    mine, theirs = _same_stream(same, plain)
    assert [{**f, "Profile": "salmon"} for f in mine] == theirs
    assert events(same, START) == events(plain, START)


def test_weight_scale_makes_the_same_fish_heavier(tmp_path):
    heavy = _scenario(tmp_path, "[species.changed]\nbase = 'salmon'\nweight_scale = 1.25\n")
    plain = _scenario(tmp_path, "", blocks=(("salmon", 50), ("salmon", 50)))
    p = plain.species["salmon"]
    for h, f in zip(*_same_stream(heavy, plain), strict=True):
        assert (h["Length"], h["Height"], h["Species"]) == (f["Length"], f["Height"], "salmon")
        # W = 1.25 * formula + noise: the noise (f's residual) is not scaled.
        noise = f["Weight"] - p.true_weight(f["Length"], f["Height"])
        expected = 1.25 * p.true_weight(f["Length"], f["Height"]) + noise
        assert abs(h["Weight"] - expected) < 0.002


def test_a_miscalibrated_camera_reports_longer_fish_of_the_same_weight(tmp_path):
    camera = _scenario(tmp_path, "[species.changed]\nbase = 'salmon'\n"
                       "length_read_scale = 1.25\nlength_read_offset = -2.0\n")
    plain = _scenario(tmp_path, "", blocks=(("salmon", 50), ("salmon", 50)))
    profile = camera.species["changed"]
    for c, f in zip(*_same_stream(camera, plain), strict=True):
        assert (c["Weight"], c["Height"]) == (f["Weight"], f["Height"])
        assert abs(c["Length"] - (1.25 * f["Length"] - 2.0)) < 0.002
        assert abs(profile.true_inputs(c["Length"], c["Height"])[0] - f["Length"]) < 0.002


def test_overrides_are_partial_and_chain(tmp_path):
    scenario = _scenario(tmp_path, """
[species.changed]
base = "mid"
length = { sd = 9.0 }
[species.mid]
base = "salmon"
name = "salmon"
weight = { noise_sd = 0.3 }
weight_scale = 1.1
""")
    salmon, changed = scenario.species["salmon"], scenario.species["changed"]
    assert changed.length.mean == salmon.length.mean and changed.length.sd == 9.0
    assert changed.noise_sd == 0.3 and changed.length_coef == salmon.length_coef
    assert changed.weight_scale == 1.1 and changed.name == "salmon"


def test_outliers_are_drawn_after_everything_else(tmp_path):
    bad = _scenario(tmp_path, "[species.changed]\nbase = 'salmon'\noutlier_rate = 0.1\n")
    plain = _scenario(tmp_path, "", blocks=(("salmon", 50), ("salmon", 50)))
    mine, theirs = _same_stream(bad, plain)
    assert sum(f["Outlier"] for f in mine) == 5
    for m, f in zip(mine, theirs, strict=True):
        assert (m["Length"], m["Height"]) == (f["Length"], f["Height"])
        assert abs(m["Weight"] - f["Weight"] * (1.4 if m["Outlier"] else 1.0)) < 0.002
    assert generate_fish(bad) == generate_fish(bad)
    profile = bad.species["changed"]
    clean = sample_species(profile, 50, np.random.default_rng([11, 1]), outliers=False)
    assert [float(w) for w in clean["Weight"]] == [f["Weight"] for f in theirs]


def test_the_new_scenario_files():
    expected = {
        "salmon_heavier.toml": [("salmon", 60), ("salmon_heavy", 60)],
        "salmon_heavier_back.toml": [("salmon", 45), ("salmon_heavy", 45), ("salmon", 45)],
        "camera_recalibrated.toml": [("salmon", 45), ("salmon_camera_long", 60)],
        "stationary_outliers.toml": [("salmon", 900)],
    }
    for name, blocks in expected.items():
        scenario = load_scenario(SCENARIOS / name)
        assert [(b.species, b.count) for b in scenario.sequence] == blocks, name
        assert {p.name for p in scenario.species.values()} == {"salmon"}, name
        assert (scenario.interval_s, scenario.weight_delay_s) == (2.0, 10.0)
    heavy = load_scenario(SCENARIOS / "salmon_heavier.toml").species
    assert heavy["salmon_heavy"] == dataclasses.replace(heavy["salmon"], weight_scale=1.25)
    back = load_scenario(SCENARIOS / "salmon_heavier_back.toml").species
    assert back["salmon_heavy"].weight_scale == 1.2
    camera = load_scenario(SCENARIOS / "camera_recalibrated.toml").species
    assert camera["salmon_camera_long"].length_read_scale == 1.25
    fish = generate_fish(load_scenario(SCENARIOS / "stationary_outliers.toml"))
    assert sum(f["Outlier"] for f in fish) == 27


PROFILE = "length={mean=1,sd=1}\nheight={mean=1,sd=1}\nweight={length=1,height=1,noise_sd=0}\n"
ONE_BLOCK = "[[sequence]]\nspecies='a'\ncount=1\n"


@pytest.mark.parametrize("tables, message", [
    ("[species.a]\nbase='x'\n", "species.a.base names species 'x', defined are \\['a'\\]"),
    ("[species.a]\nbase='a'\n", "species bases form a cycle: a -> a"),
    ("[species.a]\nbase='b'\n[species.b]\nbase='c'\n[species.c]\nbase='b'\n",
     "species bases form a cycle: b -> c -> b"),
    (f"[species.a]\n{PROFILE}weight_scale=0\n", "species.a.weight_scale must be > 0"),
    (f"[species.a]\n{PROFILE}[species.b]\nbase='a'\nlength_read_scale=-1.25\n",
     "species.b.length_read_scale must be > 0"),
    (f"[species.a]\n{PROFILE}outlier_rate=1.5\n", "outlier_rate must be between 0 and 1"),
    (f"[species.a]\n{PROFILE}outlier_scale=0\n", "species.a.outlier_scale must be > 0"),
    (f"[species.a]\n{PROFILE}weight_scal=2\n", "species.a: unknown key\\(s\\) weight_scal"),
    (f"[species.a]\n{PROFILE}[species.b]\nbase='a'\nweight={{slope=1}}\n",
     "species.b.weight: unknown key\\(s\\) slope"),
    (f"[species.a]\n{PROFILE}name=''\n", "species.a.name must be a non-empty string"),
    (f"[species.a]\n{PROFILE}[species.b]\nbase='a'\nname='a'\n[species.x]\nbase='a'\n"
     "name='b'\n", "species.b emits 'a', but species.x emits 'b'"),
    (f"[species.a]\n{PROFILE}weight_scale='big'\n",
     "species.a.weight_scale: expected a number, got 'big'"),
    ("[species.a]\nlength={mean=1,sd=1}\nheight={mean=1,sd=1}\n"
     "weight={length=1,height=1,noise_sd=-1}\n", "species.a.weight.noise_sd must be >= 0"),
])
def test_bad_profiles_are_explained(tmp_path, tables, message):
    path = tmp_path / "bad.toml"
    path.write_text(tables + ONE_BLOCK)
    with pytest.raises(ScenarioError, match=message):
        load_scenario(path)


def test_the_first_model_learns_the_scenarios_salmon_or_the_defaults(tmp_path):
    """`fishweight demo --scenario` starts from a model of that scenario's salmon."""
    from fishweight.models.bootstrap import bootstrap_frame

    heavier = tmp_path / "heavier.toml"
    heavier.write_text(scenario_text().replace("[species.walleye]",
                                               "weight_scale = 1.3\n\n[species.walleye]", 1))
    default_mean = bootstrap_frame()["Weight"].mean()
    assert bootstrap_frame(load_scenario(heavier))["Weight"].mean() == pytest.approx(
        1.3 * default_mean, rel=0.02)
    pike_only = tmp_path / "pike.toml"
    pike_only.write_text(f"{_ONE}")  # no salmon: the default's
    assert bootstrap_frame(pike_only)["Weight"].mean() == pytest.approx(default_mean)


def test_a_run_faster_than_real_time_ends_at_the_wall_clock():
    """The simulator's default start: the last record time is now, not ahead of it (the
    job rejects a record time more than max_clock_skew_s ahead of its clock)."""
    scenario = load_scenario()  # 180 fish every 2 s, weighed 10 s later: 368 s
    now_s = 1_800_000_000.0
    assert default_start_ms(scenario, 1.0, now_s) == 1_800_000_000_000
    for speed in (0.0, 5.0, 40.0):
        start = default_start_ms(scenario, speed, now_s)
        last_event = max(t for t, _, _ in events(scenario, start))
        sent_at = now_s * 1000 + (0 if speed == 0 else (last_event - start) / speed)
        assert last_event <= sent_at + 1 and last_event >= sent_at - 1, speed

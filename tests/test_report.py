"""The report's drift measures on made-up runs: no Kafka, no Flink.

A fake run serves each fish by a chosen model version and gives it a small error when
that version learnt the fish's profile, a large one otherwise.
"""

from pathlib import Path

import pytest

from fishweight.jobs.report import (
    Observed,
    RunData,
    drifts,
    learnt_profiles,
    noise_floor,
    phases,
    summarize,
)
from fishweight.runtime.settings import Settings
from fishweight.scenarios import generate_fish, load_scenario

SCENARIOS = Path(__file__).parent / "scenarios"
START = 1_700_000_000_000
GOOD, BAD = 0.02, 0.3


def bootstrap_manifest():
    return {"version": 1, "parent_version": None, "species": ["salmon"],
            "training_window": {"source": "bootstrap: 100 simulated salmon, seed 200"}}


def trained_manifest(version, parent, scenario, fish_ids):
    species = sorted({scenario.emitted_name(scenario.profile_of(i)) for i in fish_ids})
    return {"version": version, "parent_version": parent, "species": species,
            "training_window": {"fish_ids": list(fish_ids)}}


def fake_diffs(scenario, serving, manifests):
    """Diffs of every fish; ``serving``: (first Fish_Id, version) from that fish on."""
    learnt = learnt_profiles(manifests, scenario)
    out = {}
    for i, fish in enumerate(generate_fish(scenario)):
        version = max((v for first, v in serving if first <= fish["Fish_Id"]), default=1)
        known = learnt.get(version, {}).get(fish["Species"]) == fish["Profile"]
        out[fish["Fish_Id"]] = {
            "Fish_Id": fish["Fish_Id"], "Species": fish["Species"], "Length": fish["Length"],
            "Height": fish["Height"], "ActualWeight": fish["Weight"],
            "PredictedWeight": fish["Weight"] * (1 + (GOOD if known else BAD)),
            "Error": GOOD if known else BAD, "ModelVersion": version,
            "Timestamp": START + i * 2000 + 10_000}
    return out


def fake_run(scenario, serving, manifests):
    """A RunData as the demo would have saved it, for ``summarize``."""
    by_fish = fake_diffs(scenario, serving, manifests)
    data = RunData(manifests=manifests, produced={"measurements": len(by_fish),
                                                  "weights": len(by_fish)})
    for d in by_fish.values():
        data.diffs.append(Observed(d, d["Timestamp"] + 500))
        data.predictions.append(Observed(
            {"Fish_Id": d["Fish_Id"], "Species": d["Species"], "Timestamp": d["Timestamp"],
             "Prediction": {"ModelVersion": d["ModelVersion"]}}, d["Timestamp"] - 9_500))
    for first, version in serving:
        event = {"Species": [by_fish[first - 5]["Species"]], "Fish_Id_Start": first - 30,
                 "Fish_Id_End": first - 5}
        data.retrains.append(Observed(event, by_fish[first - 5]["Timestamp"] + 1000))
        data.decisions.append({"action": "promoted", "version": version, "event": event,
                               "reason": "window", "detail": "gate"})
    return data


def _drifts(scenario, serving, manifests, threshold=0.15):
    by_fish = fake_diffs(scenario, serving, manifests)
    return drifts(by_fish, phases(scenario), manifests, scenario, threshold)


def test_phases_carry_the_emitted_species_and_the_profile():
    scenario = load_scenario(SCENARIOS / "salmon_heavier_back.toml")
    assert [(p["species"], p["profile"], p["first_fish_id"], p["last_fish_id"])
            for p in phases(scenario)] == [("salmon", "salmon", 1, 45),
                                           ("salmon", "salmon_heavy", 46, 90),
                                           ("salmon", "salmon", 91, 135)]


def test_a_new_species_is_a_drift_and_the_returning_salmon_are_known():
    """The default scenario: the figures the species-based report gave."""
    scenario = load_scenario()
    manifests = {1: bootstrap_manifest(),
                 2: trained_manifest(2, 1, scenario, range(31, 81))}
    assert learnt_profiles(manifests, scenario) == {
        1: {"salmon": "salmon"}, 2: {"salmon": "salmon", "walleye": "walleye"}}
    walleye, salmon = _drifts(scenario, [(85, 2)], manifests)
    assert (walleye["species"], walleye["profile"], walleye["first_fish_id"]) == (
        "walleye", "walleye", 61)
    assert not walleye["known_at_start"]
    assert walleye["fish_until_served"] == walleye["fish_until_recovery"] == 24
    assert walleye["over_threshold_until_recovery"] == 24
    assert walleye["mean_error_after_recovery"] == GOOD
    assert (salmon["species"], salmon["profile"]) == ("salmon", "salmon")
    assert salmon["known_at_start"] and salmon["fish_until_recovery"] == 0


def heavier_back():
    """45 salmon, 45 heavier, 45 salmon; v2 learns the heavy ones, v3 the original back."""
    scenario = load_scenario(SCENARIOS / "salmon_heavier_back.toml")
    manifests = {1: bootstrap_manifest(),
                 2: trained_manifest(2, 1, scenario, range(16, 61)),
                 3: trained_manifest(3, 2, scenario, range(61, 101))}
    return scenario, manifests, [(65, 2), (105, 3)]


def test_a_changed_profile_of_one_species_is_a_drift_and_so_is_the_way_back():
    scenario, manifests, serving = heavier_back()
    assert learnt_profiles(manifests, scenario) == {
        1: {"salmon": "salmon"}, 2: {"salmon": "salmon_heavy"}, 3: {"salmon": "salmon"}}
    heavy, back = _drifts(scenario, serving, manifests)
    assert (heavy["species"], heavy["profile"], heavy["first_fish_id"]) == (
        "salmon", "salmon_heavy", 46)
    assert not heavy["known_at_start"] and heavy["fish_until_served"] == 19
    # v2 fits the heavy salmon: the original ones returning are a drift again.
    assert (back["species"], back["profile"], back["first_fish_id"]) == ("salmon", "salmon", 91)
    assert not back["known_at_start"] and back["fish_until_served"] == 14
    assert back["over_threshold_until_recovery"] == 14
    assert back["mean_error_after_recovery"] == GOOD


def test_a_block_is_known_at_start_when_the_serving_model_already_learnt_it():
    """A model trained on the heavy block that then fell back to the original salmon."""
    scenario, manifests, _ = heavier_back()
    manifests[2] = trained_manifest(2, 1, scenario, range(46, 91))
    manifests[3] = trained_manifest(3, 2, scenario, range(60, 92))  # newest: fish 91
    heavy, back = _drifts(scenario, [(80, 2), (91, 3)], manifests)
    assert not heavy["known_at_start"] and back["known_at_start"]


def test_summary_names_the_first_same_species_drift():
    scenario, manifests, serving = heavier_back()
    summary = summarize(fake_run(scenario, serving, manifests), scenario, Settings())
    assert summary["drift_start_fish_id"] == 46
    assert [(d["species"], d["profile"], d["known_at_start"]) for d in summary["drifts"]] == [
        ("salmon", "salmon_heavy", False), ("salmon", "salmon", False)]
    assert [p["profile"] for p in summary["per_phase"]] == ["salmon", "salmon_heavy", "salmon"]
    assert [v["trigger_species"] for v in summary["versions_promoted"]] == [["salmon"]] * 2
    assert summary["recovery_fish_id"] == 65
    for key in ("threshold", "counts", "decisions", "retrain_events", "per_phase"):
        assert key in summary


def test_the_newest_training_fish_decides_by_timestamp_then_fish_id():
    scenario, manifests, _ = heavier_back()
    manifests = {1: manifests[1], 2: trained_manifest(2, 1, scenario, [40, 50])}
    assert learnt_profiles(manifests, scenario)[2] == {"salmon": "salmon_heavy"}
    late = learnt_profiles(manifests, scenario, {40: START + 99_000, 50: START})
    assert late[2] == {"salmon": "salmon"}
    partly = learnt_profiles(manifests, scenario, {40: START + 99_000})  # 50 has none
    assert partly[2] == {"salmon": "salmon_heavy"}


def test_versions_inherit_from_their_parent_and_forget_dropped_species():
    scenario, manifests, _ = heavier_back()
    outside = {"species": ["salmon"], "training_window": {"fish_ids": [1000]}}
    manifests[3] = {**outside, "parent_version": 1}   # trained after a rollback to v1
    manifests[4] = {**outside, "parent_version": 2}
    manifests[5] = {**outside}                        # no parent: the version before
    manifests[6] = {**bootstrap_manifest(), "parent_version": 5}
    learnt = learnt_profiles(manifests, scenario)
    assert [learnt[v] for v in (3, 4, 5)] == [{"salmon": "salmon"}, {"salmon": "salmon_heavy"},
                                              {"salmon": "salmon_heavy"}]
    assert learnt[6] == {"salmon": "salmon"}     # a new bootstrap knows what it sampled
    three = load_scenario(SCENARIOS / "three_species.toml")
    dropped = {1: bootstrap_manifest(), 2: trained_manifest(2, 1, three, range(61, 121))}
    assert learnt_profiles(dropped, three)[2] == {"walleye": "walleye"}


def test_noise_floor_uses_the_profile_and_undoes_the_calibration():
    for name, key in (("camera_recalibrated.toml", "salmon_camera_long"),
                      ("salmon_heavier.toml", "salmon_heavy")):
        scenario = load_scenario(SCENARIOS / name)
        noise_sd = scenario.species[key].noise_sd
        for fish in generate_fish(scenario):
            diff = {**fish, "ActualWeight": fish["Weight"]}
            floor = noise_floor(diff, scenario)
            # |noise| / weight, the noise N(0, 0.1) on ~4.6 kg: never near 25 %.
            assert floor < 5 * noise_sd / fish["Weight"], (name, fish)
        naive = {**diff, "Fish_Id": 10_000}  # outside the run: the species' profile
        assert noise_floor(naive, scenario) > 0.15


def test_noise_floor_of_an_outlier_is_its_mis_weighing():
    scenario = load_scenario(SCENARIOS / "stationary_outliers.toml")
    floors = [(f["Outlier"], noise_floor({**f, "ActualWeight": f["Weight"]}, scenario))
              for f in generate_fish(scenario)]
    assert all(floor > 0.2 for outlier, floor in floors if outlier)
    assert all(floor < 0.1 for outlier, floor in floors if not outlier)


@pytest.mark.parametrize("name", [None, "gradual_drift.toml", "slight_drift.toml",
                                  "three_species.toml"])
def test_profile_knowledge_is_species_knowledge_when_every_species_has_one_profile(name):
    """The old rule (a version knows a block iff its species is in its manifest)."""
    scenario = load_scenario(name and SCENARIOS / name)
    ids = [first for _, first, _ in scenario.block_ranges()]
    manifests = {1: bootstrap_manifest()}
    for v, first in enumerate(ids[1:], start=2):
        manifests[v] = trained_manifest(v, v - 1, scenario, range(first, first + 20))
    learnt = learnt_profiles(manifests, scenario)
    for v, manifest in manifests.items():
        for p in phases(scenario):
            assert (learnt[v].get(p["species"]) == p["profile"]) == (
                p["species"] in manifest["species"])


def test_each_phase_splits_at_its_own_recovery_and_the_table_numbers_blocks():
    """Two drifts, each served by its own version: the second phase's 'before' is its own
    bad fish, not none (the first version's recovery applied to every phase)."""
    scenario, manifests, serving = heavier_back()
    summary = summarize(fake_run(scenario, serving, manifests), scenario, Settings())
    first, heavy, back = summary["per_phase"]
    assert first["mean_error_before_recovery"] is None and first["fish_after_recovery"] == 45
    assert heavy["mean_error_before_recovery"] == BAD and heavy["fish_after_recovery"] == 26
    assert back["mean_error_before_recovery"] == BAD and back["fish_after_recovery"] == 31
    assert [d["block"] for d in summary["drifts"]] == [2, 3]


def test_the_accounting_checks_fish_ids_so_a_duplicate_cannot_hide_a_missing_record():
    scenario, manifests, serving = heavier_back()
    data = fake_run(scenario, serving, manifests)
    assert summarize(data, scenario, Settings())["counts"]["accounted"]
    lost = next(p for p in data.predictions if p.value["Fish_Id"] == 100)
    data.predictions.remove(lost)
    data.predictions.append(data.predictions[10])  # at-least-once: one twice
    counts = summarize(data, scenario, Settings())["counts"]
    assert counts["predictions"] == counts["measurements_produced"]  # the counts agree...
    assert not counts["accounted"]  # ...the ids do not
    assert counts["measurements_missing"] == [100] and counts["duplicate_predictions"] == 1


def test_a_refinement_is_reported_without_a_retrain_event(tmp_path):
    from fishweight.jobs.report_files import write_markdown

    scenario, manifests, serving = heavier_back()
    data = fake_run(scenario, serving, manifests)
    data.decisions[1] = {"action": "promoted", "version": 3, "reason": "refinement",
                         "event": {"Species": ["salmon"], "Count": 40}, "detail": "gate"}
    summary = summarize(data, scenario, Settings())
    write_markdown(summary, tmp_path / "report.md", "report.png")
    text = (tmp_path / "report.md").read_text()
    assert "v3 (refinement)" in text and "after 40 stored records" in text
    assert "None-None" not in text and "None s after" not in text

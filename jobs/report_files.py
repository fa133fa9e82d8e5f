"""The run report's files: the error-over-events chart, report.md and summary.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fishweight.jobs.report import RECOVERY_ROLL, RunData, arrival_order, summarize
from fishweight.runtime import require_extra
from fishweight.runtime.settings import Settings
from fishweight.scenarios import Scenario


def draw_chart(data: RunData, summary: dict[str, Any], path: Path) -> None:
    """Relative error per fish in arrival order, species bands, threshold, markers."""
    matplotlib = require_extra("matplotlib", "demo")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    diffs = arrival_order(data.diffs)
    # Bands by profile, so that a changed profile of one species shows as its own band.
    band_of = {i: _label(p) for p in summary["per_phase"]
               for i in range(p["first_fish_id"], p["last_fish_id"] + 1)}
    bands = [band_of.get(d.value["Fish_Id"], d.value["Species"]) for d in diffs]
    fig, ax = plt.subplots(figsize=(11, 4.8), dpi=110)
    colors = {}
    palette = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860"]
    start = 0
    for i in range(1, len(diffs) + 1):
        if i == len(diffs) or bands[i] != bands[start]:
            species = bands[start]
            color = colors.setdefault(species, palette[len(colors) % len(palette)])
            ax.axvspan(start - 0.5, i - 0.5, color=color, alpha=0.15, lw=0,
                       label=species if species not in ax.get_legend_handles_labels()[1]
                       else None)
            start = i
    ax.plot(range(len(diffs)), [d.value["Error"] for d in diffs], color="#333333", lw=1,
            marker="o", ms=2.5, label="relative error")
    ax.axhline(summary["threshold"], color="#C44E52", ls="--", lw=1,
               label=f"threshold {summary['threshold']}")
    actions = [(d["event"], d["action"]) for d in data.decisions]
    labelled = set()
    for retrain in sorted(data.retrains, key=lambda r: r.kafka_ms):
        x = sum(d.kafka_ms <= retrain.kafka_ms for d in diffs) - 0.5
        # The last decision on the event: one that found too few records is decided again.
        action = next((a for e, a in reversed(actions) if e == retrain.value), "not handled")
        style = {"promoted": ("#C44E52", "-", "retrain event: new model promoted")}.get(
            action, ("#999999", "--", f"retrain event: {action.replace('_', ' ')}"))
        ax.axvline(x, color=style[0], ls=style[1], lw=1.5,
                   label=None if style[2] in labelled else style[2])
        labelled.add(style[2])
    for k, version in enumerate(summary["versions_promoted"]):
        xs = [i for i, d in enumerate(diffs) if d.value["ModelVersion"] == version["version"]]
        if xs:
            ax.axvline(xs[0] - 0.5, color="#55A868", lw=1.5, ls=":",
                       label="new model serves" if k == 0 else None)
            ax.text(xs[0], ax.get_ylim()[1] * 0.92, f" v{version['version']}",
                    color="#2E7D32")
    ax.set_xlabel("joined fish, in arrival order")
    ax.set_ylabel("|predicted - actual| / actual")
    ax.set_title("fishweight: prediction error over events, drift and recovery")
    ax.set_xlim(-1, max(len(diffs), 1))
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _label(entry: dict[str, Any]) -> str:
    """``species``, or ``species (profile)`` for a profile not keyed by its species."""
    profile = entry.get("profile", entry["species"])
    return entry["species"] if profile == entry["species"] else f"{entry['species']} ({profile})"


def _gaps(missing: list[int] | None, duplicates: int | None, what: str) -> str:
    """What an accounting check found wrong, if anything."""
    parts = ([f"missing Fish_Ids {missing}"] if missing else []) + (
        [f"{duplicates} duplicate {what}"] if duplicates else [])
    return f" ({'; '.join(parts)})" if parts else ""


def write_markdown(summary: dict[str, Any], path: Path, chart_name: str) -> None:
    c = summary["counts"]
    lines = [
        "# fishweight run report", "",
        f"![error over events]({chart_name})", "",
        "## Records",
        f"- measurements produced: {c['measurements_produced']}, weights produced: "
        f"{c['weights_produced']}",
        f"- predictions: {c['predictions']}, dead letters: {c['dead_letters']} "
        f"{c['dead_letters_by_topic'] or ''}",
        f"- every measurement accounted for (produced = predicted + dead-lettered, by "
        f"Fish_Id): {c['accounted']}" + _gaps(c.get("measurements_missing"),
                                              c.get("duplicate_predictions"), "predictions"),
        f"- every weight accounted for (produced = joined + unmatched + dead-lettered, by "
        f"Fish_Id): {c['weights_accounted']}"
        + _gaps(c.get("weights_missing"), c.get("duplicate_diffs"), "diffs")
        + f" ({c['unmatched_weights']} unmatched weights, "
        f"{c['unmatched_measurements']} measurements without a weight) "
        f"{c.get('unmatched_by_reason') or ''}",
        f"- joined pairs: {c['joined_pairs']}, windows closed: {c['windows_closed']}, "
        f"retrain events: {c['retrain_events']}", "",
        "## Drifts: how fast the loop adapted", "",
        "A drift is each block after the first (a species, or a changed profile of one). "
        "*Served*: fish of the block before the first one predicted by a model that learnt "
        "its profile (the newest of its species in training). *Recovery*: from there the "
        f"rolling mean error of {RECOVERY_ROLL} fish stays below {summary['threshold']}. "
        "The noise floor is the error of the true weight formula on the same fish.", "",
        "| block | species (profile) | first fish | fish until served | fish until recovery | "
        f"fish > {summary['threshold']} until recovery | error after recovery | noise floor "
        "| ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for d in summary["drifts"]:
        lines.append(
            f"| {d['block']} | {_label(d)} | {d['first_fish_id']} | {d['fish_until_served']} | "
            f"{d['fish_until_recovery']} | {d['over_threshold_until_recovery']} | "
            f"{d['mean_error_after_recovery']} | {d['noise_floor']} | "
            f"{d['error_to_noise_floor']} |")
    lines += ["", "## Model versions", "",
              f"- trainer decisions: {summary['decisions']}"]
    for v in summary["versions_promoted"]:
        if v["reason"] == "refinement":  # no retrain event: the trainer's own check
            trigger = (f"refinement of {v['trigger_species']} after {v.get('trigger_count')} "
                       "stored records")
            served = f"first served fish {v['first_fish_id_served']}"
        else:
            trigger = (f"trigger {v['trigger_species']} fish {v['retrain_window'][0]}-"
                       f"{v['retrain_window'][1]}")
            served = (f"first served fish {v['first_fish_id_served']}, "
                      f"{v['seconds_retrain_event_to_first_prediction']} s after the retrain "
                      "event")
        lines.append(f"- v{v['version']} ({v['reason']}), trained on {v['training_species']}; "
                     f"{trigger}; {v['gate']}; {served}")
    lines += ["", "## Mean relative error", "",
              "| phase | species (profile) | fish | mean | before recovery | after recovery |",
              "|---|---|---|---|---|---|"]
    for p in summary["per_phase"]:
        lines.append(f"| {p['phase']} | {_label(p)} | {p['first_fish_id']}-"
                     f"{p['last_fish_id']} | {p['mean_error']} | "
                     f"{p['mean_error_before_recovery']} | {p['mean_error_after_recovery']} |")
    lines += ["", "Per species: " + ", ".join(
        f"{s} {e}" for s, e in summary["per_species_mean_error"].items()), ""]
    path.write_text("\n".join(lines))


def write_report(data: RunData, scenario: Scenario, settings: Settings,
                 run_dir: Path) -> dict[str, Any]:
    """Write report.png, report.md and summary.json into ``run_dir``; return the summary."""
    summary = summarize(data, scenario, settings)
    draw_chart(data, summary, run_dir / "report.png")
    write_markdown(summary, run_dir / "report.md", "report.png")
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary

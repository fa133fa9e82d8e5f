"""Simulated factory data: species profiles and scenarios read from TOML.

Pure data generation (no Kafka): the simulator sends what ``events`` returns, the
model bootstrap trains on ``sample_species``. A new species needs only a new profile
in a scenario file.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

MEASUREMENT = "measurement"
WEIGHT = "weight"
# How the simulated machines write their records. "fishweight": integer Fish_Id and a
# Timestamp (epoch ms). "tutorial": as the tutorial's producers do, Fish_Id as a string
# and no Timestamp (the Kafka record time, set to the event time, is the event time).
# Both key records by Fish_Id as a string.
WIRES = ("fishweight", "tutorial")


class ScenarioError(ValueError):
    """A scenario file is missing something or holds a wrong value."""


@dataclass(frozen=True)
class Normal:
    mean: float
    sd: float


@dataclass(frozen=True)
class SpeciesProfile:
    """Length ~ N, Height ~ N, Weight = intercept + a*Length + b*Height + N(0, noise_sd)."""

    name: str
    length: Normal
    height: Normal
    intercept: float
    length_coef: float
    height_coef: float
    noise_sd: float


@dataclass(frozen=True)
class Block:
    species: str
    count: int


@dataclass(frozen=True)
class Scenario:
    """A reproducible run of the factory: profiles, sequence, clock and seed."""

    species: dict[str, SpeciesProfile]
    sequence: tuple[Block, ...]
    seed: int = 101
    interval_s: float = 2.0
    weight_delay_s: float = 10.0
    first_fish_id: int = 1
    wire: str = "fishweight"

    @property
    def fish_count(self) -> int:
        return sum(block.count for block in self.sequence)

    @property
    def duration_s(self) -> float:
        """Event-time span from the first measurement to the last weight."""
        return (self.fish_count - 1) * self.interval_s + self.weight_delay_s


def _number(table: dict, key: str, where: str) -> float:
    if key not in table:
        raise ScenarioError(f"{where}: missing '{key}'")
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioError(f"{where}.{key}: expected a number, got {value!r}")
    return float(value)


def _normal(table: dict, key: str, where: str) -> Normal:
    sub = table.get(key)
    if not isinstance(sub, dict):
        raise ScenarioError(f"{where}: missing table '{key}' with mean and sd")
    sd = _number(sub, "sd", f"{where}.{key}")
    if sd < 0:
        raise ScenarioError(f"{where}.{key}.sd must be >= 0")
    return Normal(_number(sub, "mean", f"{where}.{key}"), sd)


def parse_scenario(data: dict, source: str = "scenario") -> Scenario:
    species_tables = data.get("species")
    if not isinstance(species_tables, dict) or not species_tables:
        raise ScenarioError(f"{source}: needs at least one [species.NAME] table")
    species = {}
    for name, table in species_tables.items():
        where = f"{source}: species.{name}"
        weight = table.get("weight")
        if not isinstance(weight, dict):
            raise ScenarioError(f"{where}: missing table 'weight'")
        species[name] = SpeciesProfile(
            name=name,
            length=_normal(table, "length", where),
            height=_normal(table, "height", where),
            intercept=float(weight.get("intercept", 0.0)),
            length_coef=_number(weight, "length", f"{where}.weight"),
            height_coef=_number(weight, "height", f"{where}.weight"),
            noise_sd=_number(weight, "noise_sd", f"{where}.weight"),
        )
    blocks = []
    for i, block in enumerate(data.get("sequence", [])):
        name = block.get("species")
        if name not in species:
            raise ScenarioError(
                f"{source}: sequence[{i}] names species {name!r}, "
                f"defined are {sorted(species)}"
            )
        count = block.get("count")
        if not isinstance(count, int) or count < 1:
            raise ScenarioError(f"{source}: sequence[{i}].count must be a positive integer")
        blocks.append(Block(name, count))
    if not blocks:
        raise ScenarioError(f"{source}: needs at least one [[sequence]] block")
    scenario = Scenario(
        species=species,
        sequence=tuple(blocks),
        seed=int(data.get("seed", 101)),
        interval_s=float(data.get("interval_s", 2.0)),
        weight_delay_s=float(data.get("weight_delay_s", 10.0)),
        first_fish_id=int(data.get("first_fish_id", 1)),
        wire=data.get("wire", "fishweight"),
    )
    if scenario.interval_s <= 0 or scenario.weight_delay_s < 0:
        raise ScenarioError(f"{source}: interval_s must be > 0 and weight_delay_s >= 0")
    if scenario.wire not in WIRES:
        raise ScenarioError(f"{source}: wire must be one of {', '.join(WIRES)}, got "
                            f"{scenario.wire!r}")
    return scenario


def scenario_text(path: str | Path | None = None) -> str:
    """The TOML text of a scenario file; ``None`` is the packaged default (60/60/60)."""
    if path is None:
        return resources.files("fishweight.scenarios").joinpath("default.toml").read_text()
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario file {path}: {exc}") from exc


def load_scenario(path: str | Path | None = None) -> Scenario:
    """Read and check a scenario file; ``None`` is the packaged default (60/60/60)."""
    text = scenario_text(path)
    source = "default scenario" if path is None else str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from exc
    return parse_scenario(data, source)


def sample_species(profile: SpeciesProfile, count: int, rng: np.random.Generator) -> dict:
    """Draw ``count`` fish of one species; values rounded to 3 decimals like the reference."""
    length = rng.normal(profile.length.mean, profile.length.sd, count)
    height = rng.normal(profile.height.mean, profile.height.sd, count)
    noise = rng.normal(0.0, profile.noise_sd, count)
    weight = profile.intercept + profile.length_coef * length + profile.height_coef * height
    return {
        "Length": np.round(length, 3),
        "Height": np.round(height, 3),
        "Weight": np.round(weight + noise, 3),
    }


def generate_fish(scenario: Scenario) -> list[dict]:
    """Every fish of the scenario in order: Fish_Id, Species, Length, Height, Weight."""
    fish = []
    fish_id = scenario.first_fish_id
    for index, block in enumerate(scenario.sequence):
        # One independent stream per block: editing a later block leaves earlier ones alone.
        rng = np.random.default_rng([scenario.seed, index])
        values = sample_species(scenario.species[block.species], block.count, rng)
        for i in range(block.count):
            fish.append({
                "Fish_Id": fish_id,
                "Species": block.species,
                "Length": float(values["Length"][i]),
                "Height": float(values["Height"][i]),
                "Weight": float(values["Weight"][i]),
            })
            fish_id += 1
    return fish


def events(scenario: Scenario, start_ms: int) -> list[tuple[int, str, dict]]:
    """(event time ms, kind, record) for both machines, ordered by event time.

    Measurement ``i`` happens at ``start + i * interval``; its weight ``weight_delay``
    later. Ties keep measurements first, so each topic is in event-time order. Records
    are in the scenario's ``wire`` format (see ``WIRES``).
    """
    interval_ms = round(scenario.interval_s * 1000)
    delay_ms = round(scenario.weight_delay_s * 1000)
    tutorial = scenario.wire == "tutorial"
    out = []
    for i, fish in enumerate(generate_fish(scenario)):
        measured = start_ms + i * interval_ms
        fish_id = str(fish["Fish_Id"]) if tutorial else fish["Fish_Id"]
        for event_ms, kind, values in (
                (measured, MEASUREMENT, {"Length": fish["Length"], "Height": fish["Height"]}),
                (measured + delay_ms, WEIGHT, {"Weight": fish["Weight"]})):
            record = {"Species": fish["Species"], "Fish_Id": fish_id, **values}
            if not tutorial:
                record["Timestamp"] = event_ms
            out.append((event_ms, kind, record))
    out.sort(key=lambda e: (e[0], e[1] != MEASUREMENT))
    return out

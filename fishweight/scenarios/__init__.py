"""Simulated factory data: species profiles and scenarios read from TOML.

Pure data generation (no Kafka): the simulator sends what ``events`` returns, the
model bootstrap trains on ``sample_species``. A new species needs only a new profile
in a scenario file.

A ``[species.KEY]`` table is a *profile*; ``[[sequence]]`` blocks name one by its key
(``species = "KEY"``). Besides ``length``, ``height`` and ``weight`` a profile may set:

- ``name``: the Species the machines emit (default: the key; for a derived profile,
  its base's name). Two profiles of one name are one species whose fish change, e.g.
  ``[species.salmon_autumn]`` with ``name = "salmon"``. A profile keyed like a species
  must emit that species (the bootstrap samples the profile keyed "salmon").
- ``base``: copy another profile, then override what the table gives; ``length``,
  ``height`` and ``weight`` key by key (``weight = { noise_sd = 0.2 }`` keeps the
  base's formula), the rest as a whole. Values replace the base's, they never compound.
- ``weight_scale`` (> 0, default 1): true weight
  W = weight_scale * (intercept + length*L + height*H); the noise N(0, noise_sd) is
  added after the scaling.
- ``length_read_scale``/``length_read_offset`` and ``height_read_scale``/
  ``height_read_offset`` (scale > 0; default 1 and 0): a miscalibrated sensor. The
  machine reports L * scale + offset; the weight comes from the true L.
- ``outlier_rate`` (0..1, default 0) and ``outlier_scale`` (> 0, default 1.4): in each
  block exactly round(outlier_rate * count) fish, chosen at random, are mis-weighed:
  their reported weight (noise included) is multiplied by ``outlier_scale``.

Every block draws from its own stream ``default_rng([seed, block index])``: Length,
Height, noise, then (only when ``outlier_rate`` > 0) the outliers, so a profile
without the new keys draws exactly what it always drew.
"""

from __future__ import annotations

import math
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
    """Length ~ N, Height ~ N, Weight = s * (intercept + a*L + b*H) + N(0, noise_sd).

    ``name`` is the Species the machines emit, not necessarily the profile's key. The
    sensors report length * length_read_scale + length_read_offset (height alike).
    """

    name: str
    length: Normal
    height: Normal
    intercept: float
    length_coef: float
    height_coef: float
    noise_sd: float
    weight_scale: float = 1.0
    length_read_scale: float = 1.0
    length_read_offset: float = 0.0
    height_read_scale: float = 1.0
    height_read_offset: float = 0.0
    outlier_rate: float = 0.0
    outlier_scale: float = 1.4

    def true_weight(self, length, height):
        """The weight without noise, from TRUE length and height (floats or arrays)."""
        return self.weight_scale * (self.intercept + self.length_coef * length
                                    + self.height_coef * height)

    def true_inputs(self, length, height) -> tuple:
        """(true length, true height) of what the machine REPORTED: undo the calibration."""
        return ((length - self.length_read_offset) / self.length_read_scale,
                (height - self.height_read_offset) / self.height_read_scale)


@dataclass(frozen=True)
class Block:
    """``count`` fish of the profile keyed ``species`` (its Species: ``emitted_name``)."""

    species: str
    count: int

    @property
    def profile(self) -> str:
        """The profile key (the same as ``species``, named for what it is)."""
        return self.species


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

    def emitted_name(self, profile: str) -> str:
        """The Species the machines emit for fish of the profile keyed ``profile``."""
        return self.species[profile].name

    def block_ranges(self) -> list[tuple[Block, int, int]]:
        """(block, first Fish_Id, last Fish_Id) per block: ids run on from first_fish_id."""
        out, first = [], self.first_fish_id
        for block in self.sequence:
            out.append((block, first, first + block.count - 1))
            first += block.count
        return out

    def profile_of(self, fish_id: int) -> str | None:
        """The profile key of the block that made fish ``fish_id``; None outside the run."""
        offset = int(fish_id) - self.first_fish_id
        if offset < 0:
            return None
        for block in self.sequence:
            if offset < block.count:
                return block.species
            offset -= block.count
        return None

    def default_profile(self, species: str) -> str | None:
        """The profile keyed like ``species`` (None: none): what the bootstrap knows of it."""
        profile = self.species.get(species)
        return species if profile is not None and profile.name == species else None


def _number(table: dict, key: str, where: str) -> float:
    if key not in table:
        raise ScenarioError(f"{where}: missing '{key}'")
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioError(f"{where}.{key}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ScenarioError(f"{where}.{key}: expected a finite number, got {value!r}")
    return float(value)


def _integer(table: dict, key: str, where: str, default: int, least: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ScenarioError(f"{where}.{key}: expected an integer >= {least}, got {value!r}")
    return value


def _normal(table: dict, key: str, where: str, base: Normal | None = None) -> Normal:
    sub = table.get(key)
    if sub is None and base is not None:
        return base
    if not isinstance(sub, dict):
        raise ScenarioError(f"{where}: missing table '{key}' with mean and sd")
    mean = (base.mean if base and "mean" not in sub
            else _number(sub, "mean", f"{where}.{key}"))
    sd = base.sd if base and "sd" not in sub else _number(sub, "sd", f"{where}.{key}")
    if sd < 0:
        raise ScenarioError(f"{where}.{key}.sd must be >= 0")
    return Normal(mean, sd)


# Plain numbers of a profile; each defaults to its base's value, else the dataclass's.
NUMBER_KEYS = ("weight_scale", "length_read_scale", "length_read_offset", "height_read_scale",
               "height_read_offset", "outlier_rate", "outlier_scale")
PROFILE_KEYS = ("name", "base", "length", "height", "weight", *NUMBER_KEYS)
POSITIVE_KEYS = ("weight_scale", "length_read_scale", "height_read_scale", "outlier_scale")
WEIGHT_FIELDS = {"intercept": "intercept", "length": "length_coef",
                 "height": "height_coef", "noise_sd": "noise_sd"}


def _profile(key: str, table: dict, base: SpeciesProfile | None,
             where: str) -> SpeciesProfile:
    """One profile table, on top of its resolved ``base`` (None: everything is required)."""
    unknown = sorted(set(table) - set(PROFILE_KEYS))
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(unknown)}; a profile "
                            f"may hold {', '.join(PROFILE_KEYS)}")
    weight = table.get("weight", {} if base else None)
    if not isinstance(weight, dict):
        raise ScenarioError(f"{where}: missing table 'weight'")
    extra = sorted(set(weight) - set(WEIGHT_FIELDS))
    if extra:
        raise ScenarioError(f"{where}.weight: unknown key(s) {', '.join(extra)}")
    name = table.get("name", base.name if base else key)
    if not isinstance(name, str) or not name:
        raise ScenarioError(f"{where}.name must be a non-empty string, got {name!r}")
    values: dict = {"name": name, "length": _normal(table, "length", where, base and base.length),
                    "height": _normal(table, "height", where, base and base.height)}
    for field_key, attr in WEIGHT_FIELDS.items():
        if field_key in weight:
            values[attr] = _number(weight, field_key, f"{where}.weight")
        elif base is not None:
            values[attr] = getattr(base, attr)
        elif field_key == "intercept":
            values[attr] = 0.0
        else:
            raise ScenarioError(f"{where}.weight: missing '{field_key}'")
    if values["noise_sd"] < 0:
        raise ScenarioError(f"{where}.weight.noise_sd must be >= 0")
    for attr in NUMBER_KEYS:
        if attr in table:
            values[attr] = _number(table, attr, where)
        elif base is not None:
            values[attr] = getattr(base, attr)
    for attr in POSITIVE_KEYS:
        if values.get(attr, 1.0) <= 0:
            raise ScenarioError(f"{where}.{attr} must be > 0, got {values[attr]}")
    if not 0 <= values.get("outlier_rate", 0.0) <= 1:
        raise ScenarioError(f"{where}.outlier_rate must be between 0 and 1, got "
                            f"{values['outlier_rate']}")
    return SpeciesProfile(**values)


def _profiles(tables: dict, source: str) -> dict[str, SpeciesProfile]:
    """Every profile, each derived one resolved after its base (in file order)."""
    done: dict[str, SpeciesProfile] = {}

    def resolve(key: str, chain: tuple[str, ...]) -> SpeciesProfile:
        if key in done:
            return done[key]
        where = f"{source}: species.{key}"
        table = tables[key]
        if not isinstance(table, dict):
            raise ScenarioError(f"{where}: expected a table")
        base_key = table.get("base")
        base = None
        if base_key is not None:
            if not isinstance(base_key, str) or base_key not in tables:
                raise ScenarioError(f"{where}.base names species {base_key!r}, "
                                    f"defined are {sorted(tables)}")
            if base_key == key or base_key in chain:
                cycle = " -> ".join((*chain[chain.index(base_key):], key, base_key)
                                    if base_key in chain else (key, key))
                raise ScenarioError(f"{source}: species bases form a cycle: {cycle}")
            base = resolve(base_key, (*chain, key))
        done[key] = _profile(key, table, base, where)
        return done[key]

    profiles = {key: resolve(key, ()) for key in tables}
    # A profile keyed like an emitted species must be that species: the bootstrap (and the
    # report's idea of what it learnt) takes the profile keyed "salmon" for salmon.
    emitted = {p.name: key for key, p in profiles.items()}
    for key, profile in profiles.items():
        if key in emitted and profile.name != key:
            raise ScenarioError(
                f"{source}: species.{key} emits {profile.name!r}, but species."
                f"{emitted[key]} emits {key!r}: a profile keyed by a species name must emit "
                "that species")
    return profiles


TOP_KEYS = ("species", "sequence", "seed", "interval_s", "weight_delay_s", "first_fish_id",
            "wire")
BLOCK_KEYS = ("species", "count")


def parse_scenario(data: dict, source: str = "scenario") -> Scenario:
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:  # a drift written in the wrong place must not be silently ignored
        raise ScenarioError(f"{source}: unknown key(s) {', '.join(unknown)}; a scenario may "
                            f"hold {', '.join(TOP_KEYS)} (a profile's numbers go in its "
                            "[species.NAME] table)")
    species_tables = data.get("species")
    if not isinstance(species_tables, dict) or not species_tables:
        raise ScenarioError(f"{source}: needs at least one [species.NAME] table")
    species = _profiles(species_tables, source)
    sequence = data.get("sequence", [])
    if not isinstance(sequence, list) or not all(isinstance(b, dict) for b in sequence):
        raise ScenarioError(f"{source}: sequence must be [[sequence]] blocks (a list of "
                            "tables with species and count)")
    blocks = []
    for i, block in enumerate(sequence):
        extra = sorted(set(block) - set(BLOCK_KEYS))
        if extra:
            raise ScenarioError(f"{source}: sequence[{i}]: unknown key(s) {', '.join(extra)}; "
                                "a block holds species and count (a changed profile is a "
                                "[species.NAME] table with base = ...)")
        name = block.get("species")
        if name not in species:
            raise ScenarioError(
                f"{source}: sequence[{i}] names species {name!r}, "
                f"defined are {sorted(species)}"
            )
        count = block.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ScenarioError(f"{source}: sequence[{i}].count must be a positive integer")
        blocks.append(Block(name, count))
    if not blocks:
        raise ScenarioError(f"{source}: needs at least one [[sequence]] block")
    scenario = Scenario(
        species=species,
        sequence=tuple(blocks),
        seed=_integer(data, "seed", source, 101, 0),
        interval_s=_number({"interval_s": 2.0, **data}, "interval_s", source),
        weight_delay_s=_number({"weight_delay_s": 10.0, **data}, "weight_delay_s", source),
        first_fish_id=_integer(data, "first_fish_id", source, 1, 1),
        wire=data.get("wire", "fishweight"),
    )
    # Event times are whole milliseconds: a shorter interval would give fish one time.
    if scenario.interval_s < 0.001 or scenario.weight_delay_s < 0:
        raise ScenarioError(f"{source}: interval_s must be >= 0.001 and weight_delay_s >= 0")
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


def _draw(profile: SpeciesProfile, count: int, rng: np.random.Generator,
          outliers: bool) -> tuple[dict, np.ndarray]:
    """The reported values of ``count`` fish and which of them are outliers."""
    length = rng.normal(profile.length.mean, profile.length.sd, count)
    height = rng.normal(profile.height.mean, profile.height.sd, count)
    noise = rng.normal(0.0, profile.noise_sd, count)
    weight = profile.true_weight(length, height) + noise
    outlier = np.zeros(count, dtype=bool)
    if outliers and profile.outlier_rate > 0:
        # Drawn last and only here: a profile without outliers keeps its old stream.
        outlier[rng.choice(count, size=round(profile.outlier_rate * count), replace=False)] = True
        weight = np.where(outlier, weight * profile.outlier_scale, weight)
    # The weight above came from the true sizes; the sensors report them miscalibrated.
    return {
        "Length": np.round(length * profile.length_read_scale + profile.length_read_offset, 3),
        "Height": np.round(height * profile.height_read_scale + profile.height_read_offset, 3),
        "Weight": np.round(weight, 3),
    }, outlier


def sample_species(profile: SpeciesProfile, count: int, rng: np.random.Generator,
                   outliers: bool = True) -> dict:
    """Draw ``count`` fish of one profile as the machines report them (3 decimals).

    Length and Height with the calibration applied, Weight with noise and outliers:
    exactly round(outlier_rate * count) of them are outliers, drawn after everything
    else; ``outliers=False`` skips those draws (the clean fish of the same stream).
    """
    return _draw(profile, count, rng, outliers)[0]


def generate_fish(scenario: Scenario) -> list[dict]:
    """Every fish of the scenario in order, as the machines report it.

    Fish_Id, Species (the profile's ``name``), Length, Height, Weight; and the truth
    behind it: Profile (the block's profile key) and Outlier (mis-weighed or not).
    """
    fish = []
    fish_id = scenario.first_fish_id
    for index, block in enumerate(scenario.sequence):
        # One independent stream per block: editing a later block leaves earlier ones alone.
        rng = np.random.default_rng([scenario.seed, index])
        profile = scenario.species[block.species]
        values, outlier = _draw(profile, block.count, rng, outliers=True)
        for i in range(block.count):
            fish.append({
                "Fish_Id": fish_id,
                "Species": profile.name,
                "Length": float(values["Length"][i]),
                "Height": float(values["Height"][i]),
                "Weight": float(values["Weight"][i]),
                "Profile": block.species,
                "Outlier": bool(outlier[i]),
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

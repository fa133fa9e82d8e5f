"""Retraining decisions, independent of Kafka: what to train on, the gate, when to refine.

A retrain event (the first crossing of a window's running error, per species) is
handled like this:

1. **Once per window.** An event for a (window, species) that was already decided is
   skipped (a replay after a restart may repeat it). A species the model may not learn
   (``max_species``, ``policy.admitted_species``) is refused before any fitting.
2. **Stale rule.** A window scored (even partly) by a version older than the current
   one is skipped when the current one has had its chance at the event's species (it
   was trained on newer records of it, or it predicts the event's records within the
   rule), so one drift causes one retrain, not a storm. A newer version that refit
   other species only leaves the event standing (``_stale_because``).
3. **Training set.** The newest ``retrain_samples`` joined records up to and including
   the triggering one (the mission's rule), plus **species memory**: every species
   ever stored that has fewer than ``memory_per_species`` records among them is
   topped up with its own newest records, so a species absent from the newest 50 is
   not forgotten; a species the model knows that the store has no records of keeps its
   line as it is (``estimator.keep_species``).
4. **Model.** ``SpeciesShrinkageRegressor`` chooses per species how much of its own
   slopes the evidence supports (few records: an offset on shared slopes).
5. **Gate.** The candidate's leave-one-out error must beat the current model's error
   by ``GATE_MARGIN`` on the records the current model has not trained on.

**A change inside a known species** (an event whose species the current model knows,
with ``Change_Timestamp``: where the run of bad records began; the change rule fires it,
the window rule too when a window crosses): the species' records from before the change
are no evidence for its new behaviour. The trainer waits (briefly) for
``change_min_records`` of its records since the change, refits only that species' line
on them, starting from the current one (``refit_species``: a scale, an offset or, with
more records, own slopes, by leave-one-out), and promotes it only if its leave-one-out
error beats the current model's on *every* record since the change and on average by
``GATE_MARGIN``: a burst of outliers among good fish always leaves a good fish that the
candidate predicts worse. The change is remembered in the manifest (``changes``): from
then on that species' older records are out of every training set and its refinement
counts only records since the change.

**A drift within the threshold** (the bias rule: a species' last errors lean one way,
none over the threshold): handled as a change of that species, from where its errors
shifted (``_shift_since``), gated on the mean only: with a lean of about twice the
noise, the old line predicts some new fish better by chance, so "every record" would
refuse a real drift; the rule's t statistic already refused outliers and noise.

**Too few records yet.** An event decided ``skipped_too_few`` (the store just started,
or a change had few records yet) is decided again each time more of its species'
records are stored, rather than waiting for the refinement rule.

**Refinement.** A new species caught early is trained on a few records. Once the
store holds ``refine_min_records`` of a species that had fewer when the current model
was promoted, the trainer retrains by itself (at most a few attempts, each after more
records), so a drift costs at most two promotions. Every decision is appended to
``<state_dir>/trainer-decisions.jsonl``; past ``decision_log_max_mb`` it rolls over to
``trainer-decisions.jsonl.1`` (the one before is dropped), so the log the trainer reads
at start is bounded.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fishweight.models.estimator import SpeciesShrinkageRegressor, keep_species, refit_species
from fishweight.models.policy import (
    admitted_species,
    fit,
    leans,
    loo_gate,
    refinement_due,
    relative_errors,
    select_training_records,
    shift_start,
    signed_errors,
    to_frame,
)
from fishweight.models.registry import (
    LoadedModel,
    ModelError,
    ModelRegistry,
    ModelUnavailable,
    fsync_dir,
)
from fishweight.models.store import StoreError, TrainingStore, open_store
from fishweight.records import PER_VERSION_RULES, utc_iso, utc_time
from fishweight.runtime.settings import Settings

log = logging.getLogger(__name__)

MIN_TRAINING_RECORDS = 10
REFINE_ATTEMPTS = 3   # per species and promotion
REFINE_STEP = 5       # more records of the species before the next attempt
# A candidate must beat the current model by 5 %: a refit within the noise is no reason
# to swap (a drift improves the error several-fold, a refinement by ~40 %).
GATE_MARGIN = 0.05
ACTIONS = ("promoted", "not_promoted", "skipped_stale", "skipped_too_few", "skipped_duplicate",
           "skipped_species_limit", "failed")
# Not a verdict on the window: a repeat is no news, and a species refused for the limit
# is refused again as long as the limit stands (so an invented name per window adds no
# entry to the decided windows).
UNDECIDED = ("skipped_duplicate", "skipped_species_limit")
CHANGE_WAIT_S = 5.0  # the trainer waits at most this long for change_min_records
EVENT_REASONS = ("window", *PER_VERSION_RULES)  # a decision's reason when an event fired


@dataclass
class TrainerStats:
    """What the trainer did since it started: each count kept here only.

    The trainer's Prometheus counters read it at every scrape
    (``fishweight.jobs.trainer_metrics``), so they count a promotion recovered at the
    start too.
    """

    diffs_stored: int = 0
    invalid_records: int = 0  # records of either topic the trainer could not read
    retrain_events: int = 0   # events decided (a failed decision included)
    refinements: int = 0
    store_errors: int = 0     # store calls that failed (each is retried)
    decisions: dict[str, dict[str, int]] = field(default_factory=dict)  # reason -> action -> n

    def count_decision(self, decision: Decision) -> None:
        actions = self.decisions.setdefault(decision.reason, {})
        actions[decision.action] = actions.get(decision.action, 0) + 1

    def count(self, action: str) -> int:
        """Decisions with ``action`` (one of ``ACTIONS``), whatever their reason."""
        if action not in ACTIONS:
            raise ValueError(f"unknown trainer action {action!r}; one of {ACTIONS}")
        return sum(actions.get(action, 0) for actions in self.decisions.values())


@dataclass
class Decision:
    """What the trainer did with one retrain event or refinement."""

    action: str  # one of ACTIONS
    event: dict[str, Any]
    detail: str
    reason: str = "window"  # window | change | bias | refinement
    version: int | None = None
    current_version: int | None = None
    gate: dict[str, Any] = field(default_factory=dict)
    training_species: dict[str, int] = field(default_factory=dict)
    decided_at: str = field(default_factory=utc_iso)


def window_key(event: dict[str, Any]) -> str:
    """What a retrain event is about: (window, species), or (rule, species, version).

    The change and the bias rule each fire once per species and serving version.
    """
    species = sorted(event.get("Species") or [])
    if event.get("Rule") in PER_VERSION_RULES:
        return json.dumps([event["Rule"], species, event.get("ModelVersionMax")])
    return json.dumps([event.get("WindowStart"), species])


def decided_windows(decisions: list[dict[str, Any]]) -> set[str]:
    """The ``window_key`` of every event the decisions gave a verdict on."""
    return {window_key(d["event"]) for d in decisions
            if d.get("reason", "window") in EVENT_REASONS
            and d.get("action") not in UNDECIDED}


def rule_of(event: dict[str, Any]) -> str:
    """The rule that raised a retrain event: the reason of its decision."""
    rule = event.get("Rule")
    return rule if rule in PER_VERSION_RULES else "window"


def window_end_epoch_ms(event: dict[str, Any]) -> int | None:
    """The retrain event's WindowEnd (ISO-8601, UTC) in epoch milliseconds."""
    end = event.get("WindowEnd")
    if not end:
        return None
    return int(utc_time(end).timestamp() * 1000)


def trigger_time_ms(event: dict[str, Any]) -> int | None:
    """Train on records up to and including this event time (epoch ms, exclusive bound).

    The early trigger names its newest record (``Timestamp_End``); older events only
    have the window's end.
    """
    if isinstance(event.get("Timestamp_End"), int):
        return event["Timestamp_End"] + 1
    return window_end_epoch_ms(event)


def changes_of(model: LoadedModel) -> dict[str, int]:
    """Species whose own relation changed -> the Timestamp the change began (manifest)."""
    return {s: int(t) for s, t in model.manifest.get("changes", {}).items()}


def evidence_of(model: LoadedModel) -> dict[str, int]:
    """Records per species the current model was promoted on (see ``refinement_due``)."""
    m = model.manifest
    if "evidence" in m:
        return {s: int(n) for s, n in m["evidence"].items()}
    if "species_records" in m:
        return {s: int(n) for s, n in m["species_records"].items()}
    return {s: int(m.get("n_samples", 0)) for s in m.get("species", [])}


def species_of(model: LoadedModel) -> list[str]:
    """The species a model knows (its own, or as its manifest lists them)."""
    if isinstance(model.estimator, SpeciesShrinkageRegressor):
        return list(model.estimator.species_)
    return list(model.manifest.get("species", []))


class Trainer:
    """The retraining logic, independent of Kafka: feed it diffs and retrain events."""

    def __init__(self, settings: Settings, store: TrainingStore | None = None) -> None:
        self.settings = settings
        self.registry = ModelRegistry.for_settings(settings)
        self.store = store or open_store(settings.resolved_store_uri)
        self.stats = TrainerStats()
        self.decisions_path = decision_log(settings)
        decisions = read_decisions(settings)
        self._decided_windows = decided_windows(decisions)
        # (serving version, species) -> (refinements tried, records stored at the last);
        # from the log, so a restart does not grant every species its attempts again.
        self._refine_tries: dict[tuple[int, str], tuple[int, int]] = {}
        for d in decisions:
            event = d.get("event") or {}
            species, count, version = event.get("Species"), event.get("Count"), d.get(
                "current_version")
            if (d.get("reason") == "refinement" and isinstance(version, int)
                    and isinstance(species, list) and len(species) == 1
                    and isinstance(count, int)):
                tries = self._refine_tries.get((version, species[0]), (0, 0))[0]
                self._refine_tries[(version, species[0])] = (tries + 1, count)
        # Events that found too few records to learn from, by species: retried as more of
        # the species' records are stored (``refine_if_due``), with the count at the last try.
        # In memory only: after a restart the refinement rule learns such a species.
        self._waiting: dict[str, tuple[dict[str, Any], int]] = {}
        self._recover_promotion(decisions)

    def _recover_promotion(self, decisions: list[dict[str, Any]]) -> None:
        """Record a promotion whose decision was lost, so its event is not decided twice.

        A trainer killed after switching ``CURRENT`` and before appending the decision
        (and before committing the event's offset) sees the event again on restart. The
        served version's manifest names what it was promoted for (``trigger``, ``reason``):
        that is recorded now as the event's decision, so the redelivered event is a
        duplicate. Only the served version can lack its decision: every earlier one was
        recorded before the next event was read. A version an operator rolled back to
        (``CURRENT`` says ``rollback``) has no event behind this switch, whatever the log
        still holds.
        """
        pointer = self.registry.pointer()  # one read: the version and what switched to it
        if pointer is None:
            return
        version, by = pointer
        if by == "rollback":
            return  # an operator chose it (`fishweight models rollback`): no event behind it
        # A decision taken while the version served is proof too: its promotion's record
        # came before it, and may since have rolled out of the log.
        if any((d.get("action") == "promoted" and d.get("version") == version)
                                  or d.get("current_version") == version for d in decisions):
            return
        try:
            manifest = self.registry.manifest(version)
        except ModelError:
            return  # load_current reports it on the first event
        reason, trigger = manifest.get("reason"), manifest.get("trigger")
        if reason not in (*EVENT_REASONS, "refinement") or not isinstance(trigger, dict):
            return  # bootstrapped or published by hand: no event behind it
        if reason in EVENT_REASONS:
            self._decided_windows.add(window_key(trigger))
        log.warning("model version %d was promoted but its decision was not recorded (the "
                    "trainer stopped in between): recording it now", version)
        self._record(Decision("promoted", trigger,
                              f"recovered on restart from the manifest of version {version}",
                              reason=reason, version=version,
                              current_version=manifest.get("parent_version"),
                              gate=manifest.get("metrics", {}).get("gate", {}),
                              training_species=manifest.get("species_records", {})))

    def store_diffs(self, records: list[dict[str, Any]]) -> None:
        self.stats.diffs_stored += self.store.append(records)

    def _record(self, decision: Decision) -> Decision:
        self.stats.count_decision(decision)
        self.decisions_path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(asdict(decision), sort_keys=True).encode() + b"\n"
        created = not self.decisions_path.exists()
        with open(self.decisions_path, "ab+") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell():  # a line cut short by a kill must not swallow this one
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    line = b"\n" + line
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())  # durable before the event's offset is committed
            size = fh.tell()
        if created:
            fsync_dir(self.decisions_path.parent)  # and so is the new file's name
        if size > self.settings.decision_log_max_mb * 2**20:
            # The newest decisions stay readable: the file that holds them becomes the
            # rolled one, whole, and the next decision starts a new file.
            os.replace(self.decisions_path, rolled(self.decisions_path))
            fsync_dir(self.decisions_path.parent)
            # What a restart would remember now: the windows the two files hold. Bounds
            # the set as the log is bounded (an event a minute for ever would grow it).
            self._decided_windows = decided_windows(read_decisions(self.settings))
            log.info("decision log rolled over to %s (%d bytes)",
                     rolled(self.decisions_path), size)
        return decision

    def fail(self, event: dict[str, Any], exc: BaseException) -> Decision:
        """Record that handling an event failed; the trainer goes on with the next one."""
        log.exception("retrain event failed: %s", exc)
        self._decided_windows.add(window_key(event))
        self.stats.retrain_events += 1
        # No current_version: a failure after a publish must not pass for proof that the
        # publish was recorded (_recover_promotion).
        return self._record(Decision("failed", event, f"{type(exc).__name__}: {exc}"[:500],
                                     reason=rule_of(event)))

    def handle_retrain(self, event: dict[str, Any]) -> Decision:
        decision = self._decide(event)  # a StoreError: the event is handled again later
        self.stats.retrain_events += 1
        decision = self._record(decision)
        if decision.action not in UNDECIDED:
            self._decided_windows.add(window_key(event))
        self._wait_if_too_few(decision)
        log.info("retrain event for %s %s..%s (ErrorAvg %.3f, Count %s): %s - %s",
                 event.get("Species"), event.get("WindowStart"), event.get("WindowEnd"),
                 event.get("ErrorAvg", float("nan")), event.get("Count"),
                 decision.action, decision.detail)
        return decision

    def _decide(self, event: dict[str, Any]) -> Decision:
        current = self.registry.load_current()
        if window_key(event) in self._decided_windows:
            return Decision("skipped_duplicate", event, "this window was already decided",
                            reason=rule_of(event), current_version=current.version)
        refused = self._beyond_species_limit(current, event, rule_of(event))
        if refused is not None:  # before the stale rule: a refusal is remembered by none
            return refused
        stale = self._stale_because(current, event)
        if stale is not None:
            return Decision("skipped_stale", event, stale, reason=rule_of(event),
                            current_version=current.version)
        return self._act(current, event, trigger_time_ms(event))

    def _act(self, current: LoadedModel, event: dict[str, Any], before_ms: int | None
             ) -> Decision:
        """Fit and gate for an event that stands.

        A change inside a known species, or the window path (a new species, or a
        species' line retrained on its newest records).
        """
        change = self.change_of(event, current)
        if change is None:
            return self._retrain(current, before_ms, event, "window")
        species, since = change
        if rule_of(event) != "bias":  # the window rule or the change rule
            return self._adapt(current, species, since, event, "change")
        since = self._shift_since(current, species, event, since)
        return self._adapt(current, species, since, event, "bias")

    def _shift_since(self, current: LoadedModel, species: str, event: dict[str, Any],
                     span_start: int) -> int:
        """Where a bias event's drift began (epoch ms).

        The bias rule fires once its last ``bias_records`` records lean one way, which
        may be some records after the drift began. The current model's signed errors on
        the species' records up to the event's last (twice as many at most, none before a
        change it learnt) are split where they shifted the way the event's records lean
        (``policy.shift_start``). Without such a split: the event's span, whose records
        are known to lean.
        """
        learnt = changes_of(current).get(species)
        fallback = span_start if learnt is None else max(span_start, learnt)
        count = event.get("Count") if isinstance(event.get("Count"), int) else 0
        records = self.store.latest(max(2 * count, 2 * self.settings.bias_records),
                                    trigger_time_ms(event), species, learnt)
        if len(records) < 6 or count < 2:
            return fallback
        records.sort(key=lambda r: (r["Timestamp"], r["Fish_Id"]))
        signed = signed_errors(current.estimator, to_frame(records))
        direction = 1.0 if float(np.mean(signed[-count:])) >= 0 else -1.0
        at = shift_start(signed, direction)
        return fallback if at is None else int(records[at]["Timestamp"])

    def _stale_because(self, current: LoadedModel, event: dict[str, Any]) -> str | None:
        """Why an event is stale under ``current`` (None: it stands).

        An event scored (even partly) by a version older than ``current`` is stale when
        ``current`` has had its chance at the event's species: it was
        trained on records of that species up to the event's last one or later, it learnt
        a change of the species that began after the event, or it predicts the event's
        records (the newest ``Count`` stored records of its species up to its last, the
        records the rule looked at) within the rule that fired. It stands when a newer
        version changed other species only and still gets these records wrong: a scale
        recalibrated for every species raises one event per species, each scored by the
        version before.
        """
        s = self.settings
        scored_by = sorted(v for v in event.get("ModelVersions") or [] if v is not None)
        if scored_by and scored_by[0] >= current.version:
            return None
        stale = (f"window scored by version(s) {scored_by}, version {current.version} is "
                 f"current and ")
        species, count, end = event.get("Species") or [], event.get("Count"), trigger_time_ms(
            event)
        if (not scored_by or len(species) != 1 or not isinstance(species[0], str)
                or not isinstance(count, int) or isinstance(count, bool) or count < 1
                or end is None):
            return stale + "had no full window yet"
        trained = current.manifest.get("species_records") or {}
        last = (current.manifest.get("training_window") or {}).get("last_timestamp")
        if trained.get(species[0]) and isinstance(last, int) and last >= end - 1:
            return stale + f"was trained on {species[0]} records up to the event's last or later"
        since = changes_of(current).get(species[0])
        if since is not None and since >= end - 1:
            return stale + f"learnt a change of {species[0]} that began after the event"
        records = self.store.latest(min(count, s.retrain_samples), end, species[0])
        needed = {"change": s.change_over, "bias": min(count, s.retrain_samples)}.get(
            rule_of(event), s.min_window_count)
        if len(records) < needed:  # too few stored to judge the rule again
            return stale + (f"had no full window yet ({len(records)} of the event's records "
                            f"are stored)")
        frame = to_frame(records)
        errors = relative_errors(current.estimator, frame)
        over, mean = int((errors > s.error_threshold).sum()), float(errors.mean())
        figures = f"{over} of {len(errors)} over the threshold, mean error {mean:.3f}"
        if rule_of(event) == "change":
            wrong = over >= s.change_over
        elif rule_of(event) == "bias":
            signed = signed_errors(current.estimator, frame)
            wrong = leans(signed, s.bias_t, s.bias_min)
            figures = (f"mean signed error {float(signed.mean()):+.4f} over {len(signed)} "
                       f"records, standard deviation {float(signed.std(ddof=1)):.4f}")
        else:
            wrong = mean > s.error_threshold
        if wrong:
            log.info("event for %s stands under version %d: %s", species, current.version,
                     figures)
            return None
        return stale + f"predicts its records within the rule ({figures})"

    def _wait_if_too_few(self, decision: Decision) -> None:
        """Keep an event that found too few records, to retry it as more are stored."""
        species = decision.event.get("Species") or []
        if len(species) != 1 or not isinstance(species[0], str):
            return
        if decision.action == "skipped_too_few" and decision.reason in EVENT_REASONS:
            # No store call here: the verdict is recorded, so a store outage now would
            # decide the event twice. -1: tried at the next refinement check.
            self._waiting.pop(species[0], None)
            self._waiting[species[0]] = (decision.event, -1)
            while len(self._waiting) > self.settings.max_species:  # bounded: the oldest go
                del self._waiting[next(iter(self._waiting))]
        elif decision.action == "promoted" or (decision.action == "not_promoted"
                                               and decision.reason != "refinement"):
            self._waiting.pop(species[0], None)  # a newer verdict on the species

    def _retry_waiting(self, current: LoadedModel, counts: dict[str, int]) -> Decision | None:
        """Decide again an event that found too few records, once more are stored.

        Without this, a species whose first events came too early (the store just
        started, or the change had few records yet) would wait for the refinement rule's
        ``refine_min_records``: each rule fires once per window, or per species and version.
        """
        for species, (event, tried_at) in list(self._waiting.items()):
            stored = counts.get(species, 0)
            if stored <= tried_at:
                continue
            try:
                if self._stale_because(current, event) is not None:
                    del self._waiting[species]  # a newer version had its chance at it
                    continue
                decision = self._retry(current, event)
            except (StoreError, ModelUnavailable):
                raise  # an outage: the service retries the whole check
            except Exception as exc:  # noqa: BLE001 - one event must not block refinement
                log.exception("retrying the retrain event for %s failed", species)
                decision = Decision("failed", event, f"{type(exc).__name__}: {exc}"[:500],
                                    reason=rule_of(event))
            if decision.action == "skipped_too_few":
                self._waiting[species] = (event, stored)
                continue
            del self._waiting[species]
            decision = self._record(decision)
            log.info("retrain event for %s retried with %d of its records stored: %s - %s",
                     event.get("Species"), stored, decision.action, decision.detail)
            return decision
        return None

    def _retry(self, current: LoadedModel, event: dict[str, Any]) -> Decision:
        """A waiting event decided again (``_retry_waiting``)."""
        # The limit may have been reached meanwhile (another species learnt).
        refused = self._beyond_species_limit(current, event, rule_of(event))
        if refused is not None:
            return refused
        return self._act(current, event, None)

    def _beyond_species_limit(self, current: LoadedModel, event: dict[str, Any],
                              reason: str) -> Decision | None:
        """``skipped_species_limit`` if the event's species cannot be learnt (max_species).

        Whether it can depends only on the species the model knows and the limit: they
        come first, then the event's own (``policy.admitted_species``).
        """
        known = species_of(current)
        wanted = [sp for sp in event.get("Species") or [] if isinstance(sp, str)]
        limit = self.settings.max_species
        if not wanted or admitted_species(known, wanted, {}, limit).intersection(wanted):
            return None
        return Decision("skipped_species_limit", event,
                        f"the model knows {len(known)} species, the most it may learn "
                        f"(max_species = {limit}): {', '.join(wanted)} is not learnt, its "
                        f"fish are predicted from the shared line",
                        reason=reason, current_version=current.version)

    def change_of(self, event: dict[str, Any],
                  current: LoadedModel | None = None) -> tuple[str, int] | None:
        """(species, change start) for a change inside a species the model knows.

        None for a new species (or an event without a start): the window path.
        """
        species, since = event.get("Species") or [], event.get("Change_Timestamp")
        current = current or self.registry.load_current()
        if (len(species) != 1 or not isinstance(since, int)
                or not isinstance(current.estimator, SpeciesShrinkageRegressor)
                or not current.estimator.knows(species[0])):
            return None
        return species[0], since

    def species_counts(self, current: LoadedModel) -> dict[str, int]:
        """Stored records per species; for a changed species only those since the change."""
        counts = self.store.species_counts()
        for species, since in changes_of(current).items():
            counts[species] = self.store.species_counts(since_ms=since).get(species, 0)
        return counts

    def refine_if_due(self) -> Decision | None:
        """Retrain by itself when a species has gathered enough records since promotion."""
        current = self.registry.load_current()
        counts = self.species_counts(current)
        retried = self._retry_waiting(current, counts)
        if retried is not None:
            return retried
        changes = changes_of(current)
        known = species_of(current)
        for species in refinement_due(counts, evidence_of(current),
                                      self.settings.refine_min_records):
            if species not in admitted_species(known, [species], {}, self.settings.max_species):
                continue  # it cannot be learnt (max_species): a retrain would be refused
            tries, at = self._refine_tries.get((current.version, species), (0, 0))
            if tries >= REFINE_ATTEMPTS or (tries and counts[species] < at + REFINE_STEP):
                continue
            self._refine_tries[(current.version, species)] = (tries + 1, counts[species])
            self.stats.refinements += 1
            event = {"Species": [species], "Count": counts[species]}
            if species in changes:
                decision = self._adapt(current, species, changes[species], event, "refinement")
            else:
                decision = self._retrain(current, None, event, "refinement")
            decision = self._record(decision)
            log.info("refinement for %s (%d records stored): %s - %s", species,
                     counts[species], decision.action, decision.detail)
            return decision
        return None

    def _adapt(self, current: LoadedModel, species: str, since_ms: int, event: dict[str, Any],
               reason: str) -> Decision:
        """Refit one known species on its records since a change (module doc)."""
        records = self.store.latest(self.settings.retrain_samples, None, species, since_ms)
        if len(records) < 3:
            return Decision("skipped_too_few", event,
                            f"only {len(records)} records of {species} since the change, need 3",
                            reason=reason, current_version=current.version)
        frame = to_frame(sorted(records, key=lambda r: (r["Timestamp"], r["Fish_Id"])))
        candidate, loo, choice = refit_species(current.estimator, species,
                                               frame[["Species", "Length", "Height"]],
                                               frame["Weight"])
        errors = relative_errors(current.estimator, frame)
        every = bool(np.all(loo < errors))
        # A refinement only refines: the model it replaces was already judged better than
        # its own predecessor on these records, so the mean decides. So it does for the
        # bias rule: a drift within the noise leaves records the old line predicts better
        # by chance, and the rule's t statistic already refused outliers and noise.
        promote = (float(loo.mean()) < float(errors.mean()) * (1.0 - GATE_MARGIN)
                   and (every or reason != "change"))
        gate = {"candidate_loo": float(loo.mean()), "current": float(errors.mean()),
                "n": len(frame), "promote": promote, "every_record_better": every,
                "since_ms": since_ms, "choice": choice}
        detail = (f"{species} since its change: leave-one-out error {gate['candidate_loo']:.4f} "
                  f"({choice['kind']}) vs current v{current.version} {gate['current']:.4f} on "
                  f"{len(frame)} records, better on every record: {every}")
        return self._conclude(current, candidate, frame, event, reason, detail, gate,
                              {species: len(frame)}, {
                                  "species": sorted(set(current.manifest.get("species", []))
                                                    | {species}),
                                  "evidence": {**evidence_of(current), species: len(frame)},
                                  "changes": {**changes_of(current), species: since_ms}})

    def _conclude(self, current: LoadedModel, candidate, frame, event: dict[str, Any],
                  reason: str, detail: str, gate: dict[str, Any], in_training: dict[str, int],
                  manifest: dict[str, Any]) -> Decision:
        """Publish the candidate if the gate let it through; the decision either way.

        ``manifest`` holds what differs between the paths (species, evidence, changes).
        """
        if not gate["promote"]:
            return Decision("not_promoted", event, detail, reason=reason,
                            current_version=current.version, gate=gate,
                            training_species=in_training)
        version = self.registry.publish(candidate, expected_current=current.version, metadata={
            "n_samples": len(frame),
            "species_records": in_training,
            **manifest,
            "model": candidate.describe(),
            "training_window": self._window(frame),
            "metrics": {"gate": gate},
            "trigger": event,
            "reason": reason,
        })
        self._refine_tries.clear()
        return Decision("promoted", event, detail, reason=reason, version=version,
                        current_version=current.version, gate=gate,
                        training_species=in_training)

    @staticmethod
    def _window(frame) -> dict[str, Any]:
        """The training window of a manifest: which records a version was trained on."""
        return {
            "first_fish_id": int(frame["Fish_Id"].iloc[0]),
            "last_fish_id": int(frame["Fish_Id"].iloc[-1]),
            "first_timestamp": int(frame["Timestamp"].min()),
            "last_timestamp": int(frame["Timestamp"].max()),
            "fish_ids": [int(i) for i in frame["Fish_Id"]],
        }

    def _retrain(self, current: LoadedModel, before_ms: int | None, event: dict[str, Any],
                 reason: str) -> Decision:
        s = self.settings
        changes = changes_of(current)
        stored = self.store.species_counts(before_ms)
        known = species_of(current)
        # The event's species may be learnt: _decide refused it before (max_species), and
        # refine_if_due tries no other.
        wanted = [sp for sp in event.get("Species") or [] if isinstance(sp, str)]
        admitted = admitted_species(known, wanted, stored, s.max_species)
        missing = [sp for sp in wanted if not stored.get(sp)]
        if wanted and len(missing) == len(wanted):
            return Decision("skipped_too_few", event,
                            f"no records of {', '.join(missing)} stored: nothing to learn "
                            f"it from", reason=reason, current_version=current.version)
        records = [r for r in select_training_records(
                       self.store.latest, [sp for sp in stored if sp in admitted], before_ms,
                       s.retrain_samples, s.memory_per_species, changes)
                   if r["Species"] in admitted]
        if len(records) < MIN_TRAINING_RECORDS:
            return Decision("skipped_too_few", event,
                            f"only {len(records)} records stored, need {MIN_TRAINING_RECORDS}",
                            reason=reason, current_version=current.version)
        frame = to_frame(records)
        in_training = {str(k): int(v) for k, v in frame["Species"].value_counts().items()}
        candidate = fit(frame)
        if isinstance(current.estimator, SpeciesShrinkageRegressor):
            # None of the served species is dropped (policy.admitted_species).
            candidate = keep_species(candidate, current.estimator, known)
        trained_until = current.manifest.get("training_window", {}).get("last_timestamp")
        gate = loo_gate(candidate, current.estimator, frame,
                        current_trained_until_ms=trained_until, margin=GATE_MARGIN)
        detail = (f"leave-one-out error {gate['candidate_loo']:.4f} vs current "
                  f"v{current.version} {gate['current']:.4f} on {gate['n']} records; "
                  f"trained on {in_training}")
        stored = self.species_counts(current)
        evidence = evidence_of(current)
        kept = {sp: evidence.get(sp, 0) for sp in getattr(candidate, "species_", ())
                if sp not in in_training}  # their lines kept as they were
        return self._conclude(current, candidate, frame, event, reason, detail, gate,
                              in_training, {
                                  "species": sorted({*in_training, *kept}),
                                  "evidence": {**kept, **{
                                      sp: max(stored.get(sp, 0), in_training.get(sp, 0))
                                      for sp in set(stored) | set(in_training)}},
                                  **({"changes": changes} if changes else {})})


def decision_log(settings: Settings) -> Path:
    """Where the trainer appends its decisions (``rolled`` of it holds the ones before)."""
    return Path(settings.state_dir) / "trainer-decisions.jsonl"


def rolled(path: Path) -> Path:
    return path.with_name(path.name + ".1")


def read_decisions(settings: Settings) -> list[dict[str, Any]]:
    """The decision log, oldest first: the rolled-over file, then the current one.

    A line cut short (the trainer killed while appending) is skipped.
    """
    current = decision_log(settings)
    decisions = []
    for path in (rolled(current), current):
        if not path.exists():
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                decisions.append(json.loads(line))
            except ValueError:
                log.warning("%s:%d is not a complete decision (cut short?); skipped", path,
                            number)
    return decisions

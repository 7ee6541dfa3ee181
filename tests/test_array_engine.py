"""Tests of the array engine `ArrayTissue` (`tissue_abm.engines.array`).

The array engine has no agent identities, so the invariants of `test_model` are checked at the
level of sites: its state arrays (`tissue`, `immune`, `sasp` and the flat per-site `damage`,
`exposure`, `damage_scale`, `divisions`, `arrest_age`, `lifetime`) are compared between
consecutive days of busy runs. Also: determinism, the run's end, the readout table, the day-zero
state, the grid snapshot and limiting cases, with the parameter set-ups of `test_model`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from test_model import (
    ACTIVE_PARAMS,
    ACTIVE_START_AGE,
    ACTIVE_THERAPY,
    COUNT_COLUMNS,
    FRACTION_COLUMNS,
    NEW_SENESCENCE,
    NO_SENESCENCE,
    SENESCENT_REMOVALS,
    active_model,
    assert_busy_run,
    check_conservation,
    check_full_senolysis_on_dose_days,
    moore_distance,
    moore_neighbours,
    variant,
)
from tissue_abm import Parameters, Senolytic, Therapy
from tissue_abm.biology.perturbation import Pulse, Transplant
from tissue_abm.biology.readouts import EVENTS, READOUTS, SITE_STATES
from tissue_abm.biology.rules import EMPTY, HEALTHY, SENESCENT
from tissue_abm.engines.array import KERNELS, ArrayTissue
from tissue_abm.engines.base import INITIAL_ARREST_AGE_MAX

STATE_ARRAYS = ("damage", "exposure", "damage_scale", "divisions", "arrest_age", "lifetime")
"""The engine's flat per-site state arrays."""


def active_tissue(
    size: int = 20,
    days: int = 30,
    rng: int | np.random.Generator = 7,
    torus: bool = True,
    kernel: str | None = None,
    **changes: float,
) -> ArrayTissue:
    """The busy old tissue of `test_model.active_model` on the array engine."""
    return ArrayTissue(
        params=variant(ACTIVE_PARAMS, **changes),
        therapy=ACTIVE_THERAPY,
        size=size,
        start_age=ACTIVE_START_AGE,
        days=days,
        torus=torus,
        rng=rng,
        kernel=kernel,
    )


def last_readout(model: ArrayTissue) -> dict:
    """The newest readout row, with each column's own type (ints stay ints)."""
    return model.readouts.to_dict("records")[-1]


def site(index: int, size: int) -> tuple[int, int]:
    """The (x, y) coordinate of flat site `index` (row-major)."""
    return divmod(int(index), size)


def neighbour_indices(index: int, size: int, torus: bool) -> list[int]:
    """Flat indices of the Moore neighbours of a site, from `test_model.moore_neighbours`."""
    return [x * size + y for x, y in moore_neighbours(site(index, size), size, torus)]


def max_matching(candidates: dict[int, list[int]]) -> int:
    """Size of a maximum matching of the bipartite graph `left -> [right, ...]` (Kuhn)."""
    match: dict[int, int] = {}

    def augment(left: int, seen: set[int]) -> bool:
        for right in candidates[left]:
            if right in seen:
                continue
            seen.add(right)
            if right not in match or augment(match[right], seen):
                match[right] = left
                return True
        return False

    return sum(augment(left, set()) for left in candidates)


# --- daily snapshots and invariant checks ---------------------------------------------------------


@dataclass
class Snapshot:
    """Copies of the engine's state, flat per site, for comparing consecutive days."""

    tissue: np.ndarray
    immune: np.ndarray
    sasp: np.ndarray
    damage: np.ndarray
    exposure: np.ndarray
    damage_scale: np.ndarray
    divisions: np.ndarray
    arrest_age: np.ndarray
    lifetime: np.ndarray


def take_snapshot(model: ArrayTissue) -> Snapshot:
    return Snapshot(
        tissue=model.tissue.ravel().copy(),
        immune=model.immune.ravel().copy(),
        sasp=model.sasp.ravel().copy(),
        **{name: getattr(model, name).copy() for name in STATE_ARRAYS},
    )


def check_arrays(model: ArrayTissue) -> None:
    """Shapes, types and ranges of the state arrays."""
    size = model.tissue.shape[0]
    sites = size * size
    assert model.tissue.shape == model.immune.shape == model.sasp.shape == (size, size)
    assert model.immune.dtype == bool
    for name in STATE_ARRAYS:
        assert getattr(model, name).shape == (sites,), name
    assert model.neighbours.shape == (sites, 8)

    tissue = model.tissue.ravel()
    assert np.isin(tissue, (EMPTY, HEALTHY, SENESCENT)).all()
    assert np.isfinite(model.sasp).all()
    assert (model.sasp >= 0.0).all()
    healthy = tissue == HEALTHY
    for name in ("damage", "exposure"):
        values = getattr(model, name)[healthy]
        assert np.isfinite(values).all(), name
        assert (values >= 0.0).all(), name
    scale = model.damage_scale[healthy]
    assert np.isfinite(scale).all() and (scale > 0.0).all()
    assert (model.divisions[healthy] >= 0).all()
    assert (model.arrest_age[tissue == SENESCENT] >= 0).all()
    assert (model.lifetime[model.immune.ravel()] >= 1).all(), (
        "an immune cell stayed after its lifetime ran out"
    )


def check_readout_row(model: ArrayTissue, row: dict) -> None:
    """The newest readout row agrees with the arrays."""
    tissue = model.tissue.ravel()
    sites = tissue.size
    assert row["day"] == model.time
    assert row["age"] == pytest.approx(model.age)
    from_arrays = {
        "healthy": int(np.count_nonzero(tissue == HEALTHY)),
        "senescent": int(np.count_nonzero(tissue == SENESCENT)),
        "empty": int(np.count_nonzero(tissue == EMPTY)),
        "immune": int(np.count_nonzero(model.immune)),
    }
    assert {name: row[name] for name in COUNT_COLUMNS} == from_arrays
    assert row["healthy"] + row["senescent"] + row["empty"] == sites
    assert sum(row[name] for name in FRACTION_COLUMNS) == pytest.approx(1.0)
    for name in FRACTION_COLUMNS:
        assert row[name] == pytest.approx(row[name.removesuffix("_fraction")] / sites)
    for name in EVENTS:
        assert isinstance(row[name], int | np.integer), f"{name} is not an integer tally"
        assert row[name] >= 0, name
    assert row["mean_sasp"] == pytest.approx(model.sasp.mean())
    healthy = tissue == HEALTHY
    if healthy.any():
        assert row["mean_damage"] == pytest.approx(model.damage[healthy].mean())
    else:
        assert math.isnan(row["mean_damage"])


def check_state(model: ArrayTissue) -> None:
    check_arrays(model)
    check_readout_row(model, last_readout(model))


def check_tissue_transitions(
    before: Snapshot, after: Snapshot, row: dict, size: int, torus: bool
) -> None:
    """Site-level tissue changes of one day are the ones the tallies report, and only those."""
    was, now = before.tissue, after.tissue
    assert not np.any((was == SENESCENT) & (now == HEALTHY)), (
        "a senescent site became healthy within one day"
    )
    assert not np.any((was == EMPTY) & (now == SENESCENT)), (
        "an empty site became senescent within one day"
    )

    # New senescent sites: healthy at dawn, arrested today (arrest age 0).
    new_senescent = np.flatnonzero((now == SENESCENT) & (was != SENESCENT))
    assert (was[new_senescent] == HEALTHY).all()
    assert (after.arrest_age[new_senescent] == 0).all()
    assert new_senescent.size == sum(row[name] for name in NEW_SENESCENCE)

    # Surviving senescent sites age by exactly one day.
    kept = (was == SENESCENT) & (now == SENESCENT)
    np.testing.assert_array_equal(after.arrest_age[kept], before.arrest_age[kept] + 1)

    # Healthy sites lost today: emptied by death or arrested (counted above).
    assert np.count_nonzero((was == HEALTHY) & (now == EMPTY)) == row["healthy_deaths"]

    # Surviving healthy cells keep their damage multiplier; their division count grows by one
    # exactly when they divided today (the parents).
    stayed = np.flatnonzero((was == HEALTHY) & (now == HEALTHY))
    np.testing.assert_array_equal(after.damage_scale[stayed], before.damage_scale[stayed])
    grown = after.divisions[stayed] - before.divisions[stayed]
    assert np.isin(grown, (0, 1)).all(), "a healthy cell's division count jumped"
    parents = stayed[grown == 1]
    assert parents.size == row["divisions"]

    # Healthy cells born today: into a vacancy of dawn next to a healthy cell of dawn, with the
    # division count, damage and exposure of a parent that divided today; one daughter each.
    born = np.flatnonzero((was == EMPTY) & (now == HEALTHY))
    assert born.size == row["divisions"]
    parent_set = set(parents.tolist())
    candidates = {}
    for daughter in born.tolist():
        around = neighbour_indices(daughter, size, torus)
        assert any(was[n] == HEALTHY for n in around), (
            f"site {site(daughter, size)} filled without a healthy neighbour at dawn"
        )
        candidates[daughter] = [
            n
            for n in around
            if n in parent_set
            and after.divisions[n] == after.divisions[daughter]
            and after.damage[n] == after.damage[daughter]
            and after.exposure[n] == after.exposure[daughter]
        ]
        assert candidates[daughter], (
            f"daughter at {site(daughter, size)} matches no neighbouring parent"
        )
    assert max_matching(candidates) == born.size, "daughters and parents do not pair up"

    # Senescent sites emptied today: removals need a cause; immune kills need an immune cell on
    # or next to the site at dawn that stayed there (a hunter neither departs nor moves).
    removed = np.flatnonzero((was == SENESCENT) & (now == EMPTY))
    assert removed.size == sum(row[name] for name in SENESCENT_REMOVALS)
    reach = set()
    for cell in np.flatnonzero(before.immune & after.immune).tolist():
        reach.add(cell)
        reach.update(neighbour_indices(cell, size, torus))
    out_of_reach = [cell for cell in removed.tolist() if cell not in reach]
    assert len(out_of_reach) <= row["cleared_senolytic"] + row["senescent_deaths"]


def check_immune_transitions(
    before: Snapshot, after: Snapshot, row: dict, size: int, torus: bool, chemotactic: bool = False
) -> int:
    """Immune cells age, depart at lifetime 1, step at most one site onto a free one.

    With `chemotactic`, every move also goes to a free neighbour of highest SASP at dawn.

    Returns:
        The number of immune cells that moved (to make sure the run exercised movement).
    """
    was, now = before.immune, after.immune
    departing = was & (before.lifetime == 1)
    assert np.count_nonzero(departing) == row["immune_departed"]
    assert not np.any(departing & now), "a site kept (or regained) a departing immune cell"

    # A site occupied at dawn cannot be claimed by a mover or a recruit, so sites occupied both
    # at dawn and now hold the same cell, one day older.
    stayed = was & now
    np.testing.assert_array_equal(after.lifetime[stayed], before.lifetime[stayed] - 1)
    # Hunters neither move nor depart; a cell kills at most one senescent cell a day.
    assert row["cleared_immune"] <= np.count_nonzero(stayed)

    # Every other vacated site is a mover; every newly occupied site is a recruit or a mover's
    # new site, one Moore step from where it was, with the mover's lifetime less one day.
    movers = np.flatnonzero(was & ~now & ~departing)
    arrived = np.flatnonzero(now & ~was)
    assert arrived.size == row["immune_recruited"] + movers.size, (
        "immune arrivals are not the recruits plus the movers (a move onto an occupied site?)"
    )
    candidates = {}
    for mover in movers.tolist():
        around = neighbour_indices(mover, size, torus)
        assert before.tissue[mover] != SENESCENT, "an immune cell walked away from its prey"
        assert all(before.tissue[n] != SENESCENT for n in around), (
            "an immune cell walked away from its prey"
        )
        free = [n for n in around if not was[n]]
        steepest = max((before.sasp[n] for n in free), default=-math.inf)
        candidates[mover] = [
            target
            for target in arrived.tolist()
            if moore_distance(site(mover, size), site(target, size), size, torus) == 1
            and after.lifetime[target] == before.lifetime[mover] - 1
            and (not chemotactic or before.sasp[target] == steepest)
        ]
    for mover, targets in candidates.items():
        assert targets, f"immune cell at {site(mover, size)} vanished, jumped" + (
            " or went down the SASP gradient" if chemotactic else ""
        )
    assert max_matching(candidates) == movers.size, "movers and their new sites do not pair up"
    return int(movers.size)


def run_checking_every_day(model: ArrayTissue, days: int, chemotactic: bool = False) -> int:
    """Step `days` times, checking every invariant after each day; returns immune moves."""
    size = model.tissue.shape[0]
    check_state(model)
    before, before_row = take_snapshot(model), last_readout(model)
    moves = 0
    for _ in range(days):
        model.step()
        check_state(model)
        after, after_row = take_snapshot(model), last_readout(model)
        assert len(model.readouts) == after_row["day"] + 1
        check_conservation(before_row, after_row)
        check_tissue_transitions(before, after, after_row, size, model.torus)
        moves += check_immune_transitions(before, after, after_row, size, model.torus, chemotactic)
        before, before_row = after, after_row
    return moves


# --- 1. invariants -------------------------------------------------------------------------------


@pytest.mark.parametrize("torus", [True, False], ids=["torus", "closed"])
def test_neighbour_table_is_the_moore_neighbourhood(torus: bool) -> None:
    size = 6
    model = active_tissue(size=size, days=1, torus=torus)
    for index in range(size * size):
        row = model.neighbours[index]
        assert sorted(row[row >= 0].tolist()) == sorted(neighbour_indices(index, size, torus))
        if torus:
            assert (row >= 0).all()


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("rng", [3, 17])
@pytest.mark.parametrize("torus", [True, False], ids=["torus", "closed"])
def test_invariants_hold_every_day_with_all_processes_active(
    torus: bool, rng: int, kernel: str
) -> None:
    days = 60
    model = active_tissue(size=25, days=days, rng=rng, torus=torus, kernel=kernel)
    immune_moves = run_checking_every_day(model, days)
    assert_busy_run(model.readouts, immune_moves)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("torus", [True, False], ids=["torus", "closed"])
def test_fully_chemotactic_immune_cells_step_up_the_sasp_gradient(torus: bool, kernel: str) -> None:
    days = 30
    model = active_tissue(
        size=20, days=days, rng=21, torus=torus, kernel=kernel, immune_chemotaxis=1.0
    )
    assert run_checking_every_day(model, days, chemotactic=True) > 0


@pytest.mark.parametrize(
    "arguments", [{"size": 2}, {"start_age": -1}, {"days": -1}], ids=["size", "start_age", "days"]
)
def test_invalid_run_arguments_are_rejected(arguments: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(arguments))):
        ArrayTissue(**{"size": 5, "days": 1, "rng": 1, **arguments})


def test_senolytic_dose_of_fraction_one_clears_every_senescent_cell_on_dose_days() -> None:
    start_age, days = 600, 20
    schedule = Senolytic(every=5, fraction=1.0, start_age=start_age + 2)
    model = ArrayTissue(
        params=variant(ACTIVE_PARAMS, initial_senescent_fraction=0.1),
        therapy=Therapy(senolytic=schedule),
        size=20,
        start_age=start_age,
        days=days,
        rng=11,
    )
    for _ in range(days):
        model.step()
    check_full_senolysis_on_dose_days(model.readouts, schedule, doses=4)


# --- 2. determinism and the run's end ----------------------------------------------------------


def assert_same_run(first: ArrayTissue, second: ArrayTissue) -> None:
    assert_frame_equal(first.readouts, second.readouts)
    for name in ("tissue", "immune", "sasp", *STATE_ARRAYS):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name), err_msg=name)


def step_days(model: ArrayTissue, days: int) -> ArrayTissue:
    for _ in range(days):
        model.step()
    return model


def test_same_seed_gives_identical_run() -> None:
    first = step_days(active_tissue(days=30, rng=42), 30)
    second = step_days(active_tissue(days=30, rng=42), 30)
    assert_same_run(first, second)


def test_same_numpy_generator_seed_gives_identical_run() -> None:
    first = step_days(active_tissue(days=20, rng=np.random.default_rng(5)), 20)
    second = step_days(active_tissue(days=20, rng=np.random.default_rng(5)), 20)
    assert_same_run(first, second)


def test_different_seed_gives_different_run() -> None:
    first = step_days(active_tissue(days=30, rng=1), 30)
    second = step_days(active_tissue(days=30, rng=2), 30)
    assert list(first.readouts.columns) == list(second.readouts.columns)
    assert not first.readouts.equals(second.readouts)
    assert not np.array_equal(first.tissue, second.tissue)


def test_running_turns_false_at_the_end() -> None:
    days = 5
    model = active_tissue(days=days)
    assert model.running
    for day in range(1, days + 1):
        model.step()
        assert model.time == day
        assert model.running == (day < days)


def test_zero_day_run_is_over_at_once() -> None:
    model = active_tissue(days=0)
    assert not model.running
    assert len(model.readouts) == 1


@pytest.mark.parametrize("planned", [0, 3])
def test_stepping_past_the_planned_end_continues_the_same_run(planned: int) -> None:
    # The planned length only sets `running`: a run stepped past it is the same run as one
    # planned longer (the systemic timeline is extended, earlier days unchanged).
    total = 12
    short, long = active_tissue(days=planned, rng=4), active_tissue(days=total, rng=4)
    for day in range(1, total + 1):
        short.step()
        long.step()
        assert not short.running or day < planned
        assert len(short.readouts) == day + 1
    assert not short.running and not long.running
    assert short.time == long.time == total
    assert short.age == short.readouts["age"].iloc[-1] == ACTIVE_START_AGE + total
    assert short.readouts["day"].tolist() == list(range(total + 1))
    assert_same_run(short, long)
    assert_frame_equal(short.timeline.iloc[: total + 1], long.timeline)


# --- 3. readout table and snapshot ---------------------------------------------------------------


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("planned", [10, 30])
def test_run_for_is_the_same_run_as_stepping_day_by_day(kernel: str, planned: int) -> None:
    # run_for runs the days between perturbations in one kernel call: chunks that end at the
    # perturbations (days 3 and 7; two at day 7), at the planned end (day 10) and past it must
    # give the very same run as single steps. Both go 12 days in uneven pieces.
    perturbations = [
        Pulse(age=ACTIVE_START_AGE + 3, fraction=0.2),
        Transplant(age=ACTIVE_START_AGE + 7, cells=20, state="healthy"),
        Pulse(age=ACTIVE_START_AGE + 7, fraction=0.1),
    ]

    def tissue() -> ArrayTissue:
        return ArrayTissue(
            params=ACTIVE_PARAMS,
            therapy=ACTIVE_THERAPY,
            size=16,
            start_age=ACTIVE_START_AGE,
            days=planned,
            rng=9,
            kernel=kernel,
            perturbations=perturbations,
        )

    stepped, chunked = step_days(tissue(), 12), tissue()
    for days in (0, 2, 6, 0, 4):
        chunked.run_for(days)
    assert chunked.time == 12 and chunked.running == stepped.running == (planned > 12)
    assert_same_run(stepped, chunked)
    # The perturbations took effect: a run without them differs.
    plain = ArrayTissue(
        params=ACTIVE_PARAMS,
        therapy=ACTIVE_THERAPY,
        size=16,
        start_age=ACTIVE_START_AGE,
        days=planned,
        rng=9,
        kernel=kernel,
    )
    plain.run_for(12)
    assert not np.array_equal(plain.tissue, chunked.tissue)


def test_run_for_a_negative_number_of_days_is_refused() -> None:
    model = active_tissue(days=5)
    with pytest.raises(ValueError, match="days >= 0"):
        model.run_for(-1)
    assert model.time == 0 and len(model.readouts) == 1


def test_readout_columns_are_the_documented_readouts_as_in_the_agents_engine() -> None:
    model = active_tissue(size=10, days=3)
    assert list(model.readouts.columns) == list(READOUTS)
    step_days(model, 3)
    readouts = model.readouts
    assert list(readouts.columns) == list(READOUTS)

    agents = active_model(size=10, days=3)
    agents.run_for(3)
    assert list(readouts.columns) == list(agents.readouts.columns)
    kinds = {name: readouts[name].dtype.kind for name in readouts.columns}
    assert kinds == {name: agents.readouts[name].dtype.kind for name in readouts.columns}
    for name in ("day", *EVENTS, *COUNT_COLUMNS):
        assert pd.api.types.is_integer_dtype(readouts[name]), name


def test_day_zero_row_is_the_initial_state() -> None:
    size = 20
    model = active_tissue(size=size, days=10)
    tissue = model.tissue.ravel().copy()
    healthy = tissue == HEALTHY
    initial_counts = {
        "healthy": int(np.count_nonzero(healthy)),
        "senescent": int(np.count_nonzero(tissue == SENESCENT)),
        "immune": int(np.count_nonzero(model.immune)),
    }
    initial_mean_sasp = model.sasp.mean()
    initial_mean_damage = model.damage[healthy].mean()
    assert model.time == 0
    assert model.age == ACTIVE_START_AGE
    assert all(count > 0 for count in initial_counts.values())
    check_state(model)

    step_days(model, 4)
    readouts = model.readouts
    day_zero = readouts.iloc[0]
    assert day_zero["day"] == 0
    assert day_zero["age"] == ACTIVE_START_AGE
    for name, count in initial_counts.items():
        assert day_zero[name] == count
    assert day_zero["empty"] == (
        size * size - initial_counts["healthy"] - initial_counts["senescent"]
    )
    assert (readouts.loc[0, list(EVENTS)] == 0).all()
    assert day_zero["mean_sasp"] == pytest.approx(initial_mean_sasp)
    assert day_zero["mean_damage"] == pytest.approx(initial_mean_damage)

    assert readouts["day"].tolist() == list(range(5))
    np.testing.assert_array_equal(readouts["age"], ACTIVE_START_AGE + np.arange(5))
    assert model.age == ACTIVE_START_AGE + 4 == readouts["age"].iloc[-1]
    for name in (
        "mtorc1",
        "autophagy",
        "immune_competence",
        "division_prob",
        "rapamycin_exposure",
        "oxytocin_level",
    ):
        np.testing.assert_allclose(readouts[name], model.timeline[name].iloc[:5], err_msg=name)


def test_initial_state_is_in_range() -> None:
    model = active_tissue(size=30, days=1, rng=12)
    tissue = model.tissue.ravel()
    senescent, healthy = tissue == SENESCENT, tissue == HEALTHY
    assert senescent.any() and healthy.any()
    assert model.arrest_age[senescent].min() >= 0
    assert model.arrest_age[senescent].max() < INITIAL_ARREST_AGE_MAX
    assert model.divisions[healthy].min() >= 0
    assert model.divisions[healthy].max() <= ACTIVE_PARAMS.replicative_limit // 2
    assert model.sasp.min() > 0.0  # the settled field of the initial senescent cells
    np.testing.assert_allclose(
        model.exposure[healthy], model.sasp.ravel()[healthy] * model._days[0].inflammation
    )


def test_full_tissue_without_senescence_starts_with_no_empty_or_senescent_site() -> None:
    model = ArrayTissue(
        params=Parameters(initial_occupancy=1.0, initial_senescent_fraction=0.0),
        size=30,
        days=1,
        rng=4,
    )
    assert (model.tissue == HEALTHY).all()
    np.testing.assert_array_equal(model.sasp, 0.0)
    day_zero = model.readouts.iloc[0]
    assert day_zero["empty"] == 0
    assert day_zero["senescent"] == 0
    assert day_zero["healthy"] == 30 * 30
    assert day_zero["mean_sasp"] == 0.0


@pytest.mark.parametrize("days", [0, 5])
def test_snapshot_has_one_row_per_site_matching_the_arrays(days: int) -> None:
    size = 12
    model = step_days(active_tissue(size=size, days=5, rng=8), days)
    snapshot = model.snapshot()
    assert len(snapshot) == size * size
    assert (snapshot["age"] == model.age).all()
    x, y = np.indices((size, size))
    np.testing.assert_array_equal(snapshot["x"], x.ravel())
    np.testing.assert_array_equal(snapshot["y"], y.ravel())
    expected_states = np.asarray(SITE_STATES)[model.tissue.ravel()]
    np.testing.assert_array_equal(snapshot["state"].astype(str).to_numpy(), expected_states)
    np.testing.assert_array_equal(snapshot["immune"], model.immune.ravel())
    np.testing.assert_allclose(snapshot["sasp"], model.sasp.ravel(), rtol=1e-6)
    agents = active_model(size=5, days=1)
    assert list(snapshot.columns) == list(agents.snapshot().columns)
    assert list(snapshot.dtypes) == list(agents.snapshot().dtypes)


# --- 4. limits ------------------------------------------------------------------------------------


def test_no_senescence_without_any_cause() -> None:
    days = 60
    model = step_days(active_tissue(size=20, days=days, rng=5, **NO_SENESCENCE), days)
    readouts = model.readouts
    assert (readouts["senescent"] == 0).all()
    assert (readouts[list(NEW_SENESCENCE)] == 0).all().all()
    assert (readouts["mean_sasp"] == 0.0).all()
    np.testing.assert_array_equal(model.sasp, 0.0)
    assert not np.any(model.tissue == SENESCENT)
    # Cells did turn over and divide, so the replicative path was tried.
    assert readouts["divisions"].sum() > 0
    assert readouts["healthy_deaths"].sum() > 0


def test_no_empty_site_appears_without_death_in_a_full_tissue() -> None:
    days = 60
    model = step_days(
        active_tissue(
            size=20,
            days=days,
            rng=6,
            initial_occupancy=1.0,
            healthy_death_rate=0.0,
            **NO_SENESCENCE,
        ),
        days,
    )
    readouts = model.readouts
    assert (readouts["empty"] == 0).all()
    assert (readouts["healthy"] == 20 * 20).all()
    assert (readouts["healthy_deaths"] == 0).all()
    assert (readouts["divisions"] == 0).all()
    assert not np.any(model.tissue == EMPTY)


def test_no_divisions_without_regeneration() -> None:
    days = 40
    model = step_days(active_tissue(size=20, days=days, rng=13, regeneration_rate=0.0), days)
    readouts = model.readouts
    assert (readouts["division_prob"] == 0.0).all()
    assert (readouts["divisions"] == 0).all()
    assert (readouts["new_replicative"] == 0).all()  # arrest needs a division attempt
    assert (readouts["healthy"].diff().iloc[1:] <= 0).all()
    assert readouts["healthy_deaths"].sum() > 0
    assert readouts["empty"].iloc[-1] > 0  # vacancies there were, but nobody filled them


@pytest.mark.parametrize(
    ("change", "tally"),
    [
        ({"primary_max_rate": 0.0}, "new_primary"),
        ({"paracrine_max_rate": 0.0}, "new_paracrine"),
        ({"replicative_limit": 1000}, "new_replicative"),
        ({"senescent_death_rate": 0.0}, "senescent_deaths"),
        ({"healthy_death_rate": 0.0}, "healthy_deaths"),
    ],
    ids=["primary", "paracrine", "replicative", "senescent-death", "healthy-death"],
)
def test_each_event_needs_its_own_cause(change: dict, tally: str) -> None:
    # Each path switched off alone: its tally stays 0, the other paths still happen (so the
    # tallies are not mixed up between paths). Grid and length make each of the other paths
    # expected to happen dozens of times, so that none is absent by chance.
    days = 60
    model = step_days(active_tissue(size=30, days=days, rng=19, **change), days)
    happened = model.readouts[list(EVENTS)].sum()
    assert happened[tally] == 0
    others = [
        name for name in (*NEW_SENESCENCE, "senescent_deaths", "healthy_deaths") if name != tally
    ]
    assert (happened[others] > 0).all(), happened[others]


def test_no_immune_cells_without_recruitment() -> None:
    days = 30
    model = step_days(
        active_tissue(size=20, days=days, rng=14, immune_recruit_base=0.0, immune_recruit_max=0.0),
        days,
    )
    readouts = model.readouts
    assert (readouts["immune"] == 0).all()
    assert (readouts[["immune_recruited", "immune_departed", "cleared_immune"]] == 0).all().all()
    assert not model.immune.any()
    assert readouts["senescent"].max() > 0


def test_no_immune_kills_without_competence() -> None:
    days = 30
    model = step_days(active_tissue(size=20, days=days, rng=15, immune_kill=0.0), days)
    readouts = model.readouts
    assert (readouts["immune_competence"] == 0.0).all()
    assert (readouts["cleared_immune"] == 0).all()
    assert readouts["immune"].min() > 0
    assert readouts["senescent"].min() > 0


def test_no_senolytic_clearance_without_senolytic() -> None:
    days = 30
    model = step_days(
        ArrayTissue(
            params=ACTIVE_PARAMS,
            therapy=Therapy(),
            size=20,
            start_age=ACTIVE_START_AGE,
            days=days,
            rng=16,
        ),
        days,
    )
    readouts = model.readouts
    assert (readouts["cleared_senolytic"] == 0).all()
    assert (readouts["rapamycin_exposure"] == 0.0).all()
    assert readouts["senescent"].min() > 0

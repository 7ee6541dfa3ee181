"""The engine contract: what every engine must do, checked on each engine and kernel.

Every test runs on ("agents", None), ("array", "numba") and ("array", "numpy") (the
`engine_case` fixture of `conftest`). The invariants are checked at the level of sites: each
engine's state is read into flat per-site arrays (`Sites`: the site states, immune presence and
SASP field, and the damage, exposure, damage multiplier and division count of healthy cells,
the arrest age of senescent cells and the lifetime of immune cells), compared between
consecutive days of busy runs. Also: the `Engine` protocol and registry, determinism, the run's
end, `run_for`, the readout table, the grid snapshot and site arrays, the initial state and
limiting cases. What only one engine has (Mesa agents and their identities, the array engine's
neighbour table, the kernels' internals) is tested in `test_model`, `test_array_engine` and
`test_kernels`.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from factories import (
    ACTIVE_PARAMS,
    ACTIVE_START_AGE,
    ACTIVE_THERAPY,
    COUNT_COLUMNS,
    ENGINE_CASES,
    FRACTION_COLUMNS,
    NEW_SENESCENCE,
    NO_SENESCENCE,
    SENESCENT_REMOVALS,
    active_engine,
    assert_busy_run,
    moore_distance,
    moore_neighbours,
    step_days,
    variant,
)
from tissue_abm import Parameters, Senolytic, Therapy
from tissue_abm.biology.perturbation import Pulse, Transplant
from tissue_abm.biology.readouts import EVENTS, READOUTS, SITE_STATES
from tissue_abm.biology.rules import EMPTY, HEALTHY, SENESCENT
from tissue_abm.engines import ENGINES, Engine, engine_class
from tissue_abm.engines.agents.agents import HealthyCell, ImmuneCell, SenescentCell
from tissue_abm.engines.agents.model import TissueModel
from tissue_abm.engines.array import KERNELS
from tissue_abm.engines.base import INITIAL_ARREST_AGE_MAX

STATE_ARRAYS = ("damage", "exposure", "damage_scale", "divisions", "arrest_age", "lifetime")
"""The per-site state arrays of `Sites` besides tissue, immune and SASP."""

DAILY_CHECK_DAYS = {"agents": 80, "array": 60}
"""Length of the busy runs checked day by day, per engine."""


def available_cases() -> list[tuple[str, str | None]]:
    """The engine cases that can run here (the numba kernel only where numba is installed)."""
    return [case for case in ENGINE_CASES if case[1] is None or case[1] in KERNELS]


# --- every engine's state as per-site arrays ----------------------------------------------------


@dataclass
class Sites:
    """Copies of an engine's state, flat per site (row-major, x * L + y)."""

    tissue: np.ndarray
    immune: np.ndarray
    sasp: np.ndarray
    damage: np.ndarray
    exposure: np.ndarray
    damage_scale: np.ndarray
    divisions: np.ndarray
    arrest_age: np.ndarray
    lifetime: np.ndarray


def sasp_field(model: Engine) -> np.ndarray:
    """The engine's SASP field, shape (L, L) (not a copy)."""
    return model.sasp.data if isinstance(model, TissueModel) else model.sasp


def sites_of(model: Engine) -> Sites:
    """The engine's state now as `Sites`.

    The site states and immune presence come from `site_states()` and `immune_sites()`. The
    array engine keeps the per-cell values in flat arrays; the agents engine on its agents
    (values of sites without such a cell are NaN or 0 there, and never compared).
    """
    tissue = model.site_states().ravel()
    immune = model.immune_sites().ravel()
    sasp = sasp_field(model).ravel().copy()
    if isinstance(model, TissueModel):
        size = model.site_states().shape[0]
        cells = {
            "damage": np.full(tissue.size, np.nan),
            "exposure": np.full(tissue.size, np.nan),
            "damage_scale": np.full(tissue.size, np.nan),
            "divisions": np.zeros(tissue.size, dtype=np.int64),
            "arrest_age": np.zeros(tissue.size, dtype=np.int64),
            "lifetime": np.zeros(tissue.size, dtype=np.int64),
        }

        def index(agent) -> int:
            x, y = agent.cell.coordinate
            return x * size + y

        for agent in model.agents_by_type.get(HealthyCell, ()):
            for name in ("damage", "exposure", "damage_scale", "divisions"):
                cells[name][index(agent)] = getattr(agent, name)
        for agent in model.agents_by_type.get(SenescentCell, ()):
            cells["arrest_age"][index(agent)] = agent.arrest_age
        for agent in model.agents_by_type.get(ImmuneCell, ()):
            cells["lifetime"][index(agent)] = agent.lifetime
    else:
        cells = {name: getattr(model, name).copy() for name in STATE_ARRAYS}
        for name, values in cells.items():
            assert values.shape == (tissue.size,), name
    return Sites(tissue=tissue, immune=immune, sasp=sasp, **cells)


def last_readout(model: Engine) -> dict:
    """The newest readout row, with each column's own type (ints stay ints)."""
    return model.readouts.to_dict("records")[-1]


def site(index: int, size: int) -> tuple[int, int]:
    """The (x, y) coordinate of flat site `index` (row-major)."""
    return divmod(int(index), size)


def neighbour_indices(index: int, size: int, torus: bool) -> list[int]:
    """Flat indices of the Moore neighbours of a site, from `factories.moore_neighbours`."""
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


# --- daily invariant checks -----------------------------------------------------------------------


def check_sites(model: Engine, now: Sites) -> None:
    """Shapes, types and ranges of the state."""
    states, immune, sasp = model.site_states(), model.immune_sites(), sasp_field(model)
    size = states.shape[0]
    assert states.shape == immune.shape == sasp.shape == (size, size)
    assert states.dtype == np.int8
    assert immune.dtype == bool

    tissue = now.tissue
    assert np.isin(tissue, (EMPTY, HEALTHY, SENESCENT)).all()
    assert np.isfinite(now.sasp).all()
    assert (now.sasp >= 0.0).all()
    healthy = tissue == HEALTHY
    for name in ("damage", "exposure"):
        values = getattr(now, name)[healthy]
        assert np.isfinite(values).all(), name
        assert (values >= 0.0).all(), name
    scale = now.damage_scale[healthy]
    assert np.isfinite(scale).all() and (scale > 0.0).all()
    assert (now.divisions[healthy] >= 0).all()
    assert (now.arrest_age[tissue == SENESCENT] >= 0).all()
    assert (now.lifetime[now.immune] >= 1).all(), "an immune cell stayed after its lifetime ran out"


def check_readout_row(model: Engine, now: Sites, row: dict) -> None:
    """The newest readout row agrees with the state."""
    tissue = now.tissue
    sites = tissue.size
    assert row["day"] == model.time
    assert row["age"] == pytest.approx(model.age)
    from_sites = {
        "healthy": int(np.count_nonzero(tissue == HEALTHY)),
        "senescent": int(np.count_nonzero(tissue == SENESCENT)),
        "empty": int(np.count_nonzero(tissue == EMPTY)),
        "immune": int(np.count_nonzero(now.immune)),
    }
    assert {name: row[name] for name in COUNT_COLUMNS} == from_sites
    assert row["healthy"] + row["senescent"] + row["empty"] == sites
    assert sum(row[name] for name in FRACTION_COLUMNS) == pytest.approx(1.0)
    for name in FRACTION_COLUMNS:
        assert row[name] == pytest.approx(row[name.removesuffix("_fraction")] / sites)
    for name in EVENTS:
        assert isinstance(row[name], int | np.integer), f"{name} is not an integer tally"
        assert row[name] >= 0, name
    assert row["mean_sasp"] == pytest.approx(now.sasp.mean())
    healthy = tissue == HEALTHY
    if healthy.any():
        assert row["mean_damage"] == pytest.approx(now.damage[healthy].mean())
    else:
        assert math.isnan(row["mean_damage"])


def check_state(model: Engine) -> Sites:
    """Check the state and the newest readout row; return the state."""
    now = sites_of(model)
    check_sites(model, now)
    check_readout_row(model, now, last_readout(model))
    return now


def check_conservation(before: dict, after: dict) -> None:
    """Counts change exactly by the day's event tallies."""
    arrested = sum(after[name] for name in NEW_SENESCENCE)
    removed = sum(after[name] for name in SENESCENT_REMOVALS)
    assert after["senescent"] == before["senescent"] + arrested - removed
    assert after["healthy"] == (
        before["healthy"] + after["divisions"] - after["healthy_deaths"] - arrested
    )
    assert after["immune"] == (
        before["immune"] + after["immune_recruited"] - after["immune_departed"]
    )


def check_tissue_transitions(
    before: Sites, after: Sites, row: dict, size: int, torus: bool
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
    assert len(out_of_reach) <= (
        row["cleared_senolytic"] + row["senescent_deaths"] + row["cleared_phagocytic"]
    )


def check_immune_transitions(
    before: Sites, after: Sites, row: dict, size: int, torus: bool, chemotactic: bool = False
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


def run_checking_every_day(model: Engine, days: int, chemotactic: bool = False) -> int:
    """Step `days` times, checking every invariant after each day; returns immune moves."""
    size = model.site_states().shape[0]
    before, before_row = check_state(model), last_readout(model)
    moves = 0
    for _ in range(days):
        model.step()
        after, after_row = check_state(model), last_readout(model)
        assert len(model.readouts) == after_row["day"] + 1
        check_conservation(before_row, after_row)
        check_tissue_transitions(before, after, after_row, size, model.torus)
        moves += check_immune_transitions(before, after, after_row, size, model.torus, chemotactic)
        before, before_row = after, after_row
    return moves


def check_full_senolysis_on_dose_days(readouts: pd.DataFrame, schedule, doses: int) -> None:
    """A senolytic of fraction 1 removes every senescent cell of the dawn on its `doses` days."""
    dose_day = (readouts["age"] >= schedule.start_age) & (
        (readouts["age"] - schedule.start_age) % schedule.every == 0
    )
    assert dose_day.sum() == doses
    arrested = readouts[list(NEW_SENESCENCE)].sum(axis=1)
    removed = readouts[list(SENESCENT_REMOVALS)].sum(axis=1)
    for day in range(1, len(readouts)):
        if dose_day[day]:
            assert readouts.at[day - 1, "senescent"] > 0
            assert removed[day] == readouts.at[day - 1, "senescent"]
            assert readouts.at[day, "senescent"] == arrested[day]
            assert readouts.at[day, "cleared_senolytic"] > 0
        else:
            assert readouts.at[day, "cleared_senolytic"] == 0


def assert_same_run(first: Engine, second: Engine) -> None:
    """The same readouts and the same state, site by site."""
    assert_frame_equal(first.readouts, second.readouts)
    a, b = sites_of(first), sites_of(second)
    for name in ("tissue", "immune", "sasp", *STATE_ARRAYS):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


# --- 0. the protocol and the registry -----------------------------------------------------------


def check_site_arrays(model: Engine) -> dict:
    """`site_states()` and `immune_sites()` agree with `snapshot()` and with the day's readout
    row, and are copies; returns the row."""
    states, immune = model.site_states(), model.immune_sites()
    size = states.shape[0]
    assert states.shape == immune.shape == (size, size)
    assert states.dtype == np.int8 and immune.dtype == bool
    snapshot = model.snapshot()
    assert len(snapshot) == size * size
    assert (snapshot["age"] == model.age).all()
    codes = snapshot["state"].cat.codes.to_numpy()
    np.testing.assert_array_equal(codes.reshape(size, size), states)
    np.testing.assert_array_equal(snapshot["immune"].to_numpy().reshape(size, size), immune)
    row = last_readout(model)
    assert row["day"] == model.time
    assert row["healthy"] == np.count_nonzero(states == HEALTHY)
    assert row["senescent"] == np.count_nonzero(states == SENESCENT)
    assert row["empty"] == np.count_nonzero(states == EMPTY)
    assert row["immune"] == np.count_nonzero(immune)
    # Copies: changing them leaves the engine's state alone.
    states[...] = EMPTY if row["empty"] < size * size else HEALTHY
    immune[...] = ~immune
    np.testing.assert_array_equal(model.site_states().ravel(), codes)
    np.testing.assert_array_equal(model.immune_sites().ravel(), snapshot["immune"])
    return row


@pytest.mark.parametrize("name", list(ENGINES))
def test_every_registered_engine_is_an_engine(name: str) -> None:
    model = engine_class(name)(size=8, days=2, rng=1)
    assert isinstance(model, Engine)
    check_site_arrays(model)
    model.step()
    assert isinstance(model, Engine)
    assert model.time == 1 and model.age == model.start_age + 1 and model.running
    check_site_arrays(model)


def test_the_contract_suite_covers_every_registered_engine_and_kernel() -> None:
    assert {engine for engine, _ in ENGINE_CASES} == set(ENGINES)
    assert {kernel for engine, kernel in ENGINE_CASES if engine == "array"} >= set(KERNELS)


def test_the_engine_case_builds_its_engine(engine_case, build_engine) -> None:
    engine, kernel = engine_case
    model = build_engine(size=5, days=1, rng=1)
    assert isinstance(model, engine_class(engine))
    assert isinstance(model, Engine)
    assert getattr(model, "kernel", None) == kernel


def test_site_arrays_agree_with_the_snapshot_and_the_readouts_every_day(build_active) -> None:
    days = 10
    model = build_active(size=12, days=days, rng=8)
    rows = [check_site_arrays(model)]
    for _ in range(days):
        model.step()
        rows.append(check_site_arrays(model))
    assert [row["day"] for row in rows] == list(range(days + 1))
    assert all(row[name] > 0 for row in rows for name in ("healthy", "senescent", "immune"))


# --- 1. invariants -------------------------------------------------------------------------------


@pytest.mark.parametrize("rng", [3, 17])
@pytest.mark.parametrize("torus", [True, False], ids=["torus", "closed"])
def test_invariants_hold_every_day_with_all_processes_active(
    engine_case, build_active, torus: bool, rng: int
) -> None:
    days = DAILY_CHECK_DAYS[engine_case[0]]
    model = build_active(size=25, days=days, rng=rng, torus=torus)
    immune_moves = run_checking_every_day(model, days)
    assert_busy_run(model.readouts, immune_moves)


@pytest.mark.parametrize("torus", [True, False], ids=["torus", "closed"])
def test_fully_chemotactic_immune_cells_step_up_the_sasp_gradient(build_active, torus) -> None:
    days = 30
    model = build_active(size=20, days=days, rng=21, torus=torus, immune_chemotaxis=1.0)
    assert run_checking_every_day(model, days, chemotactic=True) > 0


@pytest.mark.parametrize(
    "arguments", [{"size": 2}, {"start_age": -1}, {"days": -1}], ids=["size", "start_age", "days"]
)
def test_invalid_run_arguments_are_rejected(build_engine, arguments: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(arguments))):
        build_engine(**{"size": 5, "days": 1, "rng": 1, **arguments})


def test_senolytic_dose_of_fraction_one_clears_every_senescent_cell_on_dose_days(
    build_engine,
) -> None:
    start_age, days = 600, 20
    schedule = Senolytic(every=5, fraction=1.0, start_age=start_age + 2)
    model = build_engine(
        params=variant(ACTIVE_PARAMS, initial_senescent_fraction=0.1),
        therapy=Therapy(senolytic=schedule),
        size=20,
        start_age=start_age,
        days=days,
        rng=11,
    )
    step_days(model, days)
    check_full_senolysis_on_dose_days(model.readouts, schedule, doses=4)


# --- 2. determinism and the run's end ----------------------------------------------------------


def test_same_seed_gives_identical_run(build_active) -> None:
    first = step_days(build_active(days=30, rng=42), 30)
    second = step_days(build_active(days=30, rng=42), 30)
    assert_same_run(first, second)


def test_same_numpy_generator_seed_gives_identical_run(build_active) -> None:
    first = step_days(build_active(days=20, rng=np.random.default_rng(5)), 20)
    second = step_days(build_active(days=20, rng=np.random.default_rng(5)), 20)
    assert_same_run(first, second)


def test_different_seed_gives_different_run(build_active) -> None:
    first = step_days(build_active(days=30, rng=1), 30)
    second = step_days(build_active(days=30, rng=2), 30)
    assert list(first.readouts.columns) == list(second.readouts.columns)
    assert not first.readouts.equals(second.readouts)
    assert not np.array_equal(first.site_states(), second.site_states())


HASH_SEED_RUN = """
import sys
from tissue_abm import Parameters, Therapy
from tissue_abm.engines import engine_class
params = Parameters.model_validate_json(sys.argv[1])
therapy = Therapy.model_validate_json(sys.argv[2])
for index, case in enumerate(sys.argv[4:]):
    engine, _, kernel = case.partition("-")
    model = engine_class(engine)(params=params, therapy=therapy, size=15, start_age=600, days=15,
                                 rng=21, **({"kernel": kernel} if kernel else {}))
    model.run_for(15)
    model.readouts.to_pickle(f"{sys.argv[3]}/{index}.pkl")
"""


def test_runs_do_not_depend_on_the_string_hash_seed(tmp_path: Path) -> None:
    """A run in a process with another PYTHONHASHSEED (set/dict-order effects) is identical.

    One process runs every engine case (an interpreter start each would be most of the time).
    """
    cases = available_cases()
    hash_seed = "1" if os.environ.get("PYTHONHASHSEED") != "1" else "2"
    subprocess.run(
        [
            sys.executable,
            "-c",
            HASH_SEED_RUN,
            ACTIVE_PARAMS.model_dump_json(),
            ACTIVE_THERAPY.model_dump_json(),
            str(tmp_path),
            *(engine if kernel is None else f"{engine}-{kernel}" for engine, kernel in cases),
        ],
        check=True,
        timeout=120,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
    )
    assert len(cases) >= 2
    for index, (engine, kernel) in enumerate(cases):
        here = active_engine(engine, kernel, size=15, days=15, rng=21)
        here.run_for(15)
        assert_frame_equal(pd.read_pickle(tmp_path / f"{index}.pkl"), here.readouts)


def test_run_for_matches_repeated_steps(build_active) -> None:
    days = 25
    stepped, ran_for = (build_active(days=days, rng=9) for _ in range(2))
    step_days(stepped, days)
    ran_for.run_for(days)
    for model in (stepped, ran_for):
        assert model.time == days
        assert len(model.readouts) == days + 1
    assert_same_run(stepped, ran_for)


@pytest.mark.parametrize("planned", [10, 30])
def test_run_for_in_pieces_is_the_same_run_as_stepping_day_by_day(
    build_engine, planned: int
) -> None:
    # The array engine's run_for runs the days between perturbations in one kernel call:
    # chunks that end at the perturbations (days 3 and 7; two at day 7), at the planned end
    # (day 10) and past it must give the very same run as single steps. Both go 12 days in
    # uneven pieces.
    perturbations = [
        Pulse(age=ACTIVE_START_AGE + 3, fraction=0.2),
        Transplant(age=ACTIVE_START_AGE + 7, cells=20, state="healthy"),
        Pulse(age=ACTIVE_START_AGE + 7, fraction=0.1),
    ]

    def tissue(perturbations=perturbations):
        return build_engine(
            params=ACTIVE_PARAMS,
            therapy=ACTIVE_THERAPY,
            size=16,
            start_age=ACTIVE_START_AGE,
            days=planned,
            rng=9,
            perturbations=perturbations,
        )

    stepped, chunked = step_days(tissue(), 12), tissue()
    for days in (0, 2, 6, 0, 4):
        chunked.run_for(days)
    assert chunked.time == 12 and chunked.running == stepped.running == (planned > 12)
    assert_same_run(stepped, chunked)
    # The perturbations took effect: a run without them differs.
    plain = tissue(perturbations=())
    plain.run_for(12)
    assert not np.array_equal(plain.site_states(), chunked.site_states())


def test_running_turns_false_at_the_end(build_active) -> None:
    days = 5
    model = build_active(days=days)
    assert model.running
    for day in range(1, days + 1):
        model.step()
        assert model.time == day
        assert model.running == (day < days)


def test_run_for_a_negative_number_of_days_is_refused(build_active) -> None:
    model = build_active(days=5)
    with pytest.raises(ValueError, match="days >= 0"):
        model.run_for(-1)
    assert model.time == 0 and len(model.readouts) == 1


def test_zero_day_run_is_over_at_once(build_active) -> None:
    model = build_active(days=0)
    assert not model.running
    assert len(model.readouts) == 1


@pytest.mark.parametrize("planned", [0, 3])
def test_stepping_past_the_planned_end_continues_the_same_run(build_active, planned: int) -> None:
    # The planned length only sets `running`: a run stepped past it is the same run as one
    # planned longer (the systemic timeline is extended, earlier days unchanged).
    total = 12
    short, long = build_active(days=planned, rng=4), build_active(days=total, rng=4)
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


def test_readout_columns_are_the_documented_readouts_in_order(build_active) -> None:
    model = build_active(size=10, days=3)
    assert list(model.readouts.columns) == list(READOUTS)
    model.run_for(3)
    readouts = model.readouts
    assert list(readouts.columns) == list(READOUTS)
    for name in ("day", *EVENTS, *COUNT_COLUMNS):
        assert pd.api.types.is_integer_dtype(readouts[name]), name


def test_every_engine_gives_readouts_and_snapshots_of_the_same_columns_and_types() -> None:
    readouts, snapshots = {}, {}
    for engine, kernel in available_cases():
        model = active_engine(engine, kernel, size=10, days=3)
        model.run_for(3)
        readouts[engine, kernel] = {
            name: model.readouts[name].dtype.kind for name in model.readouts.columns
        }
        snapshot = model.snapshot()
        snapshots[engine, kernel] = list(zip(snapshot.columns, snapshot.dtypes, strict=True))
    reference = ("agents", None)
    assert len(readouts) >= 2
    for case in readouts:
        assert list(readouts[case]) == list(readouts[reference]), case
        assert readouts[case] == readouts[reference], case
        assert snapshots[case] == snapshots[reference], case


def test_day_zero_row_is_the_initial_state(build_active) -> None:
    size = 20
    model = build_active(size=size, days=10)
    initial = check_state(model)
    healthy = initial.tissue == HEALTHY
    initial_counts = {
        "healthy": int(np.count_nonzero(healthy)),
        "senescent": int(np.count_nonzero(initial.tissue == SENESCENT)),
        "immune": int(np.count_nonzero(initial.immune)),
    }
    initial_mean_sasp = initial.sasp.mean()
    initial_mean_damage = initial.damage[healthy].mean()
    assert model.time == 0
    assert model.age == ACTIVE_START_AGE
    assert all(count > 0 for count in initial_counts.values())

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


@pytest.mark.parametrize("days", [0, 5])
def test_snapshot_has_one_row_per_site_matching_the_state(build_active, days: int) -> None:
    size = 12
    model = step_days(build_active(size=size, days=5, rng=8), days)
    snapshot = model.snapshot()
    now = sites_of(model)
    assert len(snapshot) == size * size
    assert (snapshot["age"] == model.age).all()
    x, y = np.indices((size, size))
    np.testing.assert_array_equal(snapshot["x"], x.ravel())
    np.testing.assert_array_equal(snapshot["y"], y.ravel())
    expected_states = np.asarray(SITE_STATES)[now.tissue]
    np.testing.assert_array_equal(snapshot["state"].astype(str).to_numpy(), expected_states)
    np.testing.assert_array_equal(snapshot["immune"], now.immune)
    np.testing.assert_allclose(snapshot["sasp"], now.sasp, rtol=1e-6)


# --- 4. initial state ----------------------------------------------------------------------------


def test_initial_state_is_in_range(build_active) -> None:
    model = build_active(size=30, days=1, rng=12)
    now = sites_of(model)
    senescent, healthy = now.tissue == SENESCENT, now.tissue == HEALTHY
    assert senescent.any() and healthy.any()
    assert now.arrest_age[senescent].min() >= 0
    assert now.arrest_age[senescent].max() < INITIAL_ARREST_AGE_MAX
    assert now.divisions[healthy].min() >= 0
    assert now.divisions[healthy].max() <= ACTIVE_PARAMS.replicative_limit // 2
    assert now.sasp.min() > 0.0  # the settled field of the initial senescent cells
    np.testing.assert_allclose(
        now.exposure[healthy], now.sasp[healthy] * model._days[0].inflammation
    )


def test_full_tissue_without_senescence_starts_with_no_empty_or_senescent_site(
    build_engine,
) -> None:
    model = build_engine(
        params=Parameters(initial_occupancy=1.0, initial_senescent_fraction=0.0),
        size=30,
        days=1,
        rng=4,
    )
    assert (model.site_states() == HEALTHY).all()
    np.testing.assert_array_equal(sasp_field(model), 0.0)
    day_zero = model.readouts.iloc[0]
    assert day_zero["empty"] == 0
    assert day_zero["senescent"] == 0
    assert day_zero["healthy"] == 30 * 30
    assert day_zero["mean_sasp"] == 0.0


def test_initial_fractions_match_the_parameters_on_a_large_grid(build_engine) -> None:
    size, senescent_fraction, occupancy = 100, 0.05, 0.8
    params = Parameters(initial_occupancy=occupancy, initial_senescent_fraction=senescent_fraction)
    model = build_engine(params=params, size=size, days=1, rng=12)
    sites = size * size
    now = sites_of(model)
    senescent = int(np.count_nonzero(now.tissue == SENESCENT))
    healthy = int(np.count_nonzero(now.tissue == HEALTHY))
    # Each site is independently senescent (probability p) or occupied (probability q), so the
    # counts are binomial(sites, p) and binomial(sites, q); allow 5 standard errors (a false
    # alarm about once in 1.7 million runs).
    for observed, probability in (
        (senescent, senescent_fraction),
        (senescent + healthy, occupancy),
    ):
        standard_error = math.sqrt(sites * probability * (1.0 - probability))
        assert abs(observed - sites * probability) <= 5.0 * standard_error
    assert model.readouts.at[0, "senescent_fraction"] == senescent / sites

    arrest_ages = now.arrest_age[now.tissue == SENESCENT]
    assert arrest_ages.min() >= 0
    assert arrest_ages.max() < INITIAL_ARREST_AGE_MAX
    divisions = now.divisions[now.tissue == HEALTHY]
    assert divisions.min() >= 0
    assert divisions.max() <= params.replicative_limit // 2
    assert now.sasp.min() > 0.0  # the settled field of the initial senescent cells


def test_initial_sasp_field_is_zero_without_senescent_cells(build_engine) -> None:
    params = Parameters(initial_senescent_fraction=0.0)
    model = build_engine(params=params, size=25, start_age=ACTIVE_START_AGE, days=1, rng=8)
    now = sites_of(model)
    assert not np.any(now.tissue == SENESCENT)
    np.testing.assert_array_equal(now.sasp, 0.0)
    assert model.readouts.at[0, "mean_sasp"] == 0.0
    assert (now.tissue == HEALTHY).any()
    assert (now.exposure[now.tissue == HEALTHY] == 0.0).all()


# --- 5. limits ------------------------------------------------------------------------------------


def test_no_senescence_without_any_cause(build_active) -> None:
    days = 60
    model = step_days(build_active(size=20, days=days, rng=5, **NO_SENESCENCE), days)
    readouts = model.readouts
    assert (readouts["senescent"] == 0).all()
    assert (readouts[list(NEW_SENESCENCE)] == 0).all().all()
    assert (readouts["mean_sasp"] == 0.0).all()
    np.testing.assert_array_equal(sasp_field(model), 0.0)
    assert not np.any(model.site_states() == SENESCENT)
    # Cells did turn over and divide, so the replicative path was tried.
    assert readouts["divisions"].sum() > 0
    assert readouts["healthy_deaths"].sum() > 0


def test_no_empty_site_appears_without_death_in_a_full_tissue(build_active) -> None:
    days = 60
    model = step_days(
        build_active(
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
    assert not np.any(model.site_states() == EMPTY)


def test_no_divisions_without_regeneration(build_active) -> None:
    days = 40
    model = step_days(build_active(size=20, days=days, rng=13, regeneration_rate=0.0), days)
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
def test_each_event_needs_its_own_cause(build_active, change: dict, tally: str) -> None:
    # Each path switched off alone: its tally stays 0, the other paths still happen (so the
    # tallies are not mixed up between paths). Grid and length make each of the other paths
    # expected to happen dozens of times, so that none is absent by chance.
    days = 60
    model = step_days(build_active(size=30, days=days, rng=19, **change), days)
    happened = model.readouts[list(EVENTS)].sum()
    assert happened[tally] == 0
    others = [
        name for name in (*NEW_SENESCENCE, "senescent_deaths", "healthy_deaths") if name != tally
    ]
    assert (happened[others] > 0).all(), happened[others]


def test_no_immune_cells_without_recruitment(build_active) -> None:
    days = 30
    model = step_days(
        build_active(size=20, days=days, rng=14, immune_recruit_base=0.0, immune_recruit_max=0.0),
        days,
    )
    readouts = model.readouts
    assert (readouts["immune"] == 0).all()
    assert (readouts[["immune_recruited", "immune_departed", "cleared_immune"]] == 0).all().all()
    assert not model.immune_sites().any()
    assert readouts["senescent"].max() > 0


def test_no_immune_kills_without_competence(build_active) -> None:
    days = 30
    model = step_days(build_active(size=20, days=days, rng=15, immune_kill=0.0), days)
    readouts = model.readouts
    assert (readouts["immune_competence"] == 0.0).all()
    assert (readouts["cleared_immune"] == 0).all()
    assert readouts["immune"].min() > 0
    assert readouts["senescent"].min() > 0


def test_no_senolytic_clearance_without_senolytic(build_engine) -> None:
    days = 30
    model = step_days(
        build_engine(
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


# --- the perforin-independent route (model v2) ----------------------------------------------

ONLY_PHAGOCYTES = {
    **NO_SENESCENCE,
    "initial_senescent_fraction": 0.2,
    "immune_kill": 0.0,  # perforin knock-out: immune cells come and go but kill nothing
    "senescent_death_rate": 0.0,
    "healthy_death_rate": 0.0,
    "phagocytic_rate": 0.2,
}


@pytest.mark.parametrize("half_burden", [1.0, 0.02])
def test_phagocytes_clear_senescent_cells_at_their_shared_capacity(build_engine, half_burden):
    # Without perforin killing, intrinsic death or new senescence, senescent cells leave only
    # through phagocytes, each day with probability rate·κ/(κ + s) at the day's starting
    # senescent fraction s (`rules.phagocytic_clearance_prob`). 20 days on 30x30 (~180 cells):
    # the day's removals are binomial around the expectation; summed over the days, the count
    # is within 4 standard deviations of the sum of the expectations (sd: √ of the summed
    # binomial variances, ~8 removals). κ = 1 is almost first order; κ = 0.02 ≪ s ≈ 0.2
    # saturates (a tenth of the rate).
    params = variant(Parameters(), **ONLY_PHAGOCYTES, phagocytic_half_burden=half_burden)
    model = step_days(
        build_engine(params=params, therapy=Therapy(), size=30, start_age=400, days=20, rng=3),
        20,
    )
    table = model.readouts
    start = table["senescent"].to_numpy()[:-1]  # at the start of each day
    p = 0.2 * half_burden / (half_burden + start / 900)  # the model card's rule, written out
    removed = table["cleared_phagocytic"].to_numpy()[1:]
    expected, sd = (start * p).sum(), math.sqrt((start * p * (1 - p)).sum())
    assert abs(removed.sum() - expected) <= 4 * sd + 1
    assert (table["cleared_immune"] == 0).all() and (table["senescent_deaths"] == 0).all()
    np.testing.assert_array_equal(np.diff(table["senescent"]), -removed)

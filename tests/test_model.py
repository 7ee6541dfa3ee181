"""Tests of the Mesa model `TissueModel`.

Invariants checked after every day of runs with all processes active, determinism, the readout
table, the initial state, limiting cases, and a scan of the source tree for Mesa APIs that are
deprecated or gone in Mesa 4.
"""

from __future__ import annotations

import ast
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from tissue_abm import Oxytocin, Parameters, Rapamycin, Senolytic, Therapy, TissueModel
from tissue_abm.biology.readouts import EVENTS, READOUTS
from tissue_abm.biology.rules import EMPTY, HEALTHY, SENESCENT
from tissue_abm.engines.agents.agents import HealthyCell, ImmuneCell, SenescentCell
from tissue_abm.engines.base import INITIAL_ARREST_AGE_MAX

SRC = Path(__file__).resolve().parents[1] / "src"

NEW_SENESCENCE = ("new_primary", "new_paracrine", "new_replicative")
SENESCENT_REMOVALS = ("cleared_immune", "cleared_senolytic", "senescent_deaths")
COUNT_COLUMNS = ("healthy", "senescent", "empty", "immune")
FRACTION_COLUMNS = ("healthy_fraction", "senescent_fraction", "empty_fraction")

# Old tissue with every process made frequent, so that the daily invariant checks bite: many
# senescent cells (primary, paracrine and replicative), busy immune cells, deaths, divisions,
# and all three therapies within the run.
ACTIVE_START_AGE = 600
ACTIVE_PARAMS = Parameters(
    initial_occupancy=0.9,
    initial_senescent_fraction=0.05,
    damage_rate=0.02,
    primary_max_rate=0.01,
    paracrine_max_rate=0.2,
    paracrine_half_sasp=0.15,
    immune_recruit_max=0.2,
    healthy_death_rate=0.01,
    senescent_death_rate=0.01,
    replicative_limit=6,
    regeneration_rate=0.5,
)
ACTIVE_THERAPY = Therapy(
    rapamycin=Rapamycin(start_age=ACTIVE_START_AGE + 10, dose=0.5, every=2),
    oxytocin=Oxytocin(start_age=ACTIVE_START_AGE, every=3),
    senolytic=Senolytic(every=7, fraction=0.3, start_age=ACTIVE_START_AGE + 3),
)

# Parameters under which no cell can ever become senescent.
NO_SENESCENCE = {
    "initial_senescent_fraction": 0.0,
    "primary_max_rate": 0.0,
    "paracrine_max_rate": 0.0,
    "replicative_limit": 1000,
}


def variant(params: Parameters, **changes: float) -> Parameters:
    """`params` with some values changed (Parameters are frozen)."""
    return Parameters(**{**params.model_dump(), **changes})


def active_model(
    size: int = 20, days: int = 30, rng: int = 7, torus: bool = True, **changes: float
) -> TissueModel:
    """A model of the busy old tissue with all therapies, optionally with changed parameters."""
    return TissueModel(
        params=variant(ACTIVE_PARAMS, **changes),
        therapy=ACTIVE_THERAPY,
        size=size,
        start_age=ACTIVE_START_AGE,
        days=days,
        torus=torus,
        rng=rng,
    )


def agents_of(model: TissueModel, kind: type) -> list:
    """The model's agents of one type (none if the type has no agents registered)."""
    return list(model.agents_by_type.get(kind, ()))


def last_readout(model: TissueModel) -> dict:
    """The newest readout row, with each column's own type (ints stay ints)."""
    return model.readouts.to_dict("records")[-1]


# --- daily snapshots and invariant checks ---------------------------------------------------------


@dataclass
class Snapshot:
    """What the invariant checks compare between consecutive days."""

    tissue: np.ndarray
    immune: np.ndarray
    healthy: dict[int, tuple] = field(default_factory=dict)
    """unique_id -> coordinate."""
    senescent: dict[int, tuple] = field(default_factory=dict)
    """unique_id -> (coordinate, arrest_age, cause)."""
    immune_cells: dict[int, tuple] = field(default_factory=dict)
    """unique_id -> (coordinate, lifetime)."""


def take_snapshot(model: TissueModel) -> Snapshot:
    snapshot = Snapshot(tissue=model.tissue.data.copy(), immune=model.immune.data.copy())
    for agent in agents_of(model, HealthyCell):
        snapshot.healthy[agent.unique_id] = agent.cell.coordinate
    for agent in agents_of(model, SenescentCell):
        snapshot.senescent[agent.unique_id] = (agent.cell.coordinate, agent.arrest_age, agent.cause)
    for agent in agents_of(model, ImmuneCell):
        snapshot.immune_cells[agent.unique_id] = (agent.cell.coordinate, agent.lifetime)
    return snapshot


def moore_distance(a: tuple, b: tuple, size: int, torus: bool) -> int:
    """Chebyshev distance between two sites, across the wrap on a torus."""
    distance = 0
    for x, y in zip(a, b, strict=True):
        step = abs(x - y)
        if torus:
            step = min(step, size - step)
        distance = max(distance, step)
    return distance


def moore_neighbours(coordinate: tuple, size: int, torus: bool) -> list[tuple]:
    """The (up to 8) Moore neighbours of a site."""
    x, y = coordinate
    neighbours = []
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            if dx == dy == 0:
                continue
            nx, ny = x + dx, y + dy
            if torus:
                neighbours.append((nx % size, ny % size))
            elif 0 <= nx < size and 0 <= ny < size:
                neighbours.append((nx, ny))
    return neighbours


def check_tissue_layer(model: TissueModel) -> None:
    """Every site is EMPTY/HEALTHY/SENESCENT and the layer mirrors the tissue agents exactly."""
    tissue = model.tissue.data
    assert np.isin(tissue, (EMPTY, HEALTHY, SENESCENT)).all()
    expected = np.full(tissue.shape, EMPTY, dtype=tissue.dtype)
    occupied = set()
    for kind, state in ((HealthyCell, HEALTHY), (SenescentCell, SENESCENT)):
        for agent in agents_of(model, kind):
            coordinate = agent.cell.coordinate
            assert coordinate not in occupied, f"two tissue cells on site {coordinate}"
            assert agent in agent.cell.agents
            occupied.add(coordinate)
            expected[coordinate] = state
    np.testing.assert_array_equal(tissue, expected)


def check_immune_layer(model: TissueModel) -> None:
    """At most one immune cell per site; the immune layer is True exactly at their sites."""
    sites = [agent.cell.coordinate for agent in agents_of(model, ImmuneCell)]
    assert len(set(sites)) == len(sites), "two immune cells on one site"
    expected = np.zeros(model.immune.data.shape, dtype=bool)
    for coordinate in sites:
        expected[coordinate] = True
    np.testing.assert_array_equal(model.immune.data, expected)


def check_continuous_state(model: TissueModel) -> None:
    """SASP field, damage, exposure, arrest ages and immune lifetimes are in range."""
    sasp = model.sasp.data
    assert np.isfinite(sasp).all()
    assert (sasp >= 0.0).all()
    for cell in agents_of(model, HealthyCell):
        assert math.isfinite(cell.damage) and cell.damage >= 0.0
        assert math.isfinite(cell.exposure) and cell.exposure >= 0.0
        assert cell.divisions >= 0
    for cell in agents_of(model, SenescentCell):
        assert cell.arrest_age >= 0
    for cell in agents_of(model, ImmuneCell):
        assert cell.lifetime >= 1, "an immune cell stayed after its lifetime ran out"


def check_readout_row(model: TissueModel, row: dict) -> None:
    """The newest readout row agrees with the agents and with `model.counts()`."""
    sites = model.tissue.data.size
    assert row["day"] == round(model.time)
    assert row["age"] == pytest.approx(model.age)
    from_agents = {
        "healthy": len(agents_of(model, HealthyCell)),
        "senescent": len(agents_of(model, SenescentCell)),
        "immune": len(agents_of(model, ImmuneCell)),
    }
    from_agents["empty"] = sites - from_agents["healthy"] - from_agents["senescent"]
    assert {name: row[name] for name in COUNT_COLUMNS} == from_agents
    assert model.counts() == from_agents
    assert row["healthy"] + row["senescent"] + row["empty"] == sites
    assert sum(row[name] for name in FRACTION_COLUMNS) == pytest.approx(1.0)
    for name in FRACTION_COLUMNS:
        assert row[name] == pytest.approx(row[name.removesuffix("_fraction")] / sites)
    for name in EVENTS:
        assert isinstance(row[name], int | np.integer), f"{name} is not an integer tally"
        assert row[name] >= 0
    assert row["mean_sasp"] == pytest.approx(model.sasp.data.mean())
    damages = [cell.damage for cell in agents_of(model, HealthyCell)]
    if damages:
        assert row["mean_damage"] == pytest.approx(np.mean(damages))
    else:
        assert math.isnan(row["mean_damage"])


def check_state(model: TissueModel) -> None:
    check_tissue_layer(model)
    check_immune_layer(model)
    check_continuous_state(model)
    check_readout_row(model, last_readout(model))


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
    before: Snapshot, after: Snapshot, row: dict, size: int, torus: bool
) -> None:
    """Site-level tissue changes of one day are the ones the tallies report, and only those."""
    assert not np.any((before.tissue == SENESCENT) & (after.tissue == HEALTHY)), (
        "a senescent site became healthy within one day"
    )

    # Surviving tissue cells are fixed to their site; senescent cells age by one day.
    for uid, coordinate in after.healthy.items():
        if uid in before.healthy:
            assert before.healthy[uid] == coordinate
    new_senescent = {
        uid: state for uid, state in after.senescent.items() if uid not in before.senescent
    }
    for uid, (coordinate, arrest_age, _) in after.senescent.items():
        if uid in before.senescent:
            old_coordinate, old_age, _ = before.senescent[uid]
            assert coordinate == old_coordinate
            assert arrest_age == old_age + 1

    # New senescent cells: arrested today, on the site of a healthy cell that is gone now.
    healthy_at = {coordinate: uid for uid, coordinate in before.healthy.items()}
    for coordinate, arrest_age, cause in new_senescent.values():
        assert arrest_age == 0
        assert cause in NEW_SENESCENCE
        assert before.tissue[coordinate] == HEALTHY
        assert healthy_at[coordinate] not in after.healthy
    causes = [cause for _, _, cause in new_senescent.values()]
    for name in NEW_SENESCENCE:
        assert causes.count(name) == row[name]

    # Healthy cells lost today died or arrested; healthy cells born today filled a vacancy of the
    # start of the day next to a healthy (parent) cell.
    lost_healthy = [uid for uid in before.healthy if uid not in after.healthy]
    assert len(lost_healthy) == row["healthy_deaths"] + sum(row[name] for name in NEW_SENESCENCE)
    born = [coordinate for uid, coordinate in after.healthy.items() if uid not in before.healthy]
    assert len(born) == row["divisions"]
    for coordinate in born:
        assert before.tissue[coordinate] == EMPTY
        assert any(before.tissue[n] == HEALTHY for n in moore_neighbours(coordinate, size, torus))

    # Senescent cells removed today: immune kills need an immune cell on or next to the site.
    removed = [before.senescent[uid][0] for uid in before.senescent if uid not in after.senescent]
    assert len(removed) == sum(row[name] for name in SENESCENT_REMOVALS)
    reach = set()
    for coordinate, _ in before.immune_cells.values():
        reach.add(coordinate)
        reach.update(moore_neighbours(coordinate, size, torus))
    out_of_reach = [coordinate for coordinate in removed if coordinate not in reach]
    assert len(out_of_reach) <= row["cleared_senolytic"] + row["senescent_deaths"]


def check_immune_transitions(
    before: Snapshot, after: Snapshot, row: dict, size: int, torus: bool
) -> int:
    """Immune cells age, depart at lifetime 0, step at most one site, kill at most one a day.

    Returns:
        The number of immune cells that moved (to make sure the run exercised movement).
    """
    assert row["cleared_immune"] <= len(before.immune_cells)
    moved = 0
    for uid, (coordinate, lifetime) in after.immune_cells.items():
        if uid not in before.immune_cells:  # recruited today, onto a site free at dawn
            assert not before.immune[coordinate]
            assert lifetime >= 1
            continue
        old_coordinate, old_lifetime = before.immune_cells[uid]
        assert lifetime == old_lifetime - 1
        assert moore_distance(old_coordinate, coordinate, size, torus) <= 1, (
            f"immune cell {uid} jumped from {old_coordinate} to {coordinate}"
        )
        if coordinate != old_coordinate:
            assert not before.immune[coordinate], "an immune cell moved onto an occupied site"
            moved += 1
    recruited = [uid for uid in after.immune_cells if uid not in before.immune_cells]
    assert len(recruited) == row["immune_recruited"]
    departed = {uid for uid in before.immune_cells if uid not in after.immune_cells}
    assert departed == {uid for uid, (_, lifetime) in before.immune_cells.items() if lifetime == 1}
    assert len(departed) == row["immune_departed"]
    return moved


def run_checking_every_day(model: TissueModel, days: int) -> int:
    """Step `days` times, checking every invariant after each day; returns immune moves."""
    size = model.tissue.data.shape[0]
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
        moves += check_immune_transitions(before, after, after_row, size, model.torus)
        before, before_row = after, after_row
    return moves


def assert_busy_run(readouts: pd.DataFrame, immune_moves: int) -> None:
    """Integer, non-negative tallies, and every process happened (else the checks cannot bite)."""
    for name in (*EVENTS, *COUNT_COLUMNS):
        assert pd.api.types.is_integer_dtype(readouts[name]), name
        assert (readouts[name] >= 0).all(), name
    happened = readouts[list(EVENTS)].sum()
    never = list(happened[happened == 0].index)
    assert not never, f"processes that never happened: {never}"
    assert immune_moves > 0
    assert (readouts["rapamycin_exposure"] > 0).any()


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


# --- 1. invariants -------------------------------------------------------------------------------


@pytest.mark.parametrize("rng", [3, 17])
@pytest.mark.parametrize("torus", [True, False], ids=["torus", "closed"])
def test_invariants_hold_every_day_with_all_processes_active(torus: bool, rng: int) -> None:
    days = 80
    model = active_model(size=25, days=days, rng=rng, torus=torus)
    immune_moves = run_checking_every_day(model, days)
    assert_busy_run(model.readouts, immune_moves)


def test_senolytic_dose_of_fraction_one_clears_every_senescent_cell_on_dose_days() -> None:
    start_age, days = 600, 20
    schedule = Senolytic(every=5, fraction=1.0, start_age=start_age + 2)
    model = TissueModel(
        params=variant(ACTIVE_PARAMS, initial_senescent_fraction=0.1),
        therapy=Therapy(senolytic=schedule),
        size=20,
        start_age=start_age,
        days=days,
        rng=11,
    )
    model.run_for(days)
    check_full_senolysis_on_dose_days(model.readouts, schedule, doses=4)


# --- 2. determinism and the run's end ----------------------------------------------------------


def final_state(model: TissueModel) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    return (
        model.readouts,
        model.tissue.data.copy(),
        model.immune.data.copy(),
        model.sasp.data.copy(),
    )


def assert_same_run(first: TissueModel, second: TissueModel) -> None:
    readouts_a, tissue_a, immune_a, sasp_a = final_state(first)
    readouts_b, tissue_b, immune_b, sasp_b = final_state(second)
    assert_frame_equal(readouts_a, readouts_b)
    np.testing.assert_array_equal(tissue_a, tissue_b)
    np.testing.assert_array_equal(immune_a, immune_b)
    np.testing.assert_array_equal(sasp_a, sasp_b)


def test_same_seed_gives_identical_run() -> None:
    first, second = active_model(days=30, rng=42), active_model(days=30, rng=42)
    first.run_for(30)
    second.run_for(30)
    assert_same_run(first, second)


def test_same_numpy_generator_seed_gives_identical_run() -> None:
    first = active_model(days=20, rng=np.random.default_rng(5))
    second = active_model(days=20, rng=np.random.default_rng(5))
    first.run_for(20)
    second.run_for(20)
    assert_same_run(first, second)


def test_different_seed_gives_different_run() -> None:
    first, second = active_model(days=30, rng=1), active_model(days=30, rng=2)
    first.run_for(30)
    second.run_for(30)
    assert list(first.readouts.columns) == list(second.readouts.columns)
    assert not first.readouts.equals(second.readouts)
    assert not np.array_equal(first.tissue.data, second.tissue.data)


HASH_SEED_RUN = """
import sys
from tissue_abm import Parameters, Therapy, TissueModel
model = TissueModel(params=Parameters.model_validate_json(sys.argv[1]),
                    therapy=Therapy.model_validate_json(sys.argv[2]),
                    size=15, start_age=600, days=15, rng=21)
model.run_for(15)
model.readouts.to_pickle(sys.argv[3])
"""


def test_run_does_not_depend_on_the_string_hash_seed(tmp_path: Path) -> None:
    """A run in a process with another PYTHONHASHSEED (set/dict-order effects) is identical."""
    here = TissueModel(
        params=ACTIVE_PARAMS, therapy=ACTIVE_THERAPY, size=15, start_age=600, days=15, rng=21
    )
    here.run_for(15)
    hash_seed = "1" if os.environ.get("PYTHONHASHSEED") != "1" else "2"
    output = tmp_path / "readouts.pkl"
    subprocess.run(
        [
            sys.executable,
            "-c",
            HASH_SEED_RUN,
            ACTIVE_PARAMS.model_dump_json(),
            ACTIVE_THERAPY.model_dump_json(),
            str(output),
        ],
        check=True,
        timeout=120,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
    )
    assert_frame_equal(pd.read_pickle(output), here.readouts)


def test_run_for_and_run_until_match_repeated_steps() -> None:
    days = 25
    stepped, ran_for, ran_until = (active_model(days=days, rng=9) for _ in range(3))
    for _ in range(days):
        stepped.step()
    ran_for.run_for(days)
    ran_until.run_until(days)
    for model in (stepped, ran_for, ran_until):
        assert model.time == days
        assert len(model.readouts) == days + 1
    assert_same_run(stepped, ran_for)
    assert_same_run(stepped, ran_until)


def test_running_turns_false_at_the_end() -> None:
    days = 5
    model = active_model(days=days)
    assert model.running
    for day in range(1, days + 1):
        model.step()
        assert model.running == (day < days)


def test_run_model_stops_exactly_at_the_last_day() -> None:
    days = 12
    model = active_model(days=days)
    model.run_model()
    assert not model.running
    assert model.time == days
    assert model.readouts["day"].tolist() == list(range(days + 1))


def test_zero_day_run_is_over_at_once() -> None:
    model = active_model(days=0)
    assert not model.running
    assert len(model.readouts) == 1


@pytest.mark.parametrize("planned", [0, 3])
def test_stepping_past_the_planned_end_continues_the_same_run(planned) -> None:
    # The planned length only sets `running`: a run stepped past it is the same run as one
    # planned longer (the systemic timeline is extended, earlier days unchanged).
    total = 12
    short, long = active_model(days=planned, rng=4), active_model(days=total, rng=4)
    for _ in range(total):
        short.step()
        long.step()
    assert short.time == long.time == total
    assert short.age == short.readouts["age"].iloc[-1]
    assert_frame_equal(short.readouts, long.readouts)
    assert_frame_equal(short.timeline.iloc[: total + 1], long.timeline)


# --- 3. readout table ------------------------------------------------------------------------


def test_readout_columns_are_the_documented_readouts_in_order() -> None:
    model = active_model(days=3)
    assert list(model.readouts.columns) == list(READOUTS)
    model.run_for(3)
    assert list(model.readouts.columns) == list(READOUTS)


def test_day_zero_row_is_the_initial_state() -> None:
    model = active_model(size=20, days=10)
    initial_counts = {
        "healthy": len(agents_of(model, HealthyCell)),
        "senescent": len(agents_of(model, SenescentCell)),
        "immune": len(agents_of(model, ImmuneCell)),
    }
    initial_mean_sasp = model.sasp.data.mean()
    assert model.age == ACTIVE_START_AGE
    assert all(count > 0 for count in initial_counts.values())

    model.run_for(4)
    readouts = model.readouts
    day_zero = readouts.iloc[0]
    assert day_zero["day"] == 0
    assert day_zero["age"] == ACTIVE_START_AGE
    for name, count in initial_counts.items():
        assert day_zero[name] == count
    assert day_zero["empty"] == 20 * 20 - initial_counts["healthy"] - initial_counts["senescent"]
    assert (readouts.loc[0, list(EVENTS)] == 0).all()
    assert day_zero["mean_sasp"] == pytest.approx(initial_mean_sasp)

    assert readouts["day"].tolist() == list(range(5))
    np.testing.assert_array_equal(readouts["age"], ACTIVE_START_AGE + np.arange(5))
    assert model.age == ACTIVE_START_AGE + 4
    assert model.age == readouts["age"].iloc[-1]
    for name in (
        "mtorc1",
        "autophagy",
        "immune_competence",
        "division_prob",
        "rapamycin_exposure",
        "oxytocin_level",
    ):
        np.testing.assert_allclose(readouts[name], model.timeline[name].iloc[:5], err_msg=name)


# --- 4. initial state ----------------------------------------------------------------------------


def test_full_tissue_without_senescence_starts_with_no_empty_or_senescent_site() -> None:
    params = Parameters(initial_occupancy=1.0, initial_senescent_fraction=0.0)
    model = TissueModel(params=params, size=30, days=1, rng=4)
    counts = model.counts()
    assert counts["empty"] == 0
    assert counts["senescent"] == 0
    assert counts["healthy"] == 30 * 30
    assert len(agents_of(model, HealthyCell)) == 30 * 30
    assert not agents_of(model, SenescentCell)
    day_zero = model.readouts.iloc[0]
    assert day_zero["empty"] == 0
    assert day_zero["senescent"] == 0


def test_initial_fractions_match_the_parameters_on_a_large_grid() -> None:
    size, senescent_fraction, occupancy = 100, 0.05, 0.8
    params = Parameters(initial_occupancy=occupancy, initial_senescent_fraction=senescent_fraction)
    model = TissueModel(params=params, size=size, days=1, rng=12)
    sites = size * size
    counts = model.counts()
    # Each site is independently senescent (probability p) or occupied (probability q), so the
    # counts are binomial(sites, p) and binomial(sites, q); allow 5 standard errors (a false
    # alarm about once in 1.7 million runs).
    for observed, probability in (
        (counts["senescent"], senescent_fraction),
        (counts["senescent"] + counts["healthy"], occupancy),
    ):
        standard_error = math.sqrt(sites * probability * (1.0 - probability))
        assert abs(observed - sites * probability) <= 5.0 * standard_error
    assert model.readouts.at[0, "senescent_fraction"] == counts["senescent"] / sites

    arrest_ages = [cell.arrest_age for cell in agents_of(model, SenescentCell)]
    assert min(arrest_ages) >= 0
    assert max(arrest_ages) < INITIAL_ARREST_AGE_MAX
    assert {cell.cause for cell in agents_of(model, SenescentCell)} == {"initial"}
    divisions = [cell.divisions for cell in agents_of(model, HealthyCell)]
    assert min(divisions) >= 0
    assert max(divisions) <= params.replicative_limit // 2
    assert model.sasp.data.min() > 0.0  # the settled field of the initial senescent cells


def test_initial_sasp_field_is_zero_without_senescent_cells() -> None:
    params = Parameters(initial_senescent_fraction=0.0)
    model = TissueModel(params=params, size=25, start_age=ACTIVE_START_AGE, days=1, rng=8)
    assert not agents_of(model, SenescentCell)
    np.testing.assert_array_equal(model.sasp.data, 0.0)
    assert model.readouts.at[0, "mean_sasp"] == 0.0
    assert all(cell.exposure == 0.0 for cell in agents_of(model, HealthyCell))


# --- 5. limits ------------------------------------------------------------------------------------


def test_no_senescence_without_any_cause() -> None:
    days = 60
    model = active_model(size=20, days=days, rng=5, **NO_SENESCENCE)
    model.run_for(days)
    readouts = model.readouts
    assert (readouts["senescent"] == 0).all()
    assert (readouts[list(NEW_SENESCENCE)] == 0).all().all()
    assert (readouts["mean_sasp"] == 0.0).all()
    np.testing.assert_array_equal(model.sasp.data, 0.0)
    assert not np.any(model.tissue.data == SENESCENT)
    # Cells did turn over and divide, so the replicative path was tried.
    assert readouts["divisions"].sum() > 0
    assert readouts["healthy_deaths"].sum() > 0


def test_no_empty_site_appears_without_death_in_a_full_tissue() -> None:
    days = 60
    model = active_model(
        size=20, days=days, rng=6, initial_occupancy=1.0, healthy_death_rate=0.0, **NO_SENESCENCE
    )
    model.run_for(days)
    readouts = model.readouts
    assert (readouts["empty"] == 0).all()
    assert (readouts["healthy"] == 20 * 20).all()
    assert (readouts["healthy_deaths"] == 0).all()
    assert (readouts["divisions"] == 0).all()
    assert not np.any(model.tissue.data == EMPTY)


def test_no_divisions_without_regeneration() -> None:
    days = 40
    model = active_model(size=20, days=days, rng=13, regeneration_rate=0.0)
    model.run_for(days)
    readouts = model.readouts
    assert (readouts["divisions"] == 0).all()
    assert (readouts["new_replicative"] == 0).all()  # arrest needs a division attempt
    assert (readouts["division_prob"] == 0.0).all()
    assert (readouts["healthy"].diff().iloc[1:] <= 0).all()
    assert readouts["healthy_deaths"].sum() > 0


def test_no_immune_cells_without_recruitment() -> None:
    days = 30
    model = active_model(
        size=20, days=days, rng=14, immune_recruit_base=0.0, immune_recruit_max=0.0
    )
    model.run_for(days)
    readouts = model.readouts
    assert (readouts["immune"] == 0).all()
    assert (readouts[["immune_recruited", "immune_departed", "cleared_immune"]] == 0).all().all()
    assert not model.immune.data.any()
    assert readouts["senescent"].max() > 0


def test_no_immune_kills_without_competence() -> None:
    days = 30
    model = active_model(size=20, days=days, rng=15, immune_kill=0.0)
    model.run_for(days)
    readouts = model.readouts
    assert (readouts["immune_competence"] == 0.0).all()
    assert (readouts["cleared_immune"] == 0).all()
    assert readouts["immune"].min() > 0
    assert readouts["senescent"].min() > 0


def test_no_senolytic_clearance_without_senolytic() -> None:
    days = 30
    model = TissueModel(
        params=ACTIVE_PARAMS,
        therapy=Therapy(),
        size=20,
        start_age=ACTIVE_START_AGE,
        days=days,
        rng=16,
    )
    model.run_for(days)
    readouts = model.readouts
    assert (readouts["cleared_senolytic"] == 0).all()
    assert (readouts["rapamycin_exposure"] == 0.0).all()
    assert readouts["senescent"].min() > 0


# --- 6. Mesa 4-proofing ---------------------------------------------------------------------------

# Written so that this file does not match its own patterns (it is scanned too).
DEPRECATED_PATTERNS = {
    "the old space module (use mesa.discrete_space)": re.compile(r"mesa\.spac[e]\b"),
    "the batch runner (gone in Mesa 4)": re.compile(r"\bbatch_ru[n]\b"),
    "the step counter (use model.time)": re.compile(r"\.ste[p]s\b"),
    "the property layer class (use grid.create_property_layer)": re.compile(r"PropertyLaye[r]"),
}
SEED_KEYWORD = "se" + "ed"


def _is_model_init_call(call: ast.Call) -> bool:
    """`super().__init__(...)`, `Model(...)`, `mesa.Model(...)` or any `...Model(...)`."""
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr == "__init__":
        inner = func.value
        return (
            isinstance(inner, ast.Call)
            and isinstance(inner.func, ast.Name)
            and inner.func.id == "super"
        )
    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
    return name.endswith("Model")


def deprecated_mesa_usage(text: str, filename: str) -> list[str]:
    """Findings `file:line: what` of deprecated Mesa APIs in Python source `text`."""
    findings = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        for what, pattern in DEPRECATED_PATTERNS.items():
            if pattern.search(line):
                findings.append(f"{filename}:{line_number}: {what}")
    # The seed keyword is checked on the syntax tree, so calls spread over lines are caught.
    for node in ast.walk(ast.parse(text, filename=filename)):
        if (
            isinstance(node, ast.Call)
            and _is_model_init_call(node)
            and any(keyword.arg == SEED_KEYWORD for keyword in node.keywords)
        ):
            findings.append(
                f"{filename}:{node.lineno}: {SEED_KEYWORD}= in a Model constructor (use rng=)"
            )
    return findings


def test_source_tree_and_this_module_use_no_deprecated_mesa_api() -> None:
    files = sorted(SRC.rglob("*.py"))
    assert any(path.name == "model.py" for path in files)
    findings = []
    for path in [*files, Path(__file__)]:
        findings += deprecated_mesa_usage(path.read_text(encoding="utf-8"), str(path))
    assert findings == []


@pytest.mark.parametrize(
    "snippet",
    [
        "from mesa" + ".space import MultiGrid\n",
        "import mesa" + ".space as space\n",
        "results = mesa.batch" + "_run(TissueModel, parameters={})\n",
        "day = model.ste" + "ps\n",
        "class M(mesa.Model):\n    def __init__(self):\n        super().__init__(\n"
        "            " + SEED_KEYWORD + "=42,\n        )\n",
        "model = mesa.Model(" + SEED_KEYWORD + "=1)\n",
        "model = TissueModel(size=5, " + SEED_KEYWORD + "=1)\n",
        "layer = Property" + "Layer('sasp', (3, 3), 0.0)\n",
    ],
    ids=[
        "mesa-space-from",
        "mesa-space-import",
        "batch-run",
        "steps",
        "seed-in-super",
        "seed-in-mesa-model",
        "seed-in-subclass",
        "property-layer",
    ],
)
def test_deprecation_scan_flags_deprecated_usage(snippet: str) -> None:
    assert deprecated_mesa_usage(snippet, "snippet.py")


@pytest.mark.parametrize(
    "snippet",
    [
        (
            "class M(mesa.Model):\n    def __init__(self, rng=None):\n"
            "        super().__init__(rng=rng)\n"
        ),
        "scenario = scenario.with_overrides(" + SEED_KEYWORD + "=3, days=10)\n",
        "layer = grid.create_property_layer('sasp', 0.0)\n",
        "from mesa.discrete_space import OrthogonalMooreGrid\n",
        "n = model.ste" + "ps_per_day\n",
    ],
    ids=[
        "rng-in-super",
        "seed-elsewhere",
        "create-property-layer",
        "discrete-space",
        "similar-attribute",
    ],
)
def test_deprecation_scan_passes_current_usage(snippet: str) -> None:
    assert deprecated_mesa_usage(snippet, "snippet.py") == []

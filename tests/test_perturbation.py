"""Experimental perturbations: scenario syntax and errors, site choice, both engines' changes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from factories import write_case
from tissue_abm import Parameters, ScenarioError, TissueModel, load_scenario, run_scenario
from tissue_abm.biology.perturbation import (
    Pulse,
    Transplant,
    central_sites,
    choose_sites,
    perturbation_rng,
    perturbation_seed,
)
from tissue_abm.biology.rules import EMPTY, HEALTHY, SENESCENT
from tissue_abm.engines.agents.agents import HealthyCell, SenescentCell
from tissue_abm.engines.array import KERNELS, ArrayTissue
from tissue_abm.runs.scenario import parse_scenario

ENGINES = {"array": ArrayTissue, "agents": TissueModel}
HEAD = 'name = "exp"\nsize = 10\nstart_age = 90\nend_age = 100\n'
FROZEN = Parameters(
    primary_max_rate=0.0,
    paracrine_max_rate=0.0,
    healthy_death_rate=0.0,
    senescent_death_rate=0.0,
    immune_kill=0.0,
    regeneration_rate=0.0,
)
"""No tissue cell is born, arrests or dies: only perturbations change the sites."""


def pulse(age: int, fraction: float) -> str:
    return f'[[perturbation]]\nkind = "pulse"\nage = {age}\nfraction = {fraction}\n'


def transplant(age: int, cells: int, state: str) -> str:
    return (
        f'[[perturbation]]\nkind = "transplant"\nage = {age}\ncells = {cells}\nstate = "{state}"\n'
    )


def tissue_of(model: ArrayTissue | TissueModel) -> np.ndarray:
    """The site states of either engine, (L, L) int8 (a view)."""
    return model.tissue if isinstance(model, ArrayTissue) else model.tissue.data


def perturb_now(model: ArrayTissue | TissueModel) -> None:
    """Apply the perturbations due at the model's current age, as its next step would first."""
    model._perturb(round(model.age), tissue_of(model))


def grid_agents(model: TissueModel, kind: type) -> dict[int, object]:
    """Flat site index -> agent of `kind` on the agents engine."""
    size = model.tissue.data.shape[0]
    return {
        agent.cell.coordinate[0] * size + agent.cell.coordinate[1]: agent
        for agent in model.agents_by_type.get(kind, ())
    }


# --- scenario syntax and errors -----------------------------------------------------------------


def test_scenario_reads_perturbations_in_file_order():
    scenario = parse_scenario(
        HEAD + pulse(92, 0.05) + transplant(95, 20, "healthy") + transplant(95, 7, "senescent"),
        "f.toml",
    )
    assert scenario.perturbation == [
        Pulse(age=92, fraction=0.05),
        Transplant(age=95, cells=20, state="healthy"),
        Transplant(age=95, cells=7, state="senescent"),
    ]
    assert parse_scenario(HEAD, "f.toml").perturbation == []


BAD = [
    pytest.param(
        pulse(92, 0.1).replace('"pulse"', '"bleomycin"'),
        ["perturbation.0.kind", "'bleomycin'", "one of 'pulse', 'transplant'"],
        id="unknown-kind",
    ),
    pytest.param(
        pulse(92, 0.1).replace('kind = "pulse"\n', ""),
        ["missing required key 'perturbation.0.kind'", "'pulse', 'transplant'"],
        id="kind-missing",
    ),
    pytest.param(
        pulse(89, 0.1),
        ["perturbation.0.age = 89", "outside the run", "start_age (90)", "end_age - 1 (99)"],
        id="age-before-start",
    ),
    pytest.param(
        pulse(100, 0.1),
        ["perturbation.0.age = 100", "outside the run", "end_age - 1 (99)"],
        id="age-at-end",
    ),
    pytest.param(
        pulse(92, 1.5),
        ["perturbation.0.fraction", "1.5", "a number from 0.0 to 1.0"],
        id="fraction-above-one",
    ),
    pytest.param(
        pulse(92, -0.1),
        ["perturbation.0.fraction", "-0.1", "from 0.0 to 1.0"],
        id="fraction-below-zero",
    ),
    pytest.param(
        pulse(92, 0.1) + transplant(93, 101, "senescent"),
        ["perturbation.1.cells = 101", "at most size² = 100"],
        id="cells-above-sites",
    ),
    pytest.param(
        transplant(93, 0, "healthy"), ["perturbation.0.cells", "0", "from 1"], id="no-cells"
    ),
    pytest.param(
        transplant(93, 5, "dead"),
        ["perturbation.0.state", "'dead'", "one of 'senescent', 'healthy'"],
        id="unknown-state",
    ),
    pytest.param(
        transplant(93, 5, "x").replace('state = "x"\n', ""),
        ["missing required key 'perturbation.0.state'", "'senescent', 'healthy'"],
        id="state-missing",
    ),
    pytest.param(
        pulse(92, 0.1) + "cells = 3\n",
        ["unknown key 'perturbation.0.cells'", "allowed keys: age, fraction, kind"],
        id="key-of-another-kind",
    ),
    pytest.param(
        pulse(95, 0.1) + pulse(92, 0.1),
        ["perturbation.1.age = 92", "perturbation.0.age (95)", "time order"],
        id="out-of-time-order",
    ),
    pytest.param(
        pulse(92, 0.1).replace("[[perturbation]]", "[perturbation]"),
        ["perturbation = {", "a list of tables [[perturbation]]"],
        id="not-a-list",
    ),
    pytest.param("perturbation = [3]\n", ["perturbation.0 = 3", "a table"], id="item-not-table"),
]


@pytest.mark.parametrize(("content", "expected"), BAD)
def test_bad_perturbation_is_a_one_line_error_naming_file_key_value_and_allowed(
    tmp_path, content, expected
):
    path = write_case(tmp_path, HEAD + content)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: "), message
    for part in expected:
        assert part in message, f"{part!r} missing from {message!r}"


def test_a_smaller_lattice_from_the_command_line_is_checked_against_the_transplant():
    scenario = parse_scenario(HEAD + transplant(93, 50, "senescent"), "f.toml")
    with pytest.raises(
        ScenarioError, match=r"command line: perturbation.0.cells = 50 .*size² = 49"
    ):
        scenario.with_overrides(size=7)


def test_shortening_the_run_drops_only_the_perturbations_it_no_longer_reaches():
    scenario = parse_scenario(HEAD + pulse(91, 0.1) + pulse(94, 0.2) + pulse(97, 0.3), "f.toml")
    assert [p.age for p in scenario.with_overrides(days=4).perturbation] == [91]
    assert [p.age for p in scenario.with_overrides(days=5).perturbation] == [91, 94]


def test_a_perturbation_key_can_be_swept_and_the_list_position_must_exist():
    text = (
        HEAD
        + pulse(92, 0.1)
        + '[sweep.zip]\nstart_age = [90, 93]\n"perturbation.0.age" = [91, 94]\n'
    )
    points = parse_scenario(text, "f.toml").sweep_points("f.toml")
    assert [p.values for p in points] == [
        {"start_age": 90, "perturbation.0.age": 91},
        {"start_age": 93, "perturbation.0.age": 94},
    ]
    assert [p.scenario.perturbation[0] for p in points] == [
        Pulse(age=91, fraction=0.1),
        Pulse(age=94, fraction=0.1),
    ]
    with pytest.raises(ScenarioError, match=r"sweep key 'perturbation.1.age' .* has 1 .* below 1"):
        parse_scenario(text.replace("perturbation.0.age", "perturbation.1.age"), "f.toml")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("perturbation", "problem"),
    [
        (Pulse(age=89, fraction=0.1), "outside the run"),
        (Pulse(age=100, fraction=0.1), "outside the run"),
        (Transplant(age=95, cells=101, state="healthy"), "size² = 100"),
    ],
)
def test_engines_refuse_a_perturbation_they_cannot_apply(engine, perturbation, problem):
    with pytest.raises(ValueError, match=problem):
        ENGINES[engine](size=10, start_age=90, days=10, rng=1, perturbations=[perturbation])


# --- site choice ----------------------------------------------------------------------------


def test_transplant_sites_are_a_disc_at_the_centre_with_ties_broken_by_flat_index():
    assert central_sites(5, 1).tolist() == [12]  # odd side: the centre site
    # even side: the four sites around the centre, then the nearest of the next ring (x=0, y=1)
    assert central_sites(4, 5).tolist() == [5, 6, 9, 10, 1]
    size, cells = 21, 50
    chosen = central_sites(size, cells)
    assert np.unique(chosen).size == cells
    x, y = np.divmod(np.arange(size * size), size)
    distance = np.hypot(x - (size - 1) / 2, y - (size - 1) / 2)
    inside = np.zeros(size * size, dtype=bool)
    inside[chosen] = True
    assert distance[inside].max() <= distance[~inside].min()  # compact: nothing nearer left out


def test_pulse_picks_only_healthy_sites_and_depends_only_on_state_seed_and_position():
    tissue = (
        np.random.default_rng(0)
        .choice([EMPTY, HEALTHY, SENESCENT], size=(30, 30), p=[0.1, 0.8, 0.1])
        .astype(np.int8)
    )
    pulse_ = Pulse(age=0, fraction=0.3)
    chosen = choose_sites(pulse_, tissue, perturbation_rng(7, 0))
    assert np.all(tissue.ravel()[chosen] == HEALTHY)
    assert chosen.tolist() == choose_sites(pulse_, tissue, perturbation_rng(7, 0)).tolist()
    assert chosen.tolist() != choose_sites(pulse_, tissue, perturbation_rng(7, 1)).tolist()
    assert chosen.tolist() != choose_sites(pulse_, tissue, perturbation_rng(8, 0)).tolist()


def test_a_generator_gives_the_perturbation_seed_of_its_state_without_being_advanced():
    first, second = np.random.default_rng(5), np.random.default_rng(5)
    assert perturbation_seed(first) == perturbation_seed(second)
    assert first.random() == second.random()  # neither was advanced
    assert perturbation_seed(first) != perturbation_seed(np.random.default_rng(6))
    assert perturbation_seed(42) == 42


# --- both engines -------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_pulse_turns_about_fraction_of_healthy_cells_senescent_and_no_other_site(engine):
    fraction = 0.3
    model = ENGINES[engine](
        size=60, start_age=90, days=5, rng=3, perturbations=[Pulse(age=90, fraction=fraction)]
    )
    before = tissue_of(model).copy()
    perturb_now(model)
    after = tissue_of(model)
    changed = before != after
    assert np.all(before[changed] == HEALTHY) and np.all(after[changed] == SENESCENT)
    healthy = int(np.count_nonzero(before == HEALTHY))
    expected, sd = healthy * fraction, math.sqrt(healthy * fraction * (1 - fraction))
    # binomial(healthy, fraction), here ~1000 of ~3500: within 4 standard deviations (a correct
    # pulse misses it for fewer than 1 in 15,000 seeds; the seed is fixed)
    assert abs(np.count_nonzero(changed) - expected) <= 4 * sd
    sites = np.flatnonzero(changed)
    if engine == "array":
        arrest_ages = model.arrest_age[sites]
    else:
        cells = grid_agents(model, SenescentCell)
        arrest_ages = np.array([cells[i].arrest_age for i in sites])
    assert np.all(arrest_ages == 0)  # fresh cells: their SASP matures from now


@pytest.mark.parametrize("engine", ENGINES)
def test_both_engines_change_the_sites_the_shared_choice_gives_for_their_state_and_seed(engine):
    seed = 11
    model = ENGINES[engine](
        size=20,
        start_age=90,
        days=5,
        rng=seed,
        perturbations=[Transplant(age=90, cells=9, state="senescent"), Pulse(age=90, fraction=0.2)],
    )
    before = tissue_of(model).copy()
    perturb_now(model)
    after_transplant = before.copy()
    after_transplant.ravel()[central_sites(20, 9)] = SENESCENT
    # the pulse sees the state after the transplant, and draws from perturbation 1's generator
    pulsed = choose_sites(
        Pulse(age=90, fraction=0.2), after_transplant, np.random.default_rng([seed, 0x9E37, 1])
    )
    expected = after_transplant.copy()
    expected.ravel()[pulsed] = SENESCENT
    assert pulsed.size > 0
    np.testing.assert_array_equal(tissue_of(model), expected)


@pytest.mark.parametrize("engine", ENGINES)
def test_transplant_makes_new_senescent_cells_on_the_disc_and_leaves_immune_cells(engine):
    model = ENGINES[engine](
        size=20,
        start_age=90,
        days=5,
        rng=2,
        perturbations=[Transplant(age=90, cells=40, state="senescent")],
    )
    immune_before = np.array(model.immune if engine == "array" else model.immune.data)
    perturb_now(model)
    disc = central_sites(20, 40)
    assert np.all(tissue_of(model).ravel()[disc] == SENESCENT)
    immune_after = model.immune if engine == "array" else model.immune.data
    np.testing.assert_array_equal(immune_after, immune_before)
    if engine == "array":
        assert np.all(model.arrest_age[disc] == 0)
    else:
        cells = grid_agents(model, SenescentCell)
        assert all(cells[i].arrest_age == 0 and cells[i].cause == "perturbation" for i in disc)
        assert len(model.agents_by_type[SenescentCell]) == np.count_nonzero(
            model.tissue.data == SENESCENT
        )  # the replaced agents are gone


@pytest.mark.parametrize("engine", ENGINES)
def test_healthy_transplant_makes_young_cells_and_removes_only_the_senescent_cells_it_covers(
    engine,
):
    # A strong pulse puts senescent cells on the disc; the same run with the control transplant
    # after it (same seed: the same pulse) shows what the transplant changes.
    disc = central_sites(20, 30)
    first = Pulse(age=90, fraction=0.5)
    pulsed = ENGINES[engine](size=20, start_age=90, days=5, rng=4, perturbations=[first])
    both = ENGINES[engine](
        size=20,
        start_age=90,
        days=5,
        rng=4,
        perturbations=[first, Transplant(age=90, cells=30, state="healthy")],
    )
    perturb_now(pulsed)
    perturb_now(both)
    covered = int(np.count_nonzero(tissue_of(pulsed).ravel()[disc] == SENESCENT))
    assert covered > 0
    assert np.all(tissue_of(both).ravel()[disc] == HEALTHY)
    outside = np.ones(400, dtype=bool)
    outside[disc] = False
    np.testing.assert_array_equal(
        tissue_of(both).ravel()[outside], tissue_of(pulsed).ravel()[outside]
    )
    assert (
        np.count_nonzero(tissue_of(both) == SENESCENT)
        == np.count_nonzero(tissue_of(pulsed) == SENESCENT) - covered
    )
    if engine == "array":
        for state in (both.damage, both.exposure, both.divisions):
            assert np.all(state[disc] == 0)
        scale = both.damage_scale[disc]
    else:
        cells = grid_agents(both, HealthyCell)
        young = [cells[i] for i in disc]
        assert all(c.damage == 0 and c.divisions == 0 and c.exposure == 0 for c in young)
        assert len(both.agents_by_type[HealthyCell]) == np.count_nonzero(
            both.tissue.data == HEALTHY
        )  # the replaced agents are gone
        scale = np.array([c.damage_scale for c in young])
    assert np.all(scale > 0) and np.unique(scale).size == disc.size  # each its own multiplier


@pytest.mark.parametrize("engine", ENGINES)
def test_healthy_transplant_on_a_disc_without_senescent_cells_keeps_the_senescent_count(engine):
    model = ENGINES[engine](
        size=20,
        start_age=90,
        days=5,
        rng=1,
        perturbations=[Transplant(age=90, cells=30, state="healthy")],
    )
    assert not np.any(tissue_of(model).ravel()[central_sites(20, 30)] == SENESCENT)
    senescent = np.count_nonzero(tissue_of(model) == SENESCENT)
    healthy = np.count_nonzero(tissue_of(model) == HEALTHY)
    perturb_now(model)
    assert np.count_nonzero(tissue_of(model) == SENESCENT) == senescent
    assert np.count_nonzero(tissue_of(model) == HEALTHY) >= healthy  # empty disc sites filled


# --- runs ---------------------------------------------------------------------------------------

PULSE_AGE = 93


def run(engine: str, extra: str = "", params: str = "") -> pd.DataFrame:
    """The readouts of a short run (size 20, ages 90 to 97, seed 5) of a scenario file."""
    text = (
        f'name = "exp"\nengine = "{engine}"\nseed = 5\nsize = 20\nstart_age = 90\n'
        f"end_age = 97\n{extra}{params}"
    )
    return run_scenario(parse_scenario(text, "f.toml")).readouts


@pytest.mark.parametrize("engine", ENGINES)
def test_pulsed_run_equals_its_control_up_to_the_pulse_age_and_jumps_after(engine):
    control = run(engine)
    pulsed = run(engine, pulse(PULSE_AGE, 0.2))
    before = control["age"] <= PULSE_AGE
    pd.testing.assert_frame_equal(pulsed[before], control[before])
    at, after = (control["age"] == PULSE_AGE), (control["age"] == PULSE_AGE + 1)
    healthy = control.loc[at, "healthy"].item()
    jump = pulsed.loc[after, "senescent"].item() - control.loc[after, "senescent"].item()
    assert jump > 0.1 * healthy  # 0.2 of the healthy cells, less a day's losses
    pd.testing.assert_frame_equal(pulsed, run(engine, pulse(PULSE_AGE, 0.2)))  # same seed


FROZEN_TABLE = "[parameters]\n" + "".join(
    f"{name} = {value}\n"
    for name, value in FROZEN.model_dump().items()
    if value != Parameters.model_fields[name].default
)


@pytest.mark.parametrize("engine", ENGINES)
def test_made_cells_are_counted_in_the_state_but_not_as_new_senescence_events(engine):
    readouts = run(
        engine, pulse(PULSE_AGE, 0.2) + transplant(PULSE_AGE + 1, 12, "senescent"), FROZEN_TABLE
    )
    counts = readouts.set_index("age")["senescent"]
    assert counts[PULSE_AGE + 1] > counts[PULSE_AGE] + 0.1 * readouts["healthy"].iloc[0]
    assert counts[PULSE_AGE + 2] > counts[PULSE_AGE + 1]
    assert counts.diff().fillna(0).ge(0).all()  # nothing dies in the frozen tissue
    for event in ("new_primary", "new_paracrine", "new_replicative"):
        assert readouts[event].eq(0).all(), event


@pytest.mark.skipif("numba" not in KERNELS, reason="numba not installed")
def test_both_kernels_give_the_same_perturbed_run():
    perturbations = [Pulse(age=91, fraction=0.3), Transplant(age=93, cells=25, state="healthy")]
    runs = []
    for kernel in ("numba", "numpy"):
        model = ArrayTissue(
            size=20, start_age=90, days=6, rng=9, kernel=kernel, perturbations=perturbations
        )
        for _ in range(6):
            model.step()
        runs.append(model)
    np.testing.assert_array_equal(runs[0].tissue, runs[1].tissue)
    np.testing.assert_array_equal(runs[0].immune, runs[1].immune)
    readouts = [
        m.readouts.drop(columns=["mean_sasp", "mean_damage", "tissue_function"]) for m in runs
    ]
    pd.testing.assert_frame_equal(*readouts)

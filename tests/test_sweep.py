"""Scenario expansion for batches: sweeps, replicate seeds, the batch plan and output options."""

from __future__ import annotations

import copy
import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tissue_abm.biology.readouts import EVENTS, SITE_STATES
from tissue_abm.runs.batch import plan_batch
from tissue_abm.runs.run import PROGRESS_DAYS, run_scenario
from tissue_abm.runs.scenario import Scenario, parse_scenario, sweep_column

SOURCE = "sweep.toml"
HEAD = 'name = "swept"\nseed = 5\nsize = 6\nstart_age = 90\nend_age = 92\n'
"""A tiny valid head that the cases extend."""


def scenario_of(text: str) -> Scenario:
    return parse_scenario(text, SOURCE)


def points_of(text: str):
    return scenario_of(text).sweep_points(SOURCE)


def toml_list(values) -> str:
    return "[" + ", ".join(str(v).lower() if isinstance(v, bool) else repr(v) for v in values) + "]"


def sweep_table(table: str, sweep: dict[str, list]) -> str:
    lines = [f"[sweep.{table}]"] + [
        f'"{key}" = {toml_list(values)}' for key, values in sweep.items()
    ]
    return "\n".join(lines) + "\n"


def set_path(data: dict, key: str, value) -> None:
    """Set a sweep key (bare parameter name or dotted path) in a dumped scenario."""
    path = ["parameters", key] if key in data["parameters"] else key.split(".")
    for part in path[:-1]:
        if data.get(part) is None:
            data[part] = {}
        data = data[part]
    data[path[-1]] = value


# --- counting and order -------------------------------------------------------------------------

GRIDS = {
    "one-key": {"immune_kill": [0.1, 0.2, 0.3]},
    "two-keys": {"immune_kill": [0.1, 0.2], "therapy.rapamycin.dose": [0.5, 1.0, 2.0]},
    "three-keys": {"immune_kill": [0.1, 0.2], "immune_lifetime": [2.0, 4.0, 6.0], "size": [6, 7]},
    "single-value": {"immune_kill": [0.4]},
}


@pytest.mark.parametrize("grid", list(GRIDS.values()), ids=list(GRIDS))
def test_grid_sweep_gives_every_combination_once_with_the_first_key_slowest(grid):
    points = points_of(HEAD + sweep_table("grid", grid))
    assert len(points) == math.prod(len(values) for values in grid.values())
    assert [point.index for point in points] == list(range(len(points)))
    combos = [tuple(point.values[sweep_column(key)] for key in grid) for point in points]
    assert combos == list(itertools.product(*grid.values()))
    assert len(set(combos)) == len(combos)
    for point in points:
        assert list(point.values) == list(grid)


def test_zip_sweep_pairs_values_side_by_side():
    zipped = {"ot_old_fraction": [0.1, 0.2, 0.3], "ot_decline_age": [300.0, 400.0, 500.0]}
    points = points_of(HEAD + sweep_table("zip", zipped))
    assert [point.values for point in points] == [
        {"ot_old_fraction": 0.1, "ot_decline_age": 300.0},
        {"ot_old_fraction": 0.2, "ot_decline_age": 400.0},
        {"ot_old_fraction": 0.3, "ot_decline_age": 500.0},
    ]
    for point in points:
        assert point.scenario.parameters.ot_old_fraction == point.values["ot_old_fraction"]
        assert point.scenario.parameters.ot_decline_age == point.values["ot_decline_age"]


def test_grid_and_zip_give_the_grid_product_times_the_zip_length():
    grid = {"immune_kill": [0.2, 0.4], "therapy.oxytocin.dose": [0.5, 1.0, 1.5]}
    zipped = {"ot_old_fraction": [0.1, 0.2, 0.3, 0.4], "size": [6, 7, 8, 9]}
    points = points_of(HEAD + sweep_table("grid", grid) + sweep_table("zip", zipped))
    assert len(points) == 2 * 3 * 4
    expected = [
        {**dict(zip(grid, combo, strict=True)), **dict(zip(zipped, pair, strict=True))}
        for combo in itertools.product(*grid.values())
        for pair in zip(*zipped.values(), strict=True)
    ]
    assert [point.values for point in points] == expected
    assert [point.index for point in points] == list(range(24))


def test_no_sweep_gives_exactly_one_point_with_empty_values():
    scenario = scenario_of(HEAD + "[parameters]\nimmune_kill = 0.3\n")
    points = scenario.sweep_points(SOURCE)
    assert len(points) == 1
    assert points[0].index == 0
    assert points[0].values == {}
    assert points[0].scenario == scenario
    assert points[0].scenario.sweep is None


# --- sweep keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["immune_kill", "parameters.immune_kill"])
def test_bare_parameter_name_and_parameters_path_give_the_bare_column(key):
    points = points_of(HEAD + sweep_table("grid", {key: [0.25, 0.75]}))
    assert [point.values for point in points] == [{"immune_kill": 0.25}, {"immune_kill": 0.75}]
    assert [point.scenario.parameters.immune_kill for point in points] == [0.25, 0.75]


def test_therapy_path_works_without_the_table_in_the_base_file():
    base = scenario_of(HEAD)
    assert base.therapy.rapamycin is None
    points = points_of(HEAD + sweep_table("grid", {"therapy.rapamycin.dose": [0.5, 2.0]}))
    assert [point.values for point in points] == [
        {"therapy.rapamycin.dose": 0.5},
        {"therapy.rapamycin.dose": 2.0},
    ]
    for point, dose in zip(points, [0.5, 2.0], strict=True):
        rapamycin = point.scenario.therapy.rapamycin
        assert rapamycin is not None
        assert rapamycin.dose == dose
        # the rest of the regimen is the default one, and no other drug appears
        assert rapamycin.model_dump(exclude={"dose"}) == type(rapamycin)().model_dump(
            exclude={"dose"}
        )
        assert point.scenario.therapy.oxytocin is None
        assert point.scenario.therapy.senolytic is None


def test_therapy_path_keeps_the_other_settings_of_an_existing_table():
    text = HEAD + "[therapy.oxytocin]\nstart_age = 91\nevery = 2\ndose = 3.0\n"
    points = points_of(text + sweep_table("grid", {"therapy.oxytocin.dose": [0.5, 1.0]}))
    for point, dose in zip(points, [0.5, 1.0], strict=True):
        oxytocin = point.scenario.therapy.oxytocin
        assert (oxytocin.dose, oxytocin.start_age, oxytocin.every) == (dose, 91, 2)


def test_size_and_start_age_can_be_swept():
    text = HEAD.replace("end_age = 92", "end_age = 95")
    points = points_of(text + sweep_table("zip", {"size": [6, 9], "start_age": [90, 93]}))
    assert [(p.scenario.size, p.scenario.start_age) for p in points] == [(6, 90), (9, 93)]
    assert [p.scenario.end_age for p in points] == [95, 95]
    assert [p.scenario.days for p in points] == [5, 2]


@pytest.mark.parametrize(
    ("table", "sweep"),
    [
        pytest.param("grid", {"immune_kill": [0.1, 0.9]}, id="parameter"),
        pytest.param("grid", {"therapy.senolytic.fraction": [0.1, 0.5]}, id="therapy"),
        pytest.param(
            "zip",
            {"size": [6, 7], "torus": [True, False], "damage_rate": [0.02, 0.03]},
            id="tissue-and-parameter",
        ),
        pytest.param("grid", {"end_age": [91, 93]}, id="end-age"),
    ],
)
def test_each_point_carries_its_values_and_the_base_everywhere_else(table, sweep):
    text = (
        HEAD + "description = 'base'\n[parameters]\nimmune_lifetime = 7.0\n"
        "[therapy.oxytocin]\ndose = 2.0\n"
    )
    base = scenario_of(text)
    points = scenario_of(text + sweep_table(table, sweep)).sweep_points(SOURCE)
    assert len(points) == 2
    for point in points:
        expected = base.model_dump()
        for key, value in point.values.items():
            set_path(expected, key, value)
        assert point.scenario == Scenario.model_validate(expected)
        assert point.scenario.sweep is None


def test_swept_values_are_reported_validated():
    grid = {"immune_kill": [0, 1], "therapy.rapamycin.dose": [2], "size": [6]}
    points = points_of(HEAD + sweep_table("grid", grid))
    assert [point.values for point in points] == [
        {"immune_kill": 0.0, "therapy.rapamycin.dose": 2.0, "size": 6},
        {"immune_kill": 1.0, "therapy.rapamycin.dose": 2.0, "size": 6},
    ]
    for point in points:
        assert type(point.values["immune_kill"]) is float
        assert type(point.values["therapy.rapamycin.dose"]) is float
        assert type(point.values["size"]) is int
        assert type(point.scenario.parameters.immune_kill) is float


# --- replicate seeds ----------------------------------------------------------------------------


def expected_seeds(seed: int, n: int) -> list[int]:
    return [
        int(child.generate_state(1, np.uint64)[0] >> 1)
        for child in np.random.SeedSequence(seed).spawn(n)
    ]


@pytest.mark.parametrize(("seed", "replicates"), [(0, 1), (1, 5), (12345, 20), (2**63 - 1, 3)])
def test_replicate_seeds_are_spawned_from_the_base_seed(seed, replicates):
    scenario = scenario_of(
        HEAD.replace("seed = 5", f"seed = {seed}") + f"replicates = {replicates}\n"
    )
    seeds = scenario.replicate_seeds()
    assert seeds == expected_seeds(seed, replicates)
    assert len(set(seeds)) == replicates
    assert all(type(s) is int and 0 <= s <= 2**63 - 1 for s in seeds)
    # each replicate seed is itself a valid scenario seed
    for s in seeds:
        assert scenario.with_overrides(seed=s).seed == s


def test_more_replicates_keep_the_seeds_of_the_first_ones():
    few = scenario_of(HEAD + "replicates = 3\n").replicate_seeds()
    many = scenario_of(HEAD + "replicates = 10\n").replicate_seeds()
    assert many[:3] == few
    assert len(set(many)) == 10


def test_different_base_seeds_give_different_replicate_seeds():
    first = scenario_of(HEAD + "replicates = 10\n").replicate_seeds()
    second = scenario_of(
        HEAD.replace("seed = 5", "seed = 6") + "replicates = 10\n"
    ).replicate_seeds()
    assert not set(first) & set(second)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_every_sweep_point_gets_the_same_replicate_seeds(tmp_path):
    text = (
        HEAD
        + "replicates = 4\n"
        + sweep_table("grid", {"immune_kill": [0.2, 0.4, 0.6]})
        + sweep_table("zip", {"size": [6, 7]})
    )
    plan = plan_batch([write(tmp_path, "swept", text)])
    seeds = scenario_of(text).replicate_seeds()
    by_point: dict[int, list[int]] = {}
    for spec in plan.runs:
        by_point.setdefault(spec.point, []).append(spec.scenario.seed)
    assert len(by_point) == 6
    assert all(point_seeds == seeds for point_seeds in by_point.values())


# --- the batch plan -----------------------------------------------------------------------------

SWEPT = (
    HEAD
    + "replicates = 3\n"
    + sweep_table("grid", {"immune_kill": [0.2, 0.4], "therapy.rapamycin.dose": [1, 2]})
    + sweep_table("zip", {"ot_old_fraction": [0.1, 0.3], "start_age": [90, 91]})
)
PLAIN = HEAD.replace('"swept"', '"plain"').replace("seed = 5", "seed = 9") + "replicates = 2\n"


@pytest.fixture
def plan(tmp_path):
    return plan_batch([write(tmp_path, "swept", SWEPT), write(tmp_path, "plain", PLAIN)])


def test_plan_has_points_times_replicates_runs_summed_over_files(plan):
    assert len(plan.runs) == 2 * 2 * 2 * 3 + 1 * 2
    assert [source.scenario.name for source in plan.sources] == ["swept", "plain"]
    assert [source.text for source in plan.sources] == [SWEPT, PLAIN]
    counts = pd.Series([spec.scenario.name for spec in plan.runs]).value_counts().to_dict()
    assert counts == {"swept": 24, "plain": 2}


def test_plan_run_ids_are_unique_and_ordered_by_file_point_replicate(plan):
    ids = [spec.id for spec in plan.runs]
    assert len(set(ids)) == len(ids)
    order = [(spec.scenario.name != "swept", spec.point, spec.replicate) for spec in plan.runs]
    assert order == sorted(order)
    assert ids[0] == "swept/p0000_r0000"
    assert ids[-1] == "plain/p0000_r0001"


def test_run_labels_are_point_then_swept_columns_then_replicate(plan):
    columns = ["immune_kill", "therapy.rapamycin.dose", "ot_old_fraction", "start_age"]
    for spec in plan.runs:
        if spec.scenario.name == "swept":
            assert list(spec.labels) == ["point", *columns, "replicate"]
        else:
            assert list(spec.labels) == ["point", "replicate"]
        assert spec.labels == {"point": spec.point, **spec.values, "replicate": spec.replicate}


def test_each_run_is_its_sweep_point_with_the_replicate_seed_and_no_sweep(plan):
    for source in plan.sources:
        seeds = source.scenario.replicate_seeds()
        points = source.scenario.sweep_points(source.file)
        runs = [spec for spec in plan.runs if spec.scenario.name == source.scenario.name]
        assert len(runs) == len(points) * len(seeds)
        for spec in runs:
            point = points[spec.point]
            assert spec.values == point.values
            assert spec.scenario.seed == seeds[spec.replicate]
            assert spec.scenario.sweep is None
            assert spec.scenario.model_dump(exclude={"seed", "replicates"}) == (
                point.scenario.model_dump(exclude={"seed", "replicates"})
            )


# --- output options -----------------------------------------------------------------------------

TINY = (
    'name = "tiny"\nseed = 3\nsize = 8\nstart_age = 90\nend_age = 110\n'
    "[parameters]\ninitial_occupancy = 0.8\ninitial_senescent_fraction = 0.2\n"
)
"""A 8 x 8 grid for 20 days, with all three site states present."""


@pytest.mark.parametrize("every", [1, 3, 6, 7, 20, 25])
def test_output_every_keeps_multiples_of_every_and_the_last_day(every):
    run = run_scenario(scenario_of(TINY + f"[output]\nevery = {every}\n"))
    kept = sorted({day for day in range(21) if day % every == 0} | {20})
    assert list(run.readouts["day"]) == kept
    assert list(run.readouts["age"]) == [90 + day for day in kept]
    assert run.snapshots is None


def test_output_every_keeps_the_kept_days_own_states_and_sums_the_events_of_its_days():
    # A kept row stands for the days since the previous one: its counts and systemic state are
    # the kept day's own, its event tallies the sums of its days, its senolytic share that of
    # all their doses together (the senolytic every 4 days, kept every 6: windows of 1 or 2).
    senolytic = "[therapy.senolytic]\nfraction = 0.3\nevery = 4\nstart_age = 90\n"
    daily = run_scenario(scenario_of(TINY + senolytic)).readouts
    sparse = run_scenario(scenario_of(TINY + senolytic + "[output]\nevery = 6\n")).readouts
    kept = daily["day"].isin(sparse["day"]).to_numpy()
    window = np.cumsum(kept) - kept
    own = [c for c in daily.columns if c not in (*EVENTS, "senolytic_fraction")]
    pd.testing.assert_frame_equal(sparse[own], daily.loc[kept, own].reset_index(drop=True))
    for name in EVENTS:
        np.testing.assert_array_equal(sparse[name], daily.groupby(window)[name].sum())
    assert daily[list(EVENTS)].to_numpy().sum() == sparse[list(EVENTS)].to_numpy().sum()
    left = (1 - daily["senolytic_fraction"]).groupby(window).prod().to_numpy()
    np.testing.assert_allclose(sparse["senolytic_fraction"], 1 - left, rtol=1e-12)
    assert (sparse["senolytic_fraction"] > 0.3).any()  # two doses in one window: 0.51


def test_snapshots_appear_at_the_asked_ages_and_match_the_readouts():
    ages = [90, 97, 110]
    run = run_scenario(scenario_of(TINY + f"[output]\nsnapshots = {ages}\n"))
    shots = run.snapshots
    assert shots is not None
    assert sorted(shots["age"].unique()) == ages
    assert list(shots.columns[:3]) == ["scenario", "seed", "engine"]
    assert isinstance(shots["state"].dtype, pd.CategoricalDtype)
    assert set(shots["state"].cat.categories) == set(SITE_STATES)
    assert set(shots["state"].astype(str)) <= set(SITE_STATES)
    readouts = run.readouts.set_index("age")
    for age in ages:
        shot = shots[shots["age"] == age]
        assert len(shot) == 8 * 8
        assert len(set(zip(shot["x"], shot["y"], strict=True))) == 8 * 8
        counts = shot["state"].astype(str).value_counts()
        for state in SITE_STATES:
            assert counts.get(state, 0) == readouts.loc[age, state], (age, state)
    # the tiny tissue is not trivial: the comparison saw every state
    assert set(shots["state"].astype(str)) == set(SITE_STATES)


def test_snapshots_do_not_depend_on_every():
    daily = run_scenario(scenario_of(TINY + "[output]\nsnapshots = [95]\n"))
    sparse = run_scenario(scenario_of(TINY + "[output]\nevery = 4\nsnapshots = [95]\n"))
    pd.testing.assert_frame_equal(daily.snapshots, sparse.snapshots)
    assert list(sparse.readouts["day"]) == [0, 4, 8, 12, 16, 20]
    shot = sparse.snapshots["state"].astype(str).value_counts()
    day5 = daily.readouts[daily.readouts["day"] == 5].iloc[0]
    assert [shot.get(s, 0) for s in SITE_STATES] == [day5[s] for s in SITE_STATES]


def test_sweep_point_scenarios_do_not_share_state_with_the_base():
    scenario = scenario_of(HEAD + sweep_table("grid", {"therapy.rapamycin.dose": [0.5, 1.0]}))
    before = copy.deepcopy(scenario.model_dump())
    scenario.sweep_points(SOURCE)
    scenario.sweep_points(SOURCE)
    assert scenario.model_dump() == before
    assert scenario.therapy.rapamycin is None


@pytest.mark.parametrize("engine", ["array", "agents"])
def test_run_scenario_runs_in_pieces_with_progress_and_gives_the_day_by_day_run(engine):
    # run_scenario runs the model in pieces (run_for) ending at the snapshot ages and at least
    # every PROGRESS_DAYS days: progress comes after each piece, and the run is the one a
    # model stepped day by day gives.
    scenario = scenario_of(
        f'engine = "{engine}"\n'
        + TINY.replace("end_age = 110", "end_age = 165")
        + "[output]\nsnapshots = [97, 150]\n"
    )
    calls = []
    run = run_scenario(scenario, progress=lambda done, total: calls.append((done, total)))
    done = [d for d, _ in calls]
    assert {total for _, total in calls} == {75}
    assert done == sorted(set(done)) and done[-1] == 75
    assert {97 - 90, 150 - 90} <= set(done)
    assert max(np.diff([0, *done])) <= PROGRESS_DAYS
    stepped = scenario.create_model()
    for _ in range(75):
        stepped.step()
    expected = stepped.readouts
    pd.testing.assert_frame_equal(run.readouts[expected.columns].reset_index(drop=True), expected)

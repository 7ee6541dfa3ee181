"""Tests of what only the Mesa agents engine `TissueModel` has.

The engine contract (site-level invariants after every day of busy runs, determinism, the run's
end, `run_for`, the readout table, the initial state and limiting cases) is checked on every
engine in `test_engine_contract`. Here: the agents themselves (each cell an agent with its own
identity, fixed to its site or stepping one site a day, mirrored exactly by the property
layers, counted by `counts()`), Mesa's own ways to run (`run_until`, `run_model`), and a scan of
the source tree for Mesa APIs that are deprecated or gone in Mesa 4.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from pandas.testing import assert_frame_equal

from factories import (
    NEW_SENESCENCE,
    SENESCENT_REMOVALS,
    active_model,
    assert_busy_run,
    moore_distance,
    moore_neighbours,
)
from tissue_abm import Parameters, TissueModel
from tissue_abm.biology.rules import EMPTY, HEALTHY, SENESCENT
from tissue_abm.engines.agents.agents import HealthyCell, ImmuneCell, SenescentCell

SRC = Path(__file__).resolve().parents[1] / "src"


def agents_of(model: TissueModel, kind: type) -> list:
    """The model's agents of one type (none if the type has no agents registered)."""
    return list(model.agents_by_type.get(kind, ()))


def last_readout(model: TissueModel) -> dict:
    """The newest readout row, with each column's own type (ints stay ints)."""
    return model.readouts.to_dict("records")[-1]


# --- daily snapshots of the agents and their checks ---------------------------------------------


@dataclass
class Snapshot:
    """What the agent checks compare between consecutive days."""

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


def check_agent_counts(model: TissueModel, row: dict) -> None:
    """The newest readout row and `model.counts()` count the agents."""
    sites = model.tissue.data.size
    from_agents = {
        "healthy": len(agents_of(model, HealthyCell)),
        "senescent": len(agents_of(model, SenescentCell)),
        "immune": len(agents_of(model, ImmuneCell)),
    }
    from_agents["empty"] = sites - from_agents["healthy"] - from_agents["senescent"]
    assert {name: row[name] for name in from_agents} == from_agents
    assert model.counts() == from_agents


def check_agents(model: TissueModel) -> None:
    check_tissue_layer(model)
    check_immune_layer(model)
    check_agent_counts(model, last_readout(model))


def check_tissue_transitions(
    before: Snapshot, after: Snapshot, row: dict, size: int, torus: bool
) -> None:
    """The tissue agents of one day: who stayed, arrested, died, was born, was removed."""
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
    assert len(out_of_reach) <= (
        row["cleared_senolytic"] + row["senescent_deaths"] + row["cleared_phagocytic"]
    )


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


def run_checking_agents_every_day(model: TissueModel, days: int) -> int:
    """Step `days` times, checking the agents after each day; returns immune moves."""
    size = model.tissue.data.shape[0]
    check_agents(model)
    before = take_snapshot(model)
    moves = 0
    for _ in range(days):
        model.step()
        check_agents(model)
        after, row = take_snapshot(model), last_readout(model)
        check_tissue_transitions(before, after, row, size, model.torus)
        moves += check_immune_transitions(before, after, row, size, model.torus)
        before = after
    return moves


# --- 1. the agents --------------------------------------------------------------------------------


@pytest.mark.parametrize("rng", [3, 17])
@pytest.mark.parametrize("torus", [True, False], ids=["torus", "closed"])
def test_agents_and_layers_agree_every_day_with_all_processes_active(torus: bool, rng: int) -> None:
    days = 80
    model = active_model(size=25, days=days, rng=rng, torus=torus)
    immune_moves = run_checking_agents_every_day(model, days)
    assert_busy_run(model.readouts, immune_moves)


def test_full_tissue_without_senescence_has_a_healthy_agent_on_every_site() -> None:
    params = Parameters(initial_occupancy=1.0, initial_senescent_fraction=0.0)
    model = TissueModel(params=params, size=30, days=1, rng=4)
    counts = model.counts()
    assert counts["empty"] == 0
    assert counts["senescent"] == 0
    assert counts["healthy"] == 30 * 30
    assert len(agents_of(model, HealthyCell)) == 30 * 30
    assert not agents_of(model, SenescentCell)


def test_initial_senescent_cells_are_marked_initial_and_counted() -> None:
    params = Parameters(initial_occupancy=0.8, initial_senescent_fraction=0.05)
    model = TissueModel(params=params, size=100, days=1, rng=12)
    senescent = agents_of(model, SenescentCell)
    assert senescent
    assert {cell.cause for cell in senescent} == {"initial"}
    check_agents(model)


def test_day_zero_row_counts_the_initial_agents() -> None:
    model = active_model(size=20, days=10)
    initial_counts = {
        "healthy": len(agents_of(model, HealthyCell)),
        "senescent": len(agents_of(model, SenescentCell)),
        "immune": len(agents_of(model, ImmuneCell)),
    }
    assert all(count > 0 for count in initial_counts.values())
    model.run_for(4)
    day_zero = model.readouts.iloc[0]
    for name, count in initial_counts.items():
        assert day_zero[name] == count


# --- 2. Mesa's ways to run ------------------------------------------------------------------------


def test_run_until_matches_repeated_steps() -> None:
    days = 25
    stepped, ran_until = (active_model(days=days, rng=9) for _ in range(2))
    for _ in range(days):
        stepped.step()
    ran_until.run_until(days)
    assert ran_until.time == days
    assert len(ran_until.readouts) == days + 1
    assert_frame_equal(stepped.readouts, ran_until.readouts)
    for layer in ("tissue", "immune", "sasp"):
        np.testing.assert_array_equal(
            getattr(stepped, layer).data, getattr(ran_until, layer).data, err_msg=layer
        )


def test_run_model_stops_exactly_at_the_last_day() -> None:
    days = 12
    model = active_model(days=days)
    model.run_model()
    assert not model.running
    assert model.time == days
    assert model.readouts["day"].tolist() == list(range(days + 1))


# --- 3. what a Mesa user expects: data collection, flat parameters, agent.remove() -------------


def test_datacollector_holds_each_days_counts_of_the_agents() -> None:
    model = active_model(size=20, days=15, rng=5)
    counted = []
    for _ in range(15):
        model.step()
        sites = model.tissue.data.size
        counted.append(len(agents_of(model, SenescentCell)) / sites)
    table = model.datacollector.get_model_vars_dataframe()
    assert len(table) == 16  # day 0 and one row a day
    assert table["day"].tolist() == list(range(16))
    np.testing.assert_allclose(table["senescent_fraction"].iloc[1:], counted)
    assert_frame_equal(table, model.readouts)


def test_readouts_read_while_a_day_is_collected_hold_the_full_days() -> None:
    model = active_model(size=10, days=5)
    model.run_for(3)
    before = model.readouts
    model.datacollector.model_vars["day"].append(4)  # a collect under way: one column ahead
    assert_frame_equal(model.readouts, before)


def test_mesa_plot_component_draws_from_the_datacollector() -> None:
    import solara
    from mesa.visualization import make_plot_component

    model = active_model(size=15, days=5)
    model.run_for(5)
    drawn = {}

    def keep_lines(ax) -> None:
        drawn.update({line.get_label(): line.get_ydata() for line in ax.lines})

    component, _ = make_plot_component(["senescent_fraction", "immune"], post_process=keep_lines)
    _, rc = solara.render(component(model), handle_error=False)
    rc.close()
    assert set(drawn) == {"senescent_fraction", "immune"}
    np.testing.assert_array_equal(drawn["immune"], model.readouts["immune"])
    assert drawn["immune"][-1] == len(agents_of(model, ImmuneCell))


def test_flat_keyword_parameters_set_the_same_run_as_a_parameters_object() -> None:
    flat = TissueModel(size=12, days=8, rng=2, immune_kill=0.25, sasp_decay=0.3)
    built = TissueModel(params=Parameters(immune_kill=0.25, sasp_decay=0.3), size=12, days=8, rng=2)
    assert flat.params == built.params
    flat.run_for(8)
    built.run_for(8)
    assert_frame_equal(flat.readouts, built.readouts)
    over = TissueModel(params=Parameters(sasp_decay=0.3), size=5, days=1, immune_kill=0.25)
    assert (over.params.sasp_decay, over.params.immune_kill) == (0.3, 0.25)


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        (
            {"immune_kill": 2.0},
            r"^immune_kill = 2\.0 is not allowed; allowed: a number from 0\.0 to 1\.0",
        ),
        ({"immune_kill": "high"}, r"^immune_kill = 'high' is not allowed"),
        ({"replicative_limit": 2.5}, r"^replicative_limit = 2\.5 .*a whole number"),
        (
            {"initial_occupancy": 0.1, "initial_senescent_fraction": 0.2},
            r"initial_senescent_fraction \(0\.2\) cannot exceed initial_occupancy",
        ),
    ],
)
def test_flat_parameters_are_checked_as_in_a_scenario_file(keywords: dict, message: str) -> None:
    from tissue_abm.runs.scenario import ScenarioError, parse_scenario

    with pytest.raises(ValueError, match=message):
        TissueModel(size=5, days=1, **keywords)
    text = "[parameters]\n" + "".join(f"{k} = {v!r}\n" for k, v in keywords.items())
    with pytest.raises(ScenarioError):  # a scenario file rejects the same values
        parse_scenario(text.replace("'", '"'), "file.toml")


def test_solaraviz_model_params_set_biological_parameters_on_reset() -> None:
    import ipyvuetify as v
    import solara
    from mesa.visualization import Slider, SolaraViz

    model = solara.reactive(TissueModel(size=10, days=5, rng=1))
    params = {
        "immune_kill": Slider("immune kill", value=0.3, min=0.0, max=1.0, step=0.1),
        "size": 12,
    }

    @solara.component
    def Page() -> None:
        with solara.AppLayout():  # the sidebar, with Reset, is laid out by the app layout
            SolaraViz(model, components=[], model_params=params)

    _, rc = solara.render(Page(), handle_error=False)
    rc.find(v.Btn, children=["Reset"]).widget.click()
    rc.close()
    assert model.value.params.immune_kill == 0.3
    assert model.value.tissue.data.shape == (12, 12)


def test_an_unknown_keyword_names_the_closest_parameter_or_rng() -> None:
    with pytest.raises(
        TypeError, match=r"'imune_kill' is not a parameter; did you mean 'immune_kill'"
    ):
        TissueModel(size=5, days=1, imune_kill=0.5)
    with pytest.raises(TypeError, match=r"rng="):
        TissueModel(size=5, days=1, **{SEED_KEYWORD: 1})


def test_agent_remove_keeps_the_property_layers_consistent() -> None:
    model = active_model(size=20, days=10, rng=8)
    model.run_for(3)
    senescent = agents_of(model, SenescentCell)[0]
    healthy = agents_of(model, HealthyCell)[0]
    immune = agents_of(model, ImmuneCell)[0]
    sites = [a.cell.coordinate for a in (senescent, healthy, immune)]
    for agent in (senescent, healthy, immune):
        agent.remove()
    assert model.tissue.data[sites[0]] == EMPTY
    assert model.tissue.data[sites[1]] == EMPTY
    assert not model.immune.data[sites[2]]
    check_tissue_layer(model)
    check_immune_layer(model)
    model.step()  # the next day counts what is left
    check_agents(model)


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

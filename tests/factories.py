"""Builders shared by the test modules (no test module imports another).

- results tables: `results_rows` and `results_table` build tables in the layout of
  `tissue_abm.runs.results.load_results`; `make_batch` runs a tiny real batch of the canonical
  scenarios;
- scenario files and command-line errors: `write_case`, `assert_one_line_error`;
- engines: the busy old tissue of the engine tests (`ACTIVE_PARAMS`, `ACTIVE_THERAPY`,
  `active_engine`), the engine cases of the contract suite (`ENGINE_CASES`), and the helpers
  their checks share (Moore neighbourhoods, `step_days`, `assert_busy_run`).

Engines are imported on first use (`tissue_abm.engines.engine_class`), so importing this module
imports neither Mesa nor numba.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tissue_abm.biology.params import Parameters
from tissue_abm.biology.readouts import EVENTS
from tissue_abm.biology.therapy import Oxytocin, Rapamycin, Senolytic, Therapy
from tissue_abm.engines import engine_class

if TYPE_CHECKING:
    from tissue_abm.engines import Engine
    from tissue_abm.engines.agents.model import TissueModel
    from tissue_abm.engines.array.model import ArrayTissue

# --- results tables -------------------------------------------------------------------------------


def results_rows(
    scenario: str,
    *,
    replicate,
    seed,
    age,
    day=None,
    point: int | None = 0,
    sweep: dict[str, object] | None = None,
    engine: str = "array",
    **readouts,
) -> pd.DataFrame:
    """Rows of a results table, columns in the order of `load_results`.

    The columns: scenario, point, the sweep columns, replicate, seed, engine, day, age, then
    the readouts. Each value is a scalar (the same on every row) or a sequence with one value
    per row (all sequences of the same length).

    Args:
        scenario: Scenario name.
        replicate: Replicate number(s).
        seed: Seed(s) of the runs.
        age: Kept age(s), days.
        day: Day(s) of the rows; None: 0, 1, 2, ... (the daily rows of one run).
        point: Sweep point(s); None leaves the column out (runs without batch labels).
        sweep: Swept column -> its value(s), placed between point and replicate.
        engine: Engine name.
        readouts: Readout columns.
    """
    columns: dict[str, object] = {"scenario": scenario}
    if point is not None:
        columns["point"] = point
    columns.update(sweep or {})
    columns.update({"replicate": replicate, "seed": seed, "engine": engine, "day": day, "age": age})
    columns.update(readouts)
    lengths = {len(value) for value in columns.values() if value is not None and np.ndim(value)}
    if len(lengths) > 1:
        raise ValueError(f"columns of different lengths: {sorted(lengths)}")
    rows = lengths.pop() if lengths else 1
    if day is None:
        columns["day"] = np.arange(rows)
    return pd.DataFrame(
        {
            name: np.asarray(value) if np.ndim(value) else [value] * rows
            for name, value in columns.items()
        }
    )


def results_table(
    *frames: pd.DataFrame, categories: tuple[str, ...] = ("scenario", "engine")
) -> pd.DataFrame:
    """Rows concatenated, with `categories` categorical as `load_results` gives them."""
    table = pd.concat(frames, ignore_index=True)
    for column in categories:
        table[column] = table[column].astype("category")
    return table


def synthetic(values: dict, days: int = 3, sweep: dict | None = None) -> pd.DataFrame:
    """A hand-made results table. `values`: scenario -> per-replicate values on every day of
    `senescent_fraction` (tissue_function = 1 − 2·that). `sweep`: scenario -> value of a swept
    column `immune_kill` (missing scenarios get NaN); a list value makes one point per entry."""
    frames = []
    for name, reps in values.items():
        kills = (sweep or {}).get(name, math.nan)
        for point, kill in enumerate(kills if isinstance(kills, list) else [kills]):
            for r, value in enumerate(reps):
                frames.append(
                    results_rows(
                        name,
                        point=point,
                        sweep=None if sweep is None else {"immune_kill": kill},
                        replicate=r,
                        seed=10 + r,
                        engine="agents",
                        age=500.0 + np.arange(days),
                        senescent_fraction=value,
                        mean_sasp=2 * value,
                        tissue_function=1 - 2 * value,
                        healthy_fraction=0.9,
                        immune=3,
                    )
                )
    return results_table(*frames)


CANONICAL = ("untreated", "rapamycin", "oxytocin", "combined")
"""The canonical therapy scenarios (`scenarios/*.toml`)."""
BATCH_START, BATCH_DAYS = 600, 60
"""Start age and length (days) of the runs of `make_batch`."""


def make_batch(
    root: Path,
    scenarios=CANONICAL,
    replicates: int = 3,
    size: int = 15,
    snapshots: tuple[int, ...] = (BATCH_START, BATCH_START + BATCH_DAYS),
    manifest: dict | None = None,
) -> Path:
    """A tiny real batch: each canonical scenario from 600 days of age (therapy already on),
    with grid snapshots at the ages `snapshots` (none if empty)."""
    from tissue_abm.runs.run import run_scenario
    from tissue_abm.runs.scenario import load_scenario, validate_scenario

    root.mkdir(parents=True, exist_ok=True)
    manifest = manifest or {
        "scenarios": [{"name": name} for name in scenarios],
        "runs": [{"status": "done"} for _ in scenarios for _ in range(replicates)],
    }
    (root / "batch.json").write_text(json.dumps(manifest))
    for name in scenarios:
        data = load_scenario(f"scenarios/{name}.toml").model_dump()
        data.update(
            size=size,
            start_age=BATCH_START,
            end_age=BATCH_START + BATCH_DAYS,
            output={"snapshots": list(snapshots)},
        )
        for r in range(replicates):
            scenario = validate_scenario({**data, "seed": 100 + r}, "test")
            run = run_scenario(scenario, labels={"point": 0, "replicate": r})
            folder = root / "runs" / name
            folder.mkdir(parents=True, exist_ok=True)
            run.readouts.to_parquet(folder / f"p0000_r{r:04d}.parquet", index=False)
            if snapshots:
                run.snapshots.to_parquet(folder / f"p0000_r{r:04d}.grid.parquet", index=False)
    return root


# --- scenario files and command-line errors -------------------------------------------------------


def write_case(folder: Path, content: str | bytes | None) -> Path:
    """Write `folder/case.toml` with `content` (None: leave it missing); return its path."""
    path = folder / "case.toml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    return path


def assert_one_line_error(err: str, *parts: str) -> None:
    """`err` is exactly one line: the CLI error prefix, then a message containing `parts`."""
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert err.startswith("tissue-abm: error: "), repr(err)
    assert "Traceback" not in err
    for part in parts:
        assert part in err, f"{part!r} missing from {err!r}"


# --- engines --------------------------------------------------------------------------------------

ENGINE_CASES = (("agents", None), ("array", "numba"), ("array", "numpy"))
"""(engine, kernel) of every engine the contract suite checks (`conftest.engine_case`)."""

NEW_SENESCENCE = ("new_primary", "new_paracrine", "new_replicative")
SENESCENT_REMOVALS = (
    "cleared_immune",
    "cleared_senolytic",
    "cleared_phagocytic",
    "senescent_deaths",
)
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


def new_engine(engine: str, kernel: str | None = None, **arguments) -> Engine:
    """Engine `engine` (with `kernel`, array engine only) built with `arguments`."""
    if engine == "array":
        arguments["kernel"] = kernel
    elif kernel is not None:
        raise ValueError(f"engine {engine!r} has no kernels")
    return engine_class(engine)(**arguments)


def active_engine(
    engine: str,
    kernel: str | None = None,
    size: int = 20,
    days: int = 30,
    rng: int | np.random.Generator = 7,
    torus: bool = True,
    **changes: float,
) -> Engine:
    """The busy old tissue with all therapies on one engine, optionally with changed parameters."""
    return new_engine(
        engine,
        kernel,
        params=variant(ACTIVE_PARAMS, **changes),
        therapy=ACTIVE_THERAPY,
        size=size,
        start_age=ACTIVE_START_AGE,
        days=days,
        torus=torus,
        rng=rng,
    )


def active_model(
    size: int = 20,
    days: int = 30,
    rng: int | np.random.Generator = 7,
    torus: bool = True,
    **changes: float,
) -> TissueModel:
    """The busy old tissue on the agents engine (`TissueModel`)."""
    return active_engine("agents", None, size, days, rng, torus, **changes)


def active_tissue(
    size: int = 20,
    days: int = 30,
    rng: int | np.random.Generator = 7,
    torus: bool = True,
    kernel: str | None = None,
    **changes: float,
) -> ArrayTissue:
    """The busy old tissue on the array engine (`ArrayTissue`); kernel None: the default."""
    return active_engine("array", kernel, size, days, rng, torus, **changes)


def step_days(model, days: int):
    """Step `model` `days` times, one `step` call a day; return it."""
    for _ in range(days):
        model.step()
    return model


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

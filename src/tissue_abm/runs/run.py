"""Run a scenario once: build its engine, run it in pieces, keep its readouts and snapshots."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from tissue_abm.biology.readouts import kept_days
from tissue_abm.runs.scenario import Scenario

PROGRESS_DAYS = 30
"""`run_scenario` reports progress at least this often (days)."""


class Run(NamedTuple):
    """What one run keeps."""

    readouts: pd.DataFrame
    """Label columns, then one row per kept day with every readout (see `readouts.READOUTS`)."""
    snapshots: pd.DataFrame | None
    """Label columns, then `age` and one row per site (see `readouts.SNAPSHOT`); None if the
    scenario asks for no snapshots."""


def run_scenario(
    scenario: Scenario,
    progress: Callable[[int, int], None] | None = None,
    labels: dict[str, Any] | None = None,
) -> Run:
    """Run a scenario once (its base point, with its own seed) and return what it keeps.

    Args:
        scenario: The validated scenario.
        progress: Called as progress(done_days, total_days) at least every
            `PROGRESS_DAYS` days.
        labels: Extra columns (name -> value) placed after `scenario` in both tables, such as
            the sweep point and replicate of a batch run.

    Returns:
        The readouts (day 0 = initial state; every `output.every`-th day and the last, each
        kept row's event tallies summing the days since the previous one:
        `readouts.kept_days`) and the grid snapshots at the `output.snapshots` ages.
    """
    model = scenario.create_model()
    wanted = set(scenario.output.snapshots)
    shots = [model.snapshot()] if scenario.start_age in wanted else []
    # The model runs in pieces (the array engine's kernel runs each in one call) that end at
    # the snapshot ages and often enough to show progress.
    ends = {age - scenario.start_age for age in wanted} | {scenario.days}
    ends |= set(range(PROGRESS_DAYS, scenario.days, PROGRESS_DAYS))
    done = 0
    for end in sorted(day for day in ends if day > 0):
        model.run_for(end - done)
        done = end
        if model.age in wanted:
            shots.append(model.snapshot())
        if progress is not None:
            progress(done, scenario.days)
    table = kept_days(model.readouts, scenario.output.every)
    columns = label_columns(scenario, labels)
    return Run(
        _labelled(table.reset_index(drop=True), columns),
        _labelled(pd.concat(shots, ignore_index=True), columns) if shots else None,
    )


def label_columns(scenario: Scenario, labels: dict[str, Any] | None = None) -> dict[str, Any]:
    """The constant columns in front of a run's tables: scenario, `labels`, seed, engine."""
    return {
        "scenario": scenario.name,
        **(labels or {}),
        "seed": scenario.seed,
        "engine": scenario.engine,
    }


def labelled_readouts(scenario: Scenario, readouts: pd.DataFrame) -> pd.DataFrame:
    """A model's readout table with the columns `tissue-abm run` writes in front (every day)."""
    return _labelled(readouts.reset_index(drop=True), label_columns(scenario))


def kept_rows(scenario: Scenario) -> tuple[int, int]:
    """How many rows `run_scenario` keeps: (readouts, grid snapshots).

    Readouts: days 0 to `days` in steps of `output.every`, and the last day. Snapshots: one
    row per site at each distinct snapshot age.
    """
    days, every = scenario.days, scenario.output.every
    readouts = days // every + 1 + (1 if days % every else 0)
    return readouts, len(set(scenario.output.snapshots)) * scenario.size**2


def _labelled(table: pd.DataFrame, columns: dict[str, Any]) -> pd.DataFrame:
    """`table` with constant label columns in front; text labels become categorical."""
    labels = pd.DataFrame(
        {
            name: pd.Categorical([value] * len(table))
            if isinstance(value, str)
            else np.full(len(table), value)
            for name, value in columns.items()
        }
    )
    return pd.concat([labels, table], axis=1)

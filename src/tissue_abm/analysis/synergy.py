"""Drug-combination synergy scores (Bliss independence and highest single agent).

The formulas follow SynergyFinder (Ianevski 2017; Zheng 2022), as summarised in
docs/references.md (§10). Effects are *fractional effects* y in [0, 1] (0 = no effect, 1 = the
whole loss relative to the control prevented); they may fall below 0 when a treatment makes
things worse.

- Bliss independence: y_exp = y_A + y_B − y_A·y_B.
- Highest single agent (HSA): y_exp = max(y_A, y_B).
- Excess (synergy score) = y_AB − y_exp; reading in % units: below −10 antagonism, −10 to 10
  additive, above 10 synergy.

`synergy` scores four scenarios (control, drug A, drug B, combination); `dose_grid_synergy`
scores every cell of one scenario swept over a dose A × dose B grid (SynergyFinder's
dose-response matrix) and `dose_grid_summary` reads the grid as a whole. Both resample with
`combination_scores`. Methods and caveats: docs/analysis.md#synergy-scoring.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tissue_abm.analysis.summary import (
    boot_means,
    check_confidence,
    check_readouts,
    check_scenarios,
    group_columns,
    grouped,
    percentile_ci,
    run_columns,
    run_values,
    scenarios,
    sweep_columns,
)

HIGHER_IS_BETTER = frozenset(
    {"tissue_function", "healthy_fraction", "autophagy", "immune_competence", "division_prob"}
)
"""Readouts (bounded by 1) for which higher values are better; all others count as lower-is-
better losses (senescent_fraction, mean_sasp, ...)."""

BAND = 10.0
"""Half-width of SynergyFinder's additive band, in % units of fractional effect."""

CANONICAL = ("untreated", "rapamycin", "oxytocin", "combined")
"""The canonical control, drug A, drug B and combination scenarios (the `synergy` defaults)."""

METHODS = ("bliss", "hsa")
"""Reference models scored by `synergy`, in table order."""

ROLES = ("control", "drug_a", "drug_b", "combination")
"""The four groups of a combination experiment, in the order they are resampled."""

EVENT_AGES = frozenset({"healthspan", "lifespan"})
"""Per-run readouts that are the age (days) at which health or life is lost, NaN when that did
not happen by the end of the run; `dose_grid_synergy` scores them as days lost before the end."""


def fractional_effect(
    treated: float | np.ndarray, control: float | np.ndarray, higher_is_better: bool
) -> float | np.ndarray:
    """The fraction of the control's loss that a treatment prevents.

    For a lower-is-better readout (a loss such as `senescent_fraction`, `mean_sasp`):
    y = 1 − treated/control. For a higher-is-better readout bounded by 1 (`tissue_function`,
    `healthy_fraction`), the loss is the shortfall from 1: y = 1 − (1 − treated)/(1 − control).

    Args:
        treated: Readout under treatment (float or numpy array).
        control: Readout of the control (float or numpy array, broadcast against `treated`).
        higher_is_better: Whether higher readout values are better.

    Returns:
        y: 0 = no effect, 1 = the whole loss prevented, < 0 = worse than control; NaN where the
        control has no loss to prevent (control 0, or 1 for higher-is-better). A float for
        float inputs, else an array.
    """
    treated_arr = np.asarray(treated, dtype=float)
    control_arr = np.asarray(control, dtype=float)
    if higher_is_better:
        treated_arr, control_arr = 1.0 - treated_arr, 1.0 - control_arr
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(control_arr != 0, 1.0 - treated_arr / control_arr, np.nan)
    return float(y) if y.ndim == 0 else y


def bliss_expected(ya: float | np.ndarray, yb: float | np.ndarray) -> float | np.ndarray:
    """Bliss-independence expectation of the combined effect: y_A + y_B − y_A·y_B.

    Args:
        ya: Fractional effect of drug A alone (0-1; float or array).
        yb: Fractional effect of drug B alone (0-1; float or array).
    """
    return ya + yb - ya * yb


def hsa_expected(ya: float | np.ndarray, yb: float | np.ndarray) -> float | np.ndarray:
    """Highest-single-agent expectation of the combined effect: max(y_A, y_B).

    Args:
        ya: Fractional effect of drug A alone (0-1; float or array).
        yb: Fractional effect of drug B alone (0-1; float or array).
    """
    out = np.maximum(ya, yb)
    return float(out) if np.ndim(out) == 0 else out


def excess(y_ab: float | np.ndarray, expected: float | np.ndarray) -> float | np.ndarray:
    """Synergy score: observed combined effect minus its expectation (y_AB − y_exp).

    Args:
        y_ab: Fractional effect of the combination (float or array).
        expected: Expected combined effect under a reference model (float or array).

    Returns:
        Excess in fractional-effect units (× 100 for SynergyFinder's % units): > 0 means more
        effect than expected.
    """
    return y_ab - expected


EXPECTED = {"bliss": bliss_expected, "hsa": hsa_expected}
"""Method name -> expectation function."""


def reading(score: float) -> str:
    """SynergyFinder's reading of an excess in fractional-effect units (0.1 = 10%).

    Returns:
        "antagonism" below −10%, "synergy" above 10%, else "additive" (NaN gives "undefined").
    """
    if math.isnan(score):
        return "undefined"
    percent = 100.0 * score
    if percent < -BAND:
        return "antagonism"
    if percent > BAND:
        return "synergy"
    return "additive"


def verdict(score: float, ci_low: float, ci_high: float) -> str:
    """A verdict in words from the excess and its confidence interval (fractional units).

    Returns:
        The reading of the excess ("synergy", "additive", "antagonism") when both CI ends share
        it; "uncertain (<low reading> to <high reading>)" when the CI straddles a band edge; the
        reading plus " (no CI)" when the CI is NaN.
    """
    point = reading(score)
    if math.isnan(ci_low) or math.isnan(ci_high):
        return f"{point} (no CI)"
    low, high = reading(ci_low), reading(ci_high)
    if low == high == point:
        return point
    return f"uncertain ({low} to {high})"


def default_higher_is_better(readout: str) -> bool:
    """Whether higher values of `readout` are better (True for the names in `HIGHER_IS_BETTER`)."""
    return readout in HIGHER_IS_BETTER


def resample(
    values: np.ndarray,
    n_boot: int,
    rng: np.random.Generator,
) -> tuple[float, np.ndarray]:
    """The mean of one group's replicate values and `n_boot` bootstrap means (`boot_means`).

    Args:
        values: The group's per-run values (readout units).
        n_boot: Bootstrap resamples (≥ 1).
        rng: Generator to draw from; every call draws, also for fewer than 2 values.

    Returns:
        (mean, boot): the mean (NaN without values) and the resampled means (all NaN with fewer
        than 2 values).
    """
    mean = float(values.mean()) if values.size else math.nan
    return mean, boot_means(values, n_boot, rng)


def combination_scores(
    means: Mapping[str, float],
    boots: Mapping[str, np.ndarray],
    higher_is_better: bool,
    confidence: float,
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Bliss and HSA scores of one combination from its four group means and their resamples.

    The bootstrap core of `synergy` and `dose_grid_synergy`: each resample recomputes the
    effects, the expectation and the excess from the resampled means; the interval is the
    percentile interval of the finite resampled excesses.

    Args:
        means: Mean readout of each role in `ROLES` (control, drug_a, drug_b, combination).
        boots: Bootstrap means of each role in `ROLES`, arrays of one length n_boot (NaN where
            a group has fewer than 2 replicates). Groups shared by several combinations (the
            control of a dose grid) use the same array in each, so their scores resample jointly.
        higher_is_better: Whether higher readout values are better (see `fractional_effect`).
        confidence: Coverage of the percentile interval, strictly between 0 and 1.

    Returns:
        (rows, samples): `rows` holds one dict per method in `METHODS` with `method`, `y_a`,
        `y_b`, `y_ab` (fractional effects), `expected`, `excess`, `ci_low`, `ci_high`
        (fractions; 0.1 = 10%) and `verdict`; `samples` maps each method to its n_boot
        resampled excesses (NaN where the resampled control had no loss to prevent).
    """

    def effects(m: Mapping[str, float | np.ndarray]) -> tuple:
        return tuple(
            fractional_effect(m[role], m["control"], higher_is_better) for role in ROLES[1:]
        )

    ya, yb, yab = effects(means)
    boot_ya, boot_yb, boot_yab = effects(boots)
    rows = []
    samples = {}
    for method in METHODS:
        expected = EXPECTED[method](ya, yb)
        score = float(excess(yab, expected))
        samples[method] = np.asarray(
            excess(boot_yab, EXPECTED[method](boot_ya, boot_yb)), dtype=float
        )
        low, high = percentile_ci(samples[method], confidence)
        rows.append(
            {
                "method": method,
                "y_a": ya,
                "y_b": yb,
                "y_ab": yab,
                "expected": float(expected),
                "excess": score,
                "ci_low": low,
                "ci_high": high,
                "verdict": verdict(score, low, high),
            }
        )
    return rows, samples


def undefined_shares(samples: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Per method, the share (0-1) of resampled excesses that are not finite (left out of CIs)."""
    return {method: float(np.mean(~np.isfinite(boot))) for method, boot in samples.items()}


@dataclass(frozen=True, eq=False)  # eq=False: a DataFrame has no truth value to compare by
class SynergyScores:
    """The Bliss and HSA scores of one two-drug combination (`synergy`), with their inputs."""

    table: pd.DataFrame
    """One row per method: effects, expectation, excess, CI (fractions; 0.1 = 10%), verdict."""
    readout: str
    """The readout scored (a column of the results table, in its own units)."""
    higher_is_better: bool
    """Whether higher readout values counted as better (see `fractional_effect`)."""
    day: int | None
    """Day of the runs scored (days since the run's start); None: each run's last kept day."""
    confidence: float
    """Coverage of the percentile intervals (probability, 0-1)."""
    n_boot: int
    """Bootstrap resamples behind the intervals (count)."""
    scenarios: Mapping[str, str]
    """Scenario name of each role in `ROLES` (control, drug_a, drug_b, combination)."""
    n: Mapping[str, int]
    """Replicates (runs with a value) of each role in `ROLES`."""
    undefined_resamples: Mapping[str, float]
    """Per method, share (0-1) of resamples left out of the CI: the control had no loss."""


def synergy(
    results: pd.DataFrame,
    readout: str,
    control: str = "untreated",
    drug_a: str = "rapamycin",
    drug_b: str = "oxytocin",
    combination: str = "combined",
    day: int | None = None,
    higher_is_better: bool | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> SynergyScores:
    """Bliss and HSA synergy of a two-drug combination, with bootstrap confidence intervals.

    The effects are those of the scenario means; the interval resamples the runs of each
    scenario. Method: docs/analysis.md#four-scenarios.

    Args:
        results: A table from `load_results` with the four scenarios, each at one sweep point.
        readout: Readout to score (e.g. `senescent_fraction`, `tissue_function`).
        control: Untreated scenario.
        drug_a: Scenario with drug A alone.
        drug_b: Scenario with drug B alone.
        combination: Scenario with both drugs, each as alone.
        day: Day of the runs (days since start); None for each run's last kept day.
        higher_is_better: Whether higher readout values are better; default from the name
            (see `HIGHER_IS_BETTER`).
        n_boot: Bootstrap resamples (≥ 1).
        seed: Seed of the `numpy.random.Generator` used for resampling.
        confidence: Coverage of the percentile interval, strictly between 0 and 1.

    Returns:
        The scores and what they were computed from (`SynergyScores`). Its `table` has one row
        per method (`bliss`, `hsa`): `method`, `y_a`, `y_b`, `y_ab` (fractional effects),
        `expected`, `excess` (y_ab − expected), `ci_low`, `ci_high` (interval of the excess; NaN
        if a scenario has fewer than 2 replicates) and `verdict` (see `verdict`). Effects and
        excess are fractions (0.1 = 10%).

    Raises:
        ValueError: If a scenario or the readout is missing, or a scenario has several sweep
            points.
    """
    check_confidence(confidence)
    check_readouts(results, [readout])
    roles = dict(zip(ROLES, (control, drug_a, drug_b, combination), strict=True))
    check_scenarios(results, roles.values())
    if higher_is_better is None:
        higher_is_better = default_higher_is_better(readout)
    values = run_values(results, readout, day)
    values = values[values[readout].notna()]
    rng = np.random.default_rng(seed)
    means: dict[str, float] = {}
    boots: dict[str, np.ndarray] = {}
    for role, name in roles.items():
        chosen = values[values["scenario"] == name]
        points = grouped(chosen, group_columns(results)).ngroups
        if points != 1:
            raise ValueError(
                f"{role} scenario {name!r} has {points} sweep points with values; "
                "select one point (filter the results) before scoring synergy"
            )
        means[role], boots[role] = resample(chosen[readout].to_numpy(dtype=float), n_boot, rng)
    rows, samples = combination_scores(means, boots, higher_is_better, confidence)
    counts = values["scenario"].astype(str).value_counts()
    return SynergyScores(
        table=pd.DataFrame(rows),
        readout=readout,
        higher_is_better=higher_is_better,
        day=day,
        confidence=confidence,
        n_boot=n_boot,
        scenarios=roles,
        n={role: int(counts.get(name, 0)) for role, name in roles.items()},
        undefined_resamples=undefined_shares(samples),
    )


@dataclass(frozen=True, eq=False)  # eq=False: a DataFrame has no truth value to compare by
class DoseGridSynergy:
    """The Bliss and HSA scores of every cell of a dose grid (`dose_grid_synergy`)."""

    table: pd.DataFrame
    """One row per combination cell and method (fractions; 0.1 = 10%), see `dose_grid_synergy`."""
    summary: Mapping[str, Mapping[str, Any]]
    """Per method, the summary across the grid (fractions, doses; see `dose_grid_summary`)."""
    dose_a: str
    """Sweep column of drug A's dose (its values in that column's units, e.g. mg/kg)."""
    dose_b: str
    """Sweep column of drug B's dose (its values in that column's units)."""
    readout: str
    """The readout scored (a readout column, or a column of the per-run values)."""
    scenario: str
    """The swept scenario scored."""
    higher_is_better: bool
    """Whether higher readout values counted as better (True for event ages)."""
    event_age: bool
    """Whether the readout is an event age (days), scored as days lost before the run's end."""
    day: int | None
    """Day of the runs scored (days since the run's start); None: each run's last kept day."""
    confidence: float
    """Coverage of the percentile intervals (probability, 0-1)."""
    n_boot: int
    """Bootstrap resamples behind the intervals (count)."""
    n: Mapping[tuple[float, float], int]
    """Runs with a value in each cell, keyed by (dose of A, dose of B)."""
    dropped: int
    """Runs left out for a NaN value (count; 0 for event ages, whose NaN is censored)."""
    censored: int
    """Runs whose event age was not reached, counted as 0 days lost (count; 0 otherwise)."""
    undefined_resamples: Mapping[str, float]
    """Per method, share (0-1) of resampled excesses over all cells left out of the CIs."""


def dose_grid_synergy(
    results: pd.DataFrame,
    readout: str,
    dose_a: str = "therapy.rapamycin.dose",
    dose_b: str = "therapy.oxytocin.dose",
    scenario: str | None = None,
    day: int | None = None,
    higher_is_better: bool | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    values: pd.DataFrame | None = None,
    event_age: bool | None = None,
) -> DoseGridSynergy:
    """Bliss and HSA synergy in every cell of a two-drug dose grid, with bootstrap CIs.

    Each cell is scored against the (0, 0) control and its single agents as `synergy` scores
    four scenarios; event ages as days lost. Method and caveats: docs/analysis.md#dose-grid.

    Args:
        results: A table from `load_results` holding the dose-grid scenario.
        readout: A readout column of `results` or, with `values`, a column of `values`.
        dose_a: Sweep column of drug A's dose (its units, e.g. mg/kg), dose 0 included.
        dose_b: Sweep column of drug B's dose (e.g. young oxytocin levels), dose 0 included.
        scenario: The swept scenario; None if the results (or `values`) hold only one.
        day: Day of the runs (days since start); None (required with `values`): last kept day.
        higher_is_better: As in `synergy`; event ages are higher-is-better (False is an error).
        n_boot: Bootstrap resamples (≥ 1).
        seed: Seed of the `numpy.random.Generator` used for resampling.
        confidence: Coverage of the percentile intervals, strictly between 0 and 1.
        values: One row per run instead of a daily readout (as `end_state`): `scenario`, the
            sweep columns, `replicate`, `readout` and, for an event age, `age` (last age, days).
        event_age: Whether `readout` is an event age; default: whether it is in `EVENT_AGES`.

    Returns:
        A `DoseGridSynergy`; its `table` has one row per combination cell and method, in that
        order: `dose_a`, `dose_b` (doses), `method`, `y_a`, `y_b`, `y_ab` (effects of A alone at
        `dose_a`, B alone at `dose_b`, both), `expected`, `excess`, `ci_low`, `ci_high`
        (fractions; 0.1 = 10%) and `verdict`.

    Raises:
        ValueError: If the readout, a dose column, the scenario or a grid cell is missing, a
            drug lacks dose 0 or a dose > 0, a cell has several sweep points, or an argument
            is out of range.
    """
    check_confidence(confidence)
    event_age = readout in EVENT_AGES if event_age is None else event_age
    if event_age and higher_is_better is False:
        raise ValueError(
            f"higher_is_better=False is not allowed for the event age {readout!r}; "
            "allowed: None or True (a later age is better)"
        )
    higher_is_better = (
        True
        if event_age
        else (default_higher_is_better(readout) if higher_is_better is None else higher_is_better)
    )
    frame = _per_run(results, readout, day, values, event_age)
    for argument, column in (("dose_a", dose_a), ("dose_b", dose_b)):
        if column not in frame:
            raise ValueError(
                f"{argument} column {column!r} is not in the "
                f"{'values' if values is not None else 'results'}; allowed: a "
                f"sweep column ({', '.join(sweep_columns(results)) or 'none'})"
            )
    if dose_a == dose_b:
        raise ValueError(
            f"dose_a and dose_b are both {dose_a!r}; allowed: two different sweep columns"
        )
    name = _only_scenario(frame, scenario)
    frame = frame[(frame["scenario"] == name).to_numpy()]
    frame = frame.sort_values([c for c in run_columns(results) if c in frame], kind="stable")
    others = [c for c in sweep_columns(results) if c not in (dose_a, dose_b) and c in frame]
    points = grouped(frame, [dose_a, dose_b, *others]).ngroups
    if points != grouped(frame, [dose_a, dose_b]).ngroups:
        raise ValueError(
            f"scenario {name!r} has several sweep points per dose cell (also "
            f"swept: {', '.join(others)}); allowed: one value of each (filter the "
            "results) before scoring the dose grid"
        )
    x = frame[readout].to_numpy(dtype=float)
    missing = np.isnan(x)
    if event_age:
        x = np.where(missing, 0.0, frame["age"].to_numpy(dtype=float) - x)
    data = pd.DataFrame(
        {
            "dose_a": frame[dose_a].to_numpy(dtype=float),
            "dose_b": frame[dose_b].to_numpy(dtype=float),
            "value": x,
        }
    )
    data = data if event_age else data[~missing]
    doses_a, doses_b = (
        _doses(data[argument], argument, column, name)
        for argument, column in (("dose_a", dose_a), ("dose_b", dose_b))
    )
    cells = {
        (float(a), float(b)): group.to_numpy()
        for (a, b), group in data.groupby(["dose_a", "dose_b"], sort=True)["value"]
    }
    _check_cells(cells, doses_a, doses_b, dose_a, dose_b, name)
    rng = np.random.default_rng(seed)
    means: dict[tuple[float, float], float] = {}
    boots: dict[tuple[float, float], np.ndarray] = {}
    for cell, group in cells.items():
        means[cell], boots[cell] = resample(group, n_boot, rng)
    rows = []
    samples: dict[str, list[np.ndarray]] = {method: [] for method in METHODS}
    for a, b in itertools.product(doses_a[1:], doses_b[1:]):
        roles = dict(zip(ROLES, ((0.0, 0.0), (a, 0.0), (0.0, b), (a, b)), strict=True))
        scored, resampled = combination_scores(  # event ages: days lost, lower is better
            {role: means[cell] for role, cell in roles.items()},
            {role: boots[cell] for role, cell in roles.items()},
            higher_is_better and not event_age,
            confidence,
        )
        rows += [{"dose_a": a, "dose_b": b, **row} for row in scored]
        for method in METHODS:
            samples[method].append(resampled[method])
    table = pd.DataFrame(rows)
    stacked = {method: np.stack(boot) for method, boot in samples.items()}
    return DoseGridSynergy(
        table=table,
        summary={
            method: _grid_summary(
                table[table["method"] == method],
                stacked[method],
                confidence,
                readout,
                dose_a,
                dose_b,
            )
            for method in METHODS
        },
        dose_a=dose_a,
        dose_b=dose_b,
        readout=readout,
        scenario=name,
        higher_is_better=higher_is_better,
        event_age=event_age,
        day=day,
        confidence=confidence,
        n_boot=n_boot,
        n={cell: int(group.size) for cell, group in cells.items()},
        dropped=0 if event_age else int(missing.sum()),
        censored=int(missing.sum()) if event_age else 0,
        undefined_resamples=undefined_shares(stacked),
    )


def dose_grid_summary(grid: DoseGridSynergy) -> pd.DataFrame:
    """The summary across a dose grid scored by `dose_grid_synergy`, one row per method.

    The mean excess over the combination cells has a percentile interval from the joint
    resamples of the whole grid. The most synergistic cell is the one with the largest excess;
    its interval is that cell's own, not adjusted for picking the largest of several cells.

    Args:
        grid: The output of `dose_grid_synergy`.

    Returns:
        Columns `method`, `cells` (combination cells), `mean_excess`, `ci_low`, `ci_high`,
        `verdict` (of the mean), `best_dose_a`, `best_dose_b`, `best_excess`, `best_ci_low`,
        `best_ci_high`, `best_verdict` (the most synergistic cell), `synergistic` and
        `antagonistic` (cells whose verdict is synergy or antagonism, i.e. whose CI lies wholly
        beyond the ±10% band) and `sentence` (all of it in words). Excesses are fractions (0.1 =
        10%); doses in the sweep columns' units.

    Raises:
        TypeError: If `grid` is not the output of `dose_grid_synergy` (e.g. only its `table`).
    """
    if not isinstance(grid, DoseGridSynergy):
        raise TypeError(
            f"grid is a {type(grid).__name__}; allowed: the output of dose_grid_synergy "
            "(a DoseGridSynergy, not its table)"
        )
    return pd.DataFrame([{"method": method, **grid.summary[method]} for method in grid.summary])


def _per_run(
    results: pd.DataFrame,
    readout: str,
    day: int | None,
    values: pd.DataFrame | None,
    event_age: bool,
) -> pd.DataFrame:
    """One row per run with the run columns and `readout`: from `results` or from `values`."""
    if values is None:
        return run_values(results, readout, day)
    if day is not None:
        raise ValueError(
            f"day = {day!r} is not allowed with values (one value per run already); allowed: None"
        )
    needed = ["scenario", readout, *(["age"] if event_age else [])]
    missing = [c for c in needed if c not in values]
    if missing:
        raise ValueError(
            f"values have no column {', '.join(map(repr, missing))}; allowed: a "
            f"table with one row per run and the columns {', '.join(needed)} "
            f"(age: the run's last age, days) (columns: "
            f"{', '.join(map(str, values.columns))})"
        )
    keys = [c for c in run_columns(results) if c in values]
    if values.duplicated(keys).any():
        raise ValueError(
            f"values have several rows for one run (same {', '.join(keys)}); "
            "allowed: one row per run"
        )
    return values


def _only_scenario(frame: pd.DataFrame, scenario: str | None) -> str:
    """The dose-grid scenario: `scenario` (checked), or the only scenario of `frame`."""
    if scenario is not None:
        check_scenarios(frame, [scenario], "dose-grid")
        return scenario
    present = scenarios(frame)
    if len(present) != 1:
        raise ValueError(
            f"scenario=None is not allowed when the results hold {len(present)} "
            f"scenarios; allowed: one of {', '.join(present) or 'none'}"
        )
    return present[0]


def _doses(doses: pd.Series, argument: str, column: str, scenario: str) -> list[float]:
    """The sorted doses of one drug, checked: no NaN, a 0 and at least one dose > 0."""
    if doses.isna().any():
        raise ValueError(
            f"{argument} column {column!r} has no value in some runs of scenario "
            f"{scenario!r}; allowed: a scenario that sweeps both dose columns"
        )
    levels = sorted(float(d) for d in doses.unique())
    if not levels or levels[0] != 0.0 or len(levels) < 2:
        raise ValueError(
            f"{argument} column {column!r} has doses "
            f"{', '.join(f'{d:g}' for d in levels) or 'none'} in scenario "
            f"{scenario!r}; allowed: dose 0 (not given: the control and the other "
            "drug alone) and at least one dose > 0"
        )
    return levels


def _check_cells(
    cells: Mapping[tuple[float, float], np.ndarray],
    doses_a: list[float],
    doses_b: list[float],
    dose_a: str,
    dose_b: str,
    scenario: str,
) -> None:
    """ValueError naming every cell of the full dose_a × dose_b grid without runs."""
    roles = {
        (True, True): "control",
        (False, True): "drug A alone",
        (True, False): "drug B alone",
        (False, False): "combination",
    }
    missing = [
        f"{dose_a}={a:g} × {dose_b}={b:g} ({roles[a == 0, b == 0]})"
        for a, b in itertools.product(doses_a, doses_b)
        if (a, b) not in cells
    ]
    if missing:
        raise ValueError(
            f"scenario {scenario!r} has no runs with a value in the dose cell(s) "
            f"{', '.join(missing)}; allowed: every combination of the doses, "
            "(0, 0) being the control"
        )


def _grid_summary(
    part: pd.DataFrame,
    samples: np.ndarray,
    confidence: float,
    readout: str,
    dose_a: str,
    dose_b: str,
) -> dict[str, Any]:
    """Mean excess over the cells of one method (joint-resample CI), best cell, sentence.

    Args:
        part: The rows of one method of a `dose_grid_synergy` table.
        samples: Its resampled excesses, one row per cell (in `part`'s order) and resample.
        confidence: Coverage of the intervals.
        readout: The readout scored.
        dose_a: Column of drug A's dose.
        dose_b: Column of drug B's dose.
    """
    score = part["excess"].to_numpy(dtype=float)
    mean = float(score.mean())
    low, high = percentile_ci(samples.mean(axis=0), confidence)
    best = part.iloc[int(np.argmax(np.where(np.isnan(score), -np.inf, score)))]
    summary = {
        "cells": len(part),
        "mean_excess": mean,
        "ci_low": low,
        "ci_high": high,
        "verdict": verdict(mean, low, high),
        "best_dose_a": float(best["dose_a"]),
        "best_dose_b": float(best["dose_b"]),
        "best_excess": float(best["excess"]),
        "best_ci_low": float(best["ci_low"]),
        "best_ci_high": float(best["ci_high"]),
        "best_verdict": best["verdict"],
        "synergistic": int((part["verdict"] == "synergy").sum()),
        "antagonistic": int((part["verdict"] == "antagonism").sum()),
    }
    shape = f"{part['dose_a'].nunique()}×{part['dose_b'].nunique()}"
    name = "HSA" if part["method"].iloc[0] == "hsa" else "Bliss"
    beyond = (
        f"no cell's CI lies wholly beyond the ±{BAND:g}% additive band"
        if summary["synergistic"] + summary["antagonistic"] == 0
        else f"cells with a CI wholly beyond ±{BAND:g}%: {summary['synergistic']} of "
        f"{len(part)} synergistic, {summary['antagonistic']} antagonistic"
    )
    summary["sentence"] = (
        f"Across the {shape} combination cells of the dose grid ({dose_a} × {dose_b}), {name} "
        f"excess on {readout.replace('_', ' ')} averages {_percent(mean)} ({confidence:.0%} "
        f"CI {_percent(low)} to {_percent(high)}): {summary['verdict']}; the most synergistic "
        f"cell, {dose_a}={summary['best_dose_a']:g} × {dose_b}={summary['best_dose_b']:g}, has "
        f"{_percent(summary['best_excess'])} ({_percent(summary['best_ci_low'])} to "
        f"{_percent(summary['best_ci_high'])}): {summary['best_verdict']}; {beyond}."
    )
    return summary


def _percent(score: float) -> str:
    """A fractional excess in signed % with one decimal and a true minus sign (NaN: "n/a")."""
    return "n/a" if math.isnan(score) else f"{100.0 * score:+.1f}%".replace("-", "−")

"""Calibration: the targets the defaults are fitted to, what the model gives for them, the fit.

Six targets, fitted all at once and nothing else (`TARGETS`): the senescent-cell half-life after
a pulse at 3 and at 22 months (Karin 2019), the untreated median lifespan, the tissue-implied
production of senescent cells against Karin's η·t from 3 to 30 months, endogenous oxytocin at
22 months against 3 months (Elabd 2014), and the median-lifespan gain of rapamycin at the 14 ppm
analogue from 9 months (Miller 2011). `measure` runs the calibration experiments (the files of
`scenarios/experiments/`, through the batch runner's `execute`) for one parameter set and
returns what the model gives; `deviations` puts each in units of its tolerance. The fit itself
is ABC-SMC (`studies.abc`). Method and results: docs/calibration.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from tissue_abm.analysis.experiments import pulse_chase
from tissue_abm.analysis.survival import kaplan_meier, lifespans, production, quantile_lifespan
from tissue_abm.biology.params import Parameters
from tissue_abm.biology.rules import DAYS_PER_YEAR
from tissue_abm.biology.systemic import systemic_timeline
from tissue_abm.biology.therapy import Therapy
from tissue_abm.runs.batch import RunSpec, execute, plan_batch
from tissue_abm.runs.scenario import Scenario

EXPERIMENTS = Path(__file__).resolve().parents[3] / "scenarios" / "experiments"
"""The experiment files of a source checkout."""

HALF_LIFE_YOUNG_AGE = 90
"""Age (days) of the young pulse (pulse_chase_young.toml)."""
HALF_LIFE_OLD_AGE = 670
"""Age (days) of the old pulse (pulse_chase_old.toml)."""
CHASE_DAYS = 160
"""Days followed after each pulse."""
MONTH = DAYS_PER_YEAR / 12

KARIN_ETA = 0.084
"""Karin 2019's mouse fit: the rise of senescent-cell production, per day per year of age."""
PRODUCTION_MONTHS = tuple(range(3, 31, 3))
"""Ages (months) at which the tissue-implied production is compared with η·t."""
PRODUCTION_WINDOW = 45
"""Half-width (days) of the window of days averaged at each of those ages."""


class Target(NamedTuple):
    """A calibration target."""

    name: str
    """What is measured."""
    value: float
    """The target's value."""
    tolerance: float
    """Accepted distance from the value (same unit): the target is met within it."""
    unit: str
    source: str
    """Where the target comes from (references.md section and grade)."""

    def met(self, estimate: float) -> bool:
        """Whether `estimate` lies within the tolerance of the value."""
        return abs(estimate - self.value) <= self.tolerance

    def deviation(self, estimate: float) -> float:
        """(estimate − value) / tolerance: within ±1 when met; +inf when not measurable."""
        return (estimate - self.value) / self.tolerance if math.isfinite(estimate) else math.inf


HALF_LIFE_YOUNG = Target(
    "senescent-cell half-life after a pulse at 3 months",
    5.0,
    1.0,
    "days",
    "Karin et al. 2019, bleomycin pulse in mouse lung (references.md §1 [S]; abstract "
    "'days in young' [R])",
)
HALF_LIFE_OLD = Target(
    "senescent-cell half-life after a pulse at 22 months",
    25.0,
    6.0,
    "days",
    "Karin et al. 2019, bleomycin pulse in mouse lung (references.md §1 [S]; abstract "
    "'weeks in old' [R])",
)
MEDIAN_LIFESPAN = Target(
    "untreated median lifespan",
    2.4 * DAYS_PER_YEAR,
    0.1 * DAYS_PER_YEAR,
    "days",
    "Karin et al. 2019's mouse fit gives 2.38 y (references.md §1 [C]); C57BL/6J median ~2.3–2.5 y",
)
PRODUCTION = Target(
    "tissue-implied production k·P(t) / Karin's η·t, worst month from 3 to 30 months",
    1.0,
    0.25,
    "ratio",
    "Karin et al. 2019 mouse fit, η = 0.084 /day/year (references.md §1 [R]); within ±25%",
)
OXYTOCIN_DECLINE = Target(
    "endogenous oxytocin at 22 months relative to 3 months",
    1.0 / 3.0,
    1.0 / 3.0,
    "fraction",
    "Elabd et al. 2014: young mice have at least three times the blood oxytocin of "
    "old mice (references.md §7 [S]); met if at most 1/3",
)
RAPAMYCIN_GAIN = Target(
    "median-lifespan gain of rapamycin at 14 ppm (2.24 mg/kg/day) from 9 months",
    0.14,
    0.05,
    "fraction",
    "Miller et al. 2011: +10% males, +18% females (references.md §2 [R])",
)

TARGETS = (
    HALF_LIFE_YOUNG,
    HALF_LIFE_OLD,
    MEDIAN_LIFESPAN,
    PRODUCTION,
    OXYTOCIN_DECLINE,
    RAPAMYCIN_GAIN,
)
"""Every calibration target, in the order of `Measures`."""


class Measures(NamedTuple):
    """What the model gives for each target (same order as `TARGETS`)."""

    half_life_young: float
    """Days (the chase's length, `CHASE_DAYS`, if the excess does not decay within it)."""
    half_life_old: float
    """Days (likewise)."""
    median_lifespan: float
    """Untreated median lifespan, days (the runs' end if not reached: a lower bound)."""
    production: float
    """k·P(t)/(η·t) at the month where it is farthest from 1 (3 to 30 months)."""
    oxytocin_ratio: float
    """Endogenous oxytocin at 22 over 3 months."""
    rapamycin_gain: float
    """Treated over untreated median lifespan, minus 1."""


def deviations(measures: Measures) -> np.ndarray:
    """Each measure's distance from its target in units of its tolerance (met: within ±1).

    The oxytocin target is one-sided (at most 1/3): a ratio below it deviates by 0.
    """
    values = np.array([t.deviation(m) for t, m in zip(TARGETS, measures, strict=True)])
    index = TARGETS.index(OXYTOCIN_DECLINE)
    values[index] = max(0.0, (measures.oxytocin_ratio - 1.0 / 3.0) / OXYTOCIN_DECLINE.tolerance)
    return values


@dataclass(frozen=True)
class Design:
    """The calibration experiments' size: lattices, replicates and length.

    The defaults give each measure a standard error well below its tolerance (checked in
    docs/calibration.md) at a few seconds per parameter set.
    """

    size: int = 80
    """Lattice side of the long runs (wild type, rapamycin), sites."""
    pulse_size: int = 60
    """Lattice side of the pulse–chase runs, sites."""
    replicates: int = 4
    """Replicates of each scenario (paired by seed across scenarios)."""
    end_age: int = 1300
    """Last age of the long runs, days (most untreated and treated organisms die before)."""
    organisms: int = 200
    """Organisms per run for the survival readout."""
    seed: int = 1
    """Base seed of the replicates (replicate i has the same seed in every scenario)."""


def measure(params: Parameters, design: Design = Design(), folder: Path = EXPERIMENTS) -> Measures:
    """Run the calibration experiments with `params` in this process and measure each target.

    Args:
        params: Parameters of every run.
        design: Lattices, replicates and lengths of the runs.
        folder: Folder of the experiment files (wild_type, pulse_chase_young, pulse_chase_old,
            rapamycin_itp).

    Returns:
        The model's value for each target.

    Raises:
        RuntimeError: If a run fails.
    """
    return measures_of(run_experiments(params, design, folder), params, design.organisms)


class Experiments(NamedTuple):
    """The results tables of the calibration experiments."""

    long: pd.DataFrame
    """wild_type and rapamycin_itp to the design's end age (lifespans, production)."""
    pulses: pd.DataFrame
    """wild_type, pulse_chase_young and pulse_chase_old on the pulse lattice (half-lives)."""


def run_experiments(
    params: Parameters, design: Design = Design(), folder: Path = EXPERIMENTS
) -> Experiments:
    """The results tables of the calibration experiments with `params` (run in this process)."""
    long = plan_batch(
        [folder / "wild_type.toml", folder / "rapamycin_itp.toml"],
        replicates=design.replicates,
        days=design.end_age - 90,
        size=design.size,
    ).runs
    pulses = plan_batch(
        [
            folder / "wild_type.toml",
            folder / "pulse_chase_young.toml",
            folder / "pulse_chase_old.toml",
        ],
        replicates=design.replicates,
        days=HALF_LIFE_OLD_AGE + CHASE_DAYS - 90,
        size=design.pulse_size,
    ).runs
    seeds = (
        Scenario.model_validate({"name": "seeds", "seed": design.seed})
        .model_copy(update={"replicates": design.replicates})
        .replicate_seeds()
    )
    return Experiments(_run(long, params, seeds), _run(pulses, params, seeds))


def measures_of(experiments: Experiments, params: Parameters, organisms: int = 200) -> Measures:
    """The model's value for each target, from the calibration experiments' results."""
    long, pulses = experiments
    untreated = _median(long[long["scenario"] == "wild_type"], params, organisms)
    treated = _median(long[long["scenario"] == "rapamycin_itp"], params, organisms)
    ratios = production_ratios(long[long["scenario"] == "wild_type"], params)
    worst = (
        float(ratios[np.argmax(np.abs(ratios - 1.0))]) if np.isfinite(ratios).all() else math.nan
    )
    young, old = (
        pulse_chase(pulses, f"pulse_chase_{which}", "wild_type", age, n_boot=1).value
        for which, age in (("young", HALF_LIFE_YOUNG_AGE), ("old", HALF_LIFE_OLD_AGE))
    )
    return Measures(
        # An excess that does not decay within the chase has a half-life beyond it.
        half_life_young=young if math.isfinite(young) else float(CHASE_DAYS),
        half_life_old=old if math.isfinite(old) else float(CHASE_DAYS),
        median_lifespan=untreated,
        production=worst,
        oxytocin_ratio=oxytocin_ratio(params),
        rapamycin_gain=treated / untreated - 1.0,
    )


def _run(specs: list[RunSpec], params: Parameters, seeds: list[int]) -> pd.DataFrame:
    """Run `specs` with `params` and replicate i's seed `seeds[i]`, in this process (1 thread)."""
    outcomes = execute(
        [
            replace(
                spec,
                scenario=spec.scenario.model_copy(
                    update={"parameters": params, "seed": seeds[spec.replicate]}
                ),
            )
            for spec in specs
        ],
        threads=1,
    )
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        raise RuntimeError(f"calibration run {failed[0].id} failed: {failed[0].error}")
    return pd.concat([o.readouts for o in outcomes if o.readouts is not None], ignore_index=True)


def _median(runs: pd.DataFrame, params: Parameters, organisms: int) -> float:
    """Median organism lifespan (days) of runs; their last age if more than half survive.

    The last age is then a lower bound (censored), which keeps a parameter set that is far
    from the target measurably far from it.
    """
    table = lifespans(runs, params, organisms)
    km = kaplan_meier(table["lifespan"].to_numpy(), table["observed"].to_numpy())
    median = quantile_lifespan(km, 0.5)
    return median if math.isfinite(median) else float(table["lifespan"].max())


def production_ratios(runs: pd.DataFrame, params: Parameters) -> np.ndarray:
    """k·P(t) / (η·t) at each of `PRODUCTION_MONTHS` (runs of the untreated tissue).

    P(t) is the production of senescent cells per site and day (`survival.production`) of all
    the runs, smoothed by a least-squares cubic in age over the days from the first month of
    `PRODUCTION_MONTHS` less `PRODUCTION_WINDOW` to its last plus `PRODUCTION_WINDOW`: daily
    counts are Poisson-noisy, and the target is about the expected production.
    """
    ages, made = [], []
    for _, run in runs.groupby("seed", sort=True):
        run = run.sort_values("age")
        ages.append(run["age"].to_numpy(dtype=float)[1:])  # day 0 has no production of its own
        made.append(production(run)[1:])
    if not ages:
        return np.full(len(PRODUCTION_MONTHS), math.nan)
    age, p = np.concatenate(ages), np.concatenate(made)
    months = np.array(PRODUCTION_MONTHS, dtype=float) * MONTH
    inside = (age >= months[0] - PRODUCTION_WINDOW) & (age <= months[-1] + PRODUCTION_WINDOW)
    if inside.sum() < 4 or age[inside].max() < months[-1]:
        return np.full(len(PRODUCTION_MONTHS), math.nan)
    years = age[inside] / DAYS_PER_YEAR
    fitted = np.polynomial.Polynomial.fit(years, p[inside], 3)(months / DAYS_PER_YEAR)
    return params.sr_production_scale * fitted / (KARIN_ETA * months / DAYS_PER_YEAR)


def oxytocin_ratio(params: Parameters) -> float:
    """Endogenous oxytocin at 22 months over that at 3 months (untreated systemic timeline)."""
    timeline = systemic_timeline(params, Therapy(), 90, HALF_LIFE_OLD_AGE - 90)
    level = timeline["oxytocin_level"].to_numpy()
    return float(level[-1] / level[0]) if np.isfinite(level[0]) and level[0] > 0 else math.nan

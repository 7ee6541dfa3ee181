"""Calibration: the anchors the defaults are fitted to, and the fits.

Three parameters are fitted, each to one anchor of `shared/science/literature.md` §1, in this
order (each fit holds the earlier ones):

1. `immune_recruit_max` to the senescent-cell half-life after a pulse in young (3-month) tissue,
   5 ± 1 days: recruitment sets how fast immune cells gather round new senescent cells.
2. `immune_old_fraction` to the half-life in old (22-month) tissue, 25 ± 6 days: the old
   killing competence sets how far removal has saturated by then.
3. `sr_burden_scale` to the untreated median lifespan, 2.4 years, under Karin et al. 2019's
   mouse fit of the saturating-removal model.

The half-lives come from the pulse–chase experiment files (`scenarios/experiments/`) run in this
process with a few replicates; the lifespan from the untreated runs of that batch (survival is
computed after the runs, so fitting the burden scale needs no new runs). `tissue-abm calibrate`
prints the fitted values; they are then written into `params.py` with this as their source, and
`docs/validation.md` checks them on a full batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from tissue_abm.analysis.experiments import Estimate, pulse_chase
from tissue_abm.analysis.survival import kaplan_meier, lifespans, quantile_lifespan
from tissue_abm.biology.params import Parameters
from tissue_abm.biology.rules import DAYS_PER_YEAR
from tissue_abm.biology.systemic import systemic_timeline
from tissue_abm.biology.therapy import Therapy
from tissue_abm.runs.batch import execute, plan_batch

EXPERIMENTS = Path(__file__).resolve().parents[2] / "scenarios" / "experiments"
"""The experiment files of a source checkout."""

PULSE_FILES = ("wild_type.toml", "pulse_chase_young.toml", "pulse_chase_old.toml")
"""The pulse–chase experiment: two pulses and their paired, unpulsed control."""

HALF_LIFE_YOUNG_AGE = 90
"""Age (days) of the young pulse (pulse_chase_young.toml)."""
HALF_LIFE_OLD_AGE = 670
"""Age (days) of the old pulse (pulse_chase_old.toml)."""
CHASE_DAYS = 160
"""Days followed after each pulse."""


class Target(NamedTuple):
    """A calibration anchor."""

    name: str
    """What is measured."""
    value: float
    """The anchor's value."""
    tolerance: float
    """Accepted distance from the value (same unit)."""
    unit: str
    source: str
    """Where the anchor comes from (literature.md section and grade)."""

    def met(self, estimate: float) -> bool:
        """Whether `estimate` lies within the tolerance of the value."""
        return abs(estimate - self.value) <= self.tolerance


HALF_LIFE_YOUNG = Target(
    "senescent-cell half-life after a pulse at 3 months",
    5.0,
    1.0,
    "days",
    "Karin et al. 2019, bleomycin pulse in mouse lung (literature.md §1 [S]; abstract "
    "'days in young' [R])",
)
HALF_LIFE_OLD = Target(
    "senescent-cell half-life after a pulse at 22 months",
    25.0,
    6.0,
    "days",
    "Karin et al. 2019, bleomycin pulse in mouse lung (literature.md §1 [S]; abstract "
    "'weeks in old' [R])",
)
MEDIAN_LIFESPAN = Target(
    "untreated median lifespan",
    2.4 * DAYS_PER_YEAR,
    0.1 * DAYS_PER_YEAR,
    "days",
    "Karin et al. 2019 mouse fit (η 0.084, β 0.15, κ 0.5, ε 0.16, X_c 17) gives a median of "
    "2.38 y (literature.md §1 [C]); C57BL/6J median ~2.3–2.5 y; tolerance assumed",
)
OXYTOCIN_DECLINE = Target(
    "endogenous oxytocin at 22 months relative to 3 months",
    1.0 / 3.0,
    1.0 / 3.0,
    "fraction",
    "Elabd et al. 2014: young mice have at least three times the blood oxytocin of "
    "old mice (literature.md §7 [S]); met if at most 1/3",
)


class HalfLives(NamedTuple):
    """Pulse–chase half-lives (days) in young and old tissue."""

    young: Estimate
    old: Estimate


def pulse_chase_results(
    params: Parameters, replicates: int = 8, folder: Path = EXPERIMENTS
) -> pd.DataFrame:
    """Run the pulse–chase experiment with `params`, in this process.

    Args:
        params: Parameters of every run.
        replicates: Replicates of each scenario (paired across scenarios by seed).
        folder: Folder of the experiment files.

    Returns:
        The results table of the wild-type and pulsed runs (as `load_results` gives it).
    """
    return _run(
        [folder / name for name in PULSE_FILES],
        params,
        replicates,
        days=HALF_LIFE_OLD_AGE + CHASE_DAYS - 90,
    )


def _run(
    files: list[Path], params: Parameters, replicates: int, days: int | None = None
) -> pd.DataFrame:
    """Run scenario files with `params` in this process; the results table."""
    plan = plan_batch(files, replicates=replicates, days=days)
    outcomes = execute(
        [
            replace(spec, scenario=spec.scenario.model_copy(update={"parameters": params}))
            for spec in plan.runs
        ]
    )
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        raise RuntimeError(f"calibration run {failed[0].id} failed: {failed[0].error}")
    return pd.concat([o.readouts for o in outcomes], ignore_index=True)


def half_lives(results: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> HalfLives:
    """Young and old pulse–chase half-lives of a results table with the three scenarios."""
    return HalfLives(
        pulse_chase(
            results, "pulse_chase_young", "wild_type", HALF_LIFE_YOUNG_AGE, n_boot=n_boot, seed=seed
        ),
        pulse_chase(
            results, "pulse_chase_old", "wild_type", HALF_LIFE_OLD_AGE, n_boot=n_boot, seed=seed
        ),
    )


def median_lifespan(
    results: pd.DataFrame, params: Parameters, scenario: str = "wild_type", organisms: int = 200
) -> float:
    """Median organism lifespan (days) of a scenario's runs (NaN if not reached)."""
    table = lifespans(results[results["scenario"] == scenario], params, organisms)
    km = kaplan_meier(table["lifespan"].to_numpy(), table["observed"].to_numpy())
    return quantile_lifespan(km, 0.5)


def bisect(
    measure: Callable[[float], float],
    target: float,
    low: float,
    high: float,
    steps: int = 8,
    decreasing: bool = True,
) -> float:
    """Bisection in log space for x with measure(x) = target, for a monotone measure.

    Args:
        measure: The (noisy, monotone) function of the parameter.
        target: Wanted value.
        low: Lower end of the parameter's bracket (> 0).
        high: Upper end (> low).
        steps: Halvings of the bracket (the result is within (high/low)^(2^-steps)).
        decreasing: Whether the measure falls as the parameter rises.

    Returns:
        The geometric middle of the final bracket.
    """
    for _ in range(steps):
        middle = math.sqrt(low * high)
        value = measure(middle)
        above = value > target if math.isfinite(value) else decreasing
        if above == decreasing:
            low = middle
        else:
            high = middle
    return math.sqrt(low * high)


class Fit(NamedTuple):
    """Fitted values and what they give."""

    params: Parameters
    half_lives: HalfLives
    median_lifespan: float


def fit(
    replicates: int = 8,
    steps: int = 7,
    base: Parameters | None = None,
    log: Callable[[str], None] = print,
) -> Fit:
    """Fit the three calibrated parameters in turn (see the module docstring).

    Args:
        replicates: Replicates per scenario and evaluation.
        steps: Bisection steps per parameter.
        base: Parameters to start from (defaults if None).
        log: Called with one line per evaluation.

    Returns:
        The fitted parameters, the half-lives and the median lifespan they give.
    """
    params = base or Parameters()

    def with_(name: str, value: float) -> Parameters:
        return Parameters(**{**params.model_dump(), name: value})

    def half_life_fit(name: str, which: str, target: Target, low: float, high: float) -> Parameters:
        """`params` with `name` bisected so the `which` ("young"/"old") half-life hits it."""

        def measure(x: float) -> float:
            lives = half_lives(pulse_chase_results(with_(name, x), replicates), n_boot=1)
            value = getattr(lives, which).value
            log(f"{name} = {x:.4g}: {which} half-life {value:.2f} d")
            return value

        return with_(name, round(bisect(measure, target.value, low, high, steps), 4))

    params = half_life_fit("immune_recruit_max", "young", HALF_LIFE_YOUNG, 0.005, 0.5)
    params = half_life_fit("immune_old_fraction", "old", HALF_LIFE_OLD, 0.01, 1.0)
    results = pulse_chase_results(params, replicates)
    runs = _run([EXPERIMENTS / "wild_type.toml"], params, replicates)

    def lifespan(k: float) -> float:
        value = median_lifespan(runs, with_("sr_burden_scale", k))
        log(f"sr_burden_scale = {k:.4g}: median lifespan {value:.0f} d")
        return value

    params = with_(
        "sr_burden_scale", round(bisect(lifespan, MEDIAN_LIFESPAN.value, 10.0, 3000.0, steps + 4))
    )
    return Fit(params, half_lives(results), median_lifespan(runs, params))


def oxytocin_ratio(params: Parameters) -> float:
    """Endogenous oxytocin at 22 months over that at 3 months (untreated systemic timeline)."""
    timeline = systemic_timeline(params, Therapy(), 90, HALF_LIFE_OLD_AGE - 90)
    level = timeline["oxytocin_level"].to_numpy()
    return float(level[-1] / level[0]) if np.isfinite(level[0]) and level[0] > 0 else math.nan

"""The experiment library: its analyses on hand-made tables, and its claims on the real model.

The first part checks `tissue_abm.analysis.experiments` on results tables built here, where the
truth is known by construction. The second runs the scenario files of `scenarios/experiments/`
(array engine, seeded, on smaller lattices and with fewer replicates than the files) and checks what
the experiments are there to show: senescent cells clear more slowly in old tissue, the immune
knock-out accumulates them, the senolytic control extends median lifespan, a transplanted
senescent cluster makes host cells senescent. One experiment also runs on the agents engine.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from factories import results_rows, results_table
from tissue_abm.analysis.experiments import (
    FIT_FLOOR,
    PEAK_WINDOW,
    Estimate,
    difference_by_age,
    half_life,
    paired_difference,
    pulse_chase,
    secondary_senescence,
)
from tissue_abm.analysis.survival import lifespans, survival_summary
from tissue_abm.engines.array.model import set_threads
from tissue_abm.runs.batch import execute, plan_batch, run_batch
from tissue_abm.runs.results import load_results
from tissue_abm.runs.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "scenarios" / "experiments"

PULSE = 400.0
"""Age (days) of the synthetic pulses and transplants."""


# --- hand-made results tables -------------------------------------------------------------------


def run_rows(
    scenario: str,
    replicate: int,
    ages: np.ndarray,
    seed: int | None = None,
    sweep: tuple[str, int, float] | None = None,
    **readouts,
) -> pd.DataFrame:
    """One run's rows in the layout of `load_results`.

    Args:
        scenario: Scenario name.
        replicate: Replicate number; the seed is 1000 + replicate unless given, so runs of
            different scenarios with the same replicate are paired.
        ages: Kept ages (days), daily from the run's start age.
        seed: The run's seed.
        sweep: (column, point, value) for a run at a sweep point.
        readouts: Readout columns: arrays on `ages`, or constants.
    """
    return results_rows(
        scenario,
        point=None if sweep is None else sweep[1],
        sweep=None if sweep is None else {sweep[0]: sweep[2]},
        replicate=replicate,
        seed=1000 + replicate if seed is None else seed,
        age=np.asarray(ages, dtype=float),
        **readouts,
    )


def decay(
    ages: np.ndarray, start: float, half: float, lag: float = 0.0, peak: float = 100.0
) -> np.ndarray:
    """An excess that rises linearly from 0 at `start` to `peak` `lag` days later and then
    halves every `half` days; before `start` it is 5 × `peak` (a fit that does not begin at
    the pulse would start there)."""
    t = np.asarray(ages, dtype=float) - start
    rising = peak * t / lag if lag else np.full(t.shape, peak)
    return np.where(t < 0, 5 * peak, np.where(t < lag, rising, peak * 2.0 ** (-(t - lag) / half)))


def slope_tolerance(half: float, sigma: float, standard_errors: float = 4.0) -> float:
    """Relative tolerance on a half-life fitted to a curve with multiplicative noise.

    The fit is least squares of log(excess) on age over about n = log2(1/FIT_FLOOR) · half
    daily points (peak to noise floor). With log-noise sd `sigma` the slope's standard error
    is sigma / sqrt(Sxx), Sxx = n (n² − 1) / 12, and the half-life's relative error equals the
    slope's. Returns `standard_errors` of it.
    """
    n = math.ceil(math.log2(1 / FIT_FLOOR) * half)
    slope = math.log(2) / half
    return standard_errors * sigma / math.sqrt(n * (n * n - 1) / 12) / slope


# --- half_life ----------------------------------------------------------------------------------

AGES = np.arange(PULSE - 20, PULSE + 151)
"""Daily ages from 20 days before the pulse to 150 days after it."""


@pytest.mark.parametrize("lag", [0, PEAK_WINDOW // 2])
@pytest.mark.parametrize("half", [5.0, 25.0])
def test_half_life_recovers_an_exponential_half_life_after_the_peak(half, lag):
    # Noise-free exponential decay from the peak: the log-linear fit is exact; tolerance
    # 1e-9 relative is float rounding only. The rise before the peak (lag) and the larger
    # values before the pulse must be left out of the fit, or the estimate would be off.
    assert half_life(AGES, decay(AGES, PULSE, half, lag), PULSE) == pytest.approx(half, rel=1e-9)


@pytest.mark.parametrize("lag", [0, PEAK_WINDOW // 2])
@pytest.mark.parametrize("half", [5.0, 25.0])
def test_half_life_with_multiplicative_noise_is_within_five_standard_errors(half, lag):
    # Excess × exp(N(0, 0.1²)) per day, fixed seed. Statistic: the fitted half-life;
    # tolerance: 5 standard errors of the slope of the log-linear fit (`slope_tolerance`:
    # 30% for a 5-day, 14% for a 25-day half-life). Noise also moves the peak the fit starts
    # from and the day it stops, which the formula ignores: over 5000 seeds per case the
    # spread was 1.0-1.25 times the formula's, and at most 1 in 5000 estimates left 5 SE.
    sigma = 0.1
    noise = np.exp(sigma * np.random.default_rng(7).standard_normal(AGES.size))
    estimate = half_life(AGES, decay(AGES, PULSE, half, lag) * noise, PULSE)
    assert estimate == pytest.approx(half, rel=slope_tolerance(half, sigma, 5.0))


def test_half_life_of_a_flat_excess_of_one_is_nan():
    # log(1) = 0 exactly, so the fitted slope is exactly 0: no decay.
    assert math.isnan(half_life(AGES, np.ones(AGES.size), PULSE))


def test_half_life_of_any_flat_excess_is_nan():
    # Here 4 of these 8 levels give a rounding slope below 0 (which ones depends on the
    # floating-point details, so the test asks for NaN at all of them).
    levels = (0.5, 2.0, 3.0, 7.3, 10.0, 17.0, 40.0, 123.4)
    found = {level: half_life(AGES, np.full(AGES.size, level), PULSE) for level in levels}
    assert all(math.isnan(value) for value in found.values()), found


def test_half_life_of_a_growing_excess_is_nan():
    t = AGES - PULSE
    assert math.isnan(half_life(AGES, np.where(t < 0, 0.0, 10 * 2.0 ** (t / 20)), PULSE))


def test_half_life_is_nan_without_a_positive_peak_after_the_pulse():
    assert math.isnan(half_life(AGES, np.zeros(AGES.size), PULSE))
    assert math.isnan(half_life(AGES, -decay(AGES, PULSE, 5.0), PULSE))
    assert math.isnan(half_life(AGES, decay(AGES, PULSE, 5.0), AGES[-1] + 1))  # no age after


def test_half_life_needs_three_points_above_the_floor():
    # The excess falls by a factor r = (1 + FIT_FLOOR)/2 a day from the peak (r² > FIT_FLOOR,
    # so three days stay above the floor); from the n-th day after the peak it is half the
    # floor, leaving n points to fit. Two points: NaN; three: exactly ln 2 / −ln r.
    t = AGES - PULSE
    r = (1 + FIT_FLOOR) / 2
    for kept, expected in ((2, math.nan), (3, math.log(2) / -math.log(r))):
        excess = np.where(t < 0, 0.0, np.where(t < kept, 100.0 * r**t, FIT_FLOOR * 50.0))
        estimate = half_life(AGES, excess, PULSE)
        assert estimate == pytest.approx(expected, rel=1e-9, nan_ok=True), kept
    # Only two ages from the pulse on, however they decay: NaN.
    assert math.isnan(
        half_life(np.array([PULSE - 1, PULSE, PULSE + 1]), np.array([0.0, 100.0, 50.0]), PULSE)
    )


def test_half_life_fit_stops_where_the_excess_first_falls_below_the_floor():
    # Exponential decay (10-day half-life) until it first falls below FIT_FLOOR × peak, then a
    # rebound to the peak level (a late second wave or noise): the fit must stop at the first
    # day below the floor, so the estimate is exactly 10 days (noise-free; 1e-9 relative is
    # rounding). Any later point in the fit would lengthen it.
    excess = decay(AGES, PULSE, 10.0)
    below = np.flatnonzero((AGES >= PULSE) & (excess < FIT_FLOOR * 100.0))[0]
    excess[below + 1 :] = 100.0
    assert half_life(AGES, excess, PULSE) == pytest.approx(10.0, rel=1e-9)


# --- paired_difference --------------------------------------------------------------------------

CHASE = np.arange(PULSE - 5, PULSE + 61)
"""Daily ages of the synthetic runs, from 5 days before the pulse."""


def test_paired_difference_pairs_runs_by_replicate():
    # Treated = control + 10·(replicate + 1) on every day; the rows come shuffled and a third
    # scenario is present. Every difference must be exactly its replicate's offset.
    rng = np.random.default_rng(1)
    runs = []
    for replicate in range(4):
        control = rng.poisson(200, CHASE.size)
        runs.append(run_rows("control", replicate, CHASE, senescent=control))
        runs.append(run_rows("treated", replicate, CHASE, senescent=control + 10 * (replicate + 1)))
        runs.append(run_rows("other", replicate, CHASE, senescent=rng.poisson(50, CHASE.size)))
    results = results_table(*runs).sample(frac=1.0, random_state=3)
    pairs = paired_difference(results, "treated", "control", "senescent")
    assert list(pairs.columns) == ["replicate", "age", "difference"]
    assert len(pairs) == 4 * CHASE.size
    assert not pairs.duplicated(["replicate", "age"]).any()
    np.testing.assert_array_equal(pairs["difference"], 10.0 * (pairs["replicate"] + 1))


def test_paired_difference_refuses_paired_runs_with_different_seeds():
    results = results_table(
        *(
            run_rows(
                name,
                replicate,
                CHASE,
                senescent=1.0,
                seed=7 if (name, replicate) == ("treated", 1) else None,
            )
            for name in ("treated", "control")
            for replicate in range(3)
        )
    )
    with pytest.raises(ValueError, match="different seeds") as err:
        paired_difference(results, "treated", "control", "senescent")
    message = str(err.value)
    assert "\n" not in message
    assert "'treated'" in message and "'control'" in message


@pytest.mark.parametrize("swept", ["treated", "control"])
def test_paired_difference_refuses_several_runs_per_replicate(swept):
    # `swept` has two sweep points, so two runs per replicate: the pairing is ambiguous.
    runs = []
    for name in ("treated", "control"):
        for replicate in range(3):
            points = [(0, 1.0), (1, 2.0)] if name == swept else [(0, math.nan)]
            runs += [
                run_rows(name, replicate, CHASE, sweep=("dose", point, value), senescent=1.0)
                for point, value in points
            ]
    with pytest.raises(ValueError, match="several runs per replicate") as err:
        paired_difference(results_table(*runs), "treated", "control", "senescent")
    assert "\n" not in str(err.value)
    assert f"scenario {swept!r}" in str(err.value)


def test_paired_difference_refuses_a_missing_scenario_or_readout():
    results = results_table(*(run_rows(name, 0, CHASE, senescent=1.0) for name in ("a", "b")))
    with pytest.raises(ValueError, match="'c'"):
        paired_difference(results, "c", "a", "senescent")
    with pytest.raises(ValueError, match="'nothing'"):
        paired_difference(results, "a", "b", "nothing")


# --- pulse_chase --------------------------------------------------------------------------------


def chase_table(half: float, replicates: int, sigma: float, seed: int = 5) -> pd.DataFrame:
    """Paired pulse and control runs: control counts are Poisson noise around a rising
    background; the pulsed run adds 100 · 2^(−(t − 1)/half) × exp(N(0, sigma²)) senescent
    cells t ≥ 1 days after the pulse (the row at the pulse age shows the tissue before it)."""
    rng = np.random.default_rng(seed)
    t = CHASE - PULSE
    runs = []
    for replicate in range(replicates):
        control = rng.poisson(300 + 0.5 * (CHASE - CHASE[0]))
        excess = np.where(t >= 1, 100 * 2.0 ** (-(t - 1) / half), 0.0) * np.exp(
            sigma * rng.standard_normal(CHASE.size)
        )
        runs += [
            run_rows("control", replicate, CHASE, senescent=control),
            run_rows("pulse", replicate, CHASE, senescent=control + excess),
        ]
    return results_table(*runs)


def test_pulse_chase_estimate_matches_the_synthetic_half_life_and_lies_in_its_interval():
    # 8 replicate pairs with an 8-day half-life and log-noise sd 0.2 per run and day; the
    # estimate fits their mean excess, whose log-noise sd is about 0.2/√8. Statistic: the
    # estimate; tolerance: 4 standard errors of the fit (`slope_tolerance`, 14%); over 300
    # seeds none was beyond 3.4 SE. The percentile interval must contain the estimate and
    # have width (it did for all 300).
    half, replicates, sigma = 8.0, 8, 0.2
    estimate = pulse_chase(
        chase_table(half, replicates, sigma), "pulse", "control", PULSE, n_boot=500
    )
    assert isinstance(estimate, Estimate)
    assert estimate.n == replicates
    assert estimate.value == pytest.approx(
        half, rel=slope_tolerance(half, sigma / math.sqrt(replicates))
    )
    assert estimate.ci_low < estimate.value < estimate.ci_high


def test_pulse_chase_with_one_replicate_has_no_interval():
    estimate = pulse_chase(chase_table(6.0, 1, 0.0), "pulse", "control", PULSE)
    assert estimate.n == 1
    assert estimate.value == pytest.approx(6.0, rel=1e-9)  # noise-free: exact up to rounding
    assert math.isnan(estimate.ci_low) and math.isnan(estimate.ci_high)


# --- difference_by_age --------------------------------------------------------------------------

YEAR = np.arange(90.0, 91.0 + 365)
"""Daily ages of the synthetic runs, a year from 90 days."""


def burden(ages: np.ndarray, replicate: int) -> np.ndarray:
    """A reference senescent fraction: rising with age, shifted per replicate."""
    return 0.002 + 4e-5 * (ages - 90) + 0.001 * replicate


def extra(ages: np.ndarray) -> np.ndarray:
    """What the compared scenario adds to the reference: growing with age."""
    return 1e-4 * (ages - 90)


def test_difference_by_age_reports_the_difference_of_means_at_each_age():
    runs = []
    for replicate in range(5):
        runs.append(run_rows("ref", replicate, YEAR, senescent_fraction=burden(YEAR, replicate)))
        runs.append(
            run_rows(
                "ko", replicate, YEAR, senescent_fraction=burden(YEAR, replicate) + extra(YEAR)
            )
        )
    ages = [365.0, 120.0, 455.0]
    found = difference_by_age(
        results_table(*runs), "ko", "ref", "senescent_fraction", ages, n_boot=200
    )
    assert list(found.columns) == [
        "age",
        "mean",
        "reference_mean",
        "difference",
        "ci_low",
        "ci_high",
    ]
    assert found["age"].tolist() == ages
    age = np.array(ages)
    reference = np.mean([burden(age, r) for r in range(5)], axis=0)
    np.testing.assert_allclose(found["reference_mean"], reference, rtol=1e-12)
    np.testing.assert_allclose(found["mean"], reference + extra(age), rtol=1e-12)
    np.testing.assert_allclose(found["difference"], extra(age), rtol=1e-9)
    assert (found["ci_low"] <= found["difference"]).all()
    assert (found["difference"] <= found["ci_high"]).all()


def test_difference_by_age_refuses_scenarios_with_different_start_ages():
    later = YEAR[YEAR >= 100]
    results = results_table(
        *(
            run
            for r in range(2)
            for run in (
                run_rows("ref", r, YEAR, senescent_fraction=burden(YEAR, r)),
                run_rows("late", r, later, senescent_fraction=burden(later, r)),
            )
        )
    )
    with pytest.raises(ValueError, match="start at different ages") as err:
        difference_by_age(results, "late", "ref", "senescent_fraction", [200.0])
    message = str(err.value)
    assert "\n" not in message and "'late'" in message and "'ref'" in message


def test_difference_by_age_refuses_an_age_that_is_not_kept():
    results = results_table(
        *(
            run_rows(name, r, YEAR, senescent_fraction=burden(YEAR, r))
            for name in ("ref", "ko")
            for r in range(2)
        )
    )
    with pytest.raises(ValueError, match="not kept"):
        difference_by_age(results, "ko", "ref", "senescent_fraction", [YEAR[-1] + 10])


def test_difference_by_age_does_not_silently_drop_sweep_points():
    # "timing" has two sweep points, adding 0.01 and 0.05 to the reference. Refusing (as
    # paired_difference does) or reporting both points is fine; reporting only the first is not.
    runs = []
    for r in range(3):
        runs.append(
            run_rows(
                "ref", r, YEAR, sweep=("start", 0, math.nan), senescent_fraction=burden(YEAR, r)
            )
        )
        runs += [
            run_rows(
                "timing",
                r,
                YEAR,
                sweep=("start", point, value),
                senescent_fraction=burden(YEAR, r) + shift,
            )
            for point, value, shift in ((0, 90.0, 0.01), (1, 365.0, 0.05))
        ]
    try:
        found = difference_by_age(
            results_table(*runs), "timing", "ref", "senescent_fraction", [200.0], n_boot=50
        )
    except ValueError:
        return
    assert np.isclose(found["difference"], 0.05).any()


# --- secondary_senescence -----------------------------------------------------------------------


def transplant_runs(
    replicates: int, window: int, age: float = PULSE, sweep: tuple[str, int, float] | None = None
) -> list[pd.DataFrame]:
    """Paired transplant and sham runs. Both have one primary event a day (cancels). The
    transplant adds, per replicate r, events inside the window — 1 primary the day after, 2
    paracrine 5 days after, r primary 3 days after, 1 primary on the window's last day — and
    events that must not count: 7 primary 3 days before, 4 primary on the transplant day (the
    step before it), 5 primary the day after the window, 3 replicative inside it."""
    t = CHASE - age
    runs = []
    for r in range(replicates):
        primary = np.ones(CHASE.size, dtype=np.int64)
        paracrine = np.zeros(CHASE.size, dtype=np.int64)
        replicative = np.zeros(CHASE.size, dtype=np.int64)
        runs.append(
            run_rows(
                "sham",
                r,
                CHASE,
                sweep=sweep,
                new_primary=primary.copy(),
                new_paracrine=paracrine.copy(),
                new_replicative=replicative.copy(),
                senescent=0,
            )
        )
        primary = (
            primary
            + 1 * (t == 1)
            + r * (t == 3)
            + 1 * (t == window)
            + 7 * (t == -3)
            + 4 * (t == 0)
            + 5 * (t == window + 1)
        )
        paracrine = paracrine + 2 * (t == 5)
        replicative = replicative + 3 * (t == 2)
        runs.append(
            run_rows(
                "transplant",
                r,
                CHASE,
                sweep=sweep,
                new_primary=primary,
                new_paracrine=paracrine,
                new_replicative=replicative,
                senescent=0,
            )
        )
    return runs


def test_secondary_senescence_counts_only_host_events_in_the_window_after_the_transplant():
    replicates, window = 5, 10
    estimate = secondary_senescence(
        results_table(*transplant_runs(replicates, window)),
        "transplant",
        "sham",
        PULSE,
        window=window,
        n_boot=500,
    )
    per_run = 1 + 2 + 1 + np.arange(replicates)  # what each replicate adds in the window
    assert estimate.n == replicates
    assert estimate.value == pytest.approx(per_run.mean(), rel=1e-12)
    # The bootstrap means of the paired differences lie between their smallest and largest.
    assert per_run.min() <= estimate.ci_low < estimate.value < estimate.ci_high <= per_run.max()


@pytest.mark.parametrize("window", [0, -5.0, math.nan])
def test_secondary_senescence_refuses_a_window_that_is_not_positive(window):
    with pytest.raises(ValueError, match="window"):
        secondary_senescence(
            results_table(*transplant_runs(2, 10)), "transplant", "sham", PULSE, window=window
        )


def test_secondary_senescence_refuses_a_table_with_several_sweep_points():
    # The transplant at 400 (point 0) and at 405 (point 1), unfiltered: the runs of point 1 add
    # their own events to the window after 400, so the table must be filtered first.
    runs = [
        *transplant_runs(3, 10, PULSE, ("perturbation.0.age", 0, PULSE)),
        *transplant_runs(3, 10, PULSE + 5, ("perturbation.0.age", 1, PULSE + 5)),
    ]
    with pytest.raises(ValueError):
        secondary_senescence(results_table(*runs), "transplant", "sham", PULSE, window=10)


def test_secondary_senescence_refuses_runs_that_skip_days_of_the_window():
    # Event tallies are daily: a table kept every other day would undercount the window.
    results = results_table(*transplant_runs(3, 10))
    every_other = results[results["age"] % 2 == 0]
    with pytest.raises(ValueError, match=r"keeps \d+ of the 10 days .*output.every = 1"):
        secondary_senescence(every_other, "transplant", "sham", PULSE, window=10)
    # A window reaching past the end of the runs is refused the same way.
    with pytest.raises(ValueError, match="of the 10000 days"):
        secondary_senescence(results, "transplant", "sham", PULSE, window=10_000)


def test_paired_difference_names_the_missing_label_column():
    results = results_table(*transplant_runs(2, 10)).drop(columns="replicate")
    with pytest.raises(ValueError, match=r"lack the column.*replicate"):
        paired_difference(results, "transplant", "sham", "senescent")


# --- the experiments on the model ---------------------------------------------------------------

SIZE = 50
"""Lattice side of the model runs (the files use 100): 2500 sites, a 2% pulse is ~50 cells."""
REPLICATES = 6
"""Replicates per scenario (the files use 20); paired by seed with wild_type."""


def results_of(specs) -> pd.DataFrame:
    """Run batch runs in this process; their readouts as one table (as `load_results`).

    One kernel thread, as a batch worker uses: with threads for every core on a loaded
    machine, the kernel's many short parallel sections wait for descheduled threads (a
    1-second batch once took 100 s here). The default (all cores) is restored after.
    """
    try:
        outcomes = execute(list(specs), threads=1)
    finally:
        set_threads(None)
    failed = [f"{o.id}: {o.error}" for o in outcomes if o.error is not None]
    assert not failed, failed
    return results_table(*(o.readouts for o in outcomes))


def experiment(*names: str, **overrides) -> pd.DataFrame:
    """The scenario files `names` of scenarios/experiments at SIZE and REPLICATES, run."""
    plan = plan_batch(
        [EXPERIMENTS / f"{name}.toml" for name in names],
        **{"size": SIZE, "replicates": REPLICATES, **overrides},
    )
    return results_of(plan.runs)


def pulse_age(which: str) -> float:
    """The pulse age of pulse_chase_<which>.toml, from the file."""
    return float(load_scenario(EXPERIMENTS / f"pulse_chase_{which}.toml").perturbation[0].age)


@pytest.fixture(scope="module")
def wild_type() -> pd.DataFrame:
    """The reference: wild_type to its end (4 years), shared by the experiments below."""
    return experiment("wild_type")


def test_pulse_chase_half_life_is_longer_in_old_than_in_young_tissue(wild_type):
    # Karin 2019: ~5 days at 3 months, ~25 at 22 months. The chases keep their files' lengths
    # (160 days young, 180 old; the old fit needs ~2.3 half-lives to reach the noise floor).
    # Statistic: the half-lives' 95% bootstrap intervals over 6 replicate pairs; they must not
    # overlap (old above young), a difference significant at about 0.5%. Over 8 other base
    # seeds the old lower bound was 3.0-5.0 times the young upper bound (half-lives ~5 and
    # 21-28 days); a model where age does not slow clearance gives overlapping intervals.
    results = results_table(wild_type, experiment("pulse_chase_young", "pulse_chase_old"))
    young = pulse_chase(results, "pulse_chase_young", "wild_type", pulse_age("young"))
    old = pulse_chase(results, "pulse_chase_old", "wild_type", pulse_age("old"))
    assert young.n == old.n == REPLICATES
    assert old.ci_low > young.ci_high, (young, old)


def test_immune_knockout_raises_late_life_senescent_burden(wild_type):
    # Ovadya 2018 (Prf1-/-): more senescent cells in old age. Statistic: the difference in mean
    # senescent fraction (knock-out − wild type) at 18, 21 and 24 months, with its 95%
    # bootstrap interval over 6 replicates each; its lower bound must be above 0 (one-sided
    # ~2.5% at each age). The effect is large: over 8 base seeds 0.54-0.84, lower bounds
    # 0.51-0.84; a knock-out that does not stop killing gives ~0.
    results = results_table(wild_type, experiment("immune_knockout"))
    found = difference_by_age(
        results, "immune_knockout", "wild_type", "senescent_fraction", [540.0, 630.0, 730.0]
    )
    assert (found["ci_low"] > 0).all(), found


def test_senolytic_control_extends_median_lifespan(wild_type):
    # Baker 2016: clearing senescent cells extends median lifespan. Both run to 4 years, when
    # both medians are reached (wild type ~2.4 years). Lifespans of 200 SR organisms per run
    # (survival.lifespans, default Parameters); statistic: the median lifespan with its 95%
    # cluster-bootstrap interval (6 runs each); the intervals must not overlap (senolytic
    # above; a treated median not reached by 4 years counts as longer). Without an effect of
    # the senolytic the intervals would overlap.
    results = results_table(wild_type, experiment("senolytic_control"))
    summary = survival_summary(lifespans(results)).set_index("scenario")
    treated, control = summary.loc["senolytic_control"], summary.loc["wild_type"]
    assert np.isfinite(control["median_lifespan"]), summary
    # a treated median not reached by the end of the runs is beyond it: longer
    low = treated["median_ci_low"] if np.isfinite(treated["median_ci_low"]) else np.inf
    assert low > control["median_ci_high"], summary


TRANSPLANT_SWEEP = "perturbation.0.age"
"""The sweep column of the transplant files: the host's age at the transplant."""


def test_senescent_transplant_makes_young_host_cells_senescent():
    # Xu 2018 / da Silva 2019: senescent cells transplanted into young tissue make host cells
    # senescent. Only the young-host sweep point is run (the runs are selected by their sweep
    # value, as the results would be filtered on the column; the old point would need 600+
    # days), each run shortened to end with the 30-day window. The signal in young tissue is
    # small (~0.4 extra host cells per run over 30 days: immune clearance is fast), so 40
    # replicates on a 40×40 lattice (the cluster's SASP is local and the paired runs share
    # their random numbers, so the lattice size matters little). Statistic: the mean paired
    # difference of host senescence events with its 95% bootstrap interval; its lower bound
    # must be above 0. Over 10 base seeds it was 0.15-0.35 (estimates 0.33-0.53); with no
    # spread from the cluster the difference would be ~0.
    window = 30
    plan = plan_batch(
        [EXPERIMENTS / "transplant_senescent.toml", EXPERIMENTS / "transplant_healthy.toml"],
        replicates=40,
        size=40,
    )
    young = min(spec.values[TRANSPLANT_SWEEP] for spec in plan.runs)
    specs = [
        dataclasses.replace(
            spec,
            scenario=spec.scenario.with_overrides(days=young + window - spec.scenario.start_age),
        )
        for spec in plan.runs
        if spec.values[TRANSPLANT_SWEEP] == young
    ]
    results = results_of(specs)
    estimate = secondary_senescence(
        results, "transplant_senescent", "transplant_healthy", young, window=window
    )
    assert estimate.n == 40
    assert estimate.value > 0 and estimate.ci_low > 0, estimate


# --- the agents engine --------------------------------------------------------------------------


def test_pulse_chase_runs_on_the_agents_engine_through_the_batch(tmp_path):
    # The agents engine is ~200x slower: a 12×12 tissue, 20 days after the young pulse, 2
    # replicates, through run_batch and load_results. Only that it runs and pairs is checked.
    plan = plan_batch(
        [EXPERIMENTS / "wild_type.toml", EXPERIMENTS / "pulse_chase_young.toml"],
        replicates=2,
        days=20,
        size=12,
        engine="agents",
    )
    summary = run_batch(plan, tmp_path / "out", workers=1)
    assert (summary.done, summary.failed) == (4, 0)
    results = load_results(tmp_path / "out")
    assert set(results["engine"]) == {"agents"}
    pairs = paired_difference(results, "pulse_chase_young", "wild_type", "senescent")
    assert list(pairs.columns) == ["replicate", "age", "difference"]
    assert sorted(pairs["replicate"].unique()) == [0, 1]
    assert len(pairs) == 2 * 21  # ages 90 to 110, each replicate
    # Paired runs are identical until the pulse (the row at the pulse age precedes it).
    assert (pairs.loc[pairs["age"] == pulse_age("young"), "difference"] == 0).all()
    estimate = pulse_chase(
        results, "pulse_chase_young", "wild_type", pulse_age("young"), n_boot=100
    )
    assert estimate.n == 2

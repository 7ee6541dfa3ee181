"""Analyses of the experiment library (`scenarios/experiments/`): what each experiment measures.

Every experiment is a set of scenario files run through the batch runner (either engine); the
functions here read the batch's results table (`load_results`) and return the measurement with a
bootstrap confidence interval. Runs of two scenarios with the same base seed are paired by
replicate: they share their random numbers (common random numbers), so their difference is the
effect of what the scenarios change.

- *Pulse–chase* (Karin et al. 2019, bleomycin pulse in young and old mice): `pulse_chase` fits the
  half-life of the excess senescent cells after a pulse.
- *Immune knock-out*, *senolytic control*, *therapy timing*, *dose–response*: `difference_by_age`
  compares a readout between two scenarios at several ages.
- *Transplant* (Xu et al. 2018; da Silva et al. 2019): `secondary_senescence` counts the host
  cells that turn senescent after a cluster is transplanted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from tissue_abm.analysis.summary import (
    boot_means,
    check_confidence,
    check_readouts,
    check_scenarios,
    compare,
    percentile_ci,
    resample,
    run_columns,
)

PEAK_WINDOW = 14
"""Days after a pulse within which its excess peaks (the excess is fitted from that peak)."""

FIT_FLOOR = 0.2
"""The half-life fit stops once the excess falls below this share of its peak (noise floor)."""

DECAY_RESOLUTION = 1e-9
"""Decay rates (1/day) below this are rounding noise of a flat excess: no half-life."""

SECONDARY = ("new_primary", "new_paracrine")
"""Events that count as host (secondary) senescence after a transplant."""


class Estimate(NamedTuple):
    """A measurement with its bootstrap percentile interval."""

    value: float
    """The estimate (NaN if undefined)."""
    ci_low: float
    """Lower bound of the interval (NaN with fewer than 2 replicates)."""
    ci_high: float
    """Upper bound of the interval."""
    n: int
    """Replicates (run pairs) it rests on."""


def paired_difference(
    results: pd.DataFrame, treated: str, control: str, readout: str
) -> pd.DataFrame:
    """`readout` of `treated` minus that of `control`, per replicate and kept age.

    Runs are paired by replicate; paired runs must have the same seed (scenarios with the same
    base seed and replicates do).

    Args:
        results: A table from `load_results` holding both scenarios, each at one sweep point.
        treated: Scenario whose values are taken.
        control: Scenario subtracted.
        readout: Readout column.

    Returns:
        Columns `replicate`, `age` and `difference`, for the ages kept in both runs of a pair.

    Raises:
        ValueError: If a scenario or the readout is missing, or paired runs differ in seed.
    """
    absent = [c for c in ("scenario", "replicate", "seed", "age") if c not in results.columns]
    if absent:
        raise ValueError(
            f"the results lack the column(s) {', '.join(absent)}; allowed: a "
            "table from load_results"
        )
    check_readouts(results, [readout])
    check_scenarios(results, [treated, control])
    keys = ["replicate", "age"]
    both = [
        results.loc[results["scenario"] == name, [*keys, "seed", readout]]
        for name in (treated, control)
    ]
    for name, frame in zip((treated, control), both, strict=True):
        if frame.duplicated(keys).any():
            raise ValueError(
                f"scenario {name!r} has several runs per replicate (a sweep?); "
                "select one sweep point first"
            )
    pairs = both[0].merge(both[1], on=keys, suffixes=("_t", "_c"))
    unmatched = pairs["seed_t"] != pairs["seed_c"]
    if unmatched.any():
        replicate = pairs.loc[unmatched, "replicate"].iloc[0]
        raise ValueError(
            f"replicate {replicate} of {treated!r} and {control!r} has different "
            "seeds; give both scenarios the same seed to pair their runs"
        )
    pairs["difference"] = pairs[f"{readout}_t"].astype(float) - pairs[f"{readout}_c"].astype(float)
    return pairs[[*keys, "difference"]].sort_values(keys, ignore_index=True)


def half_life(age: np.ndarray, excess: np.ndarray, start: float) -> float:
    """Half-life (days) of a decaying excess, from a log-linear least-squares fit.

    The fit runs from the excess's peak within `PEAK_WINDOW` days of `start` to the first day
    on which it falls below `FIT_FLOOR` of that peak (or to the last day): the part of the
    curve that decays, above the counting noise. The recruitment lag before the peak is left
    out, as a fit to measured decay curves leaves it out.

    Args:
        age: Ages (days), increasing.
        excess: Excess over the control at those ages (e.g. senescent cells), same length.
        start: Age of the pulse (days).

    Returns:
        ln 2 / decay rate, in days; NaN if the excess is not positive at its peak, has fewer
        than 3 points to fit, or does not decay.
    """
    age = np.asarray(age, dtype=float)
    excess = np.asarray(excess, dtype=float)
    after = age >= start
    age, excess = age[after], excess[after]
    window = age <= start + PEAK_WINDOW
    if not window.any():
        return math.nan
    peak = int(np.argmax(np.where(window, excess, -np.inf)))
    if excess[peak] <= 0:
        return math.nan
    below = np.flatnonzero(excess[peak:] < FIT_FLOOR * excess[peak])
    stop = peak + (below[0] if below.size else excess.size - peak)
    if stop - peak < 3:
        return math.nan
    slope = np.polyfit(age[peak:stop], np.log(excess[peak:stop]), 1)[0]
    return float(math.log(2.0) / -slope) if slope < -DECAY_RESOLUTION else math.nan


def pulse_chase(
    results: pd.DataFrame,
    pulse: str,
    control: str,
    pulse_age: float,
    readout: str = "senescent",
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Estimate:
    """Half-life of the senescent cells added by a pulse, as in Karin et al. 2019.

    The excess is the pulsed run's senescent count minus its paired control's. The estimate is
    the half-life (`half_life`) of the excess averaged over replicates; the interval resamples
    the replicate pairs with replacement and refits (a resample that does not decay counts as
    an infinite half-life).

    Args:
        results: A table from `load_results` with both scenarios.
        pulse: Scenario with the pulse.
        control: The same scenario without it (same seed and replicates).
        pulse_age: Age of the pulse (days).
        readout: Count to follow (`senescent`).
        n_boot: Bootstrap resamples (>= 1).
        seed: Seed of the resampling.
        confidence: Coverage of the interval, strictly between 0 and 1.

    Returns:
        The half-life (days) with its interval and the number of replicate pairs.
    """
    check_confidence(confidence)
    curves = (
        paired_difference(results, pulse, control, readout)
        .pivot(index="age", columns="replicate", values="difference")
        .dropna()
    )
    ages, values = curves.index.to_numpy(dtype=float), curves.to_numpy(dtype=float)
    estimate = half_life(ages, values.mean(axis=1), pulse_age)
    n = values.shape[1]
    if n < 2:
        return Estimate(estimate, math.nan, math.nan, n)
    boot = resample(
        n,
        lambda pick: half_life(ages, values[:, pick].mean(axis=1), pulse_age),
        n_boot,
        np.random.default_rng(seed),
    )
    # A resample that does not decay has an unbounded half-life: it counts as +inf, not dropped.
    return Estimate(estimate, *percentile_ci(boot, confidence, unbounded=True), n)


def difference_by_age(
    results: pd.DataFrame,
    scenario: str,
    reference: str,
    readout: str,
    ages: Sequence[float],
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Difference of a readout's mean between two scenarios at several ages, with CIs.

    Args:
        results: A table from `load_results`; both scenarios start at the same age.
        scenario: Scenario compared.
        reference: Scenario it is compared against.
        readout: Readout column.
        ages: Ages (days) at which to compare; each must be kept in every run.
        n_boot: Bootstrap resamples (>= 1).
        seed: Seed of the resampling.
        confidence: Coverage of the interval, strictly between 0 and 1.

    Returns:
        One row per age: `age`, `mean`, `reference_mean`, `difference`, `ci_low`, `ci_high`
        (see `analysis.compare`).

    Raises:
        ValueError: If the scenarios start at different ages or an age is not kept.
    """
    check_scenarios(results, [scenario, reference])
    chosen = results[results["scenario"].isin([scenario, reference])]
    starts = chosen.groupby("scenario", observed=True)["age"].min()
    if starts.nunique() != 1:
        raise ValueError(
            f"scenarios {scenario!r} and {reference!r} start at different ages "
            f"({', '.join(f'{k}: {v:g}' for k, v in starts.items())}); compare "
            "scenarios that start at the same age"
        )
    start = float(starts.iloc[0])
    rows = []
    for age in ages:
        table = compare(
            chosen,
            readout,
            reference,
            day=round(age - start),
            n_boot=n_boot,
            seed=seed,
            confidence=confidence,
        )
        if len(table) != 1:
            raise ValueError(
                f"scenario {scenario!r} has {len(table)} sweep points; select one "
                "(filter the results on its sweep columns) before comparing"
            )
        row = table.iloc[0]
        rows.append(
            {
                "age": float(age),
                "mean": row["mean"],
                "reference_mean": row["reference_mean"],
                "difference": row["difference"],
                "ci_low": row["ci_low"],
                "ci_high": row["ci_high"],
            }
        )
    return pd.DataFrame(rows)


def secondary_senescence(
    results: pd.DataFrame,
    transplant: str,
    sham: str,
    age: float,
    window: float = 30.0,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Estimate:
    """Host cells turned senescent after a transplant, beyond those after a sham transplant.

    Counts the new primary and paracrine senescence events (`SECONDARY`; the transplanted cells
    themselves are not events) over the `window` days after `age`, per run, and takes the mean
    difference between the transplant and its sham (a cluster of healthy cells).

    Args:
        results: A table from `load_results` with both scenarios, kept every day.
        transplant: Scenario with the senescent cluster.
        sham: Scenario with the healthy cluster (same seed and replicates).
        age: Age of the transplant (days).
        window: Days after the transplant over which host senescence is counted (> 0; Xu et
            al. 2018 measured a month later).
        n_boot: Bootstrap resamples (>= 1).
        seed: Seed of the resampling.
        confidence: Coverage of the interval, strictly between 0 and 1.

    Returns:
        Extra host senescent cells per run (count), with the interval of the paired mean.
    """
    check_confidence(confidence)
    if not window > 0:
        raise ValueError(f"window = {window!r} is not allowed; allowed: a number of days > 0")
    check_scenarios(results, [transplant, sham])
    events = results[(results["age"] > age) & (results["age"] <= age + window)].copy()
    _check_daily(events, age, window)
    events["secondary"] = events[list(SECONDARY)].sum(axis=1)
    totals = (
        events.groupby([*run_columns(events), "seed"], observed=True, dropna=False)["secondary"]
        .sum()
        .reset_index()
        .assign(age=age)
    )
    pairs = paired_difference(totals, transplant, sham, "secondary")["difference"].to_numpy()
    if pairs.size < 2:
        return Estimate(
            float(pairs.mean()) if pairs.size else math.nan, math.nan, math.nan, pairs.size
        )
    boot = boot_means(pairs, n_boot, np.random.default_rng(seed))
    return Estimate(float(pairs.mean()), *percentile_ci(boot, confidence), pairs.size)


def _check_daily(events: pd.DataFrame, age: float, window: float) -> None:
    """ValueError unless every run keeps every day of the window (event tallies are daily)."""
    wanted = math.floor(age + window) - math.floor(age)
    kept = events.groupby([*run_columns(events), "seed"], observed=True, dropna=False)[
        "age"
    ].nunique()
    short = kept[kept < wanted]
    if len(kept) == 0 or len(short):
        have = int(short.min()) if len(short) else 0
        raise ValueError(
            f"a run keeps {have} of the {wanted} days after age {age:g} (window "
            f"{window:g} days); allowed: runs that keep every day of the window "
            "(output.every = 1, end_age at or after age + window)"
        )

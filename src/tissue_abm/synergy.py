"""Drug-combination synergy scores (Bliss independence and highest single agent).

The formulas follow SynergyFinder (Ianevski 2017; Zheng 2022), as summarised in the project's
literature notes (§10). Effects are *fractional effects* y in [0, 1] (0 = no effect, 1 = the whole
loss relative to the control prevented); they may fall below 0 when a treatment makes things
worse.

- Bliss independence: y_exp = y_A + y_B − y_A·y_B.
- Highest single agent (HSA): y_exp = max(y_A, y_B).
- Excess (synergy score) = y_AB − y_exp; reading in % units: below −10 antagonism, −10 to 10
  additive, above 10 synergy.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from tissue_abm.analysis import (
    boot_means,
    check_confidence,
    check_readouts,
    check_scenarios,
    group_columns,
    grouped,
    percentile_ci,
    run_values,
)

HIGHER_IS_BETTER = frozenset(
    {"tissue_function", "healthy_fraction", "autophagy", "immune_competence", "division_prob"})
"""Readouts (bounded by 1) for which higher values are better; all others count as lower-is-
better losses (senescent_fraction, mean_sasp, ...)."""

BAND = 10.0
"""Half-width of SynergyFinder's additive band, in % units of fractional effect."""

CANONICAL = ("untreated", "rapamycin", "oxytocin", "combined")
"""The canonical control, drug A, drug B and combination scenarios (the `synergy` defaults)."""

METHODS = ("bliss", "hsa")
"""Reference models scored by `synergy`, in table order."""


def fractional_effect(treated: float | np.ndarray, control: float | np.ndarray,
                      higher_is_better: bool) -> float | np.ndarray:
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


def synergy(results: pd.DataFrame, readout: str, control: str = "untreated",
            drug_a: str = "rapamycin", drug_b: str = "oxytocin", combination: str = "combined",
            day: int | None = None, higher_is_better: bool | None = None, n_boot: int = 2000,
            seed: int = 0, confidence: float = 0.95) -> pd.DataFrame:
    """Bliss and HSA synergy of a two-drug combination, with bootstrap confidence intervals.

    The effects are those of the scenario means: y_A = fractional_effect(mean_A, mean_control),
    likewise y_B and y_AB. The interval resamples the replicates of each of the four scenarios
    independently (`n_boot` times), recomputes the four means, the effects, the expectation and
    the excess, and takes percentile bounds.

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
        One row per method (`bliss`, `hsa`): `method`, `y_a`, `y_b`, `y_ab` (fractional effects),
        `expected`, `excess` (y_ab − expected), `ci_low`, `ci_high` (interval of the excess; NaN
        if a scenario has fewer than 2 replicates) and `verdict` (see `verdict`). Effects and
        excess are fractions (0.1 = 10%). `attrs` hold readout, higher_is_better, day,
        confidence, n_boot, the scenario names, `n` (replicates per scenario) and
        `undefined_resamples` (per method, the share of resamples left out of the interval
        because the resampled control had no loss to prevent).

    Raises:
        ValueError: If a scenario or the readout is missing, or a scenario has several sweep
            points.
    """
    check_confidence(confidence)
    check_readouts(results, [readout])
    roles = {"control": control, "drug_a": drug_a, "drug_b": drug_b, "combination": combination}
    check_scenarios(results, roles.values())
    if higher_is_better is None:
        higher_is_better = default_higher_is_better(readout)
    values = run_values(results, readout, day)
    values = values[values[readout].notna()]
    rng = np.random.default_rng(seed)
    samples: dict[str, np.ndarray] = {}
    means: dict[str, float] = {}
    for role, name in roles.items():
        chosen = values[values["scenario"] == name]
        points = grouped(chosen, group_columns(results)).ngroups
        if points != 1:
            raise ValueError(f"{role} scenario {name!r} has {points} sweep points with values; "
                             "select one point (filter the results) before scoring synergy")
        x = chosen[readout].to_numpy(dtype=float)
        means[role] = float(x.mean())
        samples[role] = boot_means(x, n_boot, rng)

    def effects(m: dict[str, float | np.ndarray]) -> tuple:
        return tuple(fractional_effect(m[role], m["control"], higher_is_better)
                     for role in ("drug_a", "drug_b", "combination"))

    ya, yb, yab = effects(means)
    boot_ya, boot_yb, boot_yab = effects(samples)
    rows = []
    undefined = {}
    for method in METHODS:
        expected = EXPECTED[method](ya, yb)
        score = excess(yab, expected)
        boot = np.asarray(excess(boot_yab, EXPECTED[method](boot_ya, boot_yb)))
        undefined[method] = float(np.mean(~np.isfinite(boot)))
        low, high = percentile_ci(boot, confidence)
        rows.append({"method": method, "y_a": ya, "y_b": yb, "y_ab": yab,
                     "expected": float(expected), "excess": float(score), "ci_low": low,
                     "ci_high": high, "verdict": verdict(float(score), low, high)})
    table = pd.DataFrame(rows)
    counts = values["scenario"].astype(str).value_counts()
    table.attrs.update(readout=readout, higher_is_better=higher_is_better, day=day,
                       confidence=confidence, n_boot=n_boot, scenarios=roles,
                       n={role: int(counts.get(name, 0)) for role, name in roles.items()},
                       undefined_resamples=undefined)
    return table

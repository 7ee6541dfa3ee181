"""Summaries of readout tables (pandas in, pandas out).

The batch functions take the tidy table of `tissue_abm.load_results` (one row per run and kept
day). A *run* is one (scenario, sweep point, replicate); a *group* is one scenario at one sweep
point (the scenario name and the values of any swept keys), whose runs are its replicates.
Statistics across replicates are computed with pandas group-bys and numpy, never by looping over
rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from tissue_abm.biology.params import Parameters

if TYPE_CHECKING:
    from pandas.api.typing import DataFrameGroupBy

SUMMARY_READOUTS = {
    "senescent_fraction": "senescent fraction",
    "healthy_fraction": "healthy fraction",
    "mean_sasp": "mean SASP",
    "tissue_function": "tissue function",
}
"""Readouts in the start-versus-end summary, with their labels."""

RUN_KEYS = ("scenario", "point", "replicate")
"""Columns that identify one run of a batch (a results table from a plain folder of
`tissue-abm run` outputs has no `point` and `replicate`; there `seed` tells runs apart)."""

LABELS = (*RUN_KEYS, "seed", "engine", "day", "age")
"""Non-readout columns of a results table (besides the sweep columns)."""


def healthspan(run: pd.DataFrame, threshold: float) -> float:
    """Age (days) at which tissue function first falls below `threshold`; NaN if it never does.

    Args:
        run: One run's daily readouts (columns `age`, `tissue_function`).
        threshold: Tissue function below which health is lost (the `healthspan_threshold`).
    """
    below = run.loc[run["tissue_function"] < threshold, "age"]
    return float(below.iloc[0]) if len(below) else math.nan


@dataclass(frozen=True, eq=False)  # eq=False: a DataFrame has no truth value to compare by
class StartEnd:
    """The summary readouts of one run on its first and last kept day (`start_end_summary`)."""

    table: pd.DataFrame
    """One row per readout (index: its label), columns `start` and `end` (the readout's units)."""
    start_age: float
    """Age on the run's first kept day (days)."""
    end_age: float
    """Age on the run's last kept day (days)."""


def start_end_summary(run: pd.DataFrame) -> StartEnd:
    """The summary readouts (`SUMMARY_READOUTS`) on the first and last day of one run.

    Args:
        run: One run's daily readouts (columns `age` and the `SUMMARY_READOUTS`), in day order.

    Returns:
        The table (one row per readout, labelled; columns `start` and `end`) and the two ages.
    """
    first, last = run.iloc[0], run.iloc[-1]
    table = pd.DataFrame(
        {"start": [first[c] for c in SUMMARY_READOUTS], "end": [last[c] for c in SUMMARY_READOUTS]},
        index=pd.Index(list(SUMMARY_READOUTS.values()), name="readout"),
    )
    return StartEnd(table, start_age=float(first["age"]), end_age=float(last["age"]))


# --- the shape of a results table -------------------------------------------------------------


def sweep_columns(results: pd.DataFrame) -> list[str]:
    """The swept-key columns of a results table: those between `point` and `replicate`.

    Args:
        results: A table from `load_results` (or with the same column layout).

    Returns:
        The column names, in table order; empty if nothing is swept or the table has no
        `point`/`replicate` columns.
    """
    columns = list(results.columns)
    if "point" not in columns or "replicate" not in columns:
        return []
    return columns[columns.index("point") + 1 : columns.index("replicate")]


def group_columns(results: pd.DataFrame) -> list[str]:
    """The columns that define a group of replicates: `scenario` plus any sweep columns.

    Args:
        results: A table from `load_results`.

    Raises:
        ValueError: If the table has no `scenario` column.
    """
    if "scenario" not in results:
        raise ValueError(
            "results have no 'scenario' column; expected a table from "
            f"load_results (columns: {', '.join(map(str, results.columns))})"
        )
    return ["scenario", *sweep_columns(results)]


def run_columns(results: pd.DataFrame) -> list[str]:
    """The columns that identify one run: the group columns plus `point` and `replicate`.

    A table without `replicate` (a folder of single `tissue-abm run` outputs) tells runs apart
    by `seed` instead.

    Args:
        results: A table from `load_results`.
    """
    wanted = {*group_columns(results), *(k for k in RUN_KEYS if k in results)}
    if "replicate" not in results and "seed" in results:
        wanted.add("seed")
    return [c for c in results.columns if c in wanted]


def readout_columns(results: pd.DataFrame) -> list[str]:
    """The numeric readout columns of a results table (everything but labels and sweeps)."""
    skip = {*LABELS, *sweep_columns(results)}
    return [
        c
        for c in results.columns
        if c not in skip
        and pd.api.types.is_numeric_dtype(results[c])
        and not pd.api.types.is_bool_dtype(results[c])
    ]


def scenarios(results: pd.DataFrame) -> list[str]:
    """The scenario names present in a results table, in category order."""
    column = results["scenario"]
    if isinstance(column.dtype, pd.CategoricalDtype):
        present = set(column.unique())
        return [str(c) for c in column.cat.categories if c in present]
    return [str(c) for c in pd.unique(column)]


def group_labels(table: pd.DataFrame, sweeps: Sequence[str] | None = None) -> pd.Series:
    """One readable label per row: the scenario, plus `key=value` for each swept value.

    Args:
        table: Any table with the group columns of a results table (`load_results`,
            `end_state`, `summarise` or `compare` output).
        sweeps: The sweep columns; None for those of a table laid out like a results table
            (the columns between `point` and `replicate`: `load_results`, `end_state`,
            `run_values`, `survival.lifespans`). Tables without that layout (`summarise`,
            `compare`, the survival summaries) need them given, e.g. `sweep_columns(results)`.

    Returns:
        Strings such as ``"combined"`` or ``"combined (immune_kill=0.4)"``, indexed like `table`.
    """
    if sweeps is None:
        sweeps = sweep_columns(table)
    sweeps = [c for c in sweeps if c in table]
    labels = table["scenario"].astype(str)
    if not sweeps:
        return labels.rename("label")
    parts = [table[c].map(lambda v, c=c: "" if _missing(v) else f"{c}={_fmt(v)}") for c in sweeps]
    extra = pd.concat(parts, axis=1).apply(lambda row: ", ".join(p for p in row if p), axis=1)
    return (labels + extra.map(lambda e: f" ({e})" if e else "")).rename("label")


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_readouts(results: pd.DataFrame, names: Iterable[str]) -> list[str]:
    """The readout columns `names`; ValueError naming any missing one and the available."""
    names = [names] if isinstance(names, str) else list(names)
    available = readout_columns(results)
    missing = [n for n in names if n not in available]
    if missing:
        raise ValueError(
            f"unknown readout {', '.join(map(repr, missing))}; available: " + ", ".join(available)
        )
    return names


def check_scenarios(results: pd.DataFrame, names: Iterable[str], role: str = "") -> None:
    """ValueError naming any of `names` missing from the results and the scenarios present."""
    present = scenarios(results)
    missing = [n for n in names if n not in present]
    if missing:
        what = f"{role} scenario" if role else "scenario"
        raise ValueError(
            f"no {what} {', '.join(map(repr, missing))} in the results; "
            f"available scenarios: {', '.join(present) or 'none'}"
        )


def grouped(frame: pd.DataFrame, keys: Sequence[str]) -> DataFrameGroupBy:
    """`frame` grouped by `keys`, keeping NaN keys (unswept columns) and only observed ones."""
    return frame.groupby(list(keys), observed=True, dropna=False, sort=True)


# --- statistics across replicates -------------------------------------------------------------


def summarise(
    results: pd.DataFrame, readouts: Iterable[str] | None = None, confidence: float = 0.95
) -> pd.DataFrame:
    """Mean, SD and confidence interval across replicates, per group and day (tidy format).

    Args:
        results: A table from `load_results`.
        readouts: Readout columns to summarise; default the `SUMMARY_READOUTS`.
        confidence: Coverage of the interval, strictly between 0 and 1.

    Returns:
        One row per (readout, group, day), ordered that way. Columns: the group columns
        (`scenario` and any sweep columns), `day`, `age` (days; the mean over replicates, which
        normally share it), `readout`, `n` (replicates with a value), `mean`, `sd` (sample SD,
        ddof 1), `ci_low`, `ci_high` (Student-t interval of the mean, `mean ± t·sd/√n`, with
        n − 1 degrees of freedom; NaN when n < 2). NaN readout values (e.g. `mean_damage`
        without healthy cells) are left out of n.

    Raises:
        ValueError: If a readout is not a column of `results`, or `confidence` is not in (0, 1).
    """
    check_confidence(confidence)
    names = check_readouts(results, readouts if readouts is not None else SUMMARY_READOUTS)
    groups = group_columns(results)
    keys = [*groups, "day"]
    aggregated = grouped(results, keys)[["age", *names]].agg(["mean", "std", "count"])
    index = aggregated.index.to_frame(index=False)
    age = aggregated[("age", "mean")].to_numpy()
    parts = []
    for name in names:
        n = aggregated[(name, "count")].to_numpy()
        mean = aggregated[(name, "mean")].to_numpy()
        sd = aggregated[(name, "std")].to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            half = (
                stats.t.ppf(0.5 + confidence / 2, np.where(n > 1, n - 1, np.nan)) * sd / np.sqrt(n)
            )
        part = index.copy()
        part["age"] = age
        part["readout"] = name
        part["n"] = n.astype(np.int64)
        part["mean"] = mean
        part["sd"] = sd
        part["ci_low"] = mean - half
        part["ci_high"] = mean + half
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def end_state(results: pd.DataFrame, threshold: float | None = None) -> pd.DataFrame:
    """The last kept day of each run, one row per run, with the run's healthspan.

    Args:
        results: A table from `load_results`.
        threshold: Tissue function (0-1) below which health is lost; default
            `Parameters().healthspan_threshold`.

    Returns:
        Every column of `results` on each run's last kept day, plus `healthspan`: the age
        (days) at which tissue function first fell below `threshold` (see `healthspan`), NaN if
        it never did during the run (censored at the run's last age). Rows ordered by run.
    """
    if threshold is None:
        threshold = Parameters().healthspan_threshold
    keys = run_columns(results)
    ordered = results.sort_values([*keys, "day"], kind="stable").reset_index(drop=True)
    by_run = grouped(ordered, keys)
    last = by_run["day"].idxmax()
    spans = [healthspan(run, threshold) for _, run in by_run[["age", "tissue_function"]]]
    table = ordered.loc[last.to_numpy()].reset_index(drop=True)
    table["healthspan"] = np.asarray(spans, dtype=float)
    return table


def median_healthspan(spans: Iterable[float]) -> float:
    """Median healthspan of runs where NaN means "not reached by the end of the run".

    Runs that never lost health are censored: they count as longer than every observed
    healthspan (all runs of a group are assumed to end at the same age).

    Args:
        spans: Per-run healthspans (days), NaN for runs that did not reach it.

    Returns:
        The median (days); `inf` when at least half the runs never lost health; NaN if empty.
    """
    values = np.asarray(list(spans), dtype=float)
    if values.size == 0:
        return math.nan
    return float(np.median(np.where(np.isnan(values), np.inf, values)))


def run_values(results: pd.DataFrame, readout: str, day: int | None = None) -> pd.DataFrame:
    """One value of `readout` per run: on `day`, or on each run's last kept day.

    Args:
        results: A table from `load_results`.
        readout: The readout column.
        day: Day of the run (days since its start); None for each run's last kept day.

    Returns:
        The run columns (`run_columns`), `day`, `age` and `readout`, one row per run.

    Raises:
        ValueError: If the readout is unknown, or `day` is not kept in some run.
    """
    check_readouts(results, [readout])
    keys = run_columns(results)
    columns = [*keys, "day", "age", readout]
    if day is None:
        frame = results[columns].reset_index(drop=True)
        last = grouped(frame, keys)["day"].idxmax()
        return frame.loc[last.to_numpy()].reset_index(drop=True)
    chosen = results.loc[results["day"] == day, columns]
    chosen = grouped(chosen, keys).head(1).reset_index(drop=True)
    runs = grouped(results[keys], keys).ngroups
    if len(chosen) < runs:
        have = chosen["scenario"].astype(str).value_counts()
        every = grouped(results[keys], keys).size().reset_index()["scenario"].astype(str)
        lacking = [s for s, n in every.value_counts().items() if have.get(s, 0) < n]
        kept = np.unique(results["day"].to_numpy())
        shown = (
            ", ".join(map(str, kept))
            if kept.size <= 10
            else (f"{', '.join(map(str, kept[:5]))}, ..., {kept[-1]}")
        )
        raise ValueError(
            f"day {day} is not kept in every run (missing in scenario "
            f"{', '.join(map(repr, lacking))}); kept days: {shown}"
        )
    return chosen


def compare(
    results: pd.DataFrame,
    readout: str,
    reference: str = "untreated",
    day: int | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Difference of each group's mean readout from the reference scenario, with a bootstrap CI.

    Args:
        results: A table from `load_results`.
        readout: The readout column to compare.
        reference: The scenario to compare against (it must have a single sweep point).
        day: Day of the runs (days since start) to compare; None for each run's last kept day.
        n_boot: Bootstrap resamples (≥ 1).
        seed: Seed of the `numpy.random.Generator` used for resampling.
        confidence: Coverage of the percentile interval, strictly between 0 and 1.

    Returns:
        One row per group other than the reference, in group order: the group columns, `n`,
        `mean`, `reference_n`, `reference_mean`, `difference` (mean − reference mean, in the
        readout's units) and `ci_low`, `ci_high`: the percentile bootstrap interval of the
        difference, resampling the replicates of each group and of the reference
        independently (NaN if either has fewer than 2 replicates). Runs with a NaN value are
        left out.

    Raises:
        ValueError: If the readout or reference scenario is missing, or the reference has
            several sweep points.
    """
    check_confidence(confidence)
    check_readouts(results, [readout])
    check_scenarios(results, [reference], "reference")
    values = run_values(results, readout, day)
    values = values[values[readout].notna()]
    groups = group_columns(results)
    is_ref = (values["scenario"] == reference).to_numpy()
    ref_groups = grouped(values.loc[is_ref], groups).ngroups
    if ref_groups != 1:
        raise ValueError(
            f"reference scenario {reference!r} has {ref_groups} sweep points with "
            "values; select one point before comparing"
        )
    rng = np.random.default_rng(seed)
    ref = values.loc[is_ref, readout].to_numpy(dtype=float)
    ref_boot = boot_means(ref, n_boot, rng)
    rows = []
    for key, frame in grouped(values.loc[~is_ref], groups):
        x = frame[readout].to_numpy(dtype=float)
        diff = boot_means(x, n_boot, rng) - ref_boot
        low, high = percentile_ci(diff, confidence)
        rows.append(
            {
                **dict(zip(groups, _as_tuple(key), strict=True)),
                "n": x.size,
                "mean": x.mean(),
                "reference_n": ref.size,
                "reference_mean": ref.mean(),
                "difference": x.mean() - ref.mean(),
                "ci_low": low,
                "ci_high": high,
            }
        )
    columns = [
        *groups,
        "n",
        "mean",
        "reference_n",
        "reference_mean",
        "difference",
        "ci_low",
        "ci_high",
    ]
    table = pd.DataFrame(rows, columns=columns)
    if len(table):
        table["scenario"] = table["scenario"].astype(str)
    return table


def _as_tuple(key: object) -> tuple:
    return key if isinstance(key, tuple) else (key,)


def check_confidence(confidence: float) -> None:
    """ValueError unless 0 < confidence < 1."""
    if not 0 < confidence < 1:
        raise ValueError(
            f"confidence = {confidence!r} is not allowed; allowed: a number "
            "strictly between 0 and 1 (e.g. 0.95)"
        )


def boot_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `n_boot` resamples (with replacement) of `values`; NaN if fewer than 2 values.

    Every call draws from `rng` (also for < 2 values), so later draws do not depend on it.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot = {n_boot!r} is not allowed; allowed: a whole number >= 1")
    index = rng.integers(0, max(values.size, 1), size=(n_boot, max(values.size, 1)))
    if values.size < 2:
        return np.full(n_boot, np.nan)
    return values[index].mean(axis=1)


def percentile_ci(
    samples: np.ndarray, confidence: float, unbounded: bool = False
) -> tuple[float, float]:
    """Percentile interval of bootstrap samples: the one interval of the package's analyses.

    Args:
        samples: The statistic over the resamples.
        confidence: Coverage, strictly between 0 and 1.
        unbounded: The statistic can fail to exist in a resample (a half-life that does not
            decay, a median not reached): NaN samples count as +inf, and the quantiles are
            taken among the samples themselves (inverted CDF), so an end may be inf. Otherwise
            NaN and infinite samples are left out, and the quantiles interpolate.

    Returns:
        (low, high); NaN if no sample counts.
    """
    samples = np.asarray(samples, dtype=float)
    levels = [0.5 - confidence / 2, 0.5 + confidence / 2]
    if unbounded:
        if samples.size == 0:
            return math.nan, math.nan
        kept = np.where(np.isnan(samples), np.inf, samples)
        low, high = np.quantile(kept, levels, method="inverted_cdf")
        return float(low), float(high)
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return math.nan, math.nan
    low, high = np.quantile(finite, levels)
    return float(low), float(high)


def resample(
    units: int, statistic: Callable[[np.ndarray], float], n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """`statistic` of `n_boot` bootstrap resamples of `units` units (runs, pairs, seeds).

    Each call of `statistic` gets the indices (0 to units − 1, drawn with replacement) of one
    resample; the draws are `rng.integers(0, units, (n_boot, units))`, so a vectorised mean
    (`boot_means`) and this give the same resamples from the same generator.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot = {n_boot!r} is not allowed; allowed: a whole number >= 1")
    picks = rng.integers(0, max(units, 1), size=(n_boot, max(units, 1)))
    return np.array([statistic(pick) for pick in picks], dtype=float)

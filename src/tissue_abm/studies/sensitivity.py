"""Global sensitivity analysis: which parameters drive the combination's benefit.

A *study* takes a scenario file with the combined regimen (both `[therapy.rapamycin]` and
`[therapy.oxytocin]`, such as `scenarios/combined.toml`) and a few parameters, each with a range.
SALib draws a design of parameter points — Morris trajectories (screening: `mu_star`, `sigma`)
or a Saltelli/Sobol' sequence (variance shares: `S1`, `ST`). At every point three variants run
with the same replicate seeds (common random numbers): rapamycin alone, oxytocin alone (the
scenario with the other drug dropped) and both. The output of a point is the *benefit*

    Y = (readout of the better single drug) − (readout of the combination)   lower is better
    Y = (readout of the combination) − (readout of the better single drug)   higher is better

on the means over replicates at the end of the run, so Y > 0 means the combination is better.
On `lifespan` the readout of a variant is the Kaplan–Meier median lifespan of the organisms of
all its replicates (days; higher is better).

The runs go through the batch runner: the study writes the three variants as scenario files
with a `[sweep.zip]` of the design (`OUT/scenarios/`) and runs them as one batch in
`OUT/batch/` (`batch.run_batch`: local processes or Dask, resumable, results independent of the
number of workers). Layout of a study folder::

    OUT/sensitivity.json                 the study: inputs, parameter ranges, design size
    OUT/scenarios/{rapamycin,oxytocin,combined}.toml
    OUT/batch/                           batch.json and runs/ (`load_results("OUT/batch")`)
    OUT/benefit_<readout>.csv            one row per design point: values, variant means, Y
    OUT/indices_<readout>.csv            one row per parameter, most influential first
    OUT/indices_<readout>.png            bar chart of the indices
"""

from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import tomli_w
from SALib.analyze import morris as morris_analyze
from SALib.analyze import sobol as sobol_analyze
from SALib.sample import morris as morris_sample
from SALib.sample import sobol as sobol_sample

from tissue_abm.analysis import synergy
from tissue_abm.analysis.plots import sensitivity_indices
from tissue_abm.analysis.summary import (
    check_scenarios,
    end_state,
    run_columns,
    run_values,
    sweep_columns,
)
from tissue_abm.analysis.survival import kaplan_meier, lifespans, quantile_lifespan
from tissue_abm.biology.params import Parameters, parameter_table
from tissue_abm.biology.readouts import READOUTS
from tissue_abm.runs.batch import STUDY_BATCH, Summary, check_study_folder, run_study_batch
from tissue_abm.runs.results import (
    load_results,
    now,
    point_parameters,
    provenance,
    write_atomic,
)
from tissue_abm.runs.scenario import (
    LARGE_LIMITS,
    LIMITS,
    Scenario,
    ScenarioError,
    parse_scenario,
    read_scenario_text,
    too_many,
)

FORMAT = 1
"""Version of the study layout and of `sensitivity.json`."""

SPEC = "sensitivity.json"
"""The study's description inside its folder."""


METHODS = ("morris", "sobol")
"""Sensitivity methods: Morris elementary effects (screening) and Sobol' variance shares."""

FACTOR_LOW, FACTOR_HIGH = 0.5, 2.0
"""Default range of a parameter given by name only: its value in the scenario times these
factors, clipped to the parameter's allowed range."""

MORRIS_LEVELS = 4
"""Grid levels of the Morris design (SALib's default)."""

CONFIDENCE = 0.95
"""Coverage of the bootstrap confidence intervals of the indices."""

RESAMPLES = 1000
"""Bootstrap resamples of the confidence intervals of the indices."""

VARIANTS: dict[str, str | None] = {
    "rapamycin": "oxytocin",
    "oxytocin": "rapamycin",
    "combined": None,
}
"""The three variants run at every point -> the drug dropped from the combined scenario."""

DRUGS = ("rapamycin", "oxytocin")
"""The two drugs of the combination (also the single-drug variants)."""

HEALTHSPAN = "healthspan"
"""Readout name of each run's healthspan (age in days at which tissue function first falls
below `healthspan_threshold`; a run that never does counts as its end age)."""

LIFESPAN = "lifespan"
"""Readout name of the median organism lifespan (days) of a point's runs of one variant: the
Kaplan–Meier median of the organisms every run drives (`analysis.survival.lifespans`, at the
point's own parameters), pooled over the replicates; a median not reached by the runs' last age
counts as that age (a lower bound)."""

READOUT_CHOICES = (*(r for r in READOUTS if r not in ("day", "age")), HEALTHSPAN, LIFESPAN)
"""Readouts a study can rank parameters on: any daily readout on the last day, healthspan, or
lifespan."""


@dataclass(frozen=True)
class Factor:
    """A varied parameter and its range (in the parameter's unit)."""

    name: str
    low: float
    high: float
    centre: float
    """The parameter's value in the scenario (its default unless the file sets it)."""
    unit: str
    integer: bool
    """Whether the parameter is a whole number (sampled values are rounded)."""


@dataclass(frozen=True)
class Study:
    """A planned sensitivity study: the scenario, the varied parameters and SALib's design."""

    file: str
    """The scenario file with the combined regimen."""
    text: str
    """Its text."""
    scenario: Scenario
    """The scenario with the options (seed, days, size, replicates) applied."""
    factors: tuple[Factor, ...]
    method: str
    """'morris' or 'sobol'."""
    samples: int
    """Morris trajectories r, or Sobol' base samples N."""
    design: np.ndarray = field(repr=False, compare=False)
    """SALib's sample (one row per point, one column per factor, before rounding)."""

    @property
    def seed(self) -> int:
        """Base seed of the replicates, the design and the bootstrap."""
        return self.scenario.seed

    @property
    def problem(self) -> dict[str, Any]:
        """The SALib problem: parameter names and bounds."""
        return problem(self.factors)

    @property
    def points(self) -> int:
        """Design points (Morris: r(k + 1); Sobol': N(k + 2)); each runs three variants."""
        return len(self.design)

    @property
    def runs(self) -> int:
        """Simulations of the study: points × 3 variants × replicates."""
        return self.points * len(VARIANTS) * self.scenario.replicates

    def values(self) -> dict[str, list[float] | list[int]]:
        """The simulated value of each factor at each point (whole-number factors rounded)."""
        return {
            f.name: ([int(v) for v in np.rint(column)] if f.integer else [float(v) for v in column])
            for f, column in zip(self.factors, self.design.T, strict=True)
        }

    def variant_texts(self) -> dict[str, str]:
        """Variant name -> TOML text of its scenario file, with the design as `[sweep.zip]`.

        Each is the scenario (every parameter written out, the varied ones swept) with one drug
        dropped, or none for 'combined'; all share the seed, so their replicates match. Grid
        snapshots are dropped. The texts depend on the scenario's content, not on its path, so
        a study resumes from any copy of the file.
        """
        origin = f"scenario '{self.scenario.name}'"
        base = self.scenario.model_dump(mode="json", exclude_none=True, exclude={"sweep"})
        for factor in self.factors:
            del base["parameters"][factor.name]
        base["output"] = {"every": self.scenario.output.every}
        base["sweep"] = {"zip": self.values()}
        texts = {}
        for variant, dropped in VARIANTS.items():
            data = copy.deepcopy(base)
            data["name"] = variant
            data["description"] = (
                f"The {variant} variant of {origin} in a sensitivity study "
                "(generated by `tissue-abm sensitivity`)."
            )
            if dropped is not None:
                del data["therapy"][dropped]
            texts[variant] = (
                f"# Generated by `tissue-abm sensitivity` from {origin}; "
                "do not edit.\n\n" + tomli_w.dumps(data, multiline_strings=False)
            )
        return texts

    def spec(self) -> dict[str, Any]:
        """What the runs depend on (compared on resume), as JSON-ready values."""
        return {
            "format": FORMAT,
            "scenario_text": self.text,
            "method": self.method,
            "samples": self.samples,
            "seed": self.seed,
            "replicates": self.scenario.replicates,
            "days": self.scenario.days,
            "size": self.scenario.size,
            "engine": self.scenario.engine,
            "parameters": [asdict(f) for f in self.factors],
            "points": self.points,
            "runs": self.runs,
        }


# --- planning ----------------------------------------------------------------------------------


def parse_factors(params: str | Sequence[str], base: Parameters) -> tuple[Factor, ...]:
    """Read the varied parameters and their ranges.

    Args:
        params: Comma-separated items (or a list of them): `name` for the range from
            `FACTOR_LOW` to `FACTOR_HIGH` times the parameter's value in `base`, clipped to
            its allowed range, or `name=low:high` for an explicit range (in the parameter's
            unit, inside its allowed range).
        base: The scenario's parameters (the centres of the default ranges).

    Returns:
        The factors, in the order given.

    Raises:
        ScenarioError: One line naming the item: an unknown name (with the closest one), a
            name given twice, a malformed or empty range, or one outside the allowed range.
    """
    items = params.split(",") if isinstance(params, str) else list(params)
    items = [item.strip() for item in items if item.strip()]
    if not items:
        raise ScenarioError(
            "--params is empty; allowed: comma-separated parameter names, each "
            "optionally with a range name=low:high (see `tissue-abm params`)"
        )
    table = {row["name"]: row for row in parameter_table()}
    factors: list[Factor] = []
    for item in items:
        name, _, bounds = (part.strip() for part in item.partition("="))
        if name not in table:
            close = difflib.get_close_matches(name, table, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ScenarioError(
                f"--params: unknown parameter '{name}'; {hint}allowed: a "
                "parameter name (see `tissue-abm params`)"
            )
        if any(f.name == name for f in factors):
            raise ScenarioError(f"--params: '{name}' is given twice; give each parameter once")
        row = table[name]
        allowed = f"{row['low']} to {row['high']} {row['unit']}"
        centre = getattr(base, name)
        if "=" in item:
            low, high = _range(item, bounds, allowed)
            if not row["low"] <= low < high <= row["high"]:
                raise ScenarioError(
                    f"--params {item}: the range is not allowed; allowed: "
                    f"low < high within {allowed}"
                )
        else:
            low = max(row["low"], FACTOR_LOW * centre)
            high = min(row["high"], FACTOR_HIGH * centre)
            if not low < high:
                raise ScenarioError(
                    f"--params {name}: its value {centre} gives an empty default range (×"
                    f"{FACTOR_LOW:g} to ×{FACTOR_HIGH:g}); give one as {name}=low:high within "
                    f"{allowed}"
                )
        factors.append(
            Factor(
                name, float(low), float(high), centre, row["unit"], isinstance(row["default"], int)
            )
        )
    return tuple(factors)


def _range(item: str, bounds: str, allowed: str) -> tuple[float, float]:
    """The numbers of 'low:high'."""
    low, colon, high = bounds.partition(":")
    try:
        values = float(low), float(high)
    except ValueError:
        values = (math.nan, math.nan)
    if not colon or not all(map(math.isfinite, values)):
        raise ScenarioError(
            f"--params {item}: malformed range; allowed: name=low:high with two "
            f"numbers within {allowed}"
        )
    return values


def problem(factors: Sequence[Factor]) -> dict[str, Any]:
    """The SALib problem (names and bounds) of the factors."""
    return {
        "num_vars": len(factors),
        "names": [f.name for f in factors],
        "bounds": [[f.low, f.high] for f in factors],
    }


def design_points(method: str, samples: int, parameters: int) -> int:
    """Points of a design: Morris r(k + 1), Sobol' N(k + 2) (k parameters, r or N samples)."""
    return samples * (parameters + (1 if method == "morris" else 2))


def sample(
    factors: Sequence[Factor],
    method: str,
    samples: int,
    seed: int,
    max_points: int = LIMITS.points,
) -> np.ndarray:
    """SALib's design: Morris trajectories or a scrambled Sobol' (Saltelli) sequence.

    Args:
        factors: The varied parameters.
        method: 'morris' (samples = trajectories r; r(k + 1) points on a 4-level grid) or
            'sobol' (samples = base samples N, a power of 2; N(k + 2) points, no second-order
            indices).
        samples: r or N (see `method`).
        seed: Seed of the design (the same seed gives the same design).
        max_points: The most points allowed (checked before the design is drawn).

    Returns:
        One row per point, one column per factor, within the factors' ranges.

    Raises:
        ScenarioError: If the method is unknown, `samples` does not suit it, or the design
            would have more than `max_points` points.
    """
    if method not in METHODS:
        raise ScenarioError(f"--method {method!r} is not allowed; allowed: " + ", ".join(METHODS))
    if method == "sobol" and (samples < 2 or samples & (samples - 1)):
        raise ScenarioError(
            f"--samples {samples} is not allowed with --method sobol; allowed: "
            "a power of 2 from 2 (e.g. 8, 16, 32)"
        )
    if samples < 2:
        raise ScenarioError(f"--samples {samples} is not allowed; allowed: a whole number >= 2")
    if design_points(method, samples, len(factors)) > max_points:
        raise ScenarioError(
            f"--samples {samples}: "
            + too_many(
                f"the {method} design of {len(factors)} parameters",
                design_points(method, samples, len(factors)),
                max_points,
                "points",
            )
        )
    rng = np.random.default_rng([seed, 1])
    if method == "morris":
        return morris_sample.sample(problem(factors), samples, num_levels=MORRIS_LEVELS, seed=rng)
    return sobol_sample.sample(problem(factors), samples, calc_second_order=False, seed=rng)


def plan_study(
    scenario_file: str | Path,
    params: str | Sequence[str],
    *,
    samples: int,
    method: str = "morris",
    replicates: int | None = None,
    days: int | None = None,
    size: int | None = None,
    seed: int | None = None,
    allow_large: bool = False,
) -> Study:
    """Read and check a scenario with the combined regimen and plan the study's design.

    Args:
        scenario_file: Scenario file (TOML) with `[therapy.rapamycin]` and `[therapy.oxytocin]`
            and no sweep.
        params: The varied parameters (see `parse_factors`).
        samples: Morris trajectories r (≥ 2) or Sobol' base samples N (a power of 2).
        method: 'morris' or 'sobol'.
        replicates: Replicates per point and variant instead of the file's.
        days: Days to simulate from the start age instead of the file's end age.
        size: Lattice side instead of the file's.
        seed: Base seed instead of the file's: of the replicates, the design and the
            bootstrap.
        allow_large: Allow up to `LARGE_LIMITS` points and runs instead of `LIMITS`.

    Returns:
        The study; every variant at every point has been validated (nothing is written).

    Raises:
        ScenarioError: One line naming the file or option and what is allowed (the study is
            checked against the limits before its design is drawn).
    """
    limits = LARGE_LIMITS if allow_large else LIMITS
    text = read_scenario_text(scenario_file)
    source = str(scenario_file)
    scenario = parse_scenario(text, source)
    if scenario.sweep is not None:
        raise ScenarioError(
            f"{source}: [sweep] is not allowed in a sensitivity study (the study "
            "sweeps the --params itself); remove it"
        )
    missing = [f"therapy.{drug}" for drug in DRUGS if getattr(scenario.therapy, drug) is None]
    if missing:
        raise ScenarioError(
            f"{source}: {' and '.join(missing)} missing; allowed: a scenario "
            "with the combined regimen, both [therapy.rapamycin] and "
            "[therapy.oxytocin] (e.g. scenarios/combined.toml)"
        )
    scenario = scenario.with_overrides(
        seed=seed, days=days, size=size, replicates=replicates, source=f"{source} (options)"
    )
    factors = parse_factors(params, scenario.parameters)
    if method in METHODS:  # counted before the design is drawn (it can be huge)
        points = design_points(method, samples, len(factors))
        if points > limits.points:
            what = f"the {method} design of {len(factors)} parameters"
            message = too_many(what, points, limits.points, "points")
            raise ScenarioError(f"--samples {samples}: {message}")
        runs = points * len(VARIANTS) * scenario.replicates
        if runs > limits.runs:
            what = f"the study (points × {len(VARIANTS)} variants × replicates)"
            message = too_many(what, runs, limits.runs, "runs")
            raise ScenarioError(f"--samples {samples}: {message}")
    study = Study(
        source,
        text,
        scenario,
        factors,
        method,
        samples,
        sample(factors, method, samples, scenario.seed, limits.points),
    )
    for variant, variant_text in study.variant_texts().items():  # checks every point
        parse_scenario(variant_text, f"{source} ({variant} variant)", limits.points)
    return study


# --- running -----------------------------------------------------------------------------------


def run_study(
    study: Study,
    out: str | Path,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    resume: bool = False,
    progress: Callable[[int, int, int], None] | None = None,
    notice: Callable[[str], None] | None = None,
) -> Summary:
    """Write the study's files and run its batch (the runs `out` does not hold yet).

    Args:
        study: The study (see `plan_study`).
        out: The study's folder: new, empty, or (with `resume`) holding this same study.
        workers: Worker processes (default: all cores; 1 runs in this process).
        scheduler: None for local processes, "local" for a Dask `LocalCluster`, or the address
            of a Dask scheduler (see `batch.run_batch`).
        resume: Finish the study in `out`, running only the missing and failed runs.
        progress: Called as progress(done, failed, total) whenever a run finishes.
        notice: Called with one-line messages for the user (see `batch.run_batch`).

    Returns:
        The tally of the batch.

    Raises:
        OutputError: If `out` cannot be written, is in use by another study, or holds something
            else (another study, or this one without `resume`).
        tissue_abm.runs.batch.BatchInterrupted: If the batch stopped early; `resume=True` finishes
            it.
    """
    return run_study_batch(
        Path(out),
        study.variant_texts(),
        _check_study_folder,
        SPEC,
        study.spec(),
        {"scenario_file": study.file, "created": now(), "provenance": provenance()},
        "sensitivity study",
        allow_large=study.points > LIMITS.points or study.runs > LIMITS.runs,
        workers=workers,
        scheduler=scheduler,
        resume=resume,
        progress=progress,
        notice=notice,
    )


def _check_study_folder(folder: Path, spec: dict[str, Any], resume: bool) -> None:
    """OutputError unless `folder` may receive the study of `spec`."""
    check_study_folder(
        folder,
        SPEC,
        spec,
        resume,
        "a sensitivity study",
        " (or to analyse it on another --readout)",
        {"scenario_text": "the scenario file's text"},
    )


# --- analysis ----------------------------------------------------------------------------------


def higher_is_better(readout: str) -> bool:
    """Whether higher values of `readout` are better (healthspan, lifespan, `synergy`'s list)."""
    return readout in (HEALTHSPAN, LIFESPAN) or synergy.default_higher_is_better(readout)


def check_readout(readout: str, key: str = "readout") -> None:
    """Check that the benefit can be measured on `readout` (one of `READOUT_CHOICES`).

    Args:
        readout: The readout's name.
        key: What the message calls it (e.g. ``--readout`` on the command line).

    Raises:
        ScenarioError: If it cannot; one line naming the closest allowed name and listing all.
    """
    if readout not in READOUT_CHOICES:
        close = difflib.get_close_matches(readout, READOUT_CHOICES, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ScenarioError(
            f"{key} {readout!r} is not allowed; {hint}allowed: " + ", ".join(READOUT_CHOICES)
        )


def benefit(
    results: pd.DataFrame,
    readout: str = "senescent_fraction",
    threshold: float | None = None,
    params: Mapping[tuple[str, int], Parameters] | None = None,
) -> pd.DataFrame:
    """The combination's benefit over the better single drug at each point of a study.

    Args:
        results: The study's runs (`load_results("OUT/batch")`): scenarios 'rapamycin',
            'oxytocin' and 'combined' at the same points, the varied parameters as sweep
            columns.
        readout: A readout in `READOUT_CHOICES`, on each run's last kept day, or 'healthspan'
            (days; a run that never loses health counts as its end age, so benefits on it are
            lower bounds), or 'lifespan' (days: the Kaplan–Meier median lifespan of the
            organisms of a point's replicates of a variant, pooled; not reached by the runs'
            last age: that age, a lower bound).
        threshold: Healthspan threshold (tissue function, 0-1) when `healthspan_threshold` is
            not varied; default `Parameters().healthspan_threshold`.
        params: For 'lifespan' (required there): each run's parameters by (scenario, point),
            as `runs.results.point_parameters` reads them from the study's batch.

    Returns:
        One row per point: `point`, the varied parameters' values, `n` (replicates of each
        variant), the mean readout of `rapamycin`, `oxytocin` and `combined`, `best_single`
        (the better single drug's name) and `benefit` (in the readout's unit; > 0 when the
        combination is better, whichever direction is better for the readout: see
        `higher_is_better`).

    Raises:
        ValueError: If the readout is unknown, a variant is missing, the variants do not
            have the same points and replicates, or 'lifespan' is asked without `params`.
    """
    check_readout(readout)
    check_scenarios(results, list(VARIANTS), "variant")
    keys = ["point", *sweep_columns(results)]
    if readout == LIFESPAN:
        means, counts = _median_lifespans(results, keys, params)
    else:
        if readout == HEALTHSPAN:
            values = _healthspans(results, threshold)
        else:
            values = run_values(results, readout)
        grouped = values.groupby([*keys, "scenario"], observed=True, sort=True)[readout]
        means = grouped.mean().unstack("scenario")[list(VARIANTS)]
        counts = grouped.size().unstack("scenario")[list(VARIANTS)]
    if counts.isna().any(axis=None) or (counts.nunique(axis=1) > 1).any():
        raise ValueError(
            "the variants do not have the same points and replicates; finish the "
            "study with --resume"
        )
    singles = means[list(DRUGS)]
    if higher_is_better(readout):
        best, gain = singles.idxmax(axis=1), means["combined"] - singles.max(axis=1)
    else:
        best, gain = singles.idxmin(axis=1), singles.min(axis=1) - means["combined"]
    table = means.assign(n=counts["combined"], best_single=best, benefit=gain)
    table = table[["n", *VARIANTS, "best_single", "benefit"]].reset_index()
    table.columns.name = None
    return table


def _median_lifespans(
    results: pd.DataFrame,
    keys: list[str],
    params: Mapping[tuple[str, int], Parameters] | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per point (rows, by `keys`) and variant (columns): the median lifespan and the runs.

    The median is Kaplan–Meier's over the organisms of all the group's replicates; not reached,
    it is the group's largest lifespan, the runs' last age (more than half the organisms are
    alive there, censored at it).
    """
    if params is None:
        raise ValueError(
            "the lifespan readout needs each point's parameters: pass params="
            "runs.results.point_parameters(<the study's batch folder>)"
        )
    lives = lifespans(results, params)
    medians, runs = {}, {}
    for key, group in lives.groupby([*keys, "scenario"], observed=True, sort=True):
        span = group["lifespan"].to_numpy(dtype=float)
        median = quantile_lifespan(kaplan_meier(span, group["observed"].to_numpy(bool)), 0.5)
        medians[key] = median if math.isfinite(median) else float(span.max())
        runs[key] = group["replicate"].nunique()
    index = pd.MultiIndex.from_tuples(list(medians), names=[*keys, "scenario"])
    means = pd.Series(list(medians.values()), index=index, name=LIFESPAN)
    counts = pd.Series(list(runs.values()), index=index)
    return (
        means.unstack("scenario")[list(VARIANTS)],
        counts.unstack("scenario")[list(VARIANTS)],
    )


def _healthspans(results: pd.DataFrame, threshold: float | None) -> pd.DataFrame:
    """Each run's healthspan (its end age if never lost) at its own point's threshold."""
    keys = run_columns(results)
    if "healthspan_threshold" in results:
        parts = [
            end_state(frame, float(frame["healthspan_threshold"].iloc[0]))
            for _, frame in results.groupby("point", sort=True)
        ]
        ends = pd.concat(parts, ignore_index=True)
    else:
        ends = end_state(results, threshold)
    ends[HEALTHSPAN] = ends[HEALTHSPAN].fillna(ends["age"].astype(float))
    return ends[[*keys, HEALTHSPAN]]


@dataclass(frozen=True, eq=False)  # eq=False: a DataFrame has no truth value to compare by
class SensitivityIndices:
    """The sensitivity indices of a study's output (`indices`), with how they were computed."""

    table: pd.DataFrame
    """One row per parameter, most influential first (indices in the output's units or shares)."""
    method: str
    """The study's method: "morris" (elementary effects) or "sobol" (variance shares)."""
    readout: str
    """The readout behind the output (its name; the benefit is in this readout's unit)."""
    key: str
    """The column the parameters are ranked by: "mu_star" (Morris) or "ST" (Sobol')."""
    confidence: float
    """Coverage of the bootstrap intervals behind the `*_conf` half-widths (0-1)."""


def indices(
    study: Study,
    y: np.ndarray | pd.Series,
    readout: str = "senescent_fraction",
) -> SensitivityIndices:
    """Sensitivity indices of the output `y` over the study's design, most influential first.

    Args:
        study: The study whose design produced `y`.
        y: One output per design point, in point order (e.g. `benefit(...)["benefit"]`).
        readout: Name of the readout behind `y` (for labels).

    Returns:
        The indices and how they were computed (`SensitivityIndices`). Its `table` has one row
        per parameter: `rank` (1 = most influential), `parameter`, `low`, `high`,
        `unit`, then for Morris `mu_star` (mean absolute elementary effect, in `y`'s unit per
        change over the whole range; confidence half-width `mu_star_conf`), `mu` (signed mean)
        and `sigma` (spread: non-linearity or interactions), ranked by `mu_star`; for Sobol'
        `S1` (first-order share of the variance of `y`) and `ST` (total share, interactions
        included) with confidence half-widths `S1_conf`, `ST_conf`, ranked by `ST`. Intervals
        are bootstrap (`RESAMPLES` resamples, `CONFIDENCE` coverage) seeded by the study's
        seed, so the table depends only on the study and `y`.

    Raises:
        ValueError: If `y` does not have one finite value per point.
    """
    y = np.asarray(y, dtype=float)
    if y.shape != (study.points,) or not np.isfinite(y).all():
        raise ValueError(
            f"expected {study.points} finite outputs, one per design point; got "
            f"{np.isfinite(y).sum()} of {y.size} (a readout undefined at some "
            "points, or runs missing)"
        )
    rng = np.random.default_rng([study.seed, 2])
    if study.method == "morris":
        result = morris_analyze.analyze(
            study.problem,
            study.design,
            y,
            num_resamples=RESAMPLES,
            conf_level=CONFIDENCE,
            num_levels=MORRIS_LEVELS,
            seed=rng,
        )
        columns, key = ("mu_star", "mu_star_conf", "mu", "sigma"), "mu_star"
    else:
        with np.errstate(divide="ignore", invalid="ignore"):  # constant y: NaN indices
            result = sobol_analyze.analyze(
                study.problem,
                y,
                calc_second_order=False,
                num_resamples=RESAMPLES,
                conf_level=CONFIDENCE,
                seed=rng,
            )
        columns, key = ("S1", "S1_conf", "ST", "ST_conf"), "ST"
    table = pd.DataFrame(
        {
            "parameter": [f.name for f in study.factors],
            "low": [f.low for f in study.factors],
            "high": [f.high for f in study.factors],
            "unit": [f.unit for f in study.factors],
            **{c: np.ma.filled(np.ma.asarray(result[c], dtype=float), np.nan) for c in columns},
        }
    )
    table = table.iloc[np.argsort(-table[key].to_numpy(), kind="stable")].reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return SensitivityIndices(
        table, method=study.method, readout=readout, key=key, confidence=CONFIDENCE
    )


class Analysis(NamedTuple):
    """The results of a study on one readout, and the files they were written to."""

    benefit: pd.DataFrame
    indices: SensitivityIndices
    files: list[Path]


def analyse(study: Study, out: str | Path, readout: str = "senescent_fraction") -> Analysis:
    """Compute the benefits and indices of a finished study and write them to its folder.

    Args:
        study: The study (see `plan_study`).
        out: Its folder, after `run_study`.
        readout: Readout of the benefit (see `benefit`).

    Returns:
        The tables of `benefit` and `indices`, and the files written:
        `benefit_<readout>.csv`, `indices_<readout>.csv` and `indices_<readout>.png`.

    Raises:
        ValueError: If the readout is unknown or runs are missing.
        OutputError: If the files cannot be written.
    """
    folder = Path(out)
    results = load_study(folder)
    own = point_parameters(folder / STUDY_BATCH) if readout == LIFESPAN else None
    gains = benefit(results, readout, study.scenario.parameters.healthspan_threshold, own)
    if len(gains) != study.points:
        raise ValueError(
            f"{folder}: {study.points - len(gains)} of {study.points} points have "
            "no runs; finish the study with --resume"
        )
    result = indices(study, gains["benefit"].to_numpy(), readout)
    files = [
        folder / f"benefit_{readout}.csv",
        folder / f"indices_{readout}.csv",
        folder / f"indices_{readout}.png",
    ]
    write_atomic(files[0], lambda tmp: gains.to_csv(tmp, index=False))
    write_atomic(files[1], lambda tmp: result.table.to_csv(tmp, index=False))
    figure = sensitivity_indices(result.table, result.method, result.readout)
    write_atomic(files[2], lambda tmp: figure.savefig(tmp, dpi=120, format="png"))
    return Analysis(gains, result, files)


def load_study(out: str | Path) -> pd.DataFrame:
    """The runs of a study folder (`load_results` of its batch)."""
    return load_results(Path(out) / STUDY_BATCH)

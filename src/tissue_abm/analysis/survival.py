"""Organism survival driven by the tissue's production of senescent cells (Karin et al. 2019).

Karin et al. 2019 model the organism's senescent-cell abundance X with *saturating removal*:
dX = [production − β X/(X + κ)] dt + √(2ε) dW, death the first time X > X_c. Here the
production is the simulated tissue's: k · P(t), with P the new senescent cells per site and day
(primary, paracrine and replicative) and k = `sr_production_scale`; a senolytic dose removes the
same share of X as of the tissue's senescent cells. Deaths that senescence does not cause come
on top, at a daily hazard `background_hazard` + `mtorc2_hazard` × mTORC2 inhibition. A run's
organisms share its tissue, so every interval comes from a cluster bootstrap that resamples
whole runs.

Method (the equations and their Euler–Maruyama step on the kept days, entry and censoring, the
seeding of the organisms' noise, the cluster bootstrap): docs/analysis.md#organism-survival.

In use: `lifespans(load_results(folder))` gives one row per organism; `survival_summary`
(median and 90th-percentile lifespan per group), `survival_curves_table`, `hazard` and
`tissue_abm.analysis.plots.survival_curves` take that table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from tissue_abm.analysis.summary import (
    check_confidence,
    group_columns,
    grouped,
    percentile_ci,
    run_columns,
)
from tissue_abm.biology.params import Parameters

_STACK = 64
"""Runs walked together at most (memory: kept ages × runs × organisms floats)."""

SEED_SALT = 0x5A11
"""Second word of each run's organism seed: the organisms' noise is a stream of its own, not
the one `numpy.random.default_rng(seed)` would give."""

_TOLERANCE = 1e-9
"""Slack of the survival threshold in quantiles, so rounding in the product of ratios (e.g. a
survival of 0.5 computed as 0.75 × 2/3) does not move a quantile to the next event."""


# --- one run --------------------------------------------------------------------------------


def burden_paths(
    ages: np.ndarray,
    production: np.ndarray,
    senolytic: np.ndarray,
    params: Parameters,
    organisms: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Senescent abundance X of each organism on each kept day of one run (SR model).

    Euler–Maruyama on the kept days t_0 < t_1 < … (gaps Δ_n): X_{n+1} = max(0, X_n + k P_{n+1}
    Δ_n − β Δ_n X_n / (X_n + κ) + √(2ε Δ_n) ξ_n) · (1 − f_{n+1}), with X_0 the steady state of
    the first window's production (k P_1 = β X / (X + κ)).

    Args:
        ages: The run's kept ages (days), strictly increasing.
        production: New senescent cells per site and day over the window ending at each kept
            age (the first entry is not used), >= 0.
        senolytic: Share of senescent cells removed by senolytic doses in each window, 0-1.
        params: The SR parameters (`sr_*`).
        organisms: Number of independent organisms (noise paths), >= 1.
        rng: Source of the noise; `organisms × (len(ages) − 1)` standard normals are drawn.

    Returns:
        Array of shape (len(ages), organisms): X in SR units (>= 0), row n at `ages[n]`.

    Raises:
        ValueError: If the arrays are empty, differ in length, hold non-finite or negative
            values (or shares above 1), if the ages do not strictly increase, or
            `organisms` < 1.
    """
    ages, production, senolytic = _check_run(ages, production, senolytic, organisms)
    run = _Runs.of(ages, production, senolytic, np.zeros(ages.size), params)
    return run.paths(run.noise([rng], organisms))[:, 0, :]


def organism_deaths(
    ages: np.ndarray,
    production: np.ndarray,
    senolytic: np.ndarray,
    hazard: np.ndarray,
    params: Parameters,
    organisms: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Age at death (or censoring) of each organism of one run.

    An organism dies at the first kept age at which X > `sr_death_threshold` (`burden_paths`)
    or at which its cumulative other-cause hazard (the integral of `hazard` over the windows)
    reaches its own Exp(1) draw, whichever comes first.

    Args:
        ages: The run's kept ages (days), strictly increasing.
        production: New senescent cells per site and day over each window (`burden_paths`).
        senolytic: Share removed by senolytic doses in each window, 0-1.
        hazard: Daily mortality not caused by senescence over each window, >= 0.
        params: The SR parameters (`sr_*`).
        organisms: Number of independent organisms, >= 1.
        rng: Source of the noise (`burden_paths`) and then of the other-cause clocks.

    Returns:
        `lifespan`: for each organism its age at death, or the last kept age if it survives;
        `observed`: True where the death was observed (False: censored at the last age).

    Raises:
        ValueError: As `burden_paths`, or for a negative or non-finite hazard.
    """
    ages = np.asarray(ages, dtype=float)
    production, hazard, senolytic = _checked(
        ages,
        np.asarray(production, dtype=float),
        np.asarray(senolytic, dtype=float),
        np.asarray(hazard, dtype=float),
        organisms,
    )
    lifespan, observed = _Runs.of(ages, production, senolytic, hazard, params).deaths(
        [rng], organisms
    )
    return lifespan[0], observed[0]


class _Runs:
    """Runs that share their kept ages, stacked: their SR organisms are walked together.

    The arrays are (kept ages × runs); the parameters one value per run. Each run's organisms
    draw from the run's own generator as a lone run would (its normals, then its Exp(1)
    clocks), and the arithmetic is the same, so a run's lifespans do not depend on the runs
    stacked with it.
    """

    def __init__(
        self,
        ages: np.ndarray,
        production: np.ndarray,
        senolytic: np.ndarray,
        hazard: np.ndarray,
        params: Sequence[Parameters],
    ) -> None:
        self.ages, self.senolytic, self.hazard = ages, senolytic, hazard

        def each(name: str) -> np.ndarray:
            return np.array([getattr(p, name) for p in params], dtype=float)

        self.beta, self.kappa = each("sr_removal_max"), each("sr_half_saturation")
        self.noise_scale, self.threshold = each("sr_noise"), each("sr_death_threshold")
        self.made = each("sr_production_scale") * production  # SR units per day

    @classmethod
    def of(
        cls,
        ages: np.ndarray,
        production: np.ndarray,
        senolytic: np.ndarray,
        hazard: np.ndarray,
        params: Parameters,
    ) -> _Runs:
        """One run (1-D arrays over its kept ages)."""
        return cls(ages, production[:, None], senolytic[:, None], hazard[:, None], [params])

    def noise(self, rngs: Sequence[np.random.Generator], organisms: int) -> np.ndarray:
        """Each run's scaled noise, (gaps × runs × organisms), drawn from its own generator."""
        gaps = np.diff(self.ages)
        return np.stack(
            [
                rng.standard_normal((gaps.size, organisms)) * np.sqrt(2 * scale * gaps)[:, None]
                for rng, scale in zip(rngs, self.noise_scale, strict=True)
            ],
            axis=1,
        )

    def paths(self, noise: np.ndarray) -> np.ndarray:
        """X on every kept day, (ages × runs × organisms) (`burden_paths`)."""
        beta, kappa, made = self.beta[:, None], self.kappa[:, None], self.made
        paths = np.empty((self.ages.size, *noise.shape[1:]))
        first = made[1] if self.ages.size > 1 else made[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            paths[0] = np.where(first < self.beta, self.kappa * first / (self.beta - first), 0.0)[
                :, None
            ]
        for n, gap in enumerate(np.diff(self.ages)):
            x = paths[n]
            step = x + made[n + 1][:, None] * gap - beta * gap * x / (x + kappa) + noise[n]
            paths[n + 1] = np.maximum(step, 0.0) * (1.0 - self.senolytic[n + 1])[:, None]
        return paths

    def deaths(
        self, rngs: Sequence[np.random.Generator], organisms: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Lifespan and observed (runs × organisms) (`organism_deaths`)."""
        over = self.paths(self.noise(rngs, organisms)) > self.threshold[:, None]
        gaps = np.diff(self.ages)[:, None]
        cumulative = np.concatenate(
            [np.zeros((1, self.hazard.shape[1])), np.cumsum(self.hazard[1:] * gaps, axis=0)]
        )
        clocks = np.stack([rng.exponential(size=organisms) for rng in rngs])
        over |= cumulative[:, :, None] >= clocks[None, :, :]
        observed = over.any(axis=0)
        lifespan = np.where(observed, self.ages[over.argmax(axis=0)], self.ages[-1])
        return lifespan, observed


def _first_row(item: tuple[object, np.ndarray]) -> int:
    return int(item[1][0])


def _checked(
    ages: np.ndarray,
    production: np.ndarray,
    senolytic: np.ndarray,
    hazard: np.ndarray,
    organisms: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(production, hazard, senolytic) once `_check_run` and the hazard's check pass."""
    _, production, senolytic = _check_run(ages, production, senolytic, organisms)
    if hazard.shape != production.shape or not np.isfinite(hazard).all() or (hazard < 0).any():
        raise ValueError("hazard must hold one finite value >= 0 per kept age (1/day)")
    return production, hazard, senolytic


def _check_run(
    ages: np.ndarray, production: np.ndarray, senolytic: np.ndarray, organisms: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ages = np.asarray(ages, dtype=float)
    production = np.asarray(production, dtype=float)
    senolytic = np.asarray(senolytic, dtype=float)
    if ages.ndim != 1 or ages.size == 0 or production.shape[:1] != ages.shape:
        raise ValueError(
            f"ages (shape {ages.shape}) and production (shape {production.shape}) must be "
            "non-empty 1-D arrays of the same length"
        )
    if senolytic.shape != production.shape:
        raise ValueError(f"senolytic (shape {senolytic.shape}) must be as long as ages")
    if not np.isfinite(ages).all() or (np.diff(ages) <= 0).any():
        raise ValueError("ages must be finite and strictly increasing (days)")
    if not np.isfinite(production).all() or (production < 0).any():
        raise ValueError("production must hold finite values >= 0 (per site and day)")
    if not np.isfinite(senolytic).all() or (senolytic < 0).any() or (senolytic > 1).any():
        raise ValueError("senolytic must hold shares from 0 to 1")
    if isinstance(organisms, bool) or not isinstance(organisms, int | np.integer) or organisms < 1:
        raise ValueError(f"organisms = {organisms!r} is not allowed; allowed: a whole number >= 1")
    return ages, production, senolytic


def production(run: pd.DataFrame) -> np.ndarray:
    """New senescent cells per site and day over the window ending at each row of one run.

    A row's event tallies count the days since the previous kept row (`readouts.kept_days`):
    primary, paracrine and replicative senescence, over the sites, over the window's days.
    Senescent cells made by experimental perturbations are not production.
    """
    made = run[list(PRODUCTION)].sum(axis=1).to_numpy(dtype=float)
    sites = run[["healthy", "senescent", "empty"]].sum(axis=1).to_numpy(dtype=float)
    return _production(made, sites, run["age"].to_numpy(dtype=float))


def _production(made: np.ndarray, sites: np.ndarray, ages: np.ndarray) -> np.ndarray:
    gaps = np.diff(ages, prepend=np.nan)
    return np.where(np.isnan(gaps), 0.0, made / sites / np.where(np.isnan(gaps), 1.0, gaps))


def other_hazard(run: pd.DataFrame, params: Parameters) -> np.ndarray:
    """Daily mortality not caused by senescence at each row: background + mTORC2 cost."""
    return _other_hazard(run["mtorc2_inhibition"].to_numpy(dtype=float), params)


def _other_hazard(inhibition: np.ndarray, params: Parameters) -> np.ndarray:
    return params.background_hazard + params.mtorc2_hazard * inhibition


# --- a results table ------------------------------------------------------------------------

PRODUCTION = ("new_primary", "new_paracrine", "new_replicative")
"""The event tallies that count the tissue's production of senescent cells."""

NEEDED = (
    "scenario",
    "seed",
    "age",
    "healthy",
    "senescent",
    "empty",
    *PRODUCTION,
    "senolytic_fraction",
    "mtorc2_inhibition",
)
"""Columns of a results table that `lifespans` needs."""

LIFESPAN_COLUMNS = ("organism", "start_age", "lifespan", "observed")
"""Columns that `lifespans` adds to the run columns (the survival functions need the last
three)."""


def lifespans(
    results: pd.DataFrame,
    params: Parameters | Mapping[tuple[str, int], Parameters] | None = None,
    organisms: int = 200,
) -> pd.DataFrame:
    """Lifespans of `organisms` SR organisms driven by each run's production of senescent cells.

    Args:
        results: A table from `load_results` (one row per run and kept day; a run's rows may be
            in any order).
        params: The SR parameters: one set for every run (default `Parameters()`), or each
            batch run's own, by (scenario, sweep point) as `batch.point_parameters` gives them
            (then `results` need the `point` column of a batch).
        organisms: Organisms per run, ≥ 1.

    Returns:
        One row per run and organism, ordered by run: the run columns (`analysis.run_columns`:
        scenario, sweep columns, point, replicate — or seed for a folder of single runs),
        `organism` (0 to organisms − 1), `start_age` (the run's first kept age, days),
        `lifespan` (age at death or censoring, days) and `observed` (bool; False: alive at the
        run's last kept age).

    Raises:
        ValueError: If a needed column (`NEEDED`) is missing, `organisms` < 1, or a run's ages
            or readouts are invalid (see `burden_paths`).
    """
    _check_columns(results, NEEDED, "results", "a table from load_results")
    if isinstance(params, Mapping):
        _check_columns(results, ("point",), "results", "the results of a batch")
    else:
        params = params if params is not None else Parameters()
    keys = run_columns(results)
    ordered = results.sort_values([*keys, "age"], kind="stable")
    runs = [rows for _, rows in sorted(grouped(ordered, keys).indices.items(), key=_first_row)]
    age = ordered["age"].to_numpy(dtype=float)
    made = ordered[list(PRODUCTION)].sum(axis=1).to_numpy(dtype=float)
    sites = ordered[["healthy", "senescent", "empty"]].sum(axis=1).to_numpy(dtype=float)
    senolytic = ordered["senolytic_fraction"].to_numpy(dtype=float)
    inhibition = ordered["mtorc2_inhibition"].to_numpy(dtype=float)
    seeds = ordered["seed"].to_numpy()
    own = [
        params[(str(ordered["scenario"].iat[rows[0]]), int(ordered["point"].iat[rows[0]]))]
        if isinstance(params, Mapping)
        else params
        for rows in runs
    ]
    lifespan = np.empty((len(runs), organisms))
    observed = np.empty((len(runs), organisms), dtype=bool)
    by_ages: dict[bytes, list[int]] = {}  # runs that share their kept ages walk together
    for i, rows in enumerate(runs):
        by_ages.setdefault(age[rows].tobytes(), []).append(i)
    for members in by_ages.values():
        for chunk in np.array_split(members, -(-len(members) // _STACK)):
            rows = [runs[i] for i in chunk]
            ages = age[rows[0]]
            chosen = [own[i] for i in chunk]
            walk, rates, cut = _checked(
                ages,
                np.column_stack([_production(made[r], sites[r], ages) for r in rows]),
                np.column_stack([senolytic[r] for r in rows]),
                np.column_stack(
                    [_other_hazard(inhibition[r], p) for r, p in zip(rows, chosen, strict=True)]
                ),
                organisms,
            )
            rngs = [np.random.default_rng([int(seeds[r[0]]), SEED_SALT]) for r in rows]
            group = _Runs(ages, walk, cut, rates, chosen)
            lifespan[chunk], observed[chunk] = group.deaths(rngs, organisms)
    firsts = ordered.index[[rows[0] for rows in runs]]
    starts = [age[rows[0]] for rows in runs]
    # the labels of each run's first row, one row per organism (built once: fast for many runs)
    table = ordered.loc[firsts, keys].reset_index(drop=True)
    table = table.loc[table.index.repeat(organisms)].reset_index(drop=True)
    table["organism"] = np.tile(np.arange(organisms), len(firsts))
    table["start_age"] = np.repeat(np.asarray(starts, dtype=float), organisms)
    table["lifespan"] = lifespan.ravel()
    table["observed"] = observed.ravel()
    return table


def healthspan_to_death(ends: pd.DataFrame, lives: pd.DataFrame) -> pd.DataFrame:
    """`ends` with each run's healthspan ended by death where its organisms are known.

    Health ends at the earlier of tissue-function loss and death. For one run's organisms the
    median of min(H, D_i) is min(H, median D_i), so a run's healthspan becomes the earlier of
    its tissue healthspan and its organisms' median lifespan (a censored organism counts as
    living past every death). Runs without organisms in `lives` keep their tissue healthspan.

    Args:
        ends: Per-run end states with `healthspan` (`analysis.summary.end_state`; NaN: not lost
            by the run's end).
        lives: Per-organism lifespans of some of those runs (`lifespans`).

    Returns:
        A copy of `ends` whose `healthspan` (days) is capped (NaN where neither health was lost
        nor half the run's organisms died by the run's end), with the tissue's own in
        `tissue_healthspan`.
    """
    keys = run_columns(lives)
    death = np.where(lives["observed"].to_numpy(dtype=bool), lives["lifespan"], np.inf)
    median = (
        lives[keys]
        .assign(median_life=death)
        .groupby(keys, observed=True, sort=False, dropna=False)["median_life"]
        .median()
        .reset_index()
    )
    table = ends.merge(median, on=keys, how="left", validate="one_to_one")
    out = ends.assign(tissue_healthspan=ends["healthspan"])
    # NaN (health not lost, or no organisms) counts as never
    both = np.fmin(ends["healthspan"].to_numpy(dtype=float), table["median_life"].to_numpy(float))
    out["healthspan"] = np.where(np.isinf(both), np.nan, both)
    return out


def _check_columns(table: pd.DataFrame, needed: Sequence[str], name: str, what: str) -> None:
    missing = [c for c in needed if c not in table]
    if missing:
        raise ValueError(
            f"{name} lack column(s) {', '.join(map(repr, missing))}; needed: "
            f"{', '.join(needed)} ({what})"
        )


# --- Kaplan-Meier ---------------------------------------------------------------------------


def kaplan_meier(lifespan: np.ndarray, observed: np.ndarray) -> pd.DataFrame:
    """Kaplan–Meier (product-limit) estimate of survival.

    At each distinct age t with d deaths among the n organisms still at risk (lifespan ≥ t),
    survival is multiplied by 1 − d/n. An organism censored at t counts as at risk at t (deaths
    come first in a tie).

    Args:
        lifespan: Age at death or censoring of each organism (days, finite).
        observed: Whether each death was observed (False: censored), same length.

    Returns:
        One row per distinct age of `lifespan`, ascending: `age` (days), `at_risk`, `deaths`,
        `censored` and `survival` (0-1, the estimate just after `age`).

    Raises:
        ValueError: If the arrays are empty, differ in length or hold non-finite ages.
    """
    lifespan, observed = _check_lifespans(lifespan, observed)
    ages, inverse = np.unique(lifespan, return_inverse=True)
    deaths = np.bincount(inverse, weights=observed, minlength=ages.size)
    leaving = np.bincount(inverse, minlength=ages.size).astype(float)
    at_risk, survival = _product_limit(deaths, leaving)
    return pd.DataFrame(
        {
            "age": ages,
            "at_risk": at_risk.astype(np.int64),
            "deaths": deaths.astype(np.int64),
            "censored": (leaving - deaths).astype(np.int64),
            "survival": survival,
        }
    )


def quantile_lifespan(km: pd.DataFrame, q: float) -> float:
    """Age by which a fraction `q` of the organisms has died: survival first ≤ 1 − q.

    Args:
        km: The output of `kaplan_meier` (columns `age`, `survival`).
        q: Fraction dead, strictly between 0 and 1 (0.5: median lifespan; 0.9: 90th
            percentile).

    Returns:
        The age (days); NaN ("not reached") if survival never falls to 1 − q.

    Raises:
        ValueError: If `q` is not in (0, 1) or `km` lacks a column.
    """
    _check_q(q)
    _check_columns(km, ("age", "survival"), "km", "the output of kaplan_meier")
    age = _quantile_ages(km["age"].to_numpy(dtype=float), km["survival"].to_numpy(dtype=float), q)
    return float(age) if np.isfinite(age) else math.nan


def _check_lifespans(lifespan: np.ndarray, observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lifespan = np.asarray(lifespan, dtype=float)
    observed = np.asarray(observed, dtype=bool)
    if lifespan.ndim != 1 or lifespan.size == 0 or observed.shape != lifespan.shape:
        raise ValueError(
            f"lifespan (shape {lifespan.shape}) and observed (shape "
            f"{observed.shape}) must be non-empty 1-D arrays of the same length"
        )
    if not np.isfinite(lifespan).all():
        raise ValueError("lifespan must hold finite ages (days)")
    return lifespan, observed


def _check_q(q: float) -> None:
    if not 0 < q < 1:
        raise ValueError(
            f"q = {q!r} is not allowed; allowed: a number strictly between 0 and 1 "
            "(0.5 for the median)"
        )


def _product_limit(deaths: np.ndarray, leaving: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At-risk counts and survival from deaths and departures (deaths + censored) per age.

    Works along the last axis, so a stack of bootstrap resamples is one call; an age nobody
    is at risk at (absent from a resample) leaves survival unchanged.
    """
    at_risk = leaving.sum(axis=-1, keepdims=True) - np.cumsum(leaving, axis=-1) + leaving
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = np.where(at_risk > 0, 1.0 - deaths / at_risk, 1.0)
    return at_risk, np.cumprod(factor, axis=-1)


def _quantile_ages(ages: np.ndarray, survival: np.ndarray, q: float) -> np.ndarray:
    """First age where survival ≤ 1 − q along the last axis; inf where never."""
    below = survival <= 1.0 - q + _TOLERANCE
    first = ages[below.argmax(axis=-1)]
    return np.where(below.any(axis=-1), first, np.inf)


# --- groups and the cluster bootstrap -------------------------------------------------------


class _Group:
    """One group's organisms as per-run counts on the group's distinct lifespans."""

    def __init__(self, frame: pd.DataFrame, runs: Sequence[str]) -> None:
        run = grouped(frame, runs).ngroup().to_numpy()
        self.runs = int(run.max()) + 1
        self.lifespan = frame["lifespan"].to_numpy(dtype=float)
        self.observed = frame["observed"].to_numpy(dtype=bool)
        self.run = run
        self.ages, inverse = np.unique(self.lifespan, return_inverse=True)
        cells = run * self.ages.size + inverse
        size = self.runs * self.ages.size
        shape = (self.runs, self.ages.size)
        self.deaths = np.bincount(cells, weights=self.observed, minlength=size).reshape(shape)
        self.leaving = np.bincount(cells, minlength=size).reshape(shape).astype(float)

    def survival(self, weights: np.ndarray | None = None) -> np.ndarray:
        """Pooled KM survival on `ages`; with run weights (n_boot × runs) one row a resample."""
        if weights is None:
            return _product_limit(self.deaths.sum(axis=0), self.leaving.sum(axis=0))[1]
        return _product_limit(weights @ self.deaths, weights @ self.leaving)[1]


def _cluster_weights(runs: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """How often each run is drawn in `n_boot` resamples of the `runs` runs (with replacement).

    Returns:
        Counts as floats, shape (n_boot, runs); each row sums to `runs`.
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 1:
        raise ValueError(f"n_boot = {n_boot!r} is not allowed; allowed: a whole number >= 1")
    return rng.multinomial(runs, np.full(runs, 1.0 / runs), size=n_boot).astype(float)


def _groups(table: pd.DataFrame, needed: Sequence[str]) -> tuple[list[str], list[str]]:
    """The group and run columns of a lifespans table, after checking its columns."""
    _check_columns(table, ("scenario", *needed), "lifespans_table", "the output of lifespans")
    if table.empty:
        raise ValueError("lifespans_table is empty; expected the output of lifespans")
    return group_columns(table), run_columns(table)


def _key_dict(keys: Sequence[str], key: object) -> dict:
    return dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))


def _open_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile interval of samples that may be +inf (a quantile not reached).

    Inverted-CDF percentiles, so a bound is inf when more than (1 − confidence)/2 of the
    resamples never reach the quantile (an interval open to the right).
    """
    low, high = np.quantile(
        samples, [0.5 - confidence / 2, 0.5 + confidence / 2], method="inverted_cdf"
    )
    return float(low), float(high)


def survival_summary(
    lifespans_table: pd.DataFrame, confidence: float = 0.95, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Median and 90th-percentile lifespan per group, with cluster-bootstrap intervals.

    The organisms of a run share its tissue, so they are not independent: the intervals come
    from resampling the group's runs with replacement, pooling their organisms and
    recomputing the Kaplan–Meier estimate (`n_boot` times). The groups' runs are assumed to
    share their start age (survival is conditional on reaching it).

    Args:
        lifespans_table: The output of `lifespans`.
        confidence: Coverage of the percentile intervals, strictly between 0 and 1.
        n_boot: Bootstrap resamples, ≥ 1.
        seed: Seed of the `numpy.random.Generator` used for resampling.

    Returns:
        One row per group (scenario and sweep point), in group order: the group columns,
        `runs`, `organisms`, `deaths` (observed), `median_lifespan` and `p90_lifespan` (age in
        days by which half / 90% have died; NaN if not reached) and their intervals
        `median_ci_low`, `median_ci_high`, `p90_ci_low`, `p90_ci_high` (days; inf where more than
        (1 − confidence)/2 of the resamples do not reach it; NaN with fewer than 2 runs).

    Raises:
        ValueError: If a column is missing, the table is empty, or `confidence` or `n_boot` is
            not allowed.
    """
    check_confidence(confidence)
    groups, runs = _groups(lifespans_table, ("lifespan", "observed"))
    rng = np.random.default_rng(seed)
    rows = []
    for key, frame in grouped(lifespans_table, groups):
        group = _Group(frame, runs)
        weights = _cluster_weights(group.runs, n_boot, rng)
        row = {
            **_key_dict(groups, key),
            "runs": group.runs,
            "organisms": len(frame),
            "deaths": int(group.observed.sum()),
        }
        boot = group.survival(weights)
        for name, q in (("median", 0.5), ("p90", 0.9)):
            point = float(_quantile_ages(group.ages, group.survival(), q))
            low, high = (
                _open_interval(_quantile_ages(group.ages, boot, q), confidence)
                if group.runs > 1
                else (math.nan, math.nan)
            )
            row.update(
                {
                    f"{name}_lifespan": point if math.isfinite(point) else math.nan,
                    f"{name}_ci_low": low,
                    f"{name}_ci_high": high,
                }
            )
        rows.append(row)
    return pd.DataFrame(rows)


def survival_curves_table(
    lifespans_table: pd.DataFrame,
    ages: np.ndarray | None = None,
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Kaplan–Meier survival of each group on a common age grid, with a cluster-bootstrap band.

    Args:
        lifespans_table: The output of `lifespans`.
        ages: The age grid (days); default every day from the earliest start age to the
            latest lifespan in the table.
        confidence: Coverage of the pointwise percentile band, strictly between 0 and 1.
        n_boot: Bootstrap resamples of the group's runs (see `survival_summary`), ≥ 1.
        seed: Seed of the `numpy.random.Generator` used for resampling.

    Returns:
        One row per group and grid age: the group columns, `age` (days), `survival` (0-1; 1
        before the group's first death, NaN after its last lifespan, where nothing is
        followed) and `ci_low`, `ci_high` (NaN with fewer than 2 runs).

    Raises:
        ValueError: If a column is missing, the table is empty, `ages` is not a finite 1-D
            grid, or `confidence` or `n_boot` is not allowed.
    """
    check_confidence(confidence)
    groups, runs = _groups(lifespans_table, ("start_age", "lifespan", "observed"))
    if ages is None:
        ages = np.arange(
            lifespans_table["start_age"].min(), lifespans_table["lifespan"].max() + 1.0
        )
    grid = np.asarray(ages, dtype=float)
    if grid.ndim != 1 or grid.size == 0 or not np.isfinite(grid).all():
        raise ValueError("ages must be a non-empty 1-D array of finite ages (days)")
    rng = np.random.default_rng(seed)
    parts = []
    for key, frame in grouped(lifespans_table, groups):
        group = _Group(frame, runs)
        weights = _cluster_weights(group.runs, n_boot, rng)
        if group.runs > 1:
            low, high = np.quantile(
                _on_grid(group.ages, group.survival(weights), grid),
                [0.5 - confidence / 2, 0.5 + confidence / 2],
                axis=0,
            )
        else:
            low = high = np.full(grid.size, np.nan)
        parts.append(
            pd.DataFrame(
                {
                    **_key_dict(groups, key),
                    "age": grid,
                    "survival": _on_grid(group.ages, group.survival(), grid),
                    "ci_low": low,
                    "ci_high": high,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def survival_at(km: pd.DataFrame, grid: np.ndarray) -> np.ndarray:
    """A Kaplan–Meier estimate (`kaplan_meier`) at the `grid` ages (see `_on_grid`)."""
    return _on_grid(
        km["age"].to_numpy(dtype=float),
        km["survival"].to_numpy(dtype=float),
        np.asarray(grid, dtype=float),
    )


def _on_grid(ages: np.ndarray, survival: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The KM step function(s) `survival` (last axis on `ages`) at the `grid` ages.

    Survival is 1 before the first age. After the last age it stays 0 where everyone had died
    and is NaN where someone was still followed (nothing is known there).
    """
    position = np.searchsorted(ages, grid, side="right") - 1
    values = np.where(position >= 0, survival[..., np.maximum(position, 0)], 1.0)
    known = (grid <= ages[-1]) | (survival[..., -1:] == 0)
    return np.where(known, values, np.nan)


def hazard(
    lifespans_table: pd.DataFrame,
    width: float = 30.0,
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Death rate per organism-day at risk in age bins, per group, with cluster-bootstrap CIs.

    Bins are `width` days wide from the earliest start age in the table to the latest
    lifespan (the same bins for every group). An organism is at risk from its start age to its
    lifespan. A death found on a kept day happened since the previous one, so a bin holds the
    deaths at `age_low` < lifespan ≤ `age_high` (the first bin also those at its `age_low`:
    organisms over the threshold on their first day).

    Args:
        lifespans_table: The output of `lifespans`.
        width: Bin width (days), > 0.
        confidence: Coverage of the percentile intervals, strictly between 0 and 1.
        n_boot: Bootstrap resamples of the group's runs (see `survival_summary`), ≥ 1.
        seed: Seed of the `numpy.random.Generator` used for resampling.

    Returns:
        One row per group and bin: the group columns, `age_low`, `age_high` (bin edges, days),
        `deaths`, `exposure` (organism-days at risk), `hazard` (deaths / exposure, per day;
        NaN without exposure) and `ci_low`, `ci_high` (percentile interval over resamples,
        leaving out resamples without exposure; NaN with fewer than 2 runs).

    Raises:
        ValueError: If a column is missing, the table is empty, or `width`, `confidence` or
            `n_boot` is not allowed.
    """
    check_confidence(confidence)
    if not (isinstance(width, int | float) and math.isfinite(width) and width > 0):
        raise ValueError(f"width = {width!r} is not allowed; allowed: a number of days > 0")
    groups, runs = _groups(lifespans_table, ("start_age", "lifespan", "observed"))
    first = float(lifespans_table["start_age"].min())
    bins = max(1, math.ceil((lifespans_table["lifespan"].max() - first) / width))
    edges = first + width * np.arange(bins + 1)
    rng = np.random.default_rng(seed)
    parts = []
    for key, frame in grouped(lifespans_table, groups):
        group = _Group(frame, runs)
        start = frame["start_age"].to_numpy(dtype=float)[:, None]
        exposure = np.clip(
            np.minimum(group.lifespan[:, None], edges[1:]) - np.maximum(start, edges[:-1]),
            0.0,
            None,
        )
        which = np.maximum(np.searchsorted(edges, group.lifespan, side="left") - 1, 0)
        deaths = np.zeros((group.runs, bins))
        np.add.at(deaths, (group.run[group.observed], which[group.observed]), 1.0)
        run_exposure = np.zeros((group.runs, bins))
        np.add.at(run_exposure, group.run, exposure)
        weights = _cluster_weights(group.runs, n_boot, rng)
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = (weights @ deaths) / (weights @ run_exposure)
            rate = deaths.sum(axis=0) / run_exposure.sum(axis=0)  # NaN without exposure
        if group.runs > 1:
            low, high = np.array([percentile_ci(boot[:, b], confidence) for b in range(bins)]).T
        else:
            low = high = np.full(bins, np.nan)
        parts.append(
            pd.DataFrame(
                {
                    **_key_dict(groups, key),
                    "age_low": edges[:-1],
                    "age_high": edges[1:],
                    "deaths": deaths.sum(axis=0),
                    "exposure": run_exposure.sum(axis=0),
                    "hazard": rate,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
        )
    table = pd.concat(parts, ignore_index=True)
    table["deaths"] = table["deaths"].astype(np.int64)
    return table

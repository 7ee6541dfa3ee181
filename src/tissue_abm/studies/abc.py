"""ABC-SMC calibration (pyabc): the posterior of the fitted parameters given the targets.

Approximate Bayesian computation by sequential Monte Carlo: parameter sets are drawn from the
priors (`FITTED`), the calibration experiments run for each (`calibration.measure`, through
the batch runner's `execute`), and a set is kept when the root-mean-square of its targets'
deviations (each in units of its tolerance, `calibration.deviations`) is within the
generation's threshold; thresholds fall generation by generation (pyabc's adaptive median).
Every simulation draws its own seeds, so the posterior carries the model's own noise.

The history lives in `OUT/abc.db` (SQLite): an interrupted calibration resumes from its last
finished generation. The last generation is written as `OUT/posterior.csv` (one row per
particle: weight, distance, the fitted parameters and what they gave for each target); the
defaults of `biology.params` are its weighted medians. Method, priors and results:
docs/calibration.md.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from tissue_abm.biology.params import Parameters
from tissue_abm.runs.batch import process_context
from tissue_abm.runs.results import OutputError, prepare_output, write_atomic
from tissue_abm.studies.calibration import (
    OXYTOCIN_DECLINE,
    TARGETS,
    Design,
    Measures,
    deviations,
    measure,
)

DATABASE = "abc.db"
"""The pyabc history in a calibration folder."""
POSTERIOR = "posterior.csv"
"""The last generation's particles in a calibration folder."""


@dataclass(frozen=True)
class Prior:
    """A fitted parameter's prior: uniform from `low` to `high`, on a log scale if `log`."""

    low: float
    high: float
    log: bool = False

    def to_value(self, x: float) -> float:
        """The parameter's value from its sampled coordinate (log10 of it when `log`)."""
        return float(10.0**x) if self.log else float(x)

    def bounds(self) -> tuple[float, float]:
        """The sampled coordinate's bounds."""
        return (math.log10(self.low), math.log10(self.high)) if self.log else (self.low, self.high)


FITTED: dict[str, Prior] = {
    "immune_recruit_max": Prior(0.005, 0.2),
    "immune_old_fraction": Prior(0.0, 0.5),
    "phagocytic_rate": Prior(0.0, 0.3),
    "phagocytic_half_burden": Prior(0.0003, 0.03, log=True),
    "mtorc1_age_slope": Prior(0.2, 2.0),
    "sr_production_scale": Prior(100.0, 5000.0, log=True),
    "rapa_damage_share": Prior(0.0, 1.0),
    "autophagy_repair_share": Prior(0.0, 1.0),
    "ot_old_fraction": Prior(0.05, 0.6),
}
"""The fitted parameters and their priors (plausible ranges; chosen before any fit)."""


def parameters(particle: dict[str, float], base: Parameters | None = None) -> Parameters:
    """`base` (default `Parameters()`) with the fitted parameters of a particle.

    A particle holds each fitted parameter's sampled coordinate (`Prior.to_value`).
    """
    values = {name: FITTED[name].to_value(particle[name]) for name in FITTED}
    return with_fitted(values, base)


def with_fitted(values: Mapping[str, float], base: Parameters | None = None) -> Parameters:
    """`base` (default `Parameters()`) with the fitted parameters' `values` (natural scale)."""
    fitted = {name: float(values[name]) for name in FITTED}
    return Parameters(**{**(base or Parameters()).model_dump(), **fitted})


def rms(values: np.ndarray) -> float:
    """Root mean square of the deviations; +inf if one is not finite (a target not measured)."""
    values = np.asarray(values, dtype=float)
    return float(np.sqrt(np.mean(values**2))) if np.isfinite(values).all() else math.inf


class Settings(NamedTuple):
    """What a calibration runs: its population, stopping rules and experiments."""

    population: int = 200
    """Particles per generation."""
    generations: int = 10
    """At most this many generations (including earlier ones of a resumed calibration)."""
    min_epsilon: float = 0.5
    """Stop once the threshold (RMS deviation, tolerance units) is below this."""
    max_simulations: int = 20_000
    """Stop after this many simulations in all."""
    design: Design = Design()
    """The calibration experiments of each simulation."""
    seed: int = 1
    """Seed of the sampler (numpy's global generator, which pyabc draws from)."""


def simulator(design: Design) -> Callable[[dict[str, float]], dict[str, Any]]:
    """Pyabc's model: a particle -> the deviations and measures of one simulation."""

    def simulate(particle: dict[str, float]) -> dict[str, Any]:
        # pyabc seeds numpy's global generator in each worker: draw the run seeds from it
        seed = int(np.random.randint(1, 2**31 - 1))  # noqa: NPY002
        got = measure(parameters(particle), replace(design, seed=seed))
        return {"deviations": deviations(got), **got._asdict()}

    return simulate


def calibrate(
    out: str | Path,
    settings: Settings | None = None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    resume: bool = False,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Run (or resume) ABC-SMC and write the posterior.

    Args:
        out: Calibration folder (holds `abc.db` and `posterior.csv`).
        settings: Population, stopping rules, experiments and seed (default `Settings()`).
        workers: Worker processes on this machine (default: all cores); ignored with
            `scheduler`.
        scheduler: Address of a Dask scheduler to run the simulations on.
        resume: Continue the calibration in `out` (same settings) instead of starting one.
        log: Called with one line per generation.

    Returns:
        The posterior table (`posterior_table`), also written to `out/posterior.csv`.

    Raises:
        OutputError: If `out` cannot be used (a calibration there without `resume`, none
            with it, or not writable).
    """
    import pyabc  # slow to import: only when calibrating

    settings = settings if settings is not None else Settings()
    folder = Path(out)
    db = folder / DATABASE
    if db.exists() and not resume:
        raise OutputError(f"{folder} already holds a calibration; pass --resume to continue it")
    if resume and not db.exists():
        raise OutputError(f"{folder}: no calibration to resume ({DATABASE} is missing)")
    prepare_output(folder)
    np.random.seed(settings.seed)  # noqa: NPY002 (pyabc samples from numpy's global generator)
    prior = pyabc.Distribution(
        **{
            name: pyabc.RV("uniform", low, high - low)
            for name, (low, high) in ((n, p.bounds()) for n, p in FITTED.items())
        }
    )
    sampler, close = _sampler(workers, scheduler)
    try:
        history = _run(pyabc, sampler, prior, settings, db, resume)
    finally:
        close()
    for t in range(history.max_t + 1):
        pops = history.get_all_populations()
        row = pops[pops["t"] == t].iloc[0]
        log(f"generation {t}: threshold {row['epsilon']:.3g}, {int(row['samples'])} simulations")
    table = posterior_table(history)
    write_atomic(folder / POSTERIOR, lambda tmp: table.to_csv(tmp, index=False))
    return table


def _run(pyabc: Any, sampler: Any, prior: Any, settings: Settings, db: Path, resume: bool) -> Any:
    """Start or resume the ABC-SMC run in `db` and run it to the stopping rules; its history."""
    abc = pyabc.ABCSMC(
        simulator(settings.design),
        prior,
        distance_function=lambda x, _: rms(x["deviations"]),
        population_size=settings.population,
        sampler=sampler,
    )
    url = f"sqlite:///{db.resolve()}"
    if resume:
        history = abc.load(url, 1)
        done = history.max_t + 1  # generations finished before
    else:
        history = abc.new(url, {"deviations": np.zeros(len(TARGETS))})
        done = 0
    if settings.generations > done:
        with warnings.catch_warnings():
            # pyabc compares the first generation's threshold (inf) with the next: inf - inf
            warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
            history = abc.run(
                minimum_epsilon=settings.min_epsilon,
                max_nr_populations=settings.generations - done,
                max_total_nr_simulations=settings.max_simulations,
            )
    return history


def _sampler(workers: int | None, scheduler: str | None) -> tuple[Any, Callable[[], None]]:
    """Pyabc's sampler (this machine's cores, or a Dask cluster) and what closes it.

    The local workers start from a fork server (`runs.batch.process_context`), never as a fork
    of this process: pyabc's own multicore samplers fork, which aborts a process that has run
    the compiled kernel's OpenMP threads (GNU OpenMP is not fork-safe).
    """
    import pyabc

    if scheduler is not None:
        from distributed import Client

        client = Client(scheduler, timeout=20)
        return pyabc.sampler.DaskDistributedSampler(dask_client=client), client.close
    n = workers if workers is not None else os.cpu_count() or 1
    pool = ProcessPoolExecutor(max_workers=n, mp_context=process_context())
    sampler = pyabc.sampler.ConcurrentFutureSampler(pool, client_max_jobs=n)
    return sampler, lambda: pool.shutdown(cancel_futures=True)


def posterior_table(history: Any) -> pd.DataFrame:
    """The last generation: weight, distance, fitted parameters (their values) and measures."""
    weights, stats = history.get_weighted_sum_stats(t=history.max_t)
    particles, _ = history.get_distribution(t=history.max_t)
    table = pd.DataFrame({name: particles[name].map(FITTED[name].to_value) for name in FITTED})
    table.insert(0, "weight", np.asarray(weights, dtype=float) / np.sum(weights))
    table.insert(1, "distance", [rms(s["deviations"]) for s in stats])
    for name in Measures._fields:
        table[name] = [float(s[name]) for s in stats]
    return table.reset_index(drop=True)


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The smallest value whose share of the total weight at or below it reaches `q` (0-1)."""
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(np.asarray(weights, dtype=float)[order])
    at = min(int(np.searchsorted(cumulative, q * cumulative[-1])), cumulative.size - 1)
    return float(np.asarray(values, dtype=float)[order][at])


def meeting_bounds(table: pd.DataFrame) -> pd.DataFrame:
    """The particles that meet the one-sided oxytocin target (all if it was not recorded).

    Its deviation is soft in the distance (a ratio of 0.6 deviates by 0.8), but it is a bound
    (Elabd 2014: at least threefold) and deterministic, so the defaults honour it strictly.
    """
    if "oxytocin_ratio" not in table:
        return table
    return table[table["oxytocin_ratio"] <= OXYTOCIN_DECLINE.value]


def posterior_median(table: pd.DataFrame) -> dict[str, float]:
    """Each fitted parameter's weighted median over the particles that meet the bounds.

    These are the defaults of `biology.params` (`meeting_bounds` says which particles count).
    """
    kept = meeting_bounds(table)
    if kept.empty:
        raise ValueError("no particle of the posterior meets the oxytocin target")
    weights = kept["weight"].to_numpy()
    return {name: weighted_quantile(kept[name].to_numpy(), weights, 0.5) for name in FITTED}


SCREEN_SEEDS = (11, 12, 13)
"""Seeds of the designs that simulate every candidate particle again (`choose_defaults`)."""
CONFIRM_SEEDS = (21, 22, 23, 24)
"""Fresh seeds of the designs that decide among the best screened candidates."""
RECHECK = Design(replicates=6)
"""The experiments' size when a particle is simulated again."""


def remeasure(
    particles: pd.DataFrame,
    seeds: tuple[int, ...],
    design: Design = RECHECK,
    workers: int | None = None,
) -> pd.DataFrame:
    """Each particle simulated again: its measures averaged over designs seeded with `seeds`.

    Args:
        particles: Rows of a posterior table (the fitted parameters' columns are used).
        seeds: One design per seed (`replicate`s paired runs each); the measures are averaged.
        design: The calibration experiments' size.
        workers: Processes (default: all cores; 1 runs in this process).

    Returns:
        One row per particle (same index): the `Measures` fields and `distance` (RMS deviation
        of the averaged measures, tolerance units).
    """
    jobs = [
        (with_fitted(row), replace(design, seed=seed))
        for _, row in particles.iterrows()
        for seed in seeds
    ]
    if workers == 1:
        got = [_measure(job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=process_context()) as pool:
            got = list(pool.map(_measure, jobs))
    means = np.asarray(got, dtype=float).reshape(len(particles), len(seeds), -1).mean(axis=1)
    table = pd.DataFrame(means, columns=list(Measures._fields), index=particles.index)
    table["distance"] = [rms(deviations(Measures(*m))) for m in means]
    return table


def _measure(job: tuple[Parameters, Design]) -> tuple[float, ...]:
    return tuple(measure(*job))


def choose_defaults(
    table: pd.DataFrame, top: int = 5, workers: int | None = None
) -> tuple[pd.Series, pd.DataFrame]:
    """The particle that best reproduces every target when simulated again: the defaults.

    The marginal medians miss targets where the fitted parameters trade off (docs/
    calibration.md), so the defaults are one particle of the posterior: every particle that
    meets the bounds (`meeting_bounds`) is simulated again on `SCREEN_SEEDS`; the `top` best
    are simulated once more on fresh seeds (`CONFIRM_SEEDS`, so that the choice is not won by
    the noise of the screen), and the one with the smallest confirmed distance is chosen.

    Returns:
        (the chosen particle's posterior row, the screen: one row per screened particle with
        its `screen_distance`, and `confirm_distance` for the `top` best, NaN for the rest).
    """
    candidates = meeting_bounds(table)
    if candidates.empty:
        raise ValueError("no particle of the posterior meets the oxytocin target")
    screen = remeasure(candidates, SCREEN_SEEDS, workers=workers)
    best = screen["distance"].nsmallest(top).index
    confirm = remeasure(candidates.loc[best], CONFIRM_SEEDS, workers=workers)
    checked = candidates[list(FITTED)].assign(
        screen_distance=screen["distance"], confirm_distance=confirm["distance"]
    )
    for name in Measures._fields:
        checked[name] = confirm[name]
    chosen = checked["confirm_distance"].idxmin()
    return table.loc[chosen], checked.sort_values("screen_distance")


_EXACT_FLOATS: dict[str, Any] = (
    {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
)
"""`read_csv` options that read back the written floats exactly (pandas 3 does by default and
deprecates the option; pandas 2's default parser rounds the 17th digit)."""


def read_posterior(path: str | Path) -> pd.DataFrame:
    """A posterior table written by `calibrate`.

    Raises:
        OutputError: If the file is missing, unreadable or lacks the fitted parameters.
    """
    path = Path(path)
    try:
        table = pd.read_csv(path, **_EXACT_FLOATS)
    except FileNotFoundError:
        raise OutputError(f"{path}: no such posterior file") from None
    except (OSError, ValueError) as err:
        raise OutputError(f"{path}: cannot read the posterior ({err})") from None
    missing = [c for c in ("weight", *FITTED) if c not in table]
    if missing:
        raise OutputError(f"{path}: the posterior lacks column(s) {', '.join(missing)}")
    return table

"""The answer to the source article's question over the calibration posterior.

Does rapamycin + oxytocin beat the better single drug? One parameter set cannot say how sure
the model is, so `plan_answer` draws parameter sets from the calibration posterior
(`studies.abc`), `run_answer` runs every therapy arm at every draw through the batch runner
(one scenario file per arm, its `[sweep.zip]` over the draws: resumable, Dask-capable,
identical whatever the workers), and `analyse_answer` gives, per draw and arm, the median
lifespan, the median healthspan and the senescent burden at 24 months; from them the
probability over the posterior that the combination beats the better single drug, the gain's
distribution, Bliss and HSA excess, a sham combination, and the answer with each hypothesis
parameter switched off. `answer_page` writes it as Markdown with figures. Method:
docs/answer.md (written by `tissue-abm answer`).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import tomli_w

from tissue_abm.analysis.dose_response import optional_package, surface_scores
from tissue_abm.analysis.summary import end_state, median_healthspan
from tissue_abm.analysis.survival import (
    healthspan_to_death,
    kaplan_meier,
    lifespans,
    quantile_lifespan,
    survival_at,
)
from tissue_abm.analysis.synergy import bliss_expected, hsa_expected
from tissue_abm.biology.params import HYPOTHESES, Parameters
from tissue_abm.runs.batch import STUDY_BATCH, Summary, check_study_folder, run_study_batch
from tissue_abm.runs.results import (
    OutputError,
    load_results,
    point_parameters,
)
from tissue_abm.runs.scenario import ScenarioError
from tissue_abm.studies.abc import FITTED, read_posterior

SPEC = "answer.json"
"""The study's inputs in its folder (a resumed study must have the same)."""
BURDEN_AGE = 730
"""Age (days) of the senescent-burden readout: 24 months."""
YEAR = 365.25


class Arm(NamedTuple):
    """One therapy arm: which drugs, at which dose (mg/kg or young levels) and start (days)."""

    label: str
    rapamycin: float = 0.0
    oxytocin: float = 0.0
    start_age: int = 365


ARMS = {
    "untreated": Arm("untreated"),
    "rapamycin": Arm("rapamycin 1 mg/kg daily", rapamycin=1.0),
    "oxytocin": Arm("oxytocin, one young level daily", oxytocin=1.0),
    "combined": Arm("rapamycin + oxytocin", rapamycin=1.0, oxytocin=1.0),
    "rapamycin_half": Arm("rapamycin 0.5 mg/kg daily (sham halves)", rapamycin=0.5),
    "rapamycin_itp": Arm("rapamycin 2.24 mg/kg daily from 9 months", rapamycin=2.24, start_age=274),
    "oxytocin_itp": Arm("oxytocin from 9 months", oxytocin=1.0, start_age=274),
    "combined_itp": Arm(
        "rapamycin 2.24 mg/kg + oxytocin from 9 months", rapamycin=2.24, oxytocin=1.0, start_age=274
    ),
}
"""The arms: canonical doses from 12 months, a half dose for the sham, ITP-like from 9 months."""

COMPARISONS = {
    "canonical": ("rapamycin", "oxytocin", "combined"),
    "ITP-like": ("rapamycin_itp", "oxytocin_itp", "combined_itp"),
}
"""Each question: (drug A, drug B, their combination), all against `untreated`."""

GRID_DOSES = {"rapamycin": (0.0, 0.25, 0.5, 1.0, 2.0), "oxytocin": (0.0, 0.5, 1.0, 2.0)}
"""The dose grid (mg/kg; young-level days) of the whole-surface scores (Loewe, ZIP): the
validation page's grid, daily from 12 months."""

SHAM_DOSES = (0.0, 0.5, 1.0)
"""The sham's grid: rapamycin at these doses as both drugs, each cell run as their sum."""


def grid_cells() -> dict[tuple[float, float], str]:
    """(rapamycin dose, oxytocin dose) -> arm name, for the dose grid and the sham's doses.

    Cells that are main arms keep their name; the others are `grid_r<dose>_o<dose>` arms.
    """
    named = {(a.rapamycin, a.oxytocin): name for name, a in ARMS.items() if a.start_age == 365}
    cells = [(r, o) for r in GRID_DOSES["rapamycin"] for o in GRID_DOSES["oxytocin"]]
    cells += [(a + b, 0.0) for a in SHAM_DOSES for b in SHAM_DOSES]
    return {cell: named.get(cell, f"grid_r{cell[0]:g}_o{cell[1]:g}") for cell in sorted(set(cells))}


def grid_arms() -> dict[str, Arm]:
    """The arms the dose grid adds to `ARMS`."""
    return {
        name: Arm(f"rapamycin {r:g} mg/kg + oxytocin {o:g} daily", rapamycin=r, oxytocin=o)
        for (r, o), name in grid_cells().items()
        if name not in ARMS
    }


HYPOTHESIS_ARMS = ("untreated", "rapamycin", "oxytocin", "combined")
"""The arms run again with hypothesis parameters switched off."""


def hypothesis_variants() -> dict[str, dict[str, float]]:
    """Each hypothesis parameter switched off alone (value 0), and all of them together."""
    variants = {f"no_{name}": {name: 0.0} for name in HYPOTHESES}
    variants["no_hypotheses"] = dict.fromkeys(HYPOTHESES, 0.0)
    return variants


@dataclass(frozen=True)
class Design:
    """What the study runs: posterior draws, replicates, lattice, length and seed."""

    draws: int = 100
    """Parameter sets drawn from the posterior (with replacement, by weight)."""
    replicates: int = 3
    """Replicate runs per draw and arm (paired: the same seeds in every arm and draw)."""
    size: int = 80
    """Lattice side, sites (the calibration's long runs)."""
    end_age: int = 1460
    """Last age of every run, days (4 years: past the treated organisms' deaths)."""
    seed: int = 1
    """Seed of the draws and of the runs."""
    hypotheses: bool = True
    """Also run `HYPOTHESIS_ARMS` with each hypothesis parameter off."""
    grid_draws: int = 40
    """The first this many draws (all if fewer) also run the dose grid (`GRID_DOSES`,
    `SHAM_DOSES`) scored by Loewe and ZIP; 0 runs none."""

    @property
    def grid(self) -> int:
        """The draws that run the dose grid: the first `min(grid_draws, draws)`."""
        return min(self.grid_draws, self.draws)


QUICK = Design(draws=6, replicates=2, size=40, grid_draws=6)
"""`--quick`: a few draws on a small lattice (480 runs: 64 s on 2 busy cores, load 3.5)."""


@dataclass(frozen=True)
class Study:
    """A planned study: its design, the posterior draws, and the scenario text of every file."""

    design: Design
    posterior: str
    """Where the draws come from (path as given)."""
    draws: pd.DataFrame
    """One row per draw: `particle` (row of the posterior file) and the fitted parameters."""
    texts: dict[str, str] = field(repr=False)
    """Scenario file name (without .toml) -> its text."""

    @property
    def runs(self) -> int:
        """Runs in all: per file, its draws (the grid's files: `Design.grid`) × replicates."""
        grid = len(set(self.texts) & set(grid_arms()))
        draws = (len(self.texts) - grid) * self.design.draws + grid * self.design.grid
        return draws * self.design.replicates

    def spec(self) -> dict[str, Any]:
        """The inputs a resumed study must share."""
        return {
            "design": self.design.__dict__,
            "draws": self.draws.to_dict(orient="list"),
        }


def plan_answer(posterior: str | Path, design: Design = Design()) -> Study:
    """Draw the parameter sets and write (in memory) the scenario file of every arm.

    Raises:
        OutputError: If the posterior file is missing, unreadable or lacks a fitted parameter.
        ScenarioError: If a number of the design is out of range.
    """
    for name, value, low in (
        ("--draws", design.draws, 1),
        ("--replicates", design.replicates, 1),
        ("--size", design.size, 3),
    ):
        if value < low:
            raise ScenarioError(f"{name} {value}: allowed: a whole number ≥ {low}")
    if design.grid_draws < 0:
        raise ScenarioError(f"--grid-draws {design.grid_draws}: allowed: a whole number ≥ 0")
    table = read_posterior(posterior)
    weights = table["weight"].to_numpy(dtype=float)
    if not (np.isfinite(weights).all() and (weights >= 0).all() and weights.sum() > 0):
        raise OutputError(f"{posterior}: the posterior's weights must be ≥ 0 with a positive sum")
    rng = np.random.default_rng(design.seed)
    rows = rng.choice(len(table), size=design.draws, p=weights / weights.sum())
    draws = table.iloc[rows][list(FITTED)].astype(float).reset_index(drop=True)
    draws.insert(0, "particle", rows.astype(int))
    texts = {name: _arm_text(name, arm, draws, design, {}) for name, arm in ARMS.items()}
    if design.hypotheses:
        for variant, values in hypothesis_variants().items():
            for name in HYPOTHESIS_ARMS:
                file = f"{name}__{variant}"
                texts[file] = _arm_text(file, ARMS[name], draws, design, values)
    if design.grid:
        first = draws.iloc[: design.grid]
        for name, arm in grid_arms().items():
            texts[name] = _arm_text(name, arm, first, design, {})
    return Study(design, str(posterior), draws, texts)


def _arm_text(
    name: str, arm: Arm, draws: pd.DataFrame, design: Design, fixed: dict[str, float]
) -> str:
    """A scenario file: the arm's therapy, `fixed` parameters, and a zip sweep over the draws."""
    scenario: dict[str, Any] = {
        "name": name,
        "seed": design.seed,
        "replicates": design.replicates,
        "engine": "array",
        "size": design.size,
        "start_age": 90,
        "end_age": design.end_age,
        "output": {"every": 5},
        "sweep": {"zip": {n: [float(v) for v in draws[n]] for n in FITTED}},
    }
    if fixed:
        scenario["parameters"] = dict(fixed)
    therapy = {}
    for drug in ("rapamycin", "oxytocin"):
        dose = getattr(arm, drug)
        if dose > 0:
            therapy[drug] = {"dose": dose, "every": 1, "start_age": arm.start_age}
    if therapy:
        scenario["therapy"] = therapy
    return tomli_w.dumps(scenario)


# --- running -----------------------------------------------------------------------------------


def run_answer(
    study: Study,
    out: str | Path,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    resume: bool = False,
    progress: Any = None,
    notice: Any = None,
) -> Summary:
    """Write the study's files into `out` and run its batch (only what `out` does not hold).

    Raises:
        OutputError: If `out` holds something else (another study, or this one without
            `resume`).
        tissue_abm.runs.batch.BatchInterrupted: If the batch stopped early (resume finishes it).
    """
    spec = json.loads(json.dumps(study.spec()))  # as it reads back from the file
    return run_study_batch(
        Path(out),
        study.texts,
        _check_folder,
        SPEC,
        spec,
        {"posterior": study.posterior},
        "answer study",
        allow_large=True,
        workers=workers,
        scheduler=scheduler,
        resume=resume,
        progress=progress,
        notice=notice,
    )


def _check_folder(folder: Path, spec: dict[str, Any], resume: bool) -> None:
    """OutputError unless `folder` may receive the study of `spec`."""
    check_study_folder(folder, SPEC, spec, resume, "an answer study")


# --- analysis ----------------------------------------------------------------------------------


class Analysis(NamedTuple):
    """What the page shows."""

    study: Study
    outcomes: pd.DataFrame
    """One row per file and draw: `file`, `arm`, `variant` ('' for the main arms), `draw`,
    `median_lifespan`, `median_healthspan` (days; NaN when not reached) and `burden` (the
    senescent fraction at 24 months, mean over replicates)."""
    curves: pd.DataFrame
    """Survival per arm, draw and age (`arm`, `draw`, `age`, `survival`), main arms only."""
    hazards: pd.DataFrame
    """Cox hazard ratios after the treatment start (`hazard_ratios`)."""
    grid: pd.DataFrame
    """Whole-surface synergy scores of the dose grid and the sham (`grid_scores`); empty
    without a grid or without the optional `synergy` package."""


def analyse_answer(study: Study, out: str | Path, workers: int | None = None) -> Analysis:
    """Per draw and arm: median lifespan and healthspan, burden at 24 months; survival curves.

    The arms' files, the Cox fits and the dose grid's surfaces are analysed on `workers`
    processes (default: all cores; 1: in this process), each file read on its own, so memory
    stays that of one file's runs per worker. The result does not depend on `workers`.
    """
    from tissue_abm.runs.batch import process_context
    from tissue_abm.runs.pool import task_map

    folder = Path(out) / STUDY_BATCH
    own = point_parameters(folder)
    end_age = study.design.end_age
    tasks = [
        (_analyse_file, (folder, file, {k: v for k, v in own.items() if k[0] == file}, end_age))
        for file in study.texts
    ]
    with task_map(workers or os.cpu_count() or 1, process_context()) as run:
        parts = run(tasks)
        rows = [row for part in parts for row in part[0]]
        curves = pd.concat([c for part in parts for c in part[1]], ignore_index=True)
        hazards = hazard_ratios(pd.concat([p[2] for p in parts if p[2] is not None]), run)
        outcomes = pd.DataFrame(rows)
        grid = (
            grid_scores(per_draw(outcomes), float(study.design.end_age), study.design.grid, run)
            if study.design.grid and optional_package()
            else pd.DataFrame(columns=list(GRID_COLUMNS))
        )
    return Analysis(study, outcomes, curves, hazards, grid)


def _analyse_file(
    folder: Path, file: str, own: dict[tuple[str, int], Parameters], end_age: int
) -> tuple[list[dict[str, Any]], list[pd.DataFrame], pd.DataFrame | None]:
    """One arm's file: its `Analysis.outcomes` rows, survival curves and hazard lifespans.

    The curves for the main arms only; the lifespans (organisms) only if a hazard question
    needs them (`HAZARD_ARMS`), else None. `end_age`: the runs' last age (days).
    """
    threshold = Parameters().healthspan_threshold
    ages = np.arange(90.0, end_age + 1, 10.0)
    keys = ["scenario", "point"]
    rows, curves = [], []
    results = load_results(folder, [file])
    lives = lifespans(results, own)
    ends = healthspan_to_death(end_state(results, threshold), lives)
    spans = ends.groupby(keys, observed=True)["healthspan"].agg(median_healthspan)
    at_burden = results[np.isclose(results["age"], BURDEN_AGE)]
    burden = at_burden.groupby(keys, observed=True)["senescent_fraction"].mean()
    arm, _, variant = file.partition("__")
    for (_, point), group in lives.groupby(keys, observed=True, sort=True):
        km = kaplan_meier(group["lifespan"].to_numpy(float), group["observed"].to_numpy(bool))
        rows.append(
            {
                "file": file,
                "arm": arm,
                "variant": variant,
                "draw": int(point),
                "median_lifespan": _finite(quantile_lifespan(km, 0.5)),
                "median_healthspan": _finite(spans.get((file, point), math.nan)),
                "burden": float(burden.get((file, point), math.nan)),
            }
        )
        if not variant and arm in ARMS:
            survival = survival_at(km, ages)
            curves.append(
                pd.DataFrame({"arm": arm, "draw": int(point), "age": ages, "survival": survival})
            )
    followed = (
        lives[["scenario", "point", "replicate", "lifespan", "observed"]]
        if file in HAZARD_ARMS
        else None
    )
    return rows, curves, followed


HAZARD_QUESTIONS = {
    "rapamycin vs untreated": ("rapamycin", "untreated"),
    "oxytocin vs untreated": ("oxytocin", "untreated"),
    "both vs untreated": ("combined", "untreated"),
    "both vs rapamycin": ("combined", "rapamycin"),
    "both vs oxytocin": ("combined", "oxytocin"),
    "both vs rapamycin, ITP-like": ("combined_itp", "rapamycin_itp"),
    "both vs oxytocin, ITP-like": ("combined_itp", "oxytocin_itp"),
}
"""Cox comparisons: label -> (treated arm, reference arm)."""
HAZARD_ARMS = {arm for pair in HAZARD_QUESTIONS.values() for arm in pair}


def hazard_ratios(lives: pd.DataFrame, run: Any = None) -> pd.DataFrame:
    """Cox proportional-hazards ratio of each `HAZARD_QUESTIONS` pair, after the treatment start.

    The organisms alive when the treated arm's treatment starts, followed from then
    (statsmodels' `PHReg`, Breslow ties); stratified by posterior draw (each draw has its own
    baseline hazard), with robust (sandwich) intervals clustered by run, since a run's
    organisms share one tissue.

    Args:
        lives: Per-organism lifespans (`analysis.survival.lifespans`) of the arms' runs.
        run: A map of (function, args) tasks (`runs.pool.task_map`) to fit the questions in
            parallel; None fits them here.

    Returns:
        One row per question whose two arms are present: `question`, `hazard_ratio`, `low`,
        `high` (95%) and `organisms`.
    """
    tasks = []
    names = lives["scenario"].astype(str)
    for question, (treated, reference) in HAZARD_QUESTIONS.items():
        start = ARMS[treated].start_age
        chosen = lives[names.isin([treated, reference]).to_numpy() & (lives["lifespan"] > start)]
        if chosen["scenario"].astype(str).nunique() == 2:
            tasks.append((_cox, (question, chosen, treated, start)))
    rows = run(tasks) if run is not None else [function(*args) for function, args in tasks]
    return pd.DataFrame(rows, columns=["question", "hazard_ratio", "low", "high", "organisms"])


def _cox(question: str, chosen: pd.DataFrame, treated: str, start: float) -> dict[str, Any]:
    """One `hazard_ratios` row: `treated` against the other arm of `chosen`."""
    from statsmodels.duration.hazard_regression import PHReg
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    arm = chosen["scenario"].astype(str)
    run = arm + ":" + chosen["point"].astype(str) + ":" + chosen["replicate"].astype(str)
    ratio = low = high = math.nan
    deaths = chosen.groupby(arm.to_numpy())["observed"].sum()
    if (deaths > 0).all():  # else the likelihood has no maximum
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            fit = PHReg(
                chosen["lifespan"].to_numpy(float) - start,
                (arm == treated).to_numpy(float)[:, None],
                status=chosen["observed"].to_numpy(float),
                strata=chosen["point"].to_numpy(int),
            ).fit(groups=run.to_numpy())
        if not any(issubclass(w.category, ConvergenceWarning) for w in caught):
            ratio = float(np.exp(fit.params[0]))
            low, high = (float(x) for x in np.exp(fit.conf_int()[0]))
    return {
        "question": question,
        "hazard_ratio": ratio,
        "low": low,
        "high": high,
        "organisms": len(chosen),
    }


def _finite(value: float) -> float:
    return float(value) if math.isfinite(value) else math.nan


# --- statistics over the posterior ---------------------------------------------------------------

OUTCOMES = {
    "median_lifespan": ("median lifespan", True),
    "median_healthspan": ("median healthspan", True),
    "burden": ("senescent burden at 24 months", False),
}
"""Outcome column -> (name, whether higher is better)."""


class Verdict(NamedTuple):
    """Whether the combination beats the better single drug, over the draws."""

    probability: float
    """Share of draws (0-1) where it does."""
    low: float
    """95% Wilson interval of that share, low end."""
    high: float
    """... and high end."""
    draws: int
    """Draws with all three arms measured."""
    gain: np.ndarray
    """Per draw: the combination's gain over the better single drug (fraction; for the burden,
    its relative reduction)."""


def per_draw(outcomes: pd.DataFrame, variant: str = "") -> pd.DataFrame:
    """One row per draw, one column per arm and outcome (`arm:outcome`), for one variant."""
    chosen = outcomes[outcomes["variant"] == variant]
    wide = chosen.pivot(index="draw", columns="arm", values=list(OUTCOMES))
    wide.columns = [f"{arm}:{outcome}" for outcome, arm in wide.columns]
    return wide


def verdict(
    table: pd.DataFrame, a: str, b: str, combination: str, outcome: str, horizon: float
) -> Verdict:
    """Whether `combination` beats the better of `a` and `b` on `outcome`, draw by draw.

    A median not reached by the runs' end counts as `horizon` (a lower bound).
    """
    _, higher = OUTCOMES[outcome]
    values = [table[f"{arm}:{outcome}"].to_numpy(float) for arm in (a, b, combination)]
    if higher:
        values = [np.where(np.isnan(v), horizon, v) for v in values]
    ya, yb, yab = values
    measured = np.isfinite(ya) & np.isfinite(yb) & np.isfinite(yab)
    ya, yb, yab = ya[measured], yb[measured], yab[measured]
    if higher:
        best = np.maximum(ya, yb)
        beats, gain = yab > best, yab / best - 1.0
    else:
        best = np.minimum(ya, yb)
        beats, gain = yab < best, 1.0 - yab / np.where(best > 0, best, np.nan)
    return Verdict(
        *share_interval(int(beats.sum()), int(measured.sum())), int(measured.sum()), gain
    )


def share_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """K of n as a share with its Wilson score interval (scipy); NaNs when n = 0."""
    if n == 0:
        return math.nan, math.nan, math.nan
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return k / n, float(ci.low), float(ci.high)


def effects(table: pd.DataFrame, arms: tuple[str, ...], outcome: str, horizon: float) -> np.ndarray:
    """Fractional effects (0 none, 1 full) of `arms` against untreated, per draw (draws × arms).

    Burden: 1 − y/y_untreated. Lifespan and healthspan: the share of the untreated days lost
    before `horizon` that the arm saves, 1 − (horizon − y)/(horizon − y_untreated).
    """
    _, higher = OUTCOMES[outcome]
    base = table[f"untreated:{outcome}"].to_numpy(float)
    columns = []
    for arm in arms:
        y = table[f"{arm}:{outcome}"].to_numpy(float)
        if higher:
            y, b = np.where(np.isnan(y), horizon, y), np.where(np.isnan(base), horizon, base)
            columns.append(1.0 - _ratio(horizon - y, horizon - b))
        else:
            columns.append(1.0 - _ratio(y, base))
    return np.column_stack(columns)


def _ratio(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The ratio x / y; NaN where y is 0 (no untreated loss or burden: nothing to measure)."""
    return np.divide(x, y, out=np.full(np.shape(x), np.nan), where=y != 0)


def excess_scores(
    table: pd.DataFrame, a: str, b: str, combination: str, outcome: str, horizon: float
) -> dict[str, np.ndarray]:
    """Per draw, the Bliss and HSA excess (fractions; 0.1 = 10 points) of the combination."""
    e = effects(table, (a, b, combination), outcome, horizon)
    return {
        "Bliss": e[:, 2] - np.asarray(bliss_expected(e[:, 0], e[:, 1])),
        "HSA": e[:, 2] - np.asarray(hsa_expected(e[:, 0], e[:, 1])),
    }


GRID_COLUMNS = ("surface", "outcome", "draw", "method", "score", "value")
"""Columns of `grid_scores`."""

SURFACES = {"dose grid": (1.0, 1.0), "sham": (0.5, 0.5)}
"""Each scored surface and its canonical cell (drug A dose, drug B dose)."""


def surface_cells(surface: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The doses of drug A and B per cell of `surface` and the arm that runs each cell.

    "dose grid": rapamycin × oxytocin (`GRID_DOSES`). "sham": rapamycin × rapamycin
    (`SHAM_DOSES`), each cell run as rapamycin at the sum of its doses.
    """
    cells = grid_cells()
    if surface == "sham":
        pairs = [(a, b) for a in SHAM_DOSES for b in SHAM_DOSES]
        arms = [cells[(a + b, 0.0)] for a, b in pairs]
    else:
        pairs = [(r, o) for r in GRID_DOSES["rapamycin"] for o in GRID_DOSES["oxytocin"]]
        arms = [cells[pair] for pair in pairs]
    a, b = (np.array(x, dtype=float) for x in zip(*pairs, strict=True))
    return a, b, arms


def grid_scores(table: pd.DataFrame, horizon: float, draws: int, run: Any = None) -> pd.DataFrame:
    """Bliss, HSA, Loewe and ZIP excess of each surface, per draw.

    Per surface (`SURFACES`), outcome (median lifespan, burden) and draw below `draws`, rows
    (`GRID_COLUMNS`) of `score` "canonical" (the excess at the surface's canonical cell) and
    "mean" (over its combination cells) per method; for Loewe also "on HSA" (the share of
    combination cells where Loewe's reference is undefined and HSA's was used).

    Args:
        table: `per_draw` of the main arms and the grid arms.
        horizon: Last age of the runs (days): a median not reached counts as it.
        draws: The draws that ran the grid (the first ones).
        run: A map of (function, args) tasks (`runs.pool.task_map`) to score the surfaces in
            parallel; None scores them here.
    """
    tasks = []
    chosen = table[table.index < draws]
    cells = grid_cells()
    curve = np.array(sorted(r for r, o in cells if o == 0.0))  # rapamycin alone, for the sham
    for surface in SURFACES:
        a, b, arms = surface_cells(surface)
        for outcome in ("median_lifespan", "burden"):
            effect = effects(chosen, tuple(arms), outcome, horizon)
            alone = effects(chosen, tuple(cells[(d, 0.0)] for d in curve), outcome, horizon)
            for draw, y, y_alone in zip(chosen.index, effect, alone, strict=True):
                sham = (curve, 1.0 - y_alone) if surface == "sham" else None
                key = {"surface": surface, "outcome": outcome, "draw": int(draw)}
                tasks.append((_score_surface, (key, a, b, 1.0 - y, sham)))
    parts = run(tasks) if run is not None else [function(*args) for function, args in tasks]
    return pd.DataFrame([row for part in parts for row in part], columns=list(GRID_COLUMNS))


def _score_surface(
    key: dict[str, Any],
    a: np.ndarray,
    b: np.ndarray,
    remaining: np.ndarray,
    sham: tuple[np.ndarray, np.ndarray] | None,
) -> list[dict[str, Any]]:
    """`grid_scores`' rows of one surface of one draw (`key`: surface, outcome, draw)."""
    canonical = SURFACES[key["surface"]]
    at = (a == canonical[0]) & (b == canonical[1])
    both = (a > 0) & (b > 0)
    scores = surface_scores(a, b, remaining, curves=(sham, sham) if sham is not None else None)
    rows = []
    for method, excess in scores.excess.items():
        rows.append({**key, "method": method, "score": "canonical", "value": float(excess[at][0])})
        rows.append(
            {**key, "method": method, "score": "mean", "value": float(np.mean(excess[both]))}
        )
    rows.append(
        {
            **key,
            "method": "Loewe",
            "score": "on HSA",
            "value": float(np.mean(scores.loewe_hsa[both])),
        }
    )
    return rows


def spread(values: np.ndarray) -> tuple[float, float, float]:
    """Median and the 5%–95% range of the finite values (NaNs if none)."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return math.nan, math.nan, math.nan
    low, median, high = np.quantile(finite, [0.05, 0.5, 0.95])
    return float(median), float(low), float(high)


# --- the page ------------------------------------------------------------------------------------


def _pct(x: float, digits: int = 0) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:.{digits}f}%"


def _signed(x: float, digits: int = 1) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:+.{digits}f}%"


def _points(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:+.1f}"


def answer_page(analysis: Analysis, figures: str | Path | None = None) -> str:
    """The answer page (Markdown): verdict, probabilities, survival, synergy, sham, hypotheses.

    Args:
        analysis: From `analyse_answer`.
        figures: Folder for the page's figures (PNG), linked relative to its parent; None draws
            none.
    """
    from tissue_abm.studies.report import markdown_table

    study, outcomes = analysis.study, analysis.outcomes
    design = study.design
    horizon = float(design.end_age)
    main = per_draw(outcomes)
    canonical = verdict(main, *COMPARISONS["canonical"], "median_lifespan", horizon)
    gain, gain_low, gain_high = spread(canonical.gain)
    bliss = excess_scores(main, *COMPARISONS["canonical"], "median_lifespan", horizon)["Bliss"]
    b_mid, b_low, b_high = spread(bliss)
    sentence = (
        f"Over {canonical.draws} parameter sets drawn from the calibration posterior, rapamycin "
        f"(1 mg/kg daily) with oxytocin (one young level daily), both from 12 months, gave a "
        f"longer median lifespan than the better single drug in {_pct(canonical.probability)} of "
        f"them (95% CI {_pct(canonical.low)}–{_pct(canonical.high)}), by a median of "
        f"{_signed(gain)} (90% of draws between {_signed(gain_low)} and {_signed(gain_high)}); "
        f"against Bliss independence the combination is "
        f"{_reading(b_mid, b_low, b_high)} (median excess {_points(b_mid)} points, 90% of draws "
        f"between {_points(b_low)} and {_points(b_high)})."
    )
    if not analysis.grid.empty:
        readings = []
        for method in ("Loewe", "ZIP"):
            chosen = analysis.grid[
                (analysis.grid["surface"] == "dose grid")
                & (analysis.grid["outcome"] == "median_lifespan")
                & (analysis.grid["method"] == method)
                & (analysis.grid["score"] == "canonical")
            ]
            mid, low, high = spread(chosen["value"].to_numpy(float))
            readings.append(
                f"under {method}, {_reading(mid, low, high)} (median {_points(mid)} points, "
                f"90%: {_points(low)} to {_points(high)})"
            )
        sentence += f" On the dose grid ({design.grid} draws) the same doses are " + (
            "; ".join(readings) + "."
        )
    if (outcomes["variant"] == "no_hypotheses").any():
        off = verdict(
            per_draw(outcomes, "no_hypotheses"),
            *COMPARISONS["canonical"],
            "median_lifespan",
            horizon,
        )
        sentence += (
            " This rests on the hypothesis parameters (no direct evidence): with them switched "
            f"off it is better in {_pct(off.probability)} of the draws (95% CI "
            f"{_pct(off.low)}–{_pct(off.high)}), median gain {_signed(spread(off.gain)[0])}."
        )
    parts = [
        "# The answer: does rapamycin + oxytocin beat the better single drug?\n",
        "Generated by `tissue-abm answer`; do not edit by hand. "
        f"{design.draws} parameter sets drawn (by weight, with replacement) from the "
        f"calibration posterior `{study.posterior}`; every therapy arm runs at every draw with "
        f"{design.replicates} paired replicates on {design.size}×{design.size} from 3 months to "
        f"{design.end_age / YEAR:.0f} years ({study.runs} runs), each run driving 200 organisms "
        "(`analysis.survival`). Per draw and arm: the Kaplan–Meier median lifespan of its "
        "organisms, the median healthspan (tissue function lost or death, whichever first) and "
        "the senescent fraction at 24 months.\n",
        f"**Verdict.** {sentence}\n",
        _probabilities(main, horizon, markdown_table),
    ]
    if figures is not None:
        parts.append(_survival_figure(analysis.curves, Path(figures)))
    parts += [
        _hazards(analysis.hazards, markdown_table),
        _synergy(main, horizon, markdown_table),
        _grid_synergy(analysis.grid, design, markdown_table),
        _hypotheses(outcomes, horizon, markdown_table),
        _caveats(design),
    ]
    return "\n".join(parts)


def _reading(mid: float, low: float, high: float) -> str:
    """SynergyFinder's reading of a distribution of excess scores (±10 points)."""
    if not math.isfinite(mid):
        return "not measurable"
    if low > 0.10:
        return "synergistic"
    if high < -0.10:
        return "antagonistic"
    if low >= -0.10 and high <= 0.10:
        return "additive"
    at_median = "synergistic" if mid > 0.10 else "antagonistic" if mid < -0.10 else "additive"
    return f"{at_median} at the median, not across the whole posterior"


def _probabilities(main: pd.DataFrame, horizon: float, table: Any) -> str:
    rows = []
    for name, (a, b, ab) in COMPARISONS.items():
        for outcome, (label, _) in OUTCOMES.items():
            v = verdict(main, a, b, ab, outcome, horizon)
            mid, low, high = spread(v.gain)
            rows.append(
                [
                    name,
                    label,
                    f"{_pct(v.probability)} [{_pct(v.low)}, {_pct(v.high)}]",
                    f"{_signed(mid)} [{_signed(low)}, {_signed(high)}]",
                ]
            )
    return (
        "## Does the combination beat the better single drug?\n\n"
        "Share of draws where it does, with its 95% Wilson interval, and the combination's gain "
        "over the better single drug at that draw (median and 5%–95% over draws; for the "
        "burden, its relative reduction). Canonical: rapamycin 1 mg/kg and oxytocin daily from "
        "12 months. ITP-like: rapamycin 2.24 mg/kg (14 ppm) and oxytocin from 9 months. A "
        "median not reached by the runs' end counts as the end (a lower bound).\n\n"
        + table(["doses", "outcome", "P(combination better)", "gain over the better single"], rows)
    )


def _hazards(hazards: pd.DataFrame, table: Any) -> str:
    if hazards.empty:
        return ""
    rows = [
        [
            r.question,
            f"{r.hazard_ratio:.3f} [{r.low:.3f}, {r.high:.3f}]"
            if math.isfinite(r.hazard_ratio)
            else "not estimable (too few deaths)",
            f"{r.organisms:,}",
        ]
        for r in hazards.itertuples()
    ]
    return (
        "## Hazard ratios\n\n"
        "Cox proportional hazards (statsmodels' `PHReg`) of the organisms alive at the "
        "treatment start, followed from then, all draws pooled but stratified by draw (each its "
        "own baseline hazard), with robust 95% intervals clustered by run (a run's organisms "
        "share one tissue). Below 1: the first arm dies at a lower rate. Proportional hazards "
        "are assumed; where deaths crowd into a few months, as here, a delay of a few percent "
        "of lifespan already gives a ratio well below 1, so read these with the medians above."
        "\n\n" + table(["comparison", "hazard ratio [95% CI]", "organisms"], rows)
    )


def _synergy(main: pd.DataFrame, horizon: float, table: Any) -> str:
    rows = []
    questions = {
        **COMPARISONS,
        "sham (0.5 + 0.5 mg/kg rapamycin vs 1)": ("rapamycin_half", "rapamycin_half", "rapamycin"),
    }
    for name, (a, b, ab) in questions.items():
        for outcome in ("median_lifespan", "burden"):
            for method, scores in excess_scores(main, a, b, ab, outcome, horizon).items():
                mid, low, high = spread(scores)
                finite = scores[np.isfinite(scores)]
                rows.append(
                    [
                        name,
                        OUTCOMES[outcome][0],
                        method,
                        f"{_points(mid)} [{_points(low)}, {_points(high)}]",
                        _pct(float(np.mean(finite > 0.10))) if finite.size else "n/a",
                        _pct(float(np.mean(finite < -0.10))) if finite.size else "n/a",
                        _reading(mid, low, high),
                    ]
                )
    return (
        "## Synergy over the posterior\n\n"
        "Excess of the combination's fractional effect over the expectation from its single "
        "drugs, in points (0.1 = 10 points), per draw: median and 5%–95% over draws, and the "
        "share of draws beyond SynergyFinder's ±10-point additive band. Effects: for the burden, "
        "1 − y/y_untreated; for lifespan, the share of the untreated days lost before "
        f"{horizon:.0f} days that the arm saves. The sham — rapamycin at half the canonical dose "
        "as both drugs, the full dose as their combination — is the control: a drug cannot be "
        "synergistic with itself. Loewe and ZIP need each drug's dose–response curve: they "
        "score the dose grid (next section).\n\n"
        + table(
            ["doses", "outcome", "method", "excess [5%, 95%]", "> +10", "< −10", "reading"],
            rows,
            ["l", "l", "l", "r", "r", "r", "l"],
        )
    )


def _grid_synergy(grid: pd.DataFrame, design: Design, table: Any) -> str:
    head = "## Synergy over the dose grid: Bliss, HSA, Loewe, ZIP\n\n"
    if not design.grid:
        return ""
    if grid.empty:
        return (
            head + "Not computed: Loewe and ZIP come from the optional `synergy` package "
            '(GPL-3.0): `pip install "tissue-abm[synergy]"`, then run `tissue-abm answer` '
            "again with `--resume`.\n"
        )
    rows = []
    for (surface, outcome, method), chosen in grid.groupby(
        ["surface", "outcome", "method"], sort=False
    ):
        by_score = {score: part["value"].to_numpy(float) for score, part in chosen.groupby("score")}
        mid, low, high = spread(by_score["canonical"])
        mean_mid, mean_low, mean_high = spread(by_score["mean"])
        hsa = by_score.get("on HSA")
        rows.append(
            [
                surface,
                OUTCOMES[outcome][0],
                method,
                f"{_points(mid)} [{_points(low)}, {_points(high)}]",
                _reading(mid, low, high),
                f"{_points(mean_mid)} [{_points(mean_low)}, {_points(mean_high)}]",
                _pct(float(np.nanmean(hsa))) if hsa is not None else "",
            ]
        )
    columns = ["surface", "outcome", "method", "canonical cell [5%, 95%]", "reading"]
    columns += ["mean over cells [5%, 95%]", "Loewe on HSA"]
    chosen = grid[
        (grid["surface"] == "dose grid")
        & (grid["outcome"] == "median_lifespan")
        & (grid["score"] == "on HSA")
    ]
    on_hsa = float(chosen["value"].mean())
    r, o = (", ".join(f"{d:g}" for d in GRID_DOSES[drug]) for drug in ("rapamycin", "oxytocin"))
    sham = ", ".join(f"{d:g}" for d in SHAM_DOSES)
    return (
        head + f"The first {design.grid} draws also ran a dose grid, daily from 12 "
        f"months: rapamycin {r} mg/kg × oxytocin {o} young-level days, and the sham grid "
        f"(rapamycin {sham} mg/kg as both drugs, each cell run as the sum of its doses). Each "
        "draw's surface — the share of the untreated loss still lost, per cell — is scored "
        "under four reference models: Bliss and HSA from the observed single-drug cells; "
        "Loewe additivity and ZIP from Hill curves fitted to each drug alone (the `synergy` "
        "package, Wooten & Albert 2020; the sham's curve is rapamycin's, from all its single "
        "doses). Excess in points (> 0: more effect than the reference expects) at the "
        "canonical cell (rapamycin 1 + oxytocin 1; the sham's 0.5 + 0.5) and its mean over "
        "the combination cells: median and 5%–95% over draws.\n\n"
        + table(columns, rows, ["l", "l", "l", "r", "l", "r", "r"])
        + "\nWhere they do not fit: Loewe's reference is undefined where one drug alone "
        "already does more than the weaker drug can ever do (its fitted maximum); there "
        "`synergy`'s `delta_hsa` mode uses HSA's, and the last column gives the share of "
        f"combination cells where it did ({_pct(on_hsa)} of the dose grid's cells on median "
        "lifespan). ZIP refits a Hill curve along every row and column of the grid, so it "
        "carries the noise of each row's few medians. MuSyC, which the package also offers, is "
        "left out: fitted to 16 of this study's surfaces it failed on 10 and gave no usable "
        "estimate on the other 6 (docs/analysis.md). The sham is the control: a drug with itself "
        "is additive by definition under Loewe (its defining property), while Bliss scores a "
        "drug with itself as additive only if its remaining loss falls exponentially with "
        "dose.\n"
    )


def _hypotheses(outcomes: pd.DataFrame, horizon: float, table: Any) -> str:
    variants = [v for v in hypothesis_variants() if (outcomes["variant"] == v).any()]
    if not variants:
        return ""
    rows = []
    for variant in ["", *variants]:
        wide = per_draw(outcomes, variant)
        v = verdict(wide, *COMPARISONS["canonical"], "median_lifespan", horizon)
        ot = effects(wide, ("oxytocin",), "median_lifespan", horizon)[:, 0]
        rows.append(
            [
                "all at their values" if not variant else variant.replace("no_", "without "),
                f"{_pct(v.probability)} [{_pct(v.low)}, {_pct(v.high)}]",
                _signed(spread(v.gain)[0]),
                _points(spread(ot)[0]),
            ]
        )
    return (
        "## Which hypotheses the answer rests on\n\n"
        "The canonical question on median lifespan with each hypothesis parameter (no direct "
        "evidence; `tissue-abm params` marks them) switched off, and all together, at the same "
        "draws and seeds. Last column: oxytocin's own effect (share of the untreated days lost "
        "that it saves, points).\n\n"
        + table(["hypotheses", "P(combination better)", "median gain", "oxytocin's effect"], rows)
    )


def _caveats(design: Design) -> str:
    return (
        "## How to read it\n\n"
        "- The probabilities are over the posterior draws; each draw's comparison carries its "
        f"own noise ({design.replicates} replicate tissues × 200 organisms per arm), so a "
        "share near 50% can mean that the combination and the better single drug are equal.\n"
        "- The posterior is coarse (docs/calibration.md): its spread is the model's uncertainty "
        "given the six calibration targets, not the biology's.\n"
        "- Oxytocin's lifespan effect rests on its hypothesis arms (last section).\n"
    )


def _survival_figure(curves: pd.DataFrame, folder: Path) -> str:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.2), layout="constrained")
    ax = figure.add_subplot()
    for arm in HYPOTHESIS_ARMS:
        chosen = curves[curves["arm"] == arm]
        band = chosen.groupby("age")["survival"].quantile([0.05, 0.5, 0.95]).unstack()
        years = band.index.to_numpy(float) / YEAR
        (line,) = ax.plot(years, band[0.5], label=ARMS[arm].label)
        ax.fill_between(years, band[0.05], band[0.95], color=line.get_color(), alpha=0.2)
    ax.set(xlabel="age (years)", ylabel="surviving fraction", ylim=(0, 1.02))
    ax.legend(frameon=False, fontsize=8)
    folder.mkdir(parents=True, exist_ok=True)
    figure.savefig(folder / "survival.png", dpi=110)
    return (
        "## Survival over the posterior\n\n"
        "Kaplan–Meier survival per arm: the median over draws and the 5%–95% band "
        "(posterior predictive).\n\n"
        f"![Survival over the posterior]({folder.name}/survival.png)\n"
    )

"""The validation page (`docs/validation.md`): calibration targets and experiments, from a batch.

`tissue-abm validate RESULTS` writes the page from the results of

    tissue-abm batch scenarios/*.toml scenarios/experiments/*.toml --out results/validation

Every figure on it is computed from that batch: the calibration targets of `calibration` (each
met or not within its tolerance), the behaviours the literature expects, and the answers of the
experiment library. A section whose scenarios are missing from the batch says which files to run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tissue_abm.analysis import experiments, plots, spatial, survival
from tissue_abm.analysis.summary import (
    end_state,
    median_healthspan,
    percentile_ci,
    resample,
    run_columns,
)
from tissue_abm.analysis.synergy import dose_grid_summary, dose_grid_synergy
from tissue_abm.biology.params import HYPOTHESES, Parameters
from tissue_abm.biology.rules import DAYS_PER_YEAR
from tissue_abm.runs.results import load_results, load_snapshots, point_parameters, read_manifest
from tissue_abm.studies import calibration
from tissue_abm.studies.abc import FITTED, read_posterior, weighted_quantile
from tissue_abm.studies.calibration import (
    HALF_LIFE_OLD,
    HALF_LIFE_YOUNG,
    MEDIAN_LIFESPAN,
    OXYTOCIN_DECLINE,
    PRODUCTION,
    RAPAMYCIN_GAIN,
    Target,
)
from tissue_abm.studies.report import markdown_table

YEAR = DAYS_PER_YEAR
LATE_AGE = 730
"""Age (days, 24 months) at which late-life burden is compared."""
THERAPIES = {
    "untreated": ("wild_type", {}),
    "rapamycin": ("timing_rapamycin", {"therapy.rapamycin.start_age": 365}),
    "oxytocin": ("timing_oxytocin", {"therapy.oxytocin.start_age": 365}),
    "rapamycin + oxytocin": ("timing_combined", {"therapy.rapamycin.start_age": 365}),
    "senolytic (positive control)": ("senolytic_control", {}),
    "immune knock-out": ("immune_knockout", {}),
}
"""Rows of the lifespan table: label -> (scenario, sweep point), therapies from 12 months."""
LIFESPAN_SCENARIOS = (
    *dict.fromkeys(scenario for scenario, _ in THERAPIES.values()),
    "rapamycin_dose_response",
    "rapamycin_schedule",
    "dose_grid",
    "rapamycin_itp",
    "hypotheses",
)
"""Experiment scenarios whose organisms' lifespans the page reads; a batch needs at least one."""
N_BOOT = 1000
POSTERIOR = Path(__file__).resolve().parents[3] / "docs" / "calibration" / "posterior.csv"
"""The posterior of the calibration that set the defaults (a source checkout's)."""


def validation_page(
    folder: str | Path,
    figures: str | Path | None = None,
    n_boot: int = N_BOOT,
    posterior: str | Path | None = POSTERIOR,
) -> str:
    """The validation page (Markdown) of the batch in `folder`.

    Args:
        folder: A batch folder (`tissue-abm batch ... --out folder`).
        figures: Folder for the page's figures (PNG), linked relative to `figures`' parent;
            None draws none.
        n_boot: Bootstrap resamples of every interval.
        posterior: The calibration's posterior table (`studies.abc`), summarised with the
            targets; None (or a missing file) leaves the summary out.

    Returns:
        The page, ending with a newline.
    """
    folder = Path(folder)
    results = load_results(folder)
    names = set(results["scenario"].astype(str).unique())
    long = [s for s in LIFESPAN_SCENARIOS if s in names]
    if not long:
        missing = [s for s in LIFESPAN_SCENARIOS if s not in names]
        raise ValueError(
            f"{folder} holds none of the experiment scenarios the validation page needs "
            f"(missing: {', '.join(missing)}); run `tissue-abm batch scenarios/*.toml "
            f"scenarios/experiments/*.toml --out {folder}` first"
        )
    own = point_parameters(folder)
    params = own.get(("wild_type", 0), Parameters())  # the calibrated values this batch used
    lives = survival.lifespans(results[results["scenario"].isin(long)], own)
    context = _Context(
        results,
        lives,
        survival.healthspan_to_death(end_state(results, params.healthspan_threshold), lives),
        n_boot,
        None if figures is None else Path(figures),
    )
    manifest = read_manifest(folder)
    sections = [
        _header(folder, manifest, results),
        _targets(context, params, posterior),
        _expectations(context),
        _therapies(context),
        _hypotheses(context),
        _timing(context),
        _dose_response(context),
        _transplant(context),
        _spatial(folder, names),
        _synergy(context),
        _limits(context),
    ]
    return "\n".join(sections)


class _Context:
    """What the sections share: results, per-organism lifespans, per-run end states."""

    def __init__(
        self,
        results: pd.DataFrame,
        lives: pd.DataFrame,
        ends: pd.DataFrame,
        n_boot: int,
        figures: Path | None,
    ) -> None:
        self.results, self.lives, self.ends = results, lives, ends
        self.n_boot, self.figures = n_boot, figures
        self.names = set(results["scenario"].astype(str).unique())

    def missing(self, needed: Sequence[str]) -> str | None:
        """A note naming the experiment files to run if a scenario is missing, else None."""
        absent = [name for name in needed if name not in self.names]
        if not absent:
            return None
        files = ", ".join(f"scenarios/experiments/{name}.toml" for name in absent)
        return f"*Not in this batch: run {files}.*\n"

    def select(
        self, table: pd.DataFrame, scenario: str, point: Mapping[str, float] | None = None
    ) -> pd.DataFrame:
        """Rows of one scenario at one sweep point."""
        chosen = table["scenario"].astype(str) == scenario
        for column, value in (point or {}).items():
            chosen &= np.isclose(table[column].astype(float), value)
        return table[chosen]

    def lifespan(self, scenario: str, point: Mapping[str, float] | None = None) -> pd.Series:
        """Median and 90th-percentile lifespan (days) with intervals."""
        chosen = self.select(self.lives, scenario, point)
        return survival.survival_summary(chosen, n_boot=self.n_boot).iloc[0]

    def healthspan(
        self, scenario: str, point: Mapping[str, float] | None = None
    ) -> tuple[float, float, float]:
        """Median healthspan (days; inf: not reached) with a bootstrap interval over runs."""
        spans = self.select(self.ends, scenario, point)["healthspan"].to_numpy(dtype=float)
        return _boot_interval(spans, median_healthspan, self.n_boot)

    def value_at(
        self, scenario: str, readout: str, age: float, point: Mapping[str, float] | None = None
    ) -> tuple[float, float, float]:
        """Mean of a readout at an age over runs, with a bootstrap interval."""
        chosen = self.select(self.results, scenario, point)
        x = chosen.loc[np.isclose(chosen["age"], age), readout].to_numpy(dtype=float)
        return _boot_interval(x, np.mean, self.n_boot)


def _boot_interval(
    values: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    n_boot: int,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """`statistic` of `values` with its bootstrap interval over them (`summary.resample`)."""
    if values.size == 0:
        return math.nan, math.nan, math.nan
    point = float(statistic(values))
    if values.size < 2:
        return point, math.nan, math.nan
    boot = resample(values.size, lambda pick: statistic(values[pick]), n_boot, _rng())
    return (point, *percentile_ci(boot, confidence, unbounded=True))


def _rng() -> np.random.Generator:
    """The page's resampling generator, seeded alike for every interval (each reproducible)."""
    return np.random.default_rng(0)


def _days(value: float, low: float = math.nan, high: float = math.nan, digits: int = 3) -> str:
    """Days as "870 d (2.38 y)" with an optional interval."""

    def one(x: float) -> str:
        return "not reached" if math.isinf(x) or math.isnan(x) else f"{x:.0f}"

    text = one(value) + (f" d ({value / YEAR:.{digits}g} y)" if math.isfinite(value) else "")
    if math.isnan(low) and math.isnan(high):
        return text
    return f"{text} [{one(low)}, {one(high)}]"


def _months(age: float) -> str:
    """An age in days as whole months."""
    return f"{12 * age / YEAR:.0f} months"


def _percent(value: float, low: float = math.nan, high: float = math.nan) -> str:
    text = f"{100 * value:.2f}%"
    return text if math.isnan(low) else f"{text} [{100 * low:.2f}, {100 * high:.2f}]"


def _yes(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


# --- sections ---------------------------------------------------------------------------------


def _header(folder: Path, manifest: dict, results: pd.DataFrame) -> str:
    runs = len(results[run_columns(results)].drop_duplicates())
    engines = ", ".join(sorted(results["engine"].astype(str).unique()))
    made = manifest.get("provenance", {})
    commit = made.get("git_commit") or "unknown"
    return (
        "# Validation\n\n"
        "Generated by `tissue-abm validate results/validation --out docs/validation.md` from "
        "the batch\n`tissue-abm batch scenarios/*.toml scenarios/experiments/*.toml --out "
        "results/validation`;\ndo not edit by hand. "
        f"{runs} runs, engine {engines}, tissue-abm {made.get('version', '?')}, "
        f"commit `{str(commit)[:10]}`, batch started {manifest.get('started', '?')[:10]}.\n\n"
        "Intervals are 95% percentile bootstrap intervals over replicate runs (lifespans: a "
        "cluster bootstrap over runs, each run driving 200 organisms; see "
        "`tissue_abm.analysis.survival`). Experiment files are in `scenarios/experiments/`; the "
        "analyses in `tissue_abm.analysis.experiments`.\n"
    )


def _targets(c: _Context, params: Parameters, posterior: str | Path | None) -> str:
    rows = []
    if c.missing(["wild_type", "pulse_chase_young", "pulse_chase_old"]) is None:
        for target, estimate in zip((HALF_LIFE_YOUNG, HALF_LIFE_OLD), _half_lives(c), strict=True):
            rows.append(
                _target_row(
                    target,
                    f"{estimate.value:.1f} d [{estimate.ci_low:.1f}, {estimate.ci_high:.1f}]",
                    target.met(estimate.value),
                )
            )
    if "wild_type" in c.names:
        life = c.lifespan("wild_type")
        rows.append(
            _target_row(
                MEDIAN_LIFESPAN,
                _days(life["median_lifespan"], life["median_ci_low"], life["median_ci_high"]),
                MEDIAN_LIFESPAN.met(life["median_lifespan"]),
            )
        )
        worst, low, high = _production(c, params)
        rows.append(
            _target_row(PRODUCTION, f"{worst:.2f} [{low:.2f}, {high:.2f}]", PRODUCTION.met(worst))
        )
    ratio = calibration.oxytocin_ratio(params)
    rows.append(_target_row(OXYTOCIN_DECLINE, f"{ratio:.2f}", ratio <= 1 / 3))
    if c.missing(["wild_type", "rapamycin_itp"]) is None:
        gain, low, high = _gain(c, "rapamycin_itp", "wild_type")
        rows.append(
            _target_row(
                RAPAMYCIN_GAIN,
                f"{gain:+.1%} [{low:+.1%}, {high:+.1%}]",
                RAPAMYCIN_GAIN.met(gain),
            )
        )
    table = markdown_table(
        ["target", "source", "model [95% CI]", "target ± tolerance", ""],
        rows,
        ["l", "l", "r", "r", "l"],
    )
    return (
        "## Calibration targets\n\n"
        "The six targets the calibration fits, all at once and nothing else "
        "(`tissue-abm calibrate`, ABC-SMC: [calibration.md](calibration.md)), measured here on "
        "this batch's full-size runs, independent of the calibration's own. A target is met "
        "when the estimate lies within its tolerance. The half-life is the log-linear decay "
        "rate of the pulse's excess senescent cells over the same-seed wild type, from its peak "
        f"until it falls below {experiments.FIT_FLOOR:.0%} of it (`experiments.half_life`); the "
        "production is k·P(t)/(η·t) at the month from 3 to 30 where it is farthest from 1 "
        "(`calibration.production_ratios`).\n\n" + table + _posterior(posterior, params)
    )


def _target_row(target: Target, model: str, met: bool) -> list[str]:
    if target is MEDIAN_LIFESPAN:
        tolerance = f"{target.value / YEAR:.1f} ± {target.tolerance / YEAR:.1f} y"
    elif target is OXYTOCIN_DECLINE:
        tolerance = "≤ 1/3"
    elif target.unit == "fraction":
        tolerance = f"{target.value:+.0%} ± {target.tolerance:.0%}"
    elif target.unit == "days":
        tolerance = f"{target.value:g} ± {target.tolerance:g} d"
    else:
        tolerance = f"{target.value:g} ± {target.tolerance:g}"
    return [target.name, target.source, model, tolerance, _yes(met)]


def _half_lives(c: _Context) -> tuple[experiments.Estimate, experiments.Estimate]:
    """The pulse–chase half-lives (young, old) with their bootstrap intervals."""
    young, old = (
        experiments.pulse_chase(
            c.results, f"pulse_chase_{which}", "wild_type", age, n_boot=c.n_boot
        )
        for which, age in (
            ("young", calibration.HALF_LIFE_YOUNG_AGE),
            ("old", calibration.HALF_LIFE_OLD_AGE),
        )
    )
    return young, old


def _production(c: _Context, params: Parameters) -> tuple[float, float, float]:
    """The worst month's production ratio of the wild type, with a bootstrap over its runs."""
    runs = c.select(c.results, "wild_type")
    seeds = runs["seed"].unique()

    def worst(picked: np.ndarray) -> float:
        chosen = pd.concat(
            [runs[runs["seed"] == seed].assign(seed=k) for k, seed in enumerate(picked)]
        )
        ratios = calibration.production_ratios(chosen, params)
        return float(ratios[np.argmax(np.abs(ratios - 1.0))])

    boot = resample(seeds.size, lambda pick: worst(seeds[pick]), min(c.n_boot, 200), _rng())
    return (worst(seeds), *percentile_ci(boot, 0.95))


def _gain(c: _Context, treated: str, control: str) -> tuple[float, float, float]:
    """Treated over control median lifespan, minus 1, with a bootstrap over paired replicates."""
    lives = {name: c.select(c.lives, name) for name in (treated, control)}
    replicates = np.intersect1d(
        lives[treated]["replicate"].unique(), lives[control]["replicate"].unique()
    )

    def gain(picked: np.ndarray) -> float:
        medians = []
        for table in lives.values():
            chosen = pd.concat([table[table["replicate"] == r] for r in picked])
            km = survival.kaplan_meier(chosen["lifespan"].to_numpy(), chosen["observed"].to_numpy())
            medians.append(survival.quantile_lifespan(km, 0.5))
        return medians[0] / medians[1] - 1.0

    boot = resample(
        replicates.size, lambda pick: gain(replicates[pick]), min(c.n_boot, 400), _rng()
    )
    return (gain(replicates), *percentile_ci(boot, 0.95, unbounded=True))


def _posterior(path: str | Path | None, params: Parameters) -> str:
    """The fitted parameters: posterior medians and 90% intervals, and the runs' values."""
    if path is None or not Path(path).exists():
        return ""
    table = read_posterior(path)
    weights = table["weight"].to_numpy()
    rows = []
    for name, prior in FITTED.items():
        values = table[name].to_numpy()
        low, median, high = (weighted_quantile(values, weights, q) for q in (0.05, 0.5, 0.95))
        rows.append(
            [
                f"`{name}`",
                f"{median:.3g}",
                f"{low:.3g} – {high:.3g}",
                f"{getattr(params, name):.3g}",
                f"{prior.low:g} – {prior.high:g}" + (" (log)" if prior.log else ""),
            ]
        )
    return (
        "\n\nThe fitted parameters: weighted medians and 90% intervals of the calibration's last "
        f"generation ({len(table)} particles), and the values these runs used (the defaults of "
        "`biology/params.py` are the particle that best reproduces the targets when simulated "
        "again, `studies.abc.choose_defaults`).\n\n"
        + markdown_table(
            ["parameter", "posterior median", "90% interval", "in these runs", "prior (uniform)"],
            rows,
            ["l", "r", "r", "r", "r"],
        )
    )


def _expectations(c: _Context) -> str:
    rows = []
    if c.missing(["wild_type", "pulse_chase_young", "pulse_chase_old"]) is None:
        young, old = _half_lives(c)
        rows.append(
            [
                "half-life after a pulse is longer in old than in young tissue",
                "Karin 2019 (§1)",
                f"{young.value:.1f} d → {old.value:.1f} d",
                _holds(old.ci_low > young.ci_high),
            ]
        )
    if c.missing(["wild_type", "immune_knockout"]) is None:
        diff = experiments.difference_by_age(
            c.results,
            "immune_knockout",
            "wild_type",
            "senescent_fraction",
            [LATE_AGE],
            n_boot=c.n_boot,
        ).iloc[0]
        rows.append(
            [
                "immune knock-out raises late-life senescent burden (24 months)",
                "Ovadya 2018 (§6)",
                f"{_percent(diff['reference_mean'])} → {_percent(diff['mean'])} "
                f"(+{100 * diff['ci_low']:.2f} to +{100 * diff['ci_high']:.2f} pp)",
                _holds(diff["ci_low"] > 0),
            ]
        )
        ko, wt = c.lifespan("immune_knockout"), c.lifespan("wild_type")
        rows.append(
            [
                "immune knock-out shortens median lifespan",
                "Ovadya 2018 (§6)",
                f"{_days(wt['median_lifespan'])} → {_days(ko['median_lifespan'])}",
                _holds(ko["median_ci_high"] < wt["median_ci_low"]),
            ]
        )
    if c.missing(["wild_type", "senolytic_control"]) is None:
        sen, wt = c.lifespan("senolytic_control"), c.lifespan("wild_type")
        rows.append(
            [
                "senolytic control extends median lifespan",
                "Baker 2016 (§3)",
                f"{_days(wt['median_lifespan'])} → {_days(sen['median_lifespan'])}",
                _holds(sen["median_ci_low"] > wt["median_ci_high"]),
            ]
        )
    if "wild_type" in c.names:
        mean, low, high = c.value_at("wild_type", "senescent_fraction", LATE_AGE)
        rows.append(
            [
                "senescent cells are ~1–5% of cells in old tissue (24 months)",
                "rule of thumb (§8 [S])",
                _percent(mean, low, high),
                _holds(0.01 <= mean <= 0.05),
            ]
        )
    return (
        "## Expected behaviours\n\n"
        "Each holds when the 95% intervals of the two sides do not overlap (or the "
        "interval lies in the stated range). The model's knock-out removes the perforin route "
        "(`immune_kill` = 0) and keeps the phagocytic one; none of these expectations is "
        "fitted.\n\n"
        + markdown_table(
            ["expectation", "source", "model [95% CI]", ""], rows, ["l", "l", "r", "l"]
        )
    )


def _holds(ok: bool) -> str:
    return "**holds**" if ok else "**does not hold**"


def _therapies(c: _Context) -> str:
    rows = []
    base = c.lifespan("wild_type") if "wild_type" in c.names else None
    base_health = c.healthspan("wild_type")[0] if base is not None else math.nan
    for label, (scenario, point) in THERAPIES.items():
        if scenario not in c.names:
            continue
        life = c.lifespan(scenario, point)
        health = c.healthspan(scenario, point)
        burden = c.value_at(scenario, "senescent_fraction", LATE_AGE, point)
        end = float(c.select(c.results, scenario, point)["age"].max())
        change = _change(
            life["median_lifespan"], base["median_lifespan"] if base is not None else math.nan, end
        )
        rows.append(
            [
                label,
                _days(life["median_lifespan"], life["median_ci_low"], life["median_ci_high"]),
                change,
                _days(life["p90_lifespan"]),
                _days(*health),
                _change(health[0], base_health, end),
                _percent(*burden),
            ]
        )
    figure = ""
    if c.figures is not None and rows:
        chosen = pd.concat(
            [
                c.select(c.lives, s, p).assign(scenario=label)
                for label, (s, p) in THERAPIES.items()
                if s in c.names
            ],
            ignore_index=True,
        )
        chosen = chosen.drop(columns=[col for col in chosen.columns if col.startswith("therapy.")])
        figure = _save(
            plots.survival_curves(chosen, n_boot=c.n_boot),
            c.figures,
            "survival.png",
            "Survival (Kaplan–Meier, 95% band)",
        ) + _save(
            plots.hazard_curves(chosen, n_boot=c.n_boot),
            c.figures,
            "hazard.png",
            "Hazard over age (30-day bins, 95% band)",
        )
    return (
        "## Therapies: lifespan and healthspan\n\n"
        "Therapies from 12 months as in the canonical scenarios (rapamycin 1 mg/kg daily, "
        "a daily oxytocin pulse of one young level, both together; the senolytic every 30 "
        "days), 20 runs each to 6 years (untreated and knock-out: to 4 years). Healthspan: "
        "age at which health ends, by tissue function falling below the threshold or by "
        "death, whichever comes first (per run, the earlier of its tissue's loss and its "
        "organisms' median lifespan; `survival.healthspan_to_death`); not reached: the median "
        "run kept both to the end. Changes are from the untreated median.\n\n"
        + markdown_table(
            [
                "scenario",
                "median lifespan [95% CI]",
                "change",
                "90th pct",
                "median healthspan [95% CI]",
                "change",
                "senescent at 24 mo [95% CI]",
            ],
            rows,
        )
        + figure
    )


HYPOTHESIS_VARIANTS = {
    "all at their defaults": set(),
    "oxytocin's SASP damping off": {"ot_sasp_damping"},
    "oxytocin's immune gain off": {"ot_immune_gain"},
    "mTORC2 cost off": {"mtorc2_hazard"},
    "all off": {"ot_sasp_damping", "ot_immune_gain", "mtorc2_hazard"},
}
"""Rows of the hypotheses table: label -> the hypothesis parameters switched off (set to 0)."""


def _hypotheses(c: _Context) -> str:
    note = c.missing(["hypotheses"])
    if note:
        return "## Hypotheses on and off\n\n" + note
    runs = c.select(c.results, "hypotheses")
    rapa, oxy = "therapy.rapamycin.dose", "therapy.oxytocin.dose"
    rows = []
    for label, off in HYPOTHESIS_VARIANTS.items():
        values = {name: 0.0 if name in off else runs[name].max() for name in HYPOTHESES}
        medians = {}
        for therapy, doses in (
            ("untreated", (0.0, 0.0)),
            ("rapamycin", (1.0, 0.0)),
            ("oxytocin", (0.0, 1.0)),
            ("both", (1.0, 1.0)),
        ):
            point = {**values, rapa: doses[0], oxy: doses[1]}
            medians[therapy] = c.lifespan("hypotheses", point)["median_lifespan"]
        base = medians["untreated"]
        best = max(medians["rapamycin"], medians["oxytocin"])
        rows.append(
            [
                label,
                _days(base),
                *(f"{medians[t] / base - 1:+.1%}" for t in ("rapamycin", "oxytocin", "both")),
                f"{medians['both'] / best - 1:+.1%}",
            ]
        )
    return (
        "## Hypotheses on and off\n\n"
        "The parameters whose effect has no direct evidence ([parameters.md](parameters.md), "
        "**hypothesis**) switched off one at a time and all together "
        "(`scenarios/experiments/hypotheses.toml`: therapies from 12 months, "
        f"{runs['replicate'].nunique()} runs per cell). Median lifespans, changes from the "
        "untreated median of the same row; the last column is the combination against the "
        "better single drug.\n\n"
        + markdown_table(
            ["hypotheses", "untreated", "rapamycin", "oxytocin", "both", "both vs better single"],
            rows,
        )
    )


def _change(value: float, base: float, end: float) -> str:
    """`value − base` in days; "> +x d" when `value` is not reached by the run's `end` age."""
    if not math.isfinite(base):
        return "–"
    if not math.isfinite(value):
        return f"> {end - base:+.0f} d"
    return f"{value - base:+.0f} d"


def _timing(c: _Context) -> str:
    note = c.missing(["timing_rapamycin", "timing_oxytocin", "timing_combined"])
    if note:
        return "## Therapy timing\n\n" + note
    rows = []
    for label, scenario in (
        ("rapamycin", "timing_rapamycin"),
        ("oxytocin", "timing_oxytocin"),
        ("both", "timing_combined"),
    ):
        column = (
            "therapy.oxytocin.start_age"
            if scenario == "timing_oxytocin"
            else "therapy.rapamycin.start_age"
        )
        for start in sorted(c.select(c.results, scenario)[column].unique()):
            point = {column: float(start)}
            life = c.lifespan(scenario, point)
            rows.append(
                [
                    label,
                    _months(start),
                    _days(life["median_lifespan"], life["median_ci_low"], life["median_ci_high"]),
                    _days(*c.healthspan(scenario, point)),
                    _percent(*c.value_at(scenario, "senescent_fraction", LATE_AGE, point)),
                ]
            )
    return (
        "## Therapy timing\n\n"
        "The same regimens started at 3, 12 or 20 months (the source article's window "
        "argument).\n\n"
        + markdown_table(
            [
                "therapy",
                "start",
                "median lifespan [95% CI]",
                "median healthspan [95% CI]",
                "senescent at 24 mo",
            ],
            rows,
        )
    )


def _dose_response(c: _Context) -> str:
    note = c.missing(["rapamycin_dose_response", "rapamycin_schedule"])
    if note:
        return "## Rapamycin dose–response and schedule\n\n" + note
    rows = []
    for dose in sorted(
        c.select(c.results, "rapamycin_dose_response")["therapy.rapamycin.dose"].unique()
    ):
        point = {"therapy.rapamycin.dose": float(dose)}
        rows.append([f"{dose:g} mg/kg daily", *_outcomes(c, "rapamycin_dose_response", point)])
    schedule = c.select(c.results, "rapamycin_schedule")
    keys = [
        "therapy.rapamycin.dose",
        "therapy.rapamycin.every",
        "therapy.rapamycin.on_days",
        "therapy.rapamycin.off_days",
    ]
    for values in schedule[keys].drop_duplicates().itertuples(index=False):
        point = dict(zip(keys, map(float, values), strict=True))
        dose, every, on, off = values
        label = f"{dose:g} mg/kg every {every:g} d" + (
            f", {on:g} d on / {off:g} d off" if on else ""
        )
        rows.append([label, *_outcomes(c, "rapamycin_schedule", point)])
    return (
        "## Rapamycin dose–response and schedule\n\n"
        "From 12 months; the schedules give the same mean dose (1 mg/kg/day).\n\n"
        + markdown_table(
            [
                "regimen",
                "median lifespan [95% CI]",
                "median healthspan [95% CI]",
                "senescent at 24 mo",
            ],
            rows,
        )
    )


def _outcomes(c: _Context, scenario: str, point: dict[str, float]) -> list[str]:
    life = c.lifespan(scenario, point)
    return [
        _days(life["median_lifespan"], life["median_ci_low"], life["median_ci_high"]),
        _days(*c.healthspan(scenario, point)),
        _percent(*c.value_at(scenario, "senescent_fraction", LATE_AGE, point)),
    ]


def _transplant(c: _Context) -> str:
    note = c.missing(["transplant_senescent", "transplant_healthy"])
    if note:
        return "## Transplant\n\n" + note
    rows = []
    column = "perturbation.0.age"
    for age in sorted(c.select(c.results, "transplant_senescent")[column].unique()):
        chosen = c.results[np.isclose(c.results[column].astype(float), age)]
        extra = experiments.secondary_senescence(
            chosen, "transplant_senescent", "transplant_healthy", float(age), n_boot=c.n_boot
        )
        later = float(age) + 30
        function = experiments.difference_by_age(
            chosen,
            "transplant_senescent",
            "transplant_healthy",
            "tissue_function",
            [later],
            n_boot=c.n_boot,
        ).iloc[0]
        rows.append(
            [
                _months(age),
                f"{extra.value:.1f} [{extra.ci_low:.1f}, {extra.ci_high:.1f}]",
                f"{100 * function['difference']:+.2f} pp [{100 * function['ci_low']:+.2f},"
                f" {100 * function['ci_high']:+.2f}]",
            ]
        )
    return (
        "## Transplant\n\n"
        "30 senescent cells (0.3% of the sites) placed as a cluster at the lattice centre, "
        "against 30 healthy cells, in young and old hosts; host cells turned senescent over "
        "the next 30 days (primary and paracrine events) beyond the sham, and the change in "
        "tissue function 30 days after.\n\n"
        + markdown_table(
            ["host age", "extra host senescent cells [95% CI]", "tissue function after 30 d"], rows
        )
    )


def _spatial(folder: Path, names: set[str]) -> str:
    wanted = [name for name in ("wild_type", "immune_knockout") if name in names]
    if not wanted:
        return (
            "## Spatial statistics\n\n*Not in this batch: run scenarios/experiments/"
            "wild_type.toml.*\n"
        )
    shots = load_snapshots(folder)
    shots = shots[shots["scenario"].astype(str).isin(wanted)]
    table = spatial.senescent_spatial(shots, n_null=99)
    rows = []
    for (scenario, age), part in table.groupby(["scenario", "age"], observed=True):
        rows.append(
            [
                scenario,
                _months(age),
                f"{part['senescent'].mean():.0f}",
                f"{part['R'].mean():.3f}",
                f"{part['R_null'].mean():.3f}",
                f"{(part['p_value'] < 0.05).mean():.0%}",
                f"{part['g_1'].mean():.2f}",
            ]
        )
    return (
        "## Spatial statistics\n\n"
        "Clark–Evans index R of the senescent cells (mean nearest-neighbour distance over "
        "its expectation; < 1 clustered) against a null that places the same number at "
        "random among the occupied sites (99 draws per snapshot), and the pair correlation "
        "g(1) of nearest neighbours (> 1: senescent cells next to each other more often "
        "than at random), averaged over the runs' snapshots (`tissue_abm.analysis.spatial`). "
        "Nelson et al. 2012 report clusters of senescent hepatocytes.\n\n"
        + markdown_table(
            [
                "scenario",
                "age",
                "senescent cells",
                "R",
                "R (null)",
                "runs clustered (p < 0.05)",
                "g(1)",
            ],
            rows,
        )
    )


def _synergy(c: _Context) -> str:
    note = c.missing(["dose_grid"])
    if note:
        return "## Synergy over the dose grid\n\n" + note
    grid = c.select(c.results, "dose_grid")
    day = int(LATE_AGE - grid["age"].min())
    scored = [
        (
            "senescent fraction at 24 months",
            dose_grid_synergy(grid, "senescent_fraction", day=day, n_boot=c.n_boot),
        )
    ]
    ends = c.select(c.ends, "dose_grid")
    scored.append(
        ("healthspan", dose_grid_synergy(grid, "healthspan", values=ends, n_boot=c.n_boot))
    )
    scored.append(
        (
            "lifespan",
            dose_grid_synergy(
                grid,
                "lifespan",
                values=_run_lifespans(c.select(c.lives, "dose_grid"), ends),
                n_boot=c.n_boot,
            ),
        )
    )
    lines = []
    for label, table in scored:
        summary = dose_grid_summary(table)
        lines += [f"- **{label}**: {sentence}" for sentence in summary["sentence"]]
        if c.figures is not None:
            name = label.split()[0] + ".png"
            lines.append(
                _save(
                    plots.synergy_surface(table, method=None),
                    c.figures,
                    f"synergy_{name}",
                    f"Synergy surfaces, {label}",
                )
            )
    return (
        "## Synergy over the dose grid\n\n"
        "Rapamycin 0–2 mg/kg × oxytocin 0–2 young levels from 12 months, 10 runs per "
        "cell to 6 years; Bliss and HSA excess of every combination cell over the "
        "expectation from its single agents (SynergyFinder's reading: < −10% "
        "antagonism, −10% to +10% additive, > +10% synergy). Healthspan and lifespan are "
        "scored as days lost before 6 years (see `synergy.dose_grid_synergy`).\n\n"
        + "\n".join(lines)
        + "\n"
    )


def _run_lifespans(lives: pd.DataFrame, ends: pd.DataFrame) -> pd.DataFrame:
    """Median lifespan of each run's organisms (NaN if not reached), with the run's end age."""
    keys = run_columns(lives)
    rows = []
    for key, run in lives.groupby(keys, observed=True, sort=False, dropna=False):
        km = survival.kaplan_meier(run["lifespan"].to_numpy(), run["observed"].to_numpy())
        rows.append([*key, survival.quantile_lifespan(km, 0.5)])
    table = pd.DataFrame(rows, columns=[*keys, "lifespan"])
    return table.merge(ends[[*keys, "age"]], on=keys)


def _save(figure: Figure, folder: Path, name: str, caption: str) -> str:
    """Save a figure as PNG in `folder`; the Markdown image linking it from the page."""
    folder.mkdir(parents=True, exist_ok=True)
    figure.savefig(folder / name, dpi=110)
    return f"\n![{caption}]({folder.name}/{name})\n"


def _limits(c: _Context) -> str:
    """Where the model is weakest: numbers a reader should weigh before trusting an answer."""
    items = [
        "**Calibration.** The defaults are one particle of a coarse posterior (its generations "
        "and effective size are in calibration.md): chosen for reproducing the targets, they are "
        "not the only parameter sets that do, and the posterior spreads widely where "
        "parameters trade off (e.g. the phagocytic route against the old immune competence; "
        "[calibration.md](calibration.md)). An answer that matters should run over posterior "
        "draws, not over the defaults alone."
    ]
    if "wild_type" in c.names:
        late = [
            (months, c.value_at("wild_type", "senescent_fraction", round(months * YEAR / 12))[0])
            for months in (24, 30, 36, 42)
        ]
        shown = ", ".join(f"{100 * v:.1f}% at {m} months" for m, v in late if math.isfinite(v))
        items.append(
            "**Late life.** The untreated tissue's senescent fraction is "
            f"{shown}. Past ~30 months paracrine spread can outrun clearance; the organism's "
            "survival then depends on the tissue's production there, which no target constrains "
            "(the production target stops at 30 months)."
        )
    if c.missing(["wild_type", "immune_knockout"]) is None:
        ko = c.value_at("immune_knockout", "senescent_fraction", LATE_AGE)[0]
        wt = c.value_at("wild_type", "senescent_fraction", LATE_AGE)[0]
        lives = c.lifespan("immune_knockout")["median_lifespan"]
        base = c.lifespan("wild_type")["median_lifespan"]
        items.append(
            "**Perforin knock-out.** Burden at 24 months "
            f"×{ko / wt:.1f} the wild type's and median lifespan {lives / base - 1:+.0%}. "
            "Ovadya 2018 report a higher burden and lower survival without numbers this model "
            "could be held to; the size of the perforin-independent route is fitted to the "
            "half-lives, not to the knock-out."
        )
    if c.missing(["wild_type", "senolytic_control"]) is None:
        gain = (
            c.lifespan("senolytic_control")["median_lifespan"]
            / c.lifespan("wild_type")["median_lifespan"]
        )
        items.append(
            "**Senolytics.** Removing half of the senescent cells every 30 days from 12 months "
            f"changes median lifespan by {gain - 1:+.0%}: the organism's senescent abundance "
            "loses the same share at each dose, which is the model's definition of a dose, not a "
            "fit to any senolytic study."
        )
    if c.missing(["wild_type", "timing_oxytocin"]) is None:
        spans = {
            name: median_healthspan(c.select(c.ends, name, point)["tissue_healthspan"])
            for name, point in (THERAPIES["untreated"], THERAPIES["oxytocin"])
        }
        base, treated = spans["wild_type"], spans["timing_oxytocin"]
        death = c.lifespan("wild_type")["median_lifespan"]
        items.append(
            "**Healthspan.** Health ends at the earlier of tissue-function loss (below "
            "`healthspan_threshold`, assumed) and death. The untreated tissue alone keeps its "
            f"function to {_days(base)}, against a median death at {_days(death)}, so "
            "healthspan mostly follows lifespan. Counting tissue function alone, oxytocin "
            f"would gain {treated - base:+.0f} d, through its regeneration arm, whose size "
            "(`ot_regeneration_gain`) is assumed: Elabd 2014 measured muscle repair after an "
            "injury, not healthspan."
        )
    items.append(
        "**Oxytocin.** Its lifespan effect comes from its hypothesis arms (SASP damping and "
        "immune gain; see *Hypotheses on and off*); its evidenced arm, regeneration, raises "
        "tissue function but makes no senescent cells fewer."
    )
    return "## Where the model may be wrong\n\n" + "\n\n".join(f"- {i}" for i in items) + "\n"

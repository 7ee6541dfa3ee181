"""Organism survival from the tissue's production of senescent cells (Karin 2019, v2)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.lines import Line2D

from factories import results_rows, results_table
from tissue_abm import Parameters
from tissue_abm.analysis.plots import hazard_curves, survival_curves
from tissue_abm.analysis.summary import sweep_columns
from tissue_abm.analysis.survival import (
    burden_paths,
    hazard,
    healthspan_to_death,
    kaplan_meier,
    lifespans,
    organism_deaths,
    other_hazard,
    production,
    quantile_lifespan,
    survival_at,
    survival_curves_table,
    survival_summary,
)
from tissue_abm.biology.rules import DAYS_PER_YEAR
from tissue_abm.runs.batch import execute, plan_batch

# Karin's SR parameters with a production scale of 1000, no other-cause deaths, independent of
# the calibrated defaults (the hand-made productions below are sized for them).
DEFAULTS = Parameters(sr_production_scale=1000.0, background_hazard=0.0, mtorc2_hazard=0.0)
START = 90.0
AGES = np.arange(START, START + 1001.0)  # 90 to 1090 days, daily
SITES = 10_000
ETA = 0.084 / DAYS_PER_YEAR  # Karin's rise of production, per day per day of age


def varied(**changes) -> Parameters:
    return Parameters(**{**DEFAULTS.model_dump(), **changes})


def karin(ages: np.ndarray = AGES, scale: float = 1.0) -> np.ndarray:
    """Production per site and day whose k·P is `scale` times Karin's η·t (t: age)."""
    return scale * ETA * ages / DEFAULTS.sr_production_scale


def none(ages: np.ndarray = AGES) -> np.ndarray:
    return np.zeros(ages.size)


def deaths(made, params=DEFAULTS, organisms=400, seed=0, senolytic=None, hazard_=None, ages=AGES):
    return organism_deaths(
        ages,
        made,
        none(ages) if senolytic is None else senolytic,
        none(ages) if hazard_ is None else hazard_,
        params,
        organisms,
        np.random.default_rng(seed),
    )


def burden_results(
    runs: list[dict],
    ages: np.ndarray = AGES,
    sweep: str | None = None,
) -> pd.DataFrame:
    """A hand-made results table in the layout of `load_results`. Each run: `scenario`,
    `replicate`, `seed` and `made` (its production per site and day on `ages`: the new
    senescent cells of a row are made × sites × days since the previous row); with `sweep`,
    also `value` (the swept column's value, one point per distinct value)."""
    gaps = np.diff(ages, prepend=ages[0])
    return results_table(
        *(
            results_rows(
                run["scenario"],
                point=run.get("point", 0),
                sweep={sweep: run["value"]} if sweep else None,
                replicate=run["replicate"],
                seed=run["seed"],
                age=ages,
                healthy=SITES - 50,
                senescent=50,
                empty=0,
                senescent_fraction=50 / SITES,
                new_primary=run["made"] * SITES * gaps,
                new_paracrine=0,
                new_replicative=0,
                senolytic_fraction=0.0,
                mtorc2_inhibition=run.get("mtorc2", 0.0),
                tissue_function=1.0 - run["made"],
            )
            for run in runs
        )
    )


# --- the SR path of one run -----------------------------------------------------------------


def test_without_noise_a_constant_production_holds_the_saturating_removal_steady_state():
    # dX = q − βX/(X + κ): the steady state is X* = κq/(β − q) (q = k·P < β). The path starts
    # there and stays: removal balances production exactly.
    quiet = varied(sr_noise=0.0)
    made = np.full(AGES.size, 0.1 / quiet.sr_production_scale)  # q = 0.1/day < β = 0.15
    paths = burden_paths(AGES, made, none(), quiet, 3, np.random.default_rng(0))
    expected = quiet.sr_half_saturation * 0.1 / (quiet.sr_removal_max - 0.1)  # 1.0
    np.testing.assert_allclose(paths, expected, rtol=1e-12)


def test_without_noise_a_production_above_the_capacity_grows_the_burden_until_death():
    # q = 0.65 > β = 0.15: X starts at 0 and grows by q − βX/(X + κ), between q − β = 0.5 and
    # q = 0.65 a day, so it crosses X_c = 17 between 17/0.65 = 26 and 17/0.5 = 34 days.
    quiet = varied(sr_noise=0.0)
    made = np.full(AGES.size, 0.65 / quiet.sr_production_scale)
    lifespan, observed = deaths(made, quiet, organisms=3)
    assert observed.all() and len(set(lifespan)) == 1
    assert 26 <= lifespan[0] - START <= 34


def test_the_noise_variance_grows_as_2_eps_t_whatever_the_readout_interval():
    # A production of 1/day saturates removal at once (X ≫ κ within days): its pull on a
    # deviation d, β·κ·d/X², is negligible, so X diffuses freely with variance 2ε·t. Variance of
    # 2000 paths after 500 days: expected 2·0.16·500 = 160, standard error 160·√(2/2000) ≈ 5;
    # tolerance 10% (≈ 3 SE). A wrong √Δt scaling with 5-day gaps gives 32 or 800.
    for gap in (1.0, 5.0):
        ages = np.arange(START, START + 500.0 + gap, gap)
        made = np.full(ages.size, 1.0 / DEFAULTS.sr_production_scale)
        paths = burden_paths(ages, made, none(ages), DEFAULTS, 2000, np.random.default_rng(3))
        assert np.var(paths[-1]) == pytest.approx(2 * DEFAULTS.sr_noise * 500.0, rel=0.10), gap


def test_a_senolytic_dose_removes_its_share_of_the_organisms_senescent_cells():
    quiet = varied(sr_noise=0.0)
    made = np.full(AGES.size, 0.1 / quiet.sr_production_scale)
    senolytic = none()
    senolytic[100] = 0.5
    paths = burden_paths(AGES, made, senolytic, quiet, 2, np.random.default_rng(0))
    # the day's step from the steady state (X* = 1) leaves X* then the dose halves it
    assert paths[100, 0] == pytest.approx(0.5, rel=1e-12)
    assert paths[99, 0] == pytest.approx(1.0, rel=1e-12)
    assert (paths[101:, 0] > 0.5).all()  # production refills it


def test_with_karins_production_the_median_lifespan_is_karins():
    # Drive the organisms with Karin's production η·t from birth: the scheme is then Karin's
    # Euler–Maruyama simulation, whose median with the Fig. 4b mouse parameters is 2.38 y ≈
    # 870 d (references.md §1 [C], n = 20,000). 4000 organisms: sd of lifespan ≈ 135 d,
    # standard error of the median ≈ 1.25·135/√4000 ≈ 3 d; tolerance 15 d (5 SE). (From birth,
    # the first window's production is 0, so X starts at 0 as in Karin's simulation.)
    days = np.arange(0.0, 1601.0)
    lifespan, observed = deaths(karin(days), organisms=4000, seed=4, ages=days)
    median = quantile_lifespan(kaplan_meier(lifespan, observed), 0.5)
    assert median == pytest.approx(2.38 * 365.0, abs=15.0)


def test_a_lower_production_gives_longer_lives_and_a_higher_one_shorter():
    # Same noise (seed), production at 0.8, 1 and 1.25 of Karin's: the medians are ordered
    # (with 1000 organisms the standard error of each median is ~5 d, the gaps ~100 d).
    medians = [
        quantile_lifespan(kaplan_meier(*deaths(karin(scale=s), organisms=1000, seed=5)), 0.5)
        for s in (0.8, 1.0, 1.25)
    ]
    assert medians[0] > medians[1] + 40 > medians[2] + 80


def test_other_causes_kill_at_their_hazard_without_any_senescence():
    # No production: X stays 0; a constant hazard h kills each organism by age a with
    # probability 1 − exp(−h·(a − a0)): h = 1e-3/day over 1000 days gives 0.632. 4000
    # organisms: standard error 0.0076; tolerance 0.03 (4 SE).
    lifespan, observed = deaths(none(), organisms=4000, hazard_=np.full(AGES.size, 1e-3))
    assert observed.mean() == pytest.approx(1 - math.exp(-1.0), abs=0.03)
    # exponential lifespans: the median of the deaths before 1000 days is where 1−e^{−ht}
    # reaches half of 0.632, t = ln(1/(1 − 0.316))/h ≈ 380 d (SE ~10 d; tolerance 40 d)
    assert np.median(lifespan[observed]) - START == pytest.approx(380.0, abs=40.0)


def test_the_other_cause_hazard_is_the_background_plus_the_mtorc2_cost():
    params = varied(background_hazard=2e-5, mtorc2_hazard=3e-4)
    run = pd.DataFrame({"mtorc2_inhibition": [0.0, 0.5, 1.0]})
    np.testing.assert_allclose(other_hazard(run, params), [2e-5, 1.7e-4, 3.2e-4])


def test_production_counts_new_senescent_cells_per_site_and_day_of_each_window():
    # Kept rows every 5 days: a row's tallies count its window's 5 days.
    run = pd.DataFrame(
        {
            "age": [90.0, 95.0, 100.0, 101.0],
            "healthy": [90, 90, 90, 90],
            "senescent": [10, 10, 10, 10],
            "empty": [0, 0, 0, 0],
            "new_primary": [0, 5, 10, 1],
            "new_paracrine": [0, 5, 0, 0],
            "new_replicative": [0, 0, 5, 0],
        }
    )
    np.testing.assert_allclose(production(run), [0.0, 10 / 100 / 5, 15 / 100 / 5, 1 / 100 / 1])


@pytest.mark.parametrize(
    ("ages", "made", "organisms", "message"),
    [
        (AGES, karin()[:-1], 5, "same length"),
        (AGES[::-1], karin(), 5, "strictly increasing"),
        (AGES, karin() - 1.0, 5, ">= 0"),
        (AGES, np.where(AGES > 500, np.nan, 0.01), 5, ">= 0"),
        (AGES, karin(), 0, "organisms = 0"),
        (AGES, karin(), 2.5, "organisms = 2.5"),
    ],
)
def test_bad_run_inputs_are_named(ages, made, organisms, message):
    with pytest.raises(ValueError, match=message):
        organism_deaths(
            ages, made, none(ages), none(ages), DEFAULTS, organisms, np.random.default_rng(0)
        )


def test_a_senolytic_share_above_one_or_a_negative_hazard_is_refused():
    with pytest.raises(ValueError, match="senolytic"):
        deaths(karin(), senolytic=np.full(AGES.size, 1.5))
    with pytest.raises(ValueError, match="hazard"):
        deaths(karin(), hazard_=np.full(AGES.size, -1e-3))


# --- lifespans of a results table ----------------------------------------------------------


def two_scenarios() -> pd.DataFrame:
    runs = [
        {"scenario": name, "replicate": r, "seed": 7 + r, "made": karin(scale=slope)}
        for name, slope in (("untreated", 1.0), ("rapamycin", 0.8))
        for r in range(2)
    ]
    return burden_results(runs)


def test_lifespans_give_one_row_per_run_and_organism_with_the_run_labels():
    results = burden_results(
        [
            {
                "scenario": "untreated",
                "value": v,
                "point": p,
                "replicate": r,
                "seed": 7 + r,
                "made": karin(scale=1 + p),
            }
            for p, v in enumerate((0.4, 0.8))
            for r in range(3)
        ],
        sweep="immune_kill",
    )
    table = lifespans(results, DEFAULTS, organisms=20)
    assert list(table.columns) == [
        "scenario",
        "point",
        "immune_kill",
        "replicate",
        "organism",
        "start_age",
        "lifespan",
        "observed",
    ]
    assert len(table) == 2 * 3 * 20
    counts = table.groupby(["point", "immune_kill", "replicate"]).size()
    assert len(counts) == 6 and (counts == 20).all()
    assert (table["start_age"] == START).all()
    assert table["lifespan"].between(START, AGES[-1]).all()
    assert table["observed"].dtype == bool
    assert (table.loc[~table["observed"], "lifespan"] == AGES[-1]).all()
    assert sweep_columns(table) == ["immune_kill"]  # the layout of a results table


def test_lifespans_are_reproducible_per_run_and_ignore_row_order_and_other_runs():
    results = two_scenarios()
    first = lifespans(results, DEFAULTS, organisms=50)
    pd.testing.assert_frame_equal(first, lifespans(results, DEFAULTS, organisms=50))
    shuffled = results.sample(frac=1.0, random_state=0)
    pd.testing.assert_frame_equal(first, lifespans(shuffled, DEFAULTS, organisms=50))
    alone = lifespans(results[results["scenario"] == "rapamycin"], DEFAULTS, organisms=50)
    pd.testing.assert_frame_equal(
        alone[["replicate", "lifespan", "observed"]],
        first.loc[
            first["scenario"] == "rapamycin", ["replicate", "lifespan", "observed"]
        ].reset_index(drop=True),
    )


def test_runs_with_different_seeds_get_different_organisms():
    runs = [
        {"scenario": "untreated", "replicate": r, "seed": seed, "made": karin()}
        for r, seed in enumerate((7, 8))
    ]
    table = lifespans(burden_results(runs), DEFAULTS, organisms=50)
    one, two = (table.loc[table["replicate"] == r, "lifespan"].to_numpy() for r in (0, 1))
    assert not np.array_equal(one, two)


def test_a_higher_production_gives_a_shorter_median_lifespan():
    # One run each, 400 organisms, the same seed (common random numbers), production 1 and 1.5
    # times Karin's: the median falls by 220-242 d (7 seeds; medians 852-876 d). The standard
    # error of each median is ~8 d (1.25·sd/√400, sd ≈ 130 d), so 100 d is far below.
    runs = [
        {"scenario": name, "replicate": 0, "seed": 1, "made": karin(scale=slope)}
        for name, slope in (("low", 1.0), ("high", 1.5))
    ]
    summary = survival_summary(lifespans(burden_results(runs), DEFAULTS, organisms=400)).set_index(
        "scenario"
    )
    assert summary.loc["high", "median_lifespan"] < summary.loc["low", "median_lifespan"] - 100.0
    assert summary.loc["high", "p90_lifespan"] < summary.loc["low", "p90_lifespan"]


@pytest.mark.parametrize("column", ["seed", "new_primary", "age", "senolytic_fraction"])
def test_lifespans_name_a_missing_column(column):
    with pytest.raises(ValueError, match=rf"lack column.*'{column}'"):
        lifespans(two_scenarios().drop(columns=column))


def test_summaries_name_a_missing_column():
    table = lifespans(two_scenarios(), DEFAULTS, organisms=5)
    for function in (survival_summary, survival_curves_table, hazard):
        with pytest.raises(ValueError, match=r"lack column.*'observed'"):
            function(table.drop(columns="observed"))


# --- Kaplan-Meier ---------------------------------------------------------------------------


def test_kaplan_meier_matches_a_hand_computed_example_with_ties_and_censoring():
    # t=1 death; t=2 a death and a censoring; t=3 two deaths; t=4 censored; t=6 death.
    # at risk 7, 6, 4, 2, 1 (the censored one at 2 is at risk at 2); survival
    # 6/7, 6/7·5/6 = 5/7, 5/7·2/4 = 5/14, 5/14, 0.
    lifespan = np.array([3.0, 1.0, 2.0, 6.0, 3.0, 2.0, 4.0])
    observed = np.array([True, True, True, True, True, False, False])
    km = kaplan_meier(lifespan, observed)
    np.testing.assert_array_equal(km["age"], [1.0, 2.0, 3.0, 4.0, 6.0])
    np.testing.assert_array_equal(km["at_risk"], [7, 6, 4, 2, 1])
    np.testing.assert_array_equal(km["deaths"], [1, 1, 2, 0, 1])
    np.testing.assert_array_equal(km["censored"], [0, 1, 0, 1, 0])
    np.testing.assert_allclose(km["survival"], [6 / 7, 5 / 7, 5 / 14, 5 / 14, 0.0])
    assert quantile_lifespan(km, 0.5) == 3.0  # first survival ≤ 0.5
    assert quantile_lifespan(km, 0.9) == 6.0  # first survival ≤ 0.1
    assert quantile_lifespan(km, 0.2) == 2.0  # 5/7 ≤ 0.8 < 6/7


def test_kaplan_meier_agrees_with_statsmodels_on_tied_and_censored_data():
    # The project keeps its own vectorised product-limit estimator (the cluster bootstrap
    # reweights runs through it); statsmodels' SurvfuncRight is the reference. 500 organisms,
    # whole-day ages (many ties), 30% censored, fixed seed: the survival after every death age
    # and the median must agree to rounding (1e-12).
    from statsmodels.duration.survfunc import SurvfuncRight

    rng = np.random.default_rng(7)
    lifespan = np.round(rng.exponential(300.0, 500))
    observed = rng.random(500) < 0.7
    reference = SurvfuncRight(lifespan, observed.astype(float))
    km = kaplan_meier(lifespan, observed)
    deaths = km[km["deaths"] > 0]
    np.testing.assert_array_equal(deaths["age"], reference.surv_times)
    np.testing.assert_allclose(deaths["survival"], reference.surv_prob, rtol=0, atol=1e-12)
    assert quantile_lifespan(km, 0.5) == reference.quantile(0.5)


def test_a_quantile_lands_on_the_age_where_survival_equals_its_level():
    # 4 deaths at 1, 2, 3, 4: survival 0.75, 0.75·2/3 (= 0.5 up to rounding), 0.25, 0
    km = kaplan_meier(np.array([1.0, 2.0, 3.0, 4.0]), np.ones(4, dtype=bool))
    assert quantile_lifespan(km, 0.5) == 2.0
    assert quantile_lifespan(km, 0.75) == 3.0


def test_all_censored_means_survival_one_and_median_not_reached():
    km = kaplan_meier(np.array([5.0, 7.0, 7.0]), np.zeros(3, dtype=bool))
    assert (km["survival"] == 1.0).all()
    assert math.isnan(quantile_lifespan(km, 0.5))


@pytest.mark.parametrize("q", [0.0, 1.0, -0.5, 2.0])
def test_a_quantile_outside_0_1_is_refused(q):
    km = kaplan_meier(np.array([1.0]), np.array([True]))
    with pytest.raises(ValueError, match=r"q = .* allowed: a number strictly between 0 and 1"):
        quantile_lifespan(km, q)


@pytest.mark.parametrize(
    ("lifespan", "observed"),
    [
        (np.array([]), np.array([], dtype=bool)),
        (np.array([1.0, 2.0]), np.array([True])),
        (np.array([1.0, np.nan]), np.array([True, True])),
    ],
)
def test_kaplan_meier_refuses_bad_input(lifespan, observed):
    with pytest.raises(ValueError, match="lifespan"):
        kaplan_meier(lifespan, observed)


# --- groups and the cluster bootstrap -------------------------------------------------------


def test_summary_counts_and_its_medians_are_the_pooled_kaplan_meier_quantiles():
    table = lifespans(two_scenarios(), DEFAULTS, organisms=50)
    summary = survival_summary(table, n_boot=200).set_index("scenario")
    for name, frame in table.groupby("scenario", observed=True):
        km = kaplan_meier(frame["lifespan"].to_numpy(), frame["observed"].to_numpy())
        row = summary.loc[name]
        assert (row["runs"], row["organisms"], row["deaths"]) == (2, 100, frame["observed"].sum())
        np.testing.assert_equal(row["median_lifespan"], quantile_lifespan(km, 0.5))
        np.testing.assert_equal(row["p90_lifespan"], quantile_lifespan(km, 0.9))
        assert row["median_ci_low"] <= row["median_lifespan"] <= row["median_ci_high"]


def heterogeneous(
    copies: int = 1,
    organisms: int = 100,
    noise: float | None = None,
) -> pd.DataFrame:
    """Lifespans of one group of 4 tissues with different burden slopes, each run `copies`
    times with the same seed (identical organisms)."""
    slopes = np.array([0.7, 0.9, 1.1, 1.4])
    runs = [
        {
            "scenario": "untreated",
            "replicate": c * 4 + i,
            "seed": 20 + i,
            "made": karin(scale=slope),
        }
        for c in range(copies)
        for i, slope in enumerate(slopes)
    ]
    params = DEFAULTS if noise is None else varied(sr_noise=noise)
    return lifespans(burden_results(runs), params, organisms=organisms)


def test_the_interval_contains_the_estimate_and_narrows_with_more_runs():
    # The same 4 tissues, each run once or 4 times: the pooled estimate is the same, but with
    # 16 runs the resampled mixture of tissues varies half as much (sd ∝ 1/√runs), so the
    # interval should be about half as wide (10 sets of seeds: ratios 0.37-0.61); 0.75
    # leaves room for the lumpy percentiles of a 4-run bootstrap (35 distinct resamples).
    few = survival_summary(heterogeneous(1), n_boot=2000).iloc[0]
    many = survival_summary(heterogeneous(4), n_boot=2000).iloc[0]
    assert few["median_lifespan"] == many["median_lifespan"]
    for row in (few, many):
        assert row["median_ci_low"] <= row["median_lifespan"] <= row["median_ci_high"]
    width = {
        name: row["median_ci_high"] - row["median_ci_low"]
        for name, row in (("few", few), ("many", many))
    }
    assert 0 < width["many"] < 0.75 * width["few"]


def test_more_organisms_per_tissue_do_not_narrow_the_interval_when_they_share_their_fate():
    # Without noise every organism of a run dies on the same day, so 200 organisms per tissue
    # carry no more information than 2: the cluster bootstrap gives the same interval (an
    # organism-level bootstrap would narrow it ~10-fold).
    two = survival_summary(heterogeneous(organisms=2, noise=0.0), n_boot=500)
    many = survival_summary(heterogeneous(organisms=200, noise=0.0), n_boot=500)
    pd.testing.assert_frame_equal(
        two.drop(columns=["organisms", "deaths"]), many.drop(columns=["organisms", "deaths"])
    )
    assert two.loc[0, "median_ci_high"] > two.loc[0, "median_ci_low"]


def test_a_single_run_has_no_interval_and_an_unreached_median_is_nan():
    runs = [{"scenario": "untreated", "replicate": 0, "seed": 1, "made": none()}]
    row = survival_summary(lifespans(burden_results(runs), DEFAULTS, organisms=50)).iloc[0]
    assert row["runs"] == 1
    assert math.isnan(row["median_lifespan"]) and math.isnan(row["p90_lifespan"])
    assert math.isnan(row["median_ci_low"]) and math.isnan(row["median_ci_high"])


def test_a_median_not_reached_in_many_resamples_has_an_open_upper_bound():
    # Two tissues, one lethal (all die) and one harmless (none die), 50 organisms each: the
    # pooled median sits at the last death; a resample of the harmless tissue twice (1 in 4)
    # never reaches it, so the upper bound of a 95% interval is inf.
    runs = [
        {"scenario": "untreated", "replicate": r, "seed": 1, "made": made}
        for r, made in enumerate((karin(scale=3.0), none()))
    ]
    table = lifespans(burden_results(runs), DEFAULTS, organisms=50)
    row = survival_summary(table, n_boot=400).iloc[0]
    assert math.isfinite(row["median_lifespan"]) and math.isinf(row["median_ci_high"])


def test_curves_on_a_grid_are_the_kaplan_meier_steps_with_a_band():
    table = lifespans(two_scenarios(), DEFAULTS, organisms=50)
    grid = np.array([50.0, START, 400.0, 500.0, 600.0, 700.0, 2000.0])
    curves = survival_curves_table(table, grid, n_boot=300)
    assert len(curves) == 2 * grid.size
    for name, frame in table.groupby("scenario", observed=True):
        km = kaplan_meier(frame["lifespan"].to_numpy(), frame["observed"].to_numpy())
        rows = curves[curves["scenario"] == name]
        expected = [
            km.loc[km["age"] <= age, "survival"].iloc[-1] if (km["age"] <= age).any() else 1.0
            for age in grid[:-1]
        ]
        np.testing.assert_allclose(rows["survival"].to_numpy()[:-1], expected)
        assert math.isnan(rows["survival"].iloc[-1])  # after the last follow-up
        inside = rows.iloc[:-1]
        assert (inside["ci_low"] <= inside["survival"] + 1e-12).all()
        assert (inside["survival"] <= inside["ci_high"] + 1e-12).all()


def test_hazard_is_deaths_per_organism_day_at_risk_in_each_bin():
    # Run 0 from age 0: a death at 10 and a censoring at 40; run 1 from age 15: a death at 45.
    # Bins of 30 days from 0: [0, 30] deaths 1, exposure 10 + 30 + 15 = 55;
    # (30, 60] deaths 1, exposure 10 + 15 = 25.
    table = pd.DataFrame(
        {
            "scenario": "s",
            "point": 0,
            "replicate": [0, 0, 1],
            "organism": [0, 1, 0],
            "start_age": [0.0, 0.0, 15.0],
            "lifespan": [10.0, 40.0, 45.0],
            "observed": [True, False, True],
        }
    )
    rates = hazard(table, width=30.0, n_boot=100)
    np.testing.assert_array_equal(rates["age_low"], [0.0, 30.0])
    np.testing.assert_array_equal(rates["age_high"], [30.0, 60.0])
    np.testing.assert_array_equal(rates["deaths"], [1, 1])
    np.testing.assert_array_equal(rates["exposure"], [55.0, 25.0])
    np.testing.assert_allclose(rates["hazard"], [1 / 55, 1 / 25])


def test_hazard_rises_with_age_on_a_rising_burden():
    # Karin's signature: mortality rises steeply with age. 4 runs x 200 organisms driven by
    # Karin's production; compare the 100-day bins starting 400 and 600 days after the start
    # (16-22 and 134-154 deaths over 5 sets of seeds: a 7.6-11-fold rise, intervals always
    # apart), asking for a 2-fold rise with the intervals apart.
    runs = [
        {"scenario": "untreated", "replicate": r, "seed": 30 + r, "made": karin()} for r in range(4)
    ]
    rates = hazard(
        lifespans(burden_results(runs), DEFAULTS, organisms=200), width=100.0, n_boot=500
    ).set_index("age_low")
    assert rates.index[-1] + 100.0 == AGES[-1]  # the bins end at the last age
    early, late = rates.loc[START + 400.0], rates.loc[START + 600.0]
    assert late["hazard"] > 2 * early["hazard"]
    assert late["ci_low"] > early["ci_high"]


@pytest.mark.parametrize(
    ("function", "arguments", "message"),
    [
        (survival_summary, {"confidence": 1.0}, "confidence = 1.0"),
        (survival_summary, {"n_boot": 0}, "n_boot = 0"),
        (survival_curves_table, {"ages": np.array([[1.0]])}, "ages must be"),
        (hazard, {"width": 0.0}, "width = 0.0"),
    ],
)
def test_bad_summary_arguments_are_named(function, arguments, message):
    table = lifespans(two_scenarios(), DEFAULTS, organisms=5)
    with pytest.raises(ValueError, match=message):
        function(table, **arguments)


# --- figure ---------------------------------------------------------------------------------


def test_survival_curves_draw_a_step_curve_and_band_per_group_and_the_median_line():
    table = lifespans(two_scenarios(), DEFAULTS, organisms=50)
    fig = survival_curves(table, n_boot=100)
    ax = fig.axes[0]
    curves = [line for line in ax.get_lines() if line.get_label() in ("untreated", "rapamycin")]
    assert sorted(line.get_label() for line in curves) == ["rapamycin", "untreated"]
    assert len(ax.collections) == 2  # the bands
    median = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(median) == 1 and set(median[0].get_ydata()) == {0.5}
    years = curves[0].get_xdata()
    assert years[0] == pytest.approx(START / DAYS_PER_YEAR)  # age in years
    assert isinstance(curves[0], Line2D) and curves[0].get_drawstyle() == "steps-post"


def test_hazard_curves_draw_one_line_per_group_on_a_log_scale_without_empty_bins():
    table = lifespans(two_scenarios(), DEFAULTS, organisms=50)
    fig = hazard_curves(table, width=60.0, n_boot=100)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert sorted(lines) == ["rapamycin", "untreated"]
    expected = hazard(table, width=60.0, n_boot=100)
    for label, line in lines.items():
        rows = expected[(expected["scenario"] == label) & (expected["deaths"] > 0)]
        np.testing.assert_allclose(line.get_ydata(), rows["hazard"].to_numpy())
        assert (line.get_ydata() > 0).all()  # empty bins (hazard 0) are left out


def test_each_batch_point_can_drive_its_organisms_with_its_own_parameters():
    # Two sweep points of one scenario on the same production and seed: the point whose
    # production scale is doubled dies earlier, exactly as a table computed with that scale alone.
    runs = [
        {
            "scenario": "untreated",
            "point": point,
            "value": scale,
            "replicate": 0,
            "seed": 7,
            "made": karin(),
        }
        for point, scale in enumerate((1000.0, 2000.0))
    ]
    results = burden_results(runs, sweep="sr_production_scale")
    own = {("untreated", 0): DEFAULTS, ("untreated", 1): varied(sr_production_scale=2000.0)}
    table = lifespans(results, own, organisms=40)
    for point, params in enumerate(own.values()):
        alone = lifespans(results[results["point"] == point], params, organisms=40)
        np.testing.assert_array_equal(
            table.loc[table["point"] == point, "lifespan"], alone["lifespan"]
        )
    by_point = table.groupby("point")["lifespan"].median()
    assert by_point[1] < by_point[0]
    with pytest.raises(ValueError, match="'point'"):
        lifespans(results.drop(columns="point"), own)


def test_health_ends_at_tissue_loss_or_at_death_whichever_comes_first():
    # three runs: tissue lost at 900 d, organisms' median death at 800 d -> 800; tissue never
    # lost, median death 1000 d -> 1000; tissue lost at 700 d, organisms mostly alive at the
    # end (censored) -> 700. A fourth run without organisms keeps its tissue healthspan.
    ends = pd.DataFrame(
        {
            "scenario": ["a", "a", "a", "b"],
            "point": 0,
            "therapy.rapamycin.dose": np.nan,  # a sweep column this scenario lacks: NaN
            "replicate": [0, 1, 2, 0],
            "healthspan": [900.0, np.nan, 700.0, 650.0],
        }
    )
    lives = pd.DataFrame(
        {
            "scenario": ["a"] * 9,
            "point": 0,
            "therapy.rapamycin.dose": np.nan,
            "replicate": [0, 0, 0, 1, 1, 1, 2, 2, 2],
            "organism": [0, 1, 2] * 3,
            "lifespan": [700.0, 800.0, 950.0, 900.0, 1000.0, 1200.0, 600.0, 1300.0, 1300.0],
            "observed": [True, True, True, True, True, True, True, False, False],
        }
    )
    capped = healthspan_to_death(ends, lives)
    np.testing.assert_array_equal(capped["healthspan"], [800.0, 1000.0, 700.0, 650.0])
    assert ends["healthspan"].isna().sum() == 1  # the input is left alone
    pd.testing.assert_series_equal(
        capped["tissue_healthspan"], ends["healthspan"], check_names=False
    )
    # neither lost nor half dead by the end: not reached
    alive = lives.assign(observed=False)
    assert math.isnan(healthspan_to_death(ends, alive)["healthspan"].iloc[1])


def test_the_mtorc2_cost_of_chronic_high_rapamycin_shows_in_lifespan(tmp_path):
    # Rapamycin at 4 mg/kg daily from 12 months inhibits mTORC2 (~0.7 at steady state). The
    # same tissue runs drive organisms without the cost, with its default and with its upper
    # bound: the cost shortens median lifespan, the more the larger it is. 6 runs of 60x60 to
    # 1300 days, 200 organisms each; the organisms' noise is the same in the three (seeded per
    # run), so the comparison is paired and needs no tolerance.
    path = tmp_path / "high.toml"
    path.write_text(
        'name = "high"\nseed = 5\nreplicates = 6\nsize = 60\nstart_age = 90\nend_age = 1300\n'
        "[output]\nevery = 5\n[therapy.rapamycin]\ndose = 4.0\nstart_age = 365\n",
        encoding="utf-8",
    )
    outcomes = execute(plan_batch([path]).runs, threads=1)
    results = pd.concat([o.readouts for o in outcomes], ignore_index=True)
    assert results.loc[results["age"] > 500, "mtorc2_inhibition"].min() > 0.5
    medians = [
        survival_summary(lifespans(results, Parameters(mtorc2_hazard=cost)))["median_lifespan"][0]
        for cost in (0.0, Parameters().mtorc2_hazard, 0.001)
    ]
    assert medians[0] > medians[1] > medians[2], medians


def test_survival_after_the_last_lifespan_is_zero_if_all_died_else_unknown():
    grid = np.array([5.0, 10.0, 25.0, 40.0])
    all_died = kaplan_meier(np.array([10.0, 20.0]), np.array([True, True]))
    np.testing.assert_array_equal(survival_at(all_died, grid), [1.0, 0.5, 0.0, 0.0])
    censored = kaplan_meier(np.array([10.0, 20.0]), np.array([True, False]))
    np.testing.assert_array_equal(survival_at(censored, grid), [1.0, 0.5, np.nan, np.nan])

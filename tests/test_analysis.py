"""Batch analysis: group columns, summaries across replicates, end states, comparisons."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from factories import BATCH_DAYS, BATCH_START, CANONICAL, make_batch, synthetic
from tissue_abm import Parameters, load_results
from tissue_abm.analysis.summary import (
    RUN_KEYS,
    boot_means,
    compare,
    end_state,
    group_columns,
    group_labels,
    healthspan,
    median_healthspan,
    percentile_ci,
    resample,
    run_columns,
    run_values,
    summarise,
    sweep_columns,
)


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Path:
    return make_batch(tmp_path_factory.mktemp("batch"))


@pytest.fixture(scope="module")
def results(batch) -> pd.DataFrame:
    return load_results(batch)


# --- the shape of a results table -------------------------------------------------------------


def test_run_keys_and_group_columns_of_a_batch(results):
    assert RUN_KEYS == ("scenario", "point", "replicate")
    assert sweep_columns(results) == []
    assert group_columns(results) == ["scenario"]
    assert run_columns(results) == ["scenario", "point", "replicate"]


def test_sweep_columns_are_those_between_point_and_replicate():
    table = synthetic({"untreated": [0.1], "combined": [0.05]}, sweep={"combined": [0.4, 0.8]})
    table.insert(3, "therapy.rapamycin.dose", 1.0)
    assert sweep_columns(table) == ["immune_kill", "therapy.rapamycin.dose"]
    assert group_columns(table) == ["scenario", "immune_kill", "therapy.rapamycin.dose"]
    assert run_columns(table) == [
        "scenario",
        "point",
        "immune_kill",
        "therapy.rapamycin.dose",
        "replicate",
    ]


def test_runs_without_batch_labels_are_told_apart_by_seed():
    table = synthetic({"untreated": [0.1, 0.2]}).drop(columns=["point", "replicate"])
    assert run_columns(table) == ["scenario", "seed"]
    assert len(end_state(table)) == 2


def test_group_labels_name_swept_values_and_skip_missing_ones():
    table = synthetic({"untreated": [0.1], "combined": [0.05]}, sweep={"combined": [0.4, 0.8]})
    labels = set(group_labels(table))
    assert labels == {"untreated", "combined (immune_kill=0.4)", "combined (immune_kill=0.8)"}
    # A summary has no `point` and `replicate` around its sweep columns: they are passed.
    summary = summarise(table, ["senescent_fraction"])
    assert set(group_labels(summary, sweep_columns(table))) == labels


# --- summarise --------------------------------------------------------------------------------


def test_summarise_matches_mean_sd_and_t_interval_across_replicates(results):
    summary = summarise(results, ["senescent_fraction", "mean_sasp"])
    assert list(summary.columns) == [
        "scenario",
        "day",
        "age",
        "readout",
        "n",
        "mean",
        "sd",
        "ci_low",
        "ci_high",
    ]
    assert len(summary) == 2 * len(CANONICAL) * (BATCH_DAYS + 1)
    for scenario, day, readout in [
        ("untreated", BATCH_DAYS, "senescent_fraction"),
        ("combined", 30, "mean_sasp"),
    ]:
        values = results.loc[
            (results["scenario"] == scenario) & (results["day"] == day), readout
        ].to_numpy()
        row = summary[
            (summary["scenario"] == scenario)
            & (summary["day"] == day)
            & (summary["readout"] == readout)
        ].iloc[0]
        low, high = stats.t.interval(
            0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values)
        )
        assert row["n"] == 3
        assert row["age"] == BATCH_START + day
        # Same arithmetic in a different order: agreement to floating-point rounding.
        assert row["mean"] == pytest.approx(values.mean(), rel=1e-12, abs=1e-15)
        assert row["sd"] == pytest.approx(values.std(ddof=1), rel=1e-9, abs=1e-15)
        if values.std() > 0:
            assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high), rel=1e-9)


def test_summarise_interval_covers_the_true_mean_at_its_nominal_rate():
    # 400 groups of 5 normal draws: a 90% t-interval covers the true mean in ~90% of groups;
    # the binomial SD of the rate is 1.5%, so [0.84, 0.96] is four SDs either side.
    rng = np.random.default_rng(7)
    groups = np.repeat(np.arange(400), 5)
    table = pd.DataFrame(
        {
            "scenario": pd.Categorical([f"s{g}" for g in groups]),
            "point": 0,
            "replicate": np.tile(np.arange(5), 400),
            "seed": 1,
            "day": 0,
            "age": 500.0,
            "senescent_fraction": rng.normal(0.5, 0.1, groups.size),
        }
    )
    summary = summarise(table, ["senescent_fraction"], confidence=0.9)
    covered = (summary["ci_low"] <= 0.5) & (summary["ci_high"] >= 0.5)
    assert 0.84 <= covered.mean() <= 0.96


def test_summarise_with_one_replicate_has_no_interval():
    summary = summarise(synthetic({"untreated": [0.1]}), ["senescent_fraction"])
    assert (summary["n"] == 1).all()
    assert summary[["sd", "ci_low", "ci_high"]].isna().all().all()
    assert (summary["mean"] == 0.1).all()


def test_summarise_keeps_one_group_per_sweep_point_and_nan_sweeps():
    table = synthetic(
        {"untreated": [0.1, 0.2], "combined": [0.05, 0.07]}, sweep={"combined": [0.4, 0.8]}
    )
    summary = summarise(table, ["senescent_fraction"])
    groups = summary[["scenario", "immune_kill"]].drop_duplicates()
    assert len(groups) == 3
    assert groups.loc[groups["scenario"] == "untreated", "immune_kill"].isna().all()
    assert (summary["n"] == 2).all()


def test_summarise_leaves_nan_values_out_of_n():
    table = synthetic({"untreated": [0.1, 0.2, 0.3]}, days=2)
    table.loc[(table["replicate"] == 0) & (table["day"] == 1), "senescent_fraction"] = np.nan
    summary = summarise(table, ["senescent_fraction"]).set_index("day")
    assert summary.loc[0, "n"] == 3
    assert summary.loc[1, "n"] == 2
    assert summary.loc[1, "mean"] == pytest.approx(0.25)


def test_summarise_gives_one_row_per_group_day_and_readout_on_a_large_batch():
    # 100 runs × 641 days × 4 readouts (its speed is measured in benchmarks/bench_batch.py)
    rng = np.random.default_rng(0)
    runs = 100
    days = np.tile(np.arange(641), runs)
    table = pd.DataFrame(
        {
            "scenario": pd.Categorical(np.repeat([f"s{i % 4}" for i in range(runs)], 641)),
            "point": 0,
            "replicate": np.repeat(np.arange(runs) // 4, 641),
            "seed": 1,
            "engine": pd.Categorical(["agents"] * runs * 641),
            "day": days,
            "age": 90.0 + days,
            **{
                r: rng.random(runs * 641)
                for r in ("senescent_fraction", "tissue_function", "mean_sasp", "immune")
            },
        }
    )
    summary = summarise(table, ["senescent_fraction", "tissue_function", "mean_sasp", "immune"])
    assert len(summary) == 4 * 4 * 641
    assert (summary["n"] == 25).all()
    assert (summary["n"] == 25).all()


def test_summarise_names_an_unknown_readout_and_the_available_ones(results):
    with pytest.raises(
        ValueError,
        match=r"unknown readout 'senescnt'.*available: .*"
        r"senescent_fraction",
    ):
        summarise(results, ["senescnt"])
    with pytest.raises(ValueError, match="confidence"):
        summarise(results, confidence=95)


# --- end state --------------------------------------------------------------------------------


def test_end_state_is_the_last_day_of_each_run_with_its_healthspan(results):
    ends = end_state(results)
    assert len(ends) == len(CANONICAL) * 3
    assert (ends["day"] == BATCH_DAYS).all()
    threshold = Parameters().healthspan_threshold  # the default: each healthspan below uses it
    for row in ends.itertuples():
        run = results[
            (results["scenario"] == row.scenario) & (results["replicate"] == row.replicate)
        ]
        assert row.senescent_fraction == run["senescent_fraction"].iloc[-1]
        expected = healthspan(run, threshold)
        assert (math.isnan(row.healthspan) and math.isnan(expected)) or row.healthspan == expected


def test_end_state_threshold_bounds(results):
    # Tissue function is in [0, 1]: below 1.01 from the first day, never below 0.
    always = end_state(results, threshold=1.01)
    assert (always["healthspan"] == BATCH_START).all()
    assert end_state(results, threshold=0.0)["healthspan"].isna().all()


def test_median_healthspan_counts_unreached_runs_as_longest():
    assert median_healthspan([600, 700, math.nan]) == 700
    assert median_healthspan([600, math.nan, math.nan]) == math.inf
    assert median_healthspan([600, 620, 640, 660]) == 630
    assert math.isnan(median_healthspan([]))


# --- compare ----------------------------------------------------------------------------------


def test_compare_with_identical_replicates_has_a_point_interval():
    table = synthetic({"untreated": [0.1] * 4, "rapamycin": [0.04] * 4, "combined": [0.03] * 5})
    result = compare(table, "senescent_fraction")
    assert sorted(result["scenario"]) == ["combined", "rapamycin"]
    rapa = result.set_index("scenario").loc["rapamycin"]
    assert rapa["difference"] == pytest.approx(-0.06)
    assert rapa["n"] == 4 and rapa["reference_n"] == 4
    # Every resample of identical values has the same mean: the interval is the point (to
    # the rounding of a mean of equal floats).
    assert (rapa["ci_low"], rapa["ci_high"]) == pytest.approx((-0.06, -0.06), abs=1e-12)


def test_compare_interval_contains_the_true_difference_and_is_reproducible():
    rng = np.random.default_rng(3)
    table = synthetic(
        {"untreated": rng.normal(0.10, 0.01, 40), "oxytocin": rng.normal(0.08, 0.01, 40)}, days=2
    )
    result = compare(table, "senescent_fraction", seed=1)
    row = result.iloc[0]
    # Mean difference -0.02 with a standard error of ~0.0022: the 95% interval is ~±0.0044.
    assert row["ci_low"] < -0.02 < row["ci_high"]
    assert 0.005 < row["ci_high"] - row["ci_low"] < 0.015
    assert row["ci_low"] < row["difference"] < row["ci_high"]
    again = compare(table, "senescent_fraction", seed=1)
    pd.testing.assert_frame_equal(result, again)
    other = compare(table, "senescent_fraction", seed=2).iloc[0]
    assert other["ci_low"] != row["ci_low"]


def test_compare_at_a_given_day(results):
    result = compare(results, "tissue_function", day=30).set_index("scenario")
    at = results[results["day"] == 30].groupby("scenario", observed=True)["tissue_function"]
    means = at.mean()
    for scenario in ("rapamycin", "oxytocin", "combined"):
        assert result.loc[scenario, "difference"] == pytest.approx(
            means[scenario] - means["untreated"], rel=1e-12, abs=1e-15
        )


def test_compare_with_one_replicate_has_no_interval():
    result = compare(
        synthetic({"untreated": [0.1], "rapamycin": [0.05, 0.06]}), "senescent_fraction"
    )
    assert result["ci_low"].isna().all() and result["ci_high"].isna().all()


def test_compare_names_missing_reference_and_readout(results):
    with pytest.raises(
        ValueError,
        match=r"no reference scenario 'control'.*available "
        r"scenarios: combined, oxytocin, rapamycin, untreated",
    ):
        compare(results, "senescent_fraction", reference="control")
    with pytest.raises(ValueError, match=r"unknown readout 'sasp'.*mean_sasp"):
        compare(results, "sasp")


def test_compare_rejects_a_swept_reference():
    table = synthetic(
        {"untreated": [0.1, 0.2], "rapamycin": [0.1]}, sweep={"untreated": [0.4, 0.8]}
    )
    with pytest.raises(ValueError, match="reference scenario 'untreated' has 2 sweep points"):
        compare(table, "senescent_fraction")


def test_run_values_names_a_day_that_is_not_kept(results):
    assert len(run_values(results, "senescent_fraction", day=10)) == len(CANONICAL) * 3
    with pytest.raises(ValueError, match=r"day 999 is not kept.*kept days: 0, 1, 2"):
        run_values(results, "senescent_fraction", day=999)


def test_one_resampler_serves_vectorised_and_general_statistics():
    values = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0])
    general = resample(values.size, lambda pick: values[pick].mean(), 50, np.random.default_rng(7))
    np.testing.assert_allclose(general, boot_means(values, 50, np.random.default_rng(7)))
    with pytest.raises(ValueError, match="n_boot"):
        resample(3, np.mean, 0, np.random.default_rng(0))


def test_an_unbounded_statistic_keeps_its_missing_resamples_as_infinite():
    # two of four resamples have no value (a half-life that does not decay): bounded, they
    # are left out and the quantiles interpolate; unbounded, they count as +inf
    samples = np.array([1.0, 2.0, np.nan, np.nan])
    assert percentile_ci(samples, 0.5) == (1.25, 1.75)
    assert percentile_ci(samples, 0.5, unbounded=True) == (1.0, math.inf)
    assert all(math.isnan(x) for x in percentile_ci(np.array([np.nan]), 0.9))

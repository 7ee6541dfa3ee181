"""Calibration helpers and the validation page (`tissue-abm validate`)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from factories import results_rows, results_table
from tissue_abm.biology.params import Parameters
from tissue_abm.cli import main
from tissue_abm.runs.batch import plan_batch, run_batch
from tissue_abm.runs.results import point_parameters
from tissue_abm.studies.calibration import HALF_LIFE_YOUNG, bisect, median_lifespan, oxytocin_ratio
from tissue_abm.studies.validation import validation_page

EXPERIMENTS = Path(__file__).resolve().parents[1] / "scenarios" / "experiments"


def test_target_met_within_tolerance_only():
    assert HALF_LIFE_YOUNG.met(HALF_LIFE_YOUNG.value + HALF_LIFE_YOUNG.tolerance)
    assert HALF_LIFE_YOUNG.met(HALF_LIFE_YOUNG.value - 0.5 * HALF_LIFE_YOUNG.tolerance)
    assert not HALF_LIFE_YOUNG.met(HALF_LIFE_YOUNG.value + 1.01 * HALF_LIFE_YOUNG.tolerance)


@pytest.mark.parametrize("decreasing", [True, False])
def test_bisect_finds_the_root_of_a_monotone_measure(decreasing):
    root = 0.037

    def measure(x: float) -> float:
        return (root / x if decreasing else x / root) * 10.0

    found = bisect(measure, 10.0, 0.001, 1.0, steps=12, decreasing=decreasing)
    # 12 halvings of a 1000-fold bracket in log space: within 1000**(2**-12) - 1 = 0.17%.
    assert found == pytest.approx(root, rel=2e-3)


def test_bisect_treats_an_undefined_measure_as_too_little_effect():
    # A half-life that does not decay (NaN) means clearance is too weak: raise the parameter.
    def measure(x: float) -> float:
        return math.nan if x < 0.1 else 5.0 * 0.2 / x

    assert bisect(measure, 5.0, 0.001, 1.0, steps=14) == pytest.approx(0.2, rel=1e-2)


def test_oxytocin_ratio_follows_the_old_fraction():
    assert oxytocin_ratio(Parameters()) <= 1 / 3  # the default meets Elabd 2014's anchor
    high = oxytocin_ratio(Parameters(ot_old_fraction=0.8))
    assert high > oxytocin_ratio(Parameters()) and high > 1 / 3


def _burden_runs(slope: float, runs: int = 4) -> pd.DataFrame:
    ages = np.arange(90.0, 1461.0)
    frames = [
        results_rows(
            "wild_type",
            point=None,
            replicate=replicate,
            seed=100 + replicate,
            day=ages - 90,
            age=ages,
            senescent_fraction=slope * (ages - 90) / 1000.0,
        )
        for replicate in range(runs)
    ]
    return results_table(*frames, categories=())


def test_median_lifespan_falls_with_the_burden_scale():
    runs = _burden_runs(0.1)
    lives = [median_lifespan(runs, Parameters(sr_burden_scale=k)) for k in (50.0, 150.0, 450.0)]
    assert lives[0] > lives[1] > lives[2]


@pytest.fixture(scope="module")
def small_batch(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("validation") / "batch"
    files = [
        EXPERIMENTS / f"{name}.toml"
        for name in ("wild_type", "immune_knockout", "senolytic_control", "pulse_chase_young")
    ]
    plan = plan_batch(files, replicates=3, size=30, days=700)
    summary = run_batch(plan, out, workers=1)
    assert summary.failed == 0
    return out


@pytest.mark.slow
def test_validation_page_from_a_partial_batch(small_batch, tmp_path):
    page = validation_page(small_batch, figures=tmp_path / "figures", n_boot=50)
    for heading in (
        "# Validation",
        "## Calibration targets",
        "## Expected behaviours",
        "## Therapies: lifespan and healthspan",
        "## Therapy timing",
        "## Synergy over the dose grid",
    ):
        assert heading in page
    # What the batch lacks is named, with the file to run.
    assert "run scenarios/experiments/timing_rapamycin.toml" in page
    assert "run scenarios/experiments/dose_grid.toml" in page
    # The old pulse is missing, so no half-life row; the lifespan and oxytocin rows are there.
    assert "pulse at 22 months" not in page
    assert "untreated median lifespan" in page
    assert "endogenous oxytocin at 22 months" in page
    # With no killing, the knock-out's burden at 24 months is far above wild type's.
    row = next(line for line in page.splitlines() if "knock-out raises" in line)
    assert row.endswith("**holds** |")
    assert (tmp_path / "figures" / "survival.png").stat().st_size > 0
    assert (tmp_path / "figures" / "hazard.png").stat().st_size > 0


@pytest.mark.slow
def test_point_parameters_are_each_runs_own(small_batch):
    own = point_parameters(small_batch)
    assert set(own) == {
        (name, 0)
        for name in ("wild_type", "immune_knockout", "senolytic_control", "pulse_chase_young")
    }
    assert own[("immune_knockout", 0)].immune_kill == 0.0  # the file's override
    assert own[("wild_type", 0)] == Parameters()


@pytest.mark.slow
def test_validate_cli_writes_the_page(small_batch, tmp_path, capsys):
    out = tmp_path / "docs" / "validation.md"
    assert main(["validate", str(small_batch), "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8").startswith("# Validation")
    assert (tmp_path / "docs" / "validation" / "survival.png").exists()


def test_validate_cli_reports_a_missing_folder(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tissue-abm: error:") and len(err.strip().splitlines()) == 1

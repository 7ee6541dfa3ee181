"""Calibration helpers and the validation page (`tissue-abm validate`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from factories import assert_one_line_error, make_batch, results_rows, results_table
from tissue_abm.biology.params import Parameters
from tissue_abm.biology.rules import DAYS_PER_YEAR
from tissue_abm.cli import main
from tissue_abm.runs.batch import plan_batch, run_batch
from tissue_abm.runs.results import OutputError, point_parameters
from tissue_abm.studies.abc import (
    FITTED,
    parameters,
    posterior_median,
    read_posterior,
    rms,
    weighted_quantile,
)
from tissue_abm.studies.calibration import (
    HALF_LIFE_YOUNG,
    KARIN_ETA,
    OXYTOCIN_DECLINE,
    TARGETS,
    Measures,
    deviations,
    oxytocin_ratio,
    production_ratios,
)
from tissue_abm.studies.validation import validation_page

EXPERIMENTS = Path(__file__).resolve().parents[1] / "scenarios" / "experiments"


def test_target_met_within_tolerance_only():
    assert HALF_LIFE_YOUNG.met(HALF_LIFE_YOUNG.value + HALF_LIFE_YOUNG.tolerance)
    assert HALF_LIFE_YOUNG.met(HALF_LIFE_YOUNG.value - 0.5 * HALF_LIFE_YOUNG.tolerance)
    assert not HALF_LIFE_YOUNG.met(HALF_LIFE_YOUNG.value + 1.01 * HALF_LIFE_YOUNG.tolerance)


def test_deviations_are_in_units_of_each_tolerance_and_oxytocin_is_one_sided():
    measures = Measures(
        half_life_young=6.0,  # +1 tolerance
        half_life_old=13.0,  # −2 tolerances
        median_lifespan=2.4 * DAYS_PER_YEAR,  # on target
        production=1.5,  # +2
        oxytocin_ratio=0.1,  # below 1/3: met, 0
        rapamycin_gain=0.04,  # −2
    )
    np.testing.assert_allclose(deviations(measures), [1.0, -2.0, 0.0, 2.0, 0.0, -2.0])
    above = deviations(measures._replace(oxytocin_ratio=0.5))
    assert above[TARGETS.index(OXYTOCIN_DECLINE)] == pytest.approx(0.5)
    assert rms(deviations(measures)) == pytest.approx(math.sqrt(13 / 6))
    assert rms(deviations(measures._replace(half_life_young=math.nan))) == math.inf


def test_oxytocin_ratio_follows_the_old_fraction():
    assert oxytocin_ratio(Parameters()) <= 1 / 3  # the default meets Elabd 2014's target
    high = oxytocin_ratio(Parameters(ot_old_fraction=0.8))
    assert high > oxytocin_ratio(Parameters()) and high > 1 / 3


def _production_runs(made: Callable[[np.ndarray], np.ndarray], runs: int = 3) -> pd.DataFrame:
    """Daily rows of wild-type runs on 10,000 sites whose new senescent cells are made(age)."""
    ages = np.arange(90.0, 1001.0)
    frames = [
        results_rows(
            "wild_type",
            point=None,
            replicate=replicate,
            seed=100 + replicate,
            day=ages - 90,
            age=ages,
            healthy=9_900,
            senescent=100,
            empty=0,
            new_primary=made(ages),
            new_paracrine=0,
            new_replicative=0,
        )
        for replicate in range(runs)
    ]
    return results_table(*frames, categories=())


def test_production_ratios_compare_the_tissues_production_with_karins():
    # A tissue making exactly η·t/k new senescent cells per site and day gives ratios of 1 at
    # every month; one making 30% more gives 1.3; one making a constant amount gives ratios
    # falling as 1/t (here from 3 to 30 months: a tenfold fall).
    params = Parameters(sr_production_scale=1000.0)
    eta = KARIN_ETA / DAYS_PER_YEAR / params.sr_production_scale * 10_000  # per day of age
    np.testing.assert_allclose(production_ratios(_production_runs(lambda a: eta * a), params), 1.0)
    np.testing.assert_allclose(
        production_ratios(_production_runs(lambda a: 1.3 * eta * a), params), 1.3
    )
    flat = production_ratios(_production_runs(lambda a: np.full(a.size, eta * 365.0)), params)
    assert flat[0] / flat[-1] == pytest.approx(10.0, rel=1e-6)


def test_the_posterior_median_is_the_weighted_median_of_each_fitted_parameter():
    values = np.array([1.0, 2.0, 3.0, 4.0])
    assert weighted_quantile(values, np.ones(4), 0.5) == 2.0
    assert weighted_quantile(values, np.array([0.1, 0.1, 0.1, 0.7]), 0.5) == 4.0
    assert weighted_quantile(values, np.ones(4), 0.05) == 1.0
    table = pd.DataFrame({"weight": [0.2, 0.3, 0.5], **{n: [1.0, 2.0, 3.0] for n in FITTED}})
    assert posterior_median(table) == {name: 2.0 for name in FITTED}


def test_the_defaults_come_only_from_particles_that_meet_the_oxytocin_bound():
    # the heaviest particle misses the one-sided target (ratio 0.5 > 1/3): it does not count
    table = pd.DataFrame(
        {
            "weight": [0.2, 0.2, 0.6],
            "oxytocin_ratio": [0.2, 0.3, 0.5],
            **{n: [1.0, 2.0, 3.0] for n in FITTED},
        }
    )
    assert posterior_median(table) == {name: 1.0 for name in FITTED}
    with pytest.raises(ValueError, match="oxytocin"):
        posterior_median(table.assign(oxytocin_ratio=0.9))


def test_a_particle_gives_parameters_on_the_natural_scale():
    particle = {name: sum(prior.bounds()) / 2 for name, prior in FITTED.items()}
    params = parameters(particle)
    assert params.sr_production_scale == pytest.approx(math.sqrt(100.0 * 5000.0))  # log scale
    assert params.rapa_damage_share == pytest.approx(0.5)
    assert params.healthspan_threshold == Parameters().healthspan_threshold  # not fitted


def test_a_posterior_file_without_the_fitted_parameters_is_refused(tmp_path):
    path = tmp_path / "posterior.csv"
    pd.DataFrame({"weight": [1.0], "immune_kill": [0.5]}).to_csv(path, index=False)
    with pytest.raises(OutputError, match="lacks column"):
        read_posterior(path)
    with pytest.raises(OutputError, match="no such posterior file"):
        read_posterior(tmp_path / "missing.csv")


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
def test_validate_cli_writes_the_page_into_the_results_folder(small_batch, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing goes into a docs/ folder of the current directory
    assert main(["validate", str(small_batch)]) == 0
    assert (small_batch / "validation.md").read_text(encoding="utf-8").startswith("# Validation")
    assert (small_batch / "validation" / "survival.png").exists()
    assert not (tmp_path / "docs").exists()


def test_validate_cli_names_the_missing_experiment_scenarios_and_writes_nothing(
    tmp_path, capsys, monkeypatch
):
    batch = make_batch(tmp_path / "canonical", ("untreated", "rapamycin"), 1, 8, snapshots=())
    monkeypatch.chdir(tmp_path)
    assert main(["validate", str(batch)]) == 2
    assert_one_line_error(
        capsys.readouterr().err,
        "none of the experiment scenarios",
        "wild_type, timing_rapamycin",
        "dose_grid",
        "scenarios/experiments/*.toml",
    )
    assert not (batch / "validation.md").exists() and not (batch / "validation").exists()
    assert not (tmp_path / "docs").exists()


def test_validate_cli_reports_a_missing_folder(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tissue-abm: error:") and len(err.strip().splitlines()) == 1

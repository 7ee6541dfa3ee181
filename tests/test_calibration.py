"""ABC-SMC calibration (`studies.abc`, `tissue-abm calibrate`) on tiny experiments."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from tissue_abm.biology.params import Parameters
from tissue_abm.cli import main
from tissue_abm.runs.results import OutputError
from tissue_abm.studies.abc import (
    DATABASE,
    FITTED,
    POSTERIOR,
    RECHECK,
    SCREEN_SEEDS,
    Settings,
    calibrate,
    choose_defaults,
)
from tissue_abm.studies.calibration import TARGETS, Design, Measures, deviations, measure

TINY = Design(size=12, pulse_size=12, replicates=1, end_age=400, organisms=20)
"""Experiments small enough for a test: the numbers mean nothing, the machinery runs."""


@pytest.mark.slow
def test_a_calibration_writes_its_posterior_and_resumes_to_more_generations(tmp_path):
    out = tmp_path / "calibration"
    first = calibrate(
        out, Settings(population=4, generations=1, design=TINY), workers=1, log=lambda _: None
    )
    assert (out / DATABASE).exists() and (out / POSTERIOR).exists()
    assert len(first) == 4 and first["weight"].sum() == pytest.approx(1.0)
    assert set(FITTED) <= set(first.columns) and set(Measures._fields) <= set(first.columns)
    for name, prior in FITTED.items():  # every particle within its prior
        assert first[name].between(prior.low, prior.high).all(), name
    pd.testing.assert_frame_equal(first, pd.read_csv(out / POSTERIOR), check_dtype=False)
    lines: list[str] = []
    calibrate(
        out,
        Settings(population=4, generations=2, design=TINY),
        workers=1,
        resume=True,
        log=lines.append,
    )
    assert [line.split(":")[0] for line in lines] == ["generation 0", "generation 1"]


def test_a_second_calibration_in_one_folder_needs_resume_and_a_resume_needs_one(tmp_path):
    (tmp_path / DATABASE).write_bytes(b"")
    with pytest.raises(OutputError, match="pass --resume"):
        calibrate(tmp_path, Settings(design=TINY))
    with pytest.raises(OutputError, match="no calibration to resume"):
        calibrate(tmp_path / "empty", Settings(design=TINY), resume=True)


def test_calibrate_cli_refuses_to_resume_nothing_in_one_line(tmp_path, capsys):
    assert main(["calibrate", "--out", str(tmp_path / "none"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tissue-abm: error:") and len(err.strip().splitlines()) == 1


def test_the_defaults_are_the_particle_confirmed_best_on_fresh_seeds(monkeypatch):
    # Four particles told apart by immune_recruit_max. Particle 0 misses the oxytocin bound
    # and is never simulated; particle 1 looks best on the screen's seeds only (noise);
    # particle 2 is good on every seed; particle 3 is poor. The screen keeps the two best
    # (1 and 2) and the fresh seeds pick 2.
    on_target = [t.value for t in TARGETS]
    miss = {0.01: 9.0, 0.02: 0.0, 0.03: 0.3, 0.04: 2.0}  # tolerances off on fresh seeds
    lucky = {0.02: 0.0}  # particle 1 is on target on the screen's seeds

    def fake_measure(params, design):
        off = miss[params.immune_recruit_max]
        if design.seed in SCREEN_SEEDS:
            off = lucky.get(params.immune_recruit_max, off + 0.5)
        elif params.immune_recruit_max == 0.02:
            off = 3.0
        return Measures(
            *(v + off * t.tolerance for v, t in zip(on_target, TARGETS, strict=True))
        )._replace(oxytocin_ratio=0.2)

    monkeypatch.setattr("tissue_abm.studies.abc.measure", fake_measure)
    table = pd.DataFrame(
        {
            "weight": 0.25,
            **{n: [p.low] * 4 for n, p in FITTED.items()},
            "immune_recruit_max": [0.01, 0.02, 0.03, 0.04],
            "oxytocin_ratio": [0.9, 0.2, 0.2, 0.2],
        }
    )
    chosen, checked = choose_defaults(table, top=2, workers=1)
    assert chosen["immune_recruit_max"] == 0.03
    assert list(checked.index) == [1, 2, 3]  # screened (bound met), best screen first
    assert checked["confirm_distance"].notna().tolist() == [True, True, False]
    assert checked.loc[2, "confirm_distance"] == pytest.approx(0.3 * (5 / 6) ** 0.5)


@pytest.mark.slow
def test_the_calibrated_defaults_reproduce_every_calibration_target():
    # Statistic: each target's measure averaged over three designs on seeds no calibration
    # step used (101-103; 6 paired replicates each, so 18 runs per experiment). Tolerance:
    # the targets' own (deviation within ±1; the oxytocin target one-sided). The choice of
    # the defaults confirmed them on seeds 21-24 with a largest deviation of about 0.6
    # (docs/calibration.md), so a fresh draw fails only if the defaults are not what the
    # calibration chose.
    rows = [measure(Parameters(), replace(RECHECK, seed=seed)) for seed in (101, 102, 103)]
    got = Measures(*np.mean(rows, axis=0))
    assert (np.abs(deviations(got)) <= 1.0).all(), got

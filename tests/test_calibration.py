"""ABC-SMC calibration (`studies.abc`, `tissue-abm calibrate`) on tiny experiments."""

from __future__ import annotations

import pandas as pd
import pytest

from tissue_abm.cli import main
from tissue_abm.runs.results import OutputError
from tissue_abm.studies.abc import DATABASE, FITTED, POSTERIOR, Settings, calibrate
from tissue_abm.studies.calibration import Design, Measures

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

"""The `tissue-abm` command line: errors, output files, manifest, atomic writing, interrupts."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from datetime import datetime
from importlib import metadata
from pathlib import Path

import mesa
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from factories import assert_one_line_error, write_case
from tissue_abm import Parameters, cli, load_results, load_scenario, load_snapshots
from tissue_abm.analysis.summary import healthspan
from tissue_abm.biology.params import HYPOTHESES
from tissue_abm.biology.readouts import READOUTS
from tissue_abm.runs.results import OutputError, write_run

ROOT = Path(__file__).resolve().parents[1]
COMBINED = ROOT / "scenarios" / "combined.toml"
TINY = ["--days", "20", "--size", "20", "--seed", "7", "--quiet"]
"""A tiny, fast run of a canonical scenario."""


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    """Pin rich's console width, so that content checks do not depend on the test terminal.

    rich wraps output at the terminal width (COLUMNS, else the terminal, else 80 columns); that
    wrapping of one-line errors is tested on its own below.
    """
    monkeypatch.setenv("COLUMNS", "1000")


@pytest.fixture
def no_simulation(monkeypatch):
    """Fail the test if a simulation is started."""

    def forbidden(*args, **kwargs):
        pytest.fail("run_scenario was called although the input is invalid")

    monkeypatch.setattr("tissue_abm.runs.run.run_scenario", forbidden)


def files_in(folder: Path) -> list[str]:
    """Every entry of `folder`, hidden ones included; [] if it does not exist."""
    return sorted(os.listdir(folder)) if folder.exists() else []


# --- malformed input ----------------------------------------------------------------------------

MALFORMED = {
    "invalid-toml-syntax": 'name = "unterminated\n',
    "missing-file": None,
    "not-utf8": b'name = "caf\xe9"\n',
    "unknown-parameter": 'name = "bad"\n[parameters]\nrapa_emx = 0.5\n',
    "unknown-therapy": 'name = "bad"\n[therapy.metformin]\ndose = 1.0\n',
    "string-for-number": 'name = "bad"\n[parameters]\nrapa_emax = "high"\n',
    "float-for-integer": 'name = "bad"\nsize = 20.5\n',
    "parameter-out-of-range": 'name = "bad"\n[parameters]\nimmune_kill = 1.5\n',
    "negative-seed": 'name = "bad"\nseed = -1\n',
    "end-age-not-after-start-age": 'name = "bad"\nstart_age = 100\nend_age = 50\n',
    "on-days-without-off-days": 'name = "bad"\n[therapy.oxytocin]\non_days = 5\n',
    "engine-not-allowed": 'name = "bad"\nengine = "gpu"\n',
    "name-with-spaces": 'name = "my run"\n',
    "parameters-not-a-table": 'name = "bad"\nparameters = 3\n',
}


@pytest.mark.parametrize("content", list(MALFORMED.values()), ids=list(MALFORMED))
def test_run_on_malformed_file_exits_2_with_one_line_error_and_writes_nothing(
    tmp_path, capsys, no_simulation, content
):
    path = write_case(tmp_path, content)
    out = tmp_path / "out"
    status = cli.main(["run", str(path), "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert status == 2
    assert_one_line_error(captured.err, str(path))
    assert captured.out == ""
    assert files_in(out) == []


@pytest.mark.parametrize("value", ["two", "0", "-1", "1.5"])
def test_a_bad_thread_count_in_the_environment_exits_2_before_anything_runs(
    tmp_path, capsys, monkeypatch, no_simulation, value
):
    monkeypatch.setenv("TISSUE_ABM_THREADS", value)
    out = tmp_path / "out"
    status = cli.main(["run", str(COMBINED), "--out", str(out), "--quiet"])
    assert status == 2
    assert_one_line_error(capsys.readouterr().err, "TISSUE_ABM_THREADS", repr(value))
    assert files_in(out) == []


def test_threads_option_reaches_the_kernel_through_its_variable(monkeypatch):
    # --threads sets TISSUE_ABM_THREADS, which the kernel and batch workers read; 0 is refused
    monkeypatch.setenv("TISSUE_ABM_THREADS", "")  # restored after the test
    args = cli.build_parser().parse_args(["run", str(COMBINED), "--threads", "3"])
    cli._set_threads(args)
    assert os.environ["TISSUE_ABM_THREADS"] == "3"
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["run", str(COMBINED), "--threads", "0"])


def test_installed_module_reports_malformed_file_without_traceback(tmp_path):
    path = write_case(tmp_path, MALFORMED["unknown-parameter"])
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "tissue_abm.cli", "run", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        env={**os.environ, "COLUMNS": "1000"},
        check=False,
    )
    assert result.returncode == 2
    assert_one_line_error(result.stderr, str(path), "did you mean 'rapa_emax'")
    assert result.stdout == ""
    assert files_in(out) == []


def test_error_stays_one_line_when_stderr_is_a_pipe(tmp_path):
    path = write_case(tmp_path, 'name = "bad"\ncolour = "red"\n')
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    result = subprocess.run(
        [sys.executable, "-m", "tissue_abm.cli", "run", str(path), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 2
    assert_one_line_error(result.stderr, str(path), "unknown key 'colour'")


@pytest.mark.parametrize(
    "out_below_file",
    [
        pytest.param(("blocker", "results"), id="parent-is-a-file"),
        pytest.param(("blocker",), id="folder-is-a-file"),
    ],
)
def test_unwritable_output_folder_exits_2_before_any_simulation(
    tmp_path, capsys, no_simulation, out_below_file
):
    (tmp_path / "blocker").write_text("a regular file\n")
    out = tmp_path.joinpath(*out_below_file)
    status = cli.main(["run", str(COMBINED), "--out", str(out), *TINY])
    captured = capsys.readouterr()
    assert status == 2
    assert_one_line_error(captured.err, f"cannot write results to {out}")
    assert (tmp_path / "blocker").read_text() == "a regular file\n"


@pytest.mark.parametrize(
    ("options", "mentions"),
    [
        pytest.param(["--size", "2"], "size", id="size-too-small"),
        pytest.param(["--size", "5000"], "size", id="size-too-large"),
        pytest.param(["--seed", str(2**64)], "seed", id="seed-too-large"),
        pytest.param(["--days", "100000"], "days = 100000", id="days-past-the-oldest-age"),
    ],
)
def test_command_line_overrides_are_validated_like_the_file(
    tmp_path, capsys, no_simulation, options, mentions
):
    out = tmp_path / "out"
    status = cli.main(["run", str(COMBINED), "--out", str(out), "--quiet", *options])
    captured = capsys.readouterr()
    assert status == 2
    assert_one_line_error(captured.err, f"{COMBINED} (options)", mentions, options[1])
    assert files_in(out) == []


@pytest.mark.parametrize("command", ["run", "batch", "sensitivity"])
@pytest.mark.parametrize(
    ("option", "value"), [("--days", "0"), ("--days", "-5"), ("--size", "-1"), ("--days", "x")]
)
def test_shared_options_are_refused_alike_by_every_command(
    tmp_path, capsys, no_simulation, command, option, value
):
    # --days and --size are defined once for every command that runs simulations
    extra = ["--params", "immune_kill", "--samples", "2"] if command == "sensitivity" else []
    out = tmp_path / "out"
    args = [command, str(COMBINED), *extra, "--out", str(out), "--quiet", option, value]
    with pytest.raises(SystemExit) as exit_:
        cli.main(args)
    assert exit_.value.code == 2
    assert_one_line_error(
        capsys.readouterr().err,
        f"argument {option}: '{value}' is not allowed",
        "a whole number >= 1",
    )
    assert files_in(out) == []


@pytest.mark.parametrize("value", ["-1", "abc"])
def test_bad_seed_option_gives_one_line_error_like_the_file(tmp_path, capsys, no_simulation, value):
    try:
        status = cli.main(
            ["run", str(COMBINED), "--out", str(tmp_path / "out"), "--quiet", "--seed", value]
        )
    except SystemExit as exit_:
        status = exit_.code
    err = capsys.readouterr().err
    assert status == 2
    assert_one_line_error(err, "seed", value)
    assert "_natural" not in err


def test_error_shows_the_key_exactly_as_written(tmp_path, capsys):
    path = write_case(tmp_path, 'name = "bad"\n":fire:" = 1\n')
    assert cli.main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert_one_line_error(capsys.readouterr().err, "unknown key ':fire:'")


# --- a successful run ---------------------------------------------------------------------------


def run_tiny(out: Path, *options: str) -> int:
    """Run the tiny combined scenario into `out`; return the exit status."""
    return cli.main(["run", str(COMBINED), "--out", str(out), *TINY, *options])


DOSE_RESPONSE = ROOT / "scenarios" / "experiments" / "rapamycin_dose_response.toml"


def test_run_on_a_swept_file_without_point_says_so_and_runs_nothing(tmp_path, capsys):
    assert cli.main(["run", str(DOSE_RESPONSE), "--out", str(tmp_path / "out"), *TINY]) == 2
    assert_one_line_error(
        capsys.readouterr().err,
        "sweeps 6 points",
        "therapy.rapamycin.dose",
        "--point N with N from 0 to 5",
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("scenario", "point"), [(DOSE_RESPONSE, 6), (COMBINED, 1)])
def test_run_refuses_a_point_outside_the_sweep(tmp_path, capsys, scenario, point):
    out = tmp_path / "out"
    assert cli.main(["run", str(scenario), "--out", str(out), "--point", str(point), *TINY]) == 2
    assert_one_line_error(capsys.readouterr().err, f"--point {point} is not allowed")
    assert not out.exists()


def test_run_point_runs_that_sweep_point_labelled_as_in_a_batch(tmp_path):
    out = tmp_path / "out"
    assert cli.main(["run", str(DOSE_RESPONSE), "--out", str(out), "--point", "4", *TINY]) == 0
    assert files_in(out) == [
        "rapamycin_dose_response_seed7_p0004.json",
        "rapamycin_dose_response_seed7_p0004.parquet",
    ]
    table = load_results(out)
    assert set(table["point"]) == {4}
    assert set(table["therapy.rapamycin.dose"]) == {2.0}  # the file's fifth dose
    manifest = json.loads((out / "rapamycin_dose_response_seed7_p0004.json").read_text())
    assert manifest["scenario"]["therapy"]["rapamycin"]["dose"] == 2.0
    assert manifest["point"] == 4


def test_run_writes_exactly_the_parquet_and_manifest_named_after_scenario_and_seed(tmp_path):
    assert run_tiny(tmp_path / "out") == 0
    assert files_in(tmp_path / "out") == ["combined_seed7.json", "combined_seed7.parquet"]


def test_run_readouts_have_one_row_per_day_and_the_documented_columns(tmp_path):
    assert run_tiny(tmp_path) == 0
    table = load_results(tmp_path)
    start_age = load_scenario(COMBINED).start_age
    assert list(table.columns) == ["scenario", "seed", "engine", *READOUTS]
    assert list(table["day"]) == list(range(21))
    assert list(table["age"]) == [start_age + day for day in range(21)]
    assert isinstance(table["scenario"].dtype, pd.CategoricalDtype)
    assert isinstance(table["engine"].dtype, pd.CategoricalDtype)
    assert set(table["scenario"]) == {"combined"}
    assert set(table["engine"]) == {load_scenario(COMBINED).engine}
    assert set(table["seed"]) == {7}


def test_run_manifest_records_scenario_text_settings_and_provenance(tmp_path):
    assert run_tiny(tmp_path) == 0
    manifest = json.loads((tmp_path / "combined_seed7.json").read_text(encoding="utf-8"))
    assert manifest["scenario_text"] == COMBINED.read_text(encoding="utf-8")
    assert manifest["seed"] == 7
    assert manifest["days"] == 20
    assert manifest["engine"] == load_scenario(COMBINED).engine
    assert manifest["scenario"]["size"] == 20
    assert manifest["scenario"]["seed"] == 7
    assert manifest["scenario"]["parameters"] == Parameters().model_dump()
    assert manifest["status"] == "done"
    assert manifest["version"] == metadata.version("tissue-abm")
    assert manifest["mesa"] == mesa.__version__
    started = datetime.fromisoformat(manifest["started"])
    finished = datetime.fromisoformat(manifest["finished"])
    assert started.tzinfo is not None
    assert started <= finished


def test_run_prints_start_end_summary_and_healthspan(tmp_path, capsys):
    assert run_tiny(tmp_path) == 0
    out = capsys.readouterr().out
    for label in ("senescent fraction", "healthy fraction", "mean SASP", "tissue function"):
        assert label in out
    table = load_results(tmp_path)
    assert f"{table['tissue_function'].iloc[-1]:.4f}" in out
    span = healthspan(table, Parameters().healthspan_threshold)
    healthspan_line = next(line for line in out.splitlines() if "healthspan" in line)
    assert ("not reached" in healthspan_line) == math.isnan(span)


def test_same_command_twice_gives_identical_readouts(tmp_path):
    assert run_tiny(tmp_path / "first") == 0
    assert run_tiny(tmp_path / "second") == 0
    assert_frame_equal(load_results(tmp_path / "first"), load_results(tmp_path / "second"))


def test_different_seed_gives_different_readouts(tmp_path):
    assert run_tiny(tmp_path / "seed7") == 0
    assert run_tiny(tmp_path / "seed8", "--seed", "8") == 0
    first = load_results(tmp_path / "seed7").drop(columns="seed")
    second = load_results(tmp_path / "seed8").drop(columns="seed")
    with pytest.raises(AssertionError):
        assert_frame_equal(first, second)


@pytest.mark.parametrize("folder", ["run[draft]", "run[/x]"])
def test_run_prints_the_output_paths_verbatim(tmp_path, capsys, folder):
    out = tmp_path / folder
    assert run_tiny(out) == 0
    assert str(out / "combined_seed7.parquet") in capsys.readouterr().out


# --- atomic writing and interrupts --------------------------------------------------------------


def fail_midway(exception: BaseException):
    """A stand-in for DataFrame.to_parquet that writes part of the file, then raises."""

    def to_parquet(self, path, *args, **kwargs):
        Path(path).write_bytes(b"PAR1 half a file")
        raise exception

    return to_parquet


def test_failed_parquet_write_is_a_one_line_error_and_leaves_no_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(
        pd.DataFrame, "to_parquet", fail_midway(OSError(28, "No space left on device"))
    )
    assert run_tiny(tmp_path) == 2
    assert_one_line_error(capsys.readouterr().err, str(tmp_path), "No space left on device")
    assert files_in(tmp_path) == []


def test_failed_rewrite_keeps_the_previous_result_intact(tmp_path, monkeypatch):
    table = pd.DataFrame({"day": [0, 1], "healthy": [5, 6]})
    first = write_run(table, {"status": "done"}, tmp_path, "run")
    monkeypatch.setattr(pd.DataFrame, "to_parquet", fail_midway(OSError(5, "I/O error")))
    with pytest.raises(OutputError, match="I/O error"):
        write_run(table.assign(healthy=[0, 0]), {"status": "new"}, tmp_path, "run")
    monkeypatch.undo()
    assert_frame_equal(pd.read_parquet(first), table)
    assert json.loads((tmp_path / "run.json").read_text()) == {"status": "done"}
    assert files_in(tmp_path) == ["run.json", "run.parquet"]


def test_interrupt_during_run_exits_130_and_writes_nothing(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("tissue_abm.runs.run.run_scenario", interrupted)
    out = tmp_path / "out"
    assert run_tiny(out) == 130
    assert "interrupted; nothing written" in capsys.readouterr().err
    assert files_in(out) == []


def test_interrupt_while_writing_leaves_nothing_behind(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(pd.DataFrame, "to_parquet", fail_midway(KeyboardInterrupt()))
    assert run_tiny(tmp_path) == 130
    assert "interrupted; nothing written" in capsys.readouterr().err
    assert files_in(tmp_path) == []


# --- params -------------------------------------------------------------------------------------


def test_params_prints_markdown_table_with_every_parameter(capsys):
    assert cli.main(["params"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| `")]
    assert "| name | unit | default | range | source | evidence | meaning |" in out
    assert [row.split("`")[1] for row in rows] == list(Parameters.model_fields)
    # the parameters whose effect has no direct evidence say so in their row
    flagged = {row.split("`")[1] for row in rows if "**hypothesis**" in row}
    assert flagged == set(HYPOTHESES) and "ot_sasp_damping" in flagged


def test_run_writes_the_grid_snapshots_its_scenario_asks_for(tmp_path):
    scenario = tmp_path / "shots.toml"
    scenario.write_text(
        'name = "shots"\nsize = 12\nstart_age = 90\nend_age = 100\n[output]\nsnapshots = [90, 95]\n'
    )
    out = tmp_path / "out"
    assert cli.main(["run", str(scenario), "--out", str(out), "--quiet"]) == 0
    assert files_in(out) == ["shots_seed1.grid.parquet", "shots_seed1.json", "shots_seed1.parquet"]
    shots = load_snapshots(out)
    assert shots.groupby("age").size().to_dict() == {90.0: 144, 95.0: 144}
    readouts = load_results(out).set_index("age")
    for age, grid in shots.groupby("age"):
        assert (grid["state"] == "senescent").sum() == readouts.loc[age, "senescent"]
        assert grid["immune"].sum() == readouts.loc[age, "immune"]


def test_shortening_a_run_drops_the_snapshots_it_no_longer_reaches(tmp_path):
    out = tmp_path / "out"
    assert run_tiny(out) == 0  # combined.toml asks for snapshots at 365 and 730 days
    assert not [name for name in files_in(out) if name.endswith(".grid.parquet")]


HEAVY = ("numba", "mesa", "solara", "dask", "distributed", "matplotlib")
"""Libraries that only the commands running, plotting or serving should import."""


def test_the_cli_and_scenario_validation_import_no_engine_server_or_plotting_library():
    # In a fresh interpreter (this one has imported everything): importing the command line and
    # the parameters, and validating a scenario file, must not load an engine's libraries.
    code = (
        "import sys, tissue_abm.cli, tissue_abm.biology.params\n"
        "from tissue_abm.runs.scenario import load_scenario\n"
        f"load_scenario({str(COMBINED)!r})\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == ""
    # ... while building a model imports its engine (so the check above can fail)
    code = (
        "import sys\nfrom tissue_abm.runs.scenario import load_scenario\n"
        f"load_scenario({str(COMBINED)!r}).with_overrides(size=5, engine='agents').create_model()\n"
        "print('mesa' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "True"


ANALYSIS = ("pandas", "pyarrow", "scipy")
"""Libraries that only the commands that read or write results need."""


@pytest.mark.parametrize(
    "command",
    [
        ["params"],
        ["run", "{bad}"],
        ["batch", "{bad}", "--out", "{out}"],
        ["batch", "--out", "{out}"],
    ],
)
def test_params_and_input_errors_answer_without_heavy_libraries(tmp_path, command):
    # `params`, and a bad scenario file or missing input, are answered at once: in a fresh
    # interpreter, running the command loads neither the engines' nor the results' libraries.
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[parameters]\nimmune_kill = 7\n')
    argv = [arg.format(bad=bad, out=tmp_path / "out") for arg in command]
    code = (
        "import sys, contextlib, io\nfrom tissue_abm import cli\n"
        f"with contextlib.redirect_stdout(io.StringIO()):\n    status = cli.main({argv!r})\n"
        f"print(status, ','.join(m for m in {HEAVY + ANALYSIS!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    status, loaded = done.stdout.split(" ")
    assert (int(status), loaded.strip()) == (0 if command == ["params"] else 2, "")
    assert not (tmp_path / "out").exists()

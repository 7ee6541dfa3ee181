"""Scenario files: the canonical scenarios, one-line errors for malformed files, and analysis."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
import pytest

from factories import write_case
from tissue_abm import Parameters, ScenarioError, cli, load_scenario
from tissue_abm.analysis.summary import SUMMARY_READOUTS, healthspan, start_end_summary

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
CANONICAL = ("untreated", "rapamycin", "oxytocin", "combined", "senolytic")
DRUGS = ("rapamycin", "oxytocin", "senolytic")

# --- canonical scenarios ----------------------------------------------------------------------


@pytest.mark.parametrize("name", CANONICAL)
def test_canonical_scenario_loads_with_its_own_name_and_a_description(name):
    scenario = load_scenario(SCENARIOS / f"{name}.toml")
    assert scenario.name == name  # result files are named after it
    assert scenario.description.strip()
    assert scenario.days > 0


@pytest.mark.parametrize(
    ("name", "drugs"),
    [
        ("untreated", set()),
        ("rapamycin", {"rapamycin"}),
        ("oxytocin", {"oxytocin"}),
        ("combined", {"rapamycin", "oxytocin"}),
        ("senolytic", {"senolytic"}),
    ],
)
def test_canonical_scenario_gives_exactly_the_drugs_its_name_says(name, drugs):
    therapy = load_scenario(SCENARIOS / f"{name}.toml").therapy
    given = {drug for drug in DRUGS if getattr(therapy, drug) is not None}
    assert given == drugs


def test_untreated_scenario_runs_on_default_parameters():
    assert load_scenario(SCENARIOS / "untreated.toml").parameters == Parameters()


@pytest.mark.parametrize("drug", ["rapamycin", "oxytocin"])
def test_combined_scenario_repeats_each_single_drug_regimen_exactly(drug):
    combined = load_scenario(SCENARIOS / "combined.toml")
    single = load_scenario(SCENARIOS / f"{drug}.toml")
    assert getattr(combined.therapy, drug) == getattr(single.therapy, drug)
    # and the rest of the setting is the same, so the comparison is fair
    for key in ("seed", "engine", "size", "torus", "start_age", "end_age", "parameters"):
        assert getattr(combined, key) == getattr(single, key), key


def test_senolytic_scenario_kills_some_senescent_cells():
    senolytic = load_scenario(SCENARIOS / "senolytic.toml").therapy.senolytic
    assert senolytic is not None
    assert senolytic.fraction > 0


# --- malformed scenario files -------------------------------------------------------------------

VALID = 'name = "bad"\n'
"""A minimal valid head that the malformed cases extend."""

MALFORMED = [
    pytest.param('name = "unterminated\n', ["not valid TOML", "line 1"], id="invalid-toml-syntax"),
    pytest.param(None, ["no such scenario file"], id="missing-file"),
    pytest.param(b'name = "caf\xe9"\n', ["not UTF-8 text", "byte 11"], id="not-utf8"),
    pytest.param(
        VALID + 'colour = "red"\n',
        ["unknown key 'colour'", "allowed keys:", "description", "therapy"],
        id="unknown-top-level-key",
    ),
    pytest.param(
        VALID + "[parameters]\nrapa_emx = 0.5\n",
        ["'parameters.rapa_emx'", "did you mean 'rapa_emax'"],
        id="unknown-parameter-suggests-closest",
    ),
    pytest.param(
        VALID + "[therapy.metformin]\ndose = 1.0\n",
        ["unknown key 'therapy.metformin'", "oxytocin, rapamycin, senolytic"],
        id="unknown-therapy",
    ),
    pytest.param(
        VALID + "[therapy.rapamycin]\ndoze = 1.0\n",
        ["'therapy.rapamycin.doze'", "did you mean 'dose'", "allowed keys:"],
        id="unknown-key-in-therapy",
    ),
    pytest.param(
        VALID + '[parameters]\nrapa_emax = "high"\n',
        ["parameters.rapa_emax", "'high'", "a number from 0.0 to 1.0"],
        id="string-for-number",
    ),
    pytest.param(
        VALID + 'seed = "one"\n', ["seed", "'one'", "a whole number"], id="string-for-integer"
    ),
    pytest.param(
        VALID + "[parameters]\nreplicative_limit = 30.5\n",
        ["parameters.replicative_limit", "30.5", "a whole number from 1 to 1000"],
        id="float-for-integer-replicative-limit",
    ),
    pytest.param(
        VALID + "size = 20.0\n",
        ["size", "20.0", "a whole number from 3 to 4000"],
        id="float-for-integer-size",
    ),
    pytest.param(
        VALID + 'torus = "yes"\n', ["torus", "'yes'", "true or false"], id="string-for-bool"
    ),
    pytest.param(
        VALID + "[parameters]\nimmune_kill = -0.1\n",
        ["parameters.immune_kill", "-0.1", "from 0.0 to 1.0"],
        id="parameter-below-range",
    ),
    pytest.param(
        VALID + "[parameters]\nrapa_ic50 = 150.0\n",
        ["parameters.rapa_ic50", "150.0", "from 0.01 to 100.0"],
        id="parameter-above-range",
    ),
    pytest.param(
        VALID + "[therapy.rapamycin]\ndose = 500.0\n",
        ["therapy.rapamycin.dose", "500.0", "from 0.0 to 100.0", "mg/kg"],
        id="therapy-dose-above-range",
    ),
    pytest.param(
        VALID + "[therapy.oxytocin]\ndose = -1.0\n",
        ["therapy.oxytocin.dose", "-1.0", "from 0.0 to 100.0"],
        id="therapy-dose-below-range",
    ),
    pytest.param(
        VALID + "seed = -1\n", ["seed", "-1", "a whole number from 0"], id="negative-seed"
    ),
    pytest.param(VALID + "size = 2\n", ["size", "2", "from 3 to 4000"], id="size-too-small"),
    pytest.param(
        VALID + "start_age = 100\nend_age = 100\n",
        ["end_age (100)", "start_age (100)", "must be after"],
        id="end-age-not-after-start-age",
    ),
    pytest.param(
        VALID + "[therapy.rapamycin]\nstart_age = 400\nstop_age = 300\n",
        ["therapy.rapamycin", "stop_age (300)", "start_age (400)", "must be after"],
        id="therapy-stop-age-not-after-start-age",
    ),
    pytest.param(
        VALID + "[therapy.rapamycin]\non_days = 5\n",
        ["therapy.rapamycin", "on_days", "off_days", "both"],
        id="on-days-without-off-days",
    ),
    pytest.param(
        VALID + 'engine = "gpu"\n',
        ["engine", "'gpu'", "one of 'array', 'agents'"],
        id="engine-not-allowed",
    ),
    pytest.param(
        'name = "my run"\n', ["name", "'my run'", "letters, digits"], id="name-with-spaces"
    ),
    pytest.param('name = ""\n', ["name", "''", "letters, digits"], id="name-empty"),
    pytest.param("seed = 1\n", ["missing required key 'name'"], id="name-missing"),
    pytest.param(
        VALID + "parameters = 3\n",
        ["parameters", "3", "a table of keys"],
        id="parameters-not-a-table",
    ),
    pytest.param(
        VALID + "[parameters]\ninitial_occupancy = 0.1\ninitial_senescent_fraction = 0.2\n",
        ["initial_senescent_fraction (0.2)", "initial_occupancy (0.1)", "cannot exceed"],
        id="senescent-fraction-exceeds-occupancy",
    ),
    pytest.param(
        VALID + "seed = -1\nsize = 1\n",
        ["seed", "-1", "1 more problem"],
        id="two-problems-first-shown-and-counted",
    ),
]


@pytest.mark.parametrize(("content", "expected"), MALFORMED)
def test_malformed_scenario_gives_one_line_error_naming_file_key_value_and_allowed(
    tmp_path, content, expected
):
    path = write_case(tmp_path, content)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message, message
    assert message.startswith(f"{path}: "), message
    for part in expected:
        assert part in message, f"{part!r} missing from {message!r}"


def test_scenario_error_does_not_chain_the_internal_exception(tmp_path):
    path = write_case(tmp_path, VALID + "seed = -1\n")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_scenario_error_is_a_value_error_so_callers_can_catch_it_generically(tmp_path):
    with pytest.raises(ValueError, match="no such scenario file"):
        load_scenario(tmp_path / "nowhere.toml")


@pytest.mark.parametrize(
    "table",
    [
        pytest.param('[therapy.oxytocin]\ndose = "1"\n', id="string-for-dose"),
        pytest.param('[therapy.rapamycin]\nstart_age = "365"\n', id="string-for-start-age"),
        pytest.param("[therapy.rapamycin]\nevery = 2.0\n", id="float-for-every"),
        pytest.param("[therapy.rapamycin]\non_days = true\noff_days = 3\n", id="bool-for-on-days"),
    ],
)
def test_therapy_value_of_wrong_type_is_rejected_like_a_parameter(tmp_path, table):
    path = write_case(tmp_path, VALID + table)
    with pytest.raises(ScenarioError, match="is not allowed"):
        load_scenario(path)


def test_unknown_key_containing_a_newline_still_gives_a_one_line_error(tmp_path):
    path = write_case(tmp_path, VALID + '"col\\nour" = 1\n')
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert "\n" not in str(caught.value)


def test_unknown_parameter_error_points_to_the_parameter_list(tmp_path, capsys):
    path = write_case(tmp_path, VALID + "[parameters]\nrapa_emx = 0.5\n")
    with pytest.raises(ScenarioError, match=r"see `tissue-abm params`"):
        load_scenario(path)
    assert cli.main(["params"]) == 0
    assert "`rapa_emax`" in capsys.readouterr().out


# --- bounds: what a scenario may ask for, checked before any work -------------------------------


def test_a_named_pipe_or_a_device_is_refused_without_reading_it(tmp_path):
    """Reading a named pipe waits for a writer; /dev/zero never ends."""
    from tissue_abm.runs.scenario import read_scenario_text

    fifo = tmp_path / "case.toml"
    os.mkfifo(fifo)
    with pytest.raises(ScenarioError, match=r"case.toml: cannot read scenario file \(a named pipe"):
        read_scenario_text(fifo)
    with pytest.raises(ScenarioError, match=r"/dev/zero: cannot read scenario file \(a character"):
        load_scenario("/dev/zero")
    with pytest.raises(ScenarioError, match=r"cannot read scenario file \(a folder"):
        load_scenario(tmp_path)


def test_a_file_over_the_size_limit_is_refused_and_one_at_it_read(tmp_path):
    from tissue_abm.runs.scenario import MAX_FILE_BYTES, read_scenario_text

    big = write_case(tmp_path, VALID + "#" * MAX_FILE_BYTES + "\n")
    with pytest.raises(ScenarioError, match=f"allowed: at most {MAX_FILE_BYTES} bytes"):
        read_scenario_text(big)
    at = write_case(tmp_path, VALID + "#" * (MAX_FILE_BYTES - len(VALID) - 1) + "\n")
    assert at.stat().st_size == MAX_FILE_BYTES
    assert load_scenario(at).name


def test_line_ends_are_read_as_path_read_text_reads_them(tmp_path):
    """The text goes into the batch manifest and is compared on --resume."""
    from tissue_abm.runs.scenario import read_scenario_text

    path = tmp_path / "case.toml"
    path.write_bytes(VALID.replace("\n", "\r\n").encode())
    assert read_scenario_text(path) == path.read_text(encoding="utf-8") == VALID


def test_the_sweep_counts_its_points_without_listing_them(tmp_path):
    from tissue_abm.runs.scenario import LARGE_LIMITS, parse_scenario

    text = VALID + "[sweep.grid]\nimmune_kill = [0.1, 0.2, 0.3]\nsize = [20, 30]\n"
    text += "[sweep.zip]\ndamage_rate = [0.001, 0.002]\nrapa_emax = [0.5, 0.6]\n"
    sweep = parse_scenario(text, "case").sweep
    assert sweep.count == len(sweep.points()) == 12
    values = "[" + ", ".join(str(0.01 * i) for i in range(1, 21)) + "]"
    keys = ["immune_kill", "damage_rate", "rapa_emax", "rapa_ic50", "mtorc2_ic50", "mtorc2_hill"]
    huge = VALID + "[sweep.grid]\n" + "".join(f"{key} = {values}\n" for key in keys)
    with pytest.raises(ScenarioError) as refused:
        parse_scenario(huge, "case")  # 64 M points: refused before any is listed
    assert str(refused.value) == (
        "case: the sweep has 64000000 points; allowed: at most 100000 (--allow-large: up to "
        "1000000)"
    )
    with pytest.raises(ScenarioError, match="at most 1000000, even with --allow-large"):
        parse_scenario(huge, "case", LARGE_LIMITS.points)


def test_the_agents_engine_takes_lattices_up_to_its_memory_bound(tmp_path):
    from tissue_abm.runs.scenario import AGENTS_MAX_SIZE, validate_scenario

    base = {"name": "big", "engine": "agents"}
    assert validate_scenario({**base, "size": AGENTS_MAX_SIZE}, "case").size == AGENTS_MAX_SIZE
    assert validate_scenario({**base, "engine": "array", "size": 4000}, "case").size == 4000
    with pytest.raises(ScenarioError) as refused:
        validate_scenario({**base, "size": 4000}, "case")
    assert str(refused.value) == (
        "case: size = 4000 is not allowed with engine = 'agents'; allowed: at most 1000 (the "
        "agents engine needs about 2 kB a site, 32 GB at this size; the array engine takes "
        "sizes up to 4000)"
    )
    path = write_case(tmp_path, VALID + 'engine = "agents"\n[sweep.grid]\nsize = [20, 1001]\n')
    with pytest.raises(ScenarioError, match=r"sweep point \(size = 1001\): size = 1001 is not"):
        load_scenario(path)


# --- analysis -----------------------------------------------------------------------------------


def readouts(ages, function):
    """A hand-made run: ages and tissue function, other summary readouts distinct per row."""
    n = len(ages)
    return pd.DataFrame(
        {
            "age": ages,
            "tissue_function": function,
            "senescent_fraction": [0.01 * (i + 1) for i in range(n)],
            "healthy_fraction": [0.9 - 0.01 * i for i in range(n)],
            "mean_sasp": [0.1 * i for i in range(n)],
        }
    )


def test_healthspan_is_the_first_age_with_function_below_threshold():
    run = readouts([100, 101, 102, 103, 104], [0.95, 0.8, 0.7, 0.9, 0.6])
    assert healthspan(run, 0.75) == 102


def test_healthspan_counts_function_equal_to_threshold_as_healthy():
    run = readouts([10, 20, 30], [0.9, 0.75, 0.74])
    assert healthspan(run, 0.75) == 30


def test_healthspan_uses_age_column_not_index():
    run = readouts([500, 501, 502], [0.9, 0.5, 0.4])
    run.index = [7, 8, 9]
    assert healthspan(run, 0.75) == 501


def test_healthspan_is_nan_when_function_never_falls_below_threshold():
    run = readouts([100, 101, 102], [0.95, 0.9, 0.76])
    assert math.isnan(healthspan(run, 0.75))


def test_start_end_summary_takes_first_and_last_rows():
    run = readouts([90, 91, 92, 93], [0.99, 0.9, 0.8, 0.7])
    summary = start_end_summary(run)
    assert list(summary.table.index) == list(SUMMARY_READOUTS.values())
    for column, label in SUMMARY_READOUTS.items():
        assert summary.table.loc[label, "start"] == run[column].iloc[0]
        assert summary.table.loc[label, "end"] == run[column].iloc[-1]
    assert (summary.start_age, summary.end_age) == (90.0, 93.0)

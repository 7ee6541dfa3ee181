"""Sensitivity studies: parameter ranges, errors, the variants, the indices, resume, the CLI."""

from __future__ import annotations

import itertools
import math
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from factories import assert_one_line_error, results_rows, results_table
from tissue_abm import cli, load_scenario
from tissue_abm.analysis import survival
from tissue_abm.biology.params import Parameters
from tissue_abm.runs.results import OutputError, load_results, point_parameters
from tissue_abm.runs.scenario import ScenarioError, parse_scenario
from tissue_abm.studies import sensitivity

ROOT = Path(__file__).resolve().parents[1]

TINY = """\
name = "tiny"
seed = 3
replicates = 2
size = 25
start_age = 700
end_age = 780

[parameters]
initial_senescent_fraction = 0.03   # a burden for the drugs to act on within 80 days

[therapy.rapamycin]
dose = 1.0
start_age = 700

[therapy.oxytocin]
dose = 1.0
start_age = 700
"""
"""A small combined scenario: 25x25, 80 days with both drugs from the start (~20 ms a run)."""

PARAMS = "phagocytic_rate,healthspan_threshold"
"""phagocytic_rate changes the tissue (in old tissue the main clearance route); healthspan_threshold
only the healthspan readout."""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scenario") / "tiny.toml"
    path.write_text(TINY, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def morris(tiny, tmp_path_factory):
    """A finished Morris study of PARAMS (3 trajectories, 9 points, 54 runs) in one process."""
    study = sensitivity.plan_study(tiny, PARAMS, samples=3)
    out = tmp_path_factory.mktemp("morris") / "study"
    summary = sensitivity.run_study(study, out, workers=1)
    assert (summary.total, summary.done, summary.failed) == (54, 54, 0)
    return study, out, sensitivity.analyse(study, out)


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")


# --- parameter ranges -----------------------------------------------------------------------


def test_a_name_varies_the_scenario_value_half_to_double_clipped_to_the_allowed_range():
    ic50, kill, limit = sensitivity.parse_factors(
        " rapa_ic50, immune_kill,replicative_limit", Parameters()
    )
    assert (ic50.low, ic50.high, ic50.centre, ic50.unit) == (2.5, 10.0, 5.0, "mg/kg")
    assert (kill.low, kill.high) == (0.4, 1.0)  # 1.6 is clipped to the largest probability
    assert (limit.low, limit.high, limit.integer) == (15.0, 60.0, True)
    assert not ic50.integer
    (kill,) = sensitivity.parse_factors(["immune_kill"], Parameters(immune_kill=0.3))
    assert (kill.low, kill.high, kill.centre) == (0.15, 0.6, 0.3)  # around the scenario's value


def test_an_explicit_range_is_taken_as_given():
    (ic50,) = sensitivity.parse_factors("rapa_ic50=1:20", Parameters())
    assert (ic50.low, ic50.high, ic50.centre) == (1.0, 20.0, 5.0)


@pytest.mark.parametrize(
    ("params", "parts"),
    [
        (
            "imune_kill",
            [
                "unknown parameter 'imune_kill'",
                "did you mean 'immune_kill'?",
                "`tissue-abm params`",
            ],
        ),
        (
            "immune_kill=0.5:1.5",
            ["immune_kill=0.5:1.5", "low < high within 0.0 to 1.0 probability"],
        ),
        ("immune_kill=0.9:0.5", ["low < high"]),
        ("immune_kill=low:high", ["malformed range", "name=low:high"]),
        ("immune_kill=0.5", ["malformed range"]),
        ("immune_kill,immune_kill", ["'immune_kill' is given twice"]),
        (" , ", ["--params is empty"]),
    ],
)
def test_bad_params_are_one_line_errors_naming_the_item(params, parts):
    with pytest.raises(ScenarioError) as caught:
        sensitivity.parse_factors(params, Parameters())
    message = str(caught.value)
    assert "\n" not in message
    for part in parts:
        assert part in message


def test_a_parameter_at_zero_needs_an_explicit_range():
    with pytest.raises(
        ScenarioError,
        match=r"value 0.0 gives an empty default range.*"
        r"immune_kill=low:high within 0.0 to 1.0",
    ):
        sensitivity.parse_factors("immune_kill", Parameters(immune_kill=0.0))


def test_sobol_needs_a_power_of_two_and_morris_two_trajectories():
    factors = sensitivity.parse_factors(PARAMS, Parameters())
    with pytest.raises(ScenarioError, match="--samples 6 is not allowed with --method sobol"):
        sensitivity.sample(factors, "sobol", 6, seed=1)
    with pytest.raises(ScenarioError, match="--samples 1 is not allowed"):
        sensitivity.sample(factors, "morris", 1, seed=1)
    assert sensitivity.sample(factors, "morris", 4, seed=1).shape == (4 * 3, 2)  # r(k + 1)
    assert sensitivity.sample(factors, "sobol", 8, seed=1).shape == (8 * 4, 2)  # N(k + 2)


# --- the variants ---------------------------------------------------------------------------


def test_each_point_runs_each_drug_alone_and_both_with_the_same_seeds(tiny):
    study = sensitivity.plan_study(
        tiny, "immune_kill,replicative_limit", samples=2, seed=11, replicates=3, days=30, size=12
    )
    texts = study.variant_texts()
    assert list(texts) == ["rapamycin", "oxytocin", "combined"]
    variants = {name: parse_scenario(text, name) for name, text in texts.items()}
    drugs = {
        name: (s.therapy.rapamycin is not None, s.therapy.oxytocin is not None)
        for name, s in variants.items()
    }
    assert drugs == {
        "rapamycin": (True, False),
        "oxytocin": (False, True),
        "combined": (True, True),
    }
    base = load_scenario(tiny)
    for scenario in variants.values():
        assert scenario.therapy.rapamycin in (None, base.therapy.rapamycin)
        assert (scenario.seed, scenario.replicates, scenario.days, scenario.size) == (11, 3, 30, 12)
        assert scenario.replicate_seeds() == variants["combined"].replicate_seeds()
        assert scenario.parameters.initial_senescent_fraction == 0.03  # the file's override
        assert tomllib.loads(texts["combined"])["sweep"]["zip"] == study.values()
    values = study.values()
    assert all(isinstance(v, int) for v in values["replicative_limit"])  # rounded
    assert np.allclose(values["immune_kill"], study.design[:, 0])
    assert study.points == 2 * 3 and study.runs == 2 * 3 * 3 * 3


@pytest.mark.parametrize(
    ("content", "parts"),
    [
        (
            (ROOT / "scenarios" / "rapamycin.toml").read_text(encoding="utf-8"),
            ["therapy.oxytocin missing", "both [therapy.rapamycin] and [therapy.oxytocin]"],
        ),
        (TINY + "\n[sweep.grid]\nimmune_kill = [0.4, 0.8]\n", ["[sweep] is not allowed"]),
    ],
)
def test_the_scenario_must_hold_the_combined_regimen_and_no_sweep(tmp_path, content, parts):
    path = tmp_path / "case.toml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ScenarioError) as caught:
        sensitivity.plan_study(path, PARAMS, samples=2)
    for part in [str(path), *parts]:
        assert part in str(caught.value)


# --- the benefit and the indices --------------------------------------------------------------


def runs_table(
    values: dict[str, list[list[float]]],
    readout: str,
    swept: tuple[str, list[float]] = ("immune_kill", [0.4, 0.8]),
) -> pd.DataFrame:
    """A study's results: values[variant][point][replicate] on the last of 3 days (0.5 before)."""
    column, levels = swept
    days = np.arange(3)
    frames = [
        results_rows(
            variant,
            point=point,
            sweep={column: levels[point]},
            replicate=replicate,
            seed=replicate,
            day=days,
            age=100 + days,
            **{readout: np.where(days == 2, value, 0.5)},
        )
        for variant, points in values.items()
        for point, replicates in enumerate(points)
        for replicate, value in enumerate(replicates)
    ]
    return results_table(*frames, categories=("scenario",))


def test_the_benefit_is_positive_when_the_combination_beats_the_better_single_drug():
    values = {
        "rapamycin": [[0.2, 0.4], [0.1, 0.1]],
        "oxytocin": [[0.5, 0.5], [0.6, 0.4]],
        "combined": [[0.1, 0.2], [0.3, 0.3]],
    }
    lower = sensitivity.benefit(runs_table(values, "senescent_fraction"), "senescent_fraction")
    assert lower["point"].tolist() == [0, 1] and lower["n"].tolist() == [2, 2]
    assert lower["immune_kill"].tolist() == [0.4, 0.8]
    assert lower["best_single"].tolist() == ["rapamycin", "rapamycin"]
    assert lower["benefit"].to_numpy() == pytest.approx([0.3 - 0.15, 0.1 - 0.3])
    higher = sensitivity.benefit(runs_table(values, "tissue_function"), "tissue_function")
    assert higher["best_single"].tolist() == ["oxytocin", "oxytocin"]
    assert higher["benefit"].to_numpy() == pytest.approx([0.15 - 0.5, 0.3 - 0.5])


def test_healthspan_uses_each_points_threshold_and_never_lost_counts_as_the_end_age():
    table = runs_table(
        {v: [[0.0], [0.0]] for v in sensitivity.VARIANTS},
        "tissue_function",
        swept=("healthspan_threshold", [0.95, 0.85]),
    )
    function = {
        "rapamycin": [0.99, 0.9, 0.9],
        "oxytocin": [0.9, 0.9, 0.9],
        "combined": [0.99, 0.99, 0.99],
    }
    table["tissue_function"] = [
        function[str(v)][d] for v, d in zip(table["scenario"], table["day"], strict=True)
    ]
    gains = sensitivity.benefit(table, sensitivity.HEALTHSPAN)
    # threshold 0.95: rapamycin loses health at age 101, oxytocin at 100, the combination
    # never (counted as the end age, 102); threshold 0.85: none loses it
    assert gains[[*sensitivity.VARIANTS, "best_single", "benefit"]].values.tolist() == [
        [101.0, 100.0, 102.0, "rapamycin", 1.0],
        [102.0, 102.0, 102.0, "rapamycin", 0.0],
    ]


def test_an_unknown_readout_names_the_closest():
    with pytest.raises(ValueError, match="did you mean 'senescent_fraction'"):
        sensitivity.benefit(runs_table({"combined": [[0.1]]}, "x"), "senescent_fractoin")


LIFE_PARAMS = "phagocytic_rate,sr_production_scale=1000:2000"
"""sr_production_scale sets how fast the organisms die (SR units per new senescent cell) and
leaves the tissue alone; over this range some medians fall inside TINY's 80 days and some not."""


@pytest.fixture(scope="module")
def lifespan_study(tiny, tmp_path_factory):
    """A finished Morris study of LIFE_PARAMS (2 trajectories, 6 points, 36 runs) and its
    analysis on lifespan."""
    study = sensitivity.plan_study(tiny, LIFE_PARAMS, samples=2)
    out = tmp_path_factory.mktemp("lifespan") / "study"
    sensitivity.run_study(study, out, workers=1)
    return study, out, sensitivity.analyse(study, out, sensitivity.LIFESPAN)


@pytest.mark.slow
def test_the_lifespan_benefit_is_the_pooled_kaplan_meier_median_combined_minus_best(
    lifespan_study,
):
    study, out, result = lifespan_study
    batch = out / sensitivity.STUDY_BATCH
    # by hand: the organisms of each point's runs, at the point's own parameters
    lives = survival.lifespans(load_results(batch), point_parameters(batch))
    end_age = 780.0  # TINY's
    median = {}
    for (variant, point), group in lives.groupby(["scenario", "point"], observed=True):
        assert group["replicate"].nunique() == 2  # pooled over both replicates
        km = survival.kaplan_meier(group["lifespan"].to_numpy(), group["observed"].to_numpy())
        age = survival.quantile_lifespan(km, 0.5)
        median[str(variant), int(point)] = end_age if math.isnan(age) else age
    reached = [v for v in median.values() if v < end_age]
    assert 0 < len(reached) < len(median)  # both cases are exercised
    gains = result.benefit
    assert gains["n"].tolist() == [2] * study.points
    for row in gains.itertuples(index=False):
        expected = {v: median[v, row.point] for v in sensitivity.VARIANTS}
        assert [getattr(row, v) for v in sensitivity.VARIANTS] == list(expected.values())
        best = max(expected["rapamycin"], expected["oxytocin"])
        assert row.benefit == pytest.approx(expected["combined"] - best, abs=1e-9)  # days
        assert expected[row.best_single] == best
    assert [p.name for p in result.files] == [
        "benefit_lifespan.csv",
        "indices_lifespan.csv",
        "indices_lifespan.png",
    ]


@pytest.mark.slow
def test_a_larger_production_scale_never_lengthens_a_median_lifespan(lifespan_study):
    """Neighbouring points of a Morris trajectory differ in one parameter; where it is
    sr_production_scale the tissue runs identically (same seeds), so more SR production can
    only bring the deaths forward: each variant's median is no longer, and some shorter."""
    study, _, result = lifespan_study
    gains = result.benefit
    shorter, steps = 0, len(study.factors) + 1
    for start in range(0, study.points, steps):  # one trajectory each
        trajectory = [row for _, row in gains.iloc[start : start + steps].iterrows()]
        for low, high in itertools.pairwise(trajectory):
            if low["phagocytic_rate"] != high["phagocytic_rate"]:
                continue
            if low["sr_production_scale"] > high["sr_production_scale"]:
                low, high = high, low
            for variant in sensitivity.VARIANTS:
                assert high[variant] <= low[variant]
                shorter += high[variant] < low[variant]
    assert shorter > 0


def test_the_lifespan_readout_needs_each_points_parameters():
    values = {v: [[0.1]] for v in sensitivity.VARIANTS}
    with pytest.raises(ValueError, match="point_parameters") as caught:
        sensitivity.benefit(runs_table(values, "senescent_fraction"), sensitivity.LIFESPAN)
    assert "\n" not in str(caught.value)
    assert sensitivity.higher_is_better(sensitivity.LIFESPAN)


@pytest.mark.parametrize("method", sensitivity.METHODS)
def test_indices_of_a_synthetic_model_rank_its_inputs(tiny, method):
    study = sensitivity.plan_study(
        tiny, "immune_kill,rapa_ic50,healthspan_threshold", samples=16, method=method
    )
    x = (study.design - study.design.min(axis=0)) / np.ptp(study.design, axis=0)
    y = 4.0 * x[:, 0] + x[:, 1] ** 2  # healthspan_threshold does nothing
    result = sensitivity.indices(study, y)
    table = result.table
    assert table["parameter"].tolist() == ["immune_kill", "rapa_ic50", "healthspan_threshold"]
    assert table["rank"].tolist() == [1, 2, 3]
    key = "mu_star" if method == "morris" else "ST"
    assert result.key == key and result.method == method
    assert table[key].iloc[2] == 0.0 < table[key].iloc[1] < table[key].iloc[0]
    if method == "morris":
        assert table["mu_star"].iloc[0] == pytest.approx(4.0)  # effect over the whole range
        assert table["sigma"].iloc[0] == pytest.approx(0.0, abs=1e-12)  # linear: no spread
    with pytest.raises(ValueError, match=r"expected .* finite outputs"):
        sensitivity.indices(study, y[:-1])


@pytest.mark.slow
def test_a_parameter_that_cannot_matter_gets_no_effect_and_the_last_rank(morris):
    study, out, result = morris
    table = result.indices.table.set_index("parameter")
    # the threshold only defines healthspan: with the same seeds its points run identically
    assert table.loc["healthspan_threshold", ["mu_star", "sigma", "rank"]].tolist() == [0.0, 0.0, 2]
    assert table.loc["phagocytic_rate", "mu_star"] > 0.0
    gains = result.benefit
    assert len(gains) == study.points == 9 and (gains["n"] == 2).all()
    singles = gains[["rapamycin", "oxytocin"]].min(axis=1)
    assert np.allclose(gains["benefit"], singles - gains["combined"])
    assert [path.name for path in result.files] == [
        "benefit_senescent_fraction.csv",
        "indices_senescent_fraction.csv",
        "indices_senescent_fraction.png",
    ]
    assert all(path.stat().st_size > 0 for path in result.files)
    assert_frame_equal(pd.read_csv(result.files[1]), result.indices.table, check_dtype=False)
    assert sorted(p.name for p in (out / "scenarios").iterdir()) == [
        "combined.toml",
        "oxytocin.toml",
        "rapamycin.toml",
    ]


# --- reproducibility and resume ---------------------------------------------------------------


@pytest.mark.slow
def test_same_seed_gives_identical_tables_whatever_the_workers(morris, tiny, tmp_path):
    study, out, _ = morris
    again = sensitivity.plan_study(tiny, PARAMS, samples=3)
    sensitivity.run_study(again, tmp_path / "two", workers=2)
    result = sensitivity.analyse(again, tmp_path / "two")
    for path in result.files[:2]:
        assert path.read_bytes() == (out / path.name).read_bytes()
    other = sensitivity.plan_study(tiny, PARAMS, samples=3, seed=4)
    assert not np.array_equal(other.design, study.design)


@pytest.mark.slow
def test_an_interrupted_study_resumes_to_the_same_tables(morris, tiny, tmp_path):
    study, out, _ = morris
    folder = tmp_path / "study"

    def interrupt(done, failed, total):
        if done >= 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sensitivity.run_study(study, folder, workers=1, progress=interrupt)
    # Kept: the runs done before the stop, and those whose files were being written then
    kept = len([path for path in folder.rglob("*.parquet") if ".grid." not in path.name])
    assert 20 <= kept < 54
    with pytest.raises(OutputError, match="already holds a sensitivity study; pass --resume"):
        sensitivity.run_study(study, folder, workers=1)
    other = sensitivity.plan_study(tiny, PARAMS, samples=2)
    with pytest.raises(OutputError, match=r"other inputs \(samples 3 instead of 2\)"):
        sensitivity.run_study(other, folder, workers=1, resume=True)
    copy = tmp_path / "copy.toml"  # the same scenario from another path
    copy.write_text(TINY, encoding="utf-8")
    summary = sensitivity.run_study(
        sensitivity.plan_study(copy, PARAMS, samples=3), folder, workers=1, resume=True
    )
    assert (summary.skipped, summary.done) == (kept, 54)
    result = sensitivity.analyse(study, folder)
    for path in result.files[:2]:
        assert path.read_bytes() == (out / path.name).read_bytes()


@pytest.mark.slow
def test_a_folder_holding_something_else_is_refused(morris, tmp_path):
    study, _, _ = morris
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(OutputError, match="not empty and holds no sensitivity study"):
        sensitivity.run_study(study, tmp_path, workers=1)


# --- the command line -----------------------------------------------------------------------


@pytest.mark.slow
def test_cli_runs_a_sobol_study_and_writes_the_table_and_figure(tiny, tmp_path, capsys):
    out = tmp_path / "study"
    args = [
        "sensitivity",
        str(tiny),
        "--params",
        "immune_kill,healthspan_threshold=0.5:0.9",
        "--method",
        "sobol",
        "--samples",
        "2",
        "--replicates",
        "1",
        "--days",
        "60",
        "--out",
        str(out),
        "--workers",
        "1",
        "--quiet",
    ]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "sobol: 2 parameters, 8 points x 3 variants x 1 replicates = 24 runs of 60 days" in (
        printed
    )
    assert "24 of 24 runs done" in printed and "Sobol" in printed
    assert "healthspan_threshold │ 0.5 to 0.9 function" in printed
    table = pd.read_csv(out / "indices_senescent_fraction.csv").set_index("parameter")
    assert list(table.columns) == ["rank", "low", "high", "unit", "S1", "S1_conf", "ST", "ST_conf"]
    assert table.loc["healthspan_threshold", "ST"] == 0.0
    assert (out / "indices_senescent_fraction.png").stat().st_size > 0
    assert len(pd.read_csv(out / "benefit_senescent_fraction.csv")) == 8
    # the same runs on another readout: nothing is simulated again
    assert cli.main([*args, "--resume", "--readout", "tissue_function"]) == 0
    assert "24 of 24 runs done (24 earlier)" in capsys.readouterr().out
    assert (out / "indices_tissue_function.csv").exists()


@pytest.mark.parametrize(
    ("extra", "parts"),
    [
        (
            ["--params", "imune_kill", "--samples", "2"],
            ["unknown parameter 'imune_kill'; did you mean 'immune_kill'?", "tissue-abm params"],
        ),
        (
            ["--params", "immune_kill", "--samples", "6", "--method", "sobol"],
            ["--samples 6 is not allowed with --method sobol; allowed: a power of 2"],
        ),
        (
            ["--params", "immune_kill", "--samples", "2", "--readout", "senescence"],
            ["--readout", "senescence", "senescent_fraction"],
        ),
        (
            ["--params", "immune_kill", "--samples", "2", "--readout", "lifespans"],
            ["--readout 'lifespans' is not allowed; did you mean 'lifespan'?"],
        ),
        (
            ["--params", "immune_kill", "--samples", "2", "--method", "fast"],
            ["--method", "'fast'", "morris"],
        ),
        (["--params", "immune_kill", "--samples", "2", "--days", "0"], ["--days", "'0'"]),
    ],
)
def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(tiny, tmp_path, capsys, extra, parts):
    out = tmp_path / "study"
    try:
        status = cli.main(["sensitivity", str(tiny), *extra, "--out", str(out), "--quiet"])
    except SystemExit as exit_:  # argparse's errors
        status = exit_.code
    assert status == 2
    assert_one_line_error(capsys.readouterr().err, *parts)
    assert not out.exists()


def test_cli_without_the_combined_regimen_is_refused(tmp_path, capsys):
    out = tmp_path / "study"
    status = cli.main(
        [
            "sensitivity",
            str(ROOT / "scenarios" / "oxytocin.toml"),
            "--params",
            "immune_kill",
            "--samples",
            "2",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert status == 2
    assert_one_line_error(capsys.readouterr().err, "therapy.rapamycin missing")
    assert not out.exists()


def test_a_huge_design_is_refused_at_once_naming_the_limit(tiny, tmp_path, capsys):
    """The issue's --samples 100000000 worked silently for minutes; the design is counted
    before it is drawn."""
    import time

    clock = time.monotonic()
    for samples, large, message in [
        ("100000000", [], "the morris design of 2 parameters has 300000000 points; allowed: at "
         "most 100000 (--allow-large: up to 1000000)"),
        ("100000000", ["--allow-large"], "the morris design of 2 parameters has 300000000 "
         "points; allowed: at most 1000000, even with --allow-large"),
        ("15000", [], "the study (points × 3 variants × replicates) has 270000 runs; allowed: "
         "at most 100000 (--allow-large: up to 1000000)"),
    ]:  # fmt: skip
        out = tmp_path / "out"
        argv = ["sensitivity", str(tiny), "--params", "immune_kill,damage_rate"]
        assert cli.main([*argv, "--samples", samples, "--out", str(out), *large]) == 2
        captured = capsys.readouterr()
        assert_one_line_error(captured.err, f"--samples {samples}: {message}")
        assert not out.exists()
    assert time.monotonic() - clock < 10

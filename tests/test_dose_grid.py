"""Synergy over a dose grid: Bliss/HSA per cell, joint bootstrap, grid summary, synergy map."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from factories import results_rows, results_table
from tissue_abm.analysis.plots import synergy_surface
from tissue_abm.analysis.summary import end_state
from tissue_abm.analysis.synergy import (
    bliss_expected,
    dose_grid_summary,
    dose_grid_synergy,
    synergy,
)
from tissue_abm.runs.batch import plan_batch, run_batch
from tissue_abm.runs.results import load_results
from tissue_abm.runs.scenario import load_scenario

RAPA, OXY = "therapy.rapamycin.dose", "therapy.oxytocin.dose"
DOSES_A = (0.0, 0.5, 1.0, 2.0)
DOSES_B = (0.0, 1.0, 2.0)
CONTROL_LOSS = 0.1
"""Mean senescent fraction of the (0, 0) control."""
ROOT = Path(__file__).resolve().parents[1]


def effect_a(dose: float) -> float:
    """Fractional effect of drug A alone: a Hill curve, 0 at dose 0, 0.5 at dose 1."""
    return dose / (dose + 1.0)


def effect_b(dose: float) -> float:
    """Fractional effect of drug B alone: 0 at dose 0, at most 0.6."""
    return 0.6 * dose / (dose + 1.0)


def grid_table(
    n: int = 20,
    sd: float = 0.002,
    seed: int = 1,
    extra: dict[tuple[float, float], float] | None = None,
    ab: dict[tuple[float, float], float] | None = None,
    doses_a: tuple[float, ...] = DOSES_A,
    doses_b: tuple[float, ...] = DOSES_B,
) -> pd.DataFrame:
    """A results table of one scenario swept over a rapamycin × oxytocin dose grid.

    Every cell's mean senescent fraction is CONTROL_LOSS·(1 − y): y is the Bliss expectation of
    the single-agent effects, plus `extra[cell]` (a true Bliss excess), or `ab[cell]` outright.
    `n` replicates per cell with normal noise of SD `sd` (seeded), one kept day.
    """
    rng = np.random.default_rng(seed)
    frames = []
    for point, (a, b) in enumerate(itertools.product(doses_a, doses_b)):
        y = bliss_expected(effect_a(a), effect_b(b)) + (extra or {}).get((a, b), 0.0)
        y = (ab or {}).get((a, b), y)
        frames.append(
            results_rows(
                "dose_grid",
                point=point,
                sweep={RAPA: a, OXY: b},
                replicate=np.arange(n),
                seed=100 + np.arange(n),
                day=640,
                age=730.0,
                senescent_fraction=rng.normal(CONTROL_LOSS * (1.0 - y), sd, n),
            )
        )
    return results_table(*frames)


def scored(table: pd.DataFrame, method: str = "bliss", **options) -> pd.DataFrame:
    """The rows of one method of `dose_grid_synergy` on senescent fraction, indexed by cell."""
    result = dose_grid_synergy(table, "senescent_fraction", **options).table
    return result[result["method"] == method].set_index(["dose_a", "dose_b"])


# --- the table --------------------------------------------------------------------------------


def test_long_format_has_one_row_per_combination_cell_and_method():
    grid = dose_grid_synergy(grid_table(), "senescent_fraction", n_boot=200)
    result = grid.table
    assert list(result.columns) == [
        "dose_a",
        "dose_b",
        "method",
        "y_a",
        "y_b",
        "y_ab",
        "expected",
        "excess",
        "ci_low",
        "ci_high",
        "verdict",
    ]
    cells = list(itertools.product(DOSES_A[1:], DOSES_B[1:]))
    assert list(zip(result["dose_a"], result["dose_b"], result["method"], strict=True)) == [
        (a, b, m) for a, b in cells for m in ("bliss", "hsa")
    ]
    assert grid.dose_a == RAPA and grid.dose_b == OXY
    assert grid.scenario == "dose_grid" and grid.dropped == 0
    assert grid.n == {(a, b): 20 for a in DOSES_A for b in DOSES_B}


def test_noise_free_cells_give_the_textbook_answer_of_synergy():
    # One combination cell with y_A = 0.3, y_B = 0.5, y_AB = 0.7 (losses 0.07, 0.05, 0.03):
    # the same numbers as the four-scenario `synergy`, with a point interval.
    values = {(0.0, 0.0): 0.0, (1.0, 0.0): 0.3, (0.0, 1.0): 0.5, (1.0, 1.0): 0.7}
    table = grid_table(n=4, sd=0.0, ab=values, doses_a=(0.0, 1.0), doses_b=(0.0, 1.0))
    result = dose_grid_synergy(table, "senescent_fraction").table.set_index("method")
    np.testing.assert_allclose(result[["y_a", "y_b", "y_ab"]], [[0.3, 0.5, 0.7]] * 2)
    assert result["excess"].tolist() == pytest.approx([0.05, 0.2])
    assert result["ci_low"].tolist() == pytest.approx(result["excess"].tolist())
    assert result["ci_high"].tolist() == pytest.approx(result["excess"].tolist())
    names = {
        (0.0, 0.0): "untreated",
        (1.0, 0.0): "rapamycin",
        (0.0, 1.0): "oxytocin",
        (1.0, 1.0): "combined",
    }
    four = table.assign(
        scenario=[names[a, b] for a, b in zip(table[RAPA], table[OXY], strict=True)]
    )
    four = four.drop(columns=[RAPA, OXY]).assign(point=0)
    expected = synergy(four, "senescent_fraction").table.set_index("method")
    columns = ["y_a", "y_b", "y_ab", "expected", "excess", "verdict"]
    pd.testing.assert_frame_equal(result[columns], expected[columns])


# --- Bliss independence, a synergistic cell, HSA versus Bliss ---------------------------------

# 20 replicates with SD 0.002 around losses of 0.02-0.1: a cell mean has SE ≤ 0.00045, i.e.
# ≤ 0.45% of the control's loss, so a cell's excess has an SE of about 1%. The tolerance of 3%
# is about 3 SE.
TOLERANCE = 0.03


def test_a_bliss_independent_grid_has_no_bliss_excess():
    grid = dose_grid_synergy(grid_table(), "senescent_fraction")
    bliss = grid.table[grid.table["method"] == "bliss"]
    assert bliss["excess"].abs().max() < TOLERANCE
    assert (bliss["verdict"] == "additive").all()  # every CI inside the ±10% band
    assert ((bliss["ci_low"] < 0) & (bliss["ci_high"] > 0)).all()
    summary = dose_grid_summary(grid).set_index("method").loc["bliss"]
    assert abs(summary["mean_excess"]) < TOLERANCE / 2  # the mean of 6 cells: SE ~0.4%
    assert summary["ci_low"] < 0 < summary["ci_high"]
    assert summary["verdict"] == "additive"
    assert summary["synergistic"] == summary["antagonistic"] == 0


def test_a_synergistic_cell_is_detected_and_named_the_most_synergistic():
    grid = dose_grid_synergy(grid_table(extra={(1.0, 1.0): 0.25}), "senescent_fraction")
    bliss = grid.table[grid.table["method"] == "bliss"].set_index(["dose_a", "dose_b"])
    assert bliss.loc[(1.0, 1.0), "excess"] == pytest.approx(0.25, abs=TOLERANCE)
    assert bliss.loc[(1.0, 1.0), "ci_low"] > 0.1
    assert bliss.loc[(1.0, 1.0), "verdict"] == "synergy"
    others = bliss.drop(index=(1.0, 1.0))
    assert others["excess"].abs().max() < TOLERANCE
    assert (others["verdict"] == "additive").all()
    summary = dose_grid_summary(grid).set_index("method").loc["bliss"]
    assert (summary["best_dose_a"], summary["best_dose_b"]) == (1.0, 1.0)
    assert summary["best_excess"] == bliss.loc[(1.0, 1.0), "excess"]
    assert summary["synergistic"] == 1
    # The grid mean carries a sixth of the cell's excess: 0.25 / 6 ≈ 0.042.
    assert summary["mean_excess"] == pytest.approx(0.25 / 6, abs=TOLERANCE / 2)
    assert summary["ci_low"] > 0


def test_hsa_excess_is_at_least_the_bliss_excess_when_single_effects_are_in_0_1():
    # y_A + y_B − y_A·y_B ≥ max(y_A, y_B) for effects in [0, 1], so HSA expects less.
    result = dose_grid_synergy(grid_table(seed=3), "senescent_fraction", n_boot=200).table
    bliss, hsa = (result[result["method"] == m].reset_index(drop=True) for m in ("bliss", "hsa"))
    assert ((bliss[["y_a", "y_b"]] >= 0) & (bliss[["y_a", "y_b"]] <= 1)).all().all()
    assert (hsa["excess"] >= bliss["excess"]).all()
    assert (hsa["expected"] <= bliss["expected"]).all()


def test_a_harmful_single_agent_reverses_the_hsa_bliss_order():
    # Drug B alone worsens the loss (y_B = −0.5 < 0): the Bliss expectation falls below y_A.
    values = {(0.0, 0.0): 0.0, (1.0, 0.0): 0.4, (0.0, 1.0): -0.5, (1.0, 1.0): 0.4}
    table = grid_table(n=3, sd=0.0, ab=values, doses_a=(0.0, 1.0), doses_b=(0.0, 1.0))
    result = dose_grid_synergy(table, "senescent_fraction").table.set_index("method")
    assert result.loc["hsa", "excess"] == pytest.approx(0.0, abs=1e-12)
    assert result.loc["bliss", "excess"] == pytest.approx(0.3)  # 0.4 − (0.4 − 0.5 + 0.2)


# --- uncertainty and reproducibility ----------------------------------------------------------


def test_the_same_seed_gives_the_same_table_and_another_seed_other_intervals():
    table = grid_table(seed=5)
    first = dose_grid_synergy(table, "senescent_fraction", seed=7, n_boot=300)
    again = dose_grid_synergy(table, "senescent_fraction", seed=7, n_boot=300)
    pd.testing.assert_frame_equal(first.table, again.table)
    assert first.summary == again.summary
    other = dose_grid_synergy(table, "senescent_fraction", seed=8, n_boot=300)
    pd.testing.assert_frame_equal(
        first.table.drop(columns=["ci_low", "ci_high", "verdict"]),
        other.table.drop(columns=["ci_low", "ci_high", "verdict"]),
    )
    assert not np.allclose(first.table["ci_low"], other.table["ci_low"])


def test_row_order_of_the_input_does_not_change_the_result():
    table = grid_table(seed=6)
    shuffled = table.sample(frac=1.0, random_state=0)
    pd.testing.assert_frame_equal(
        dose_grid_synergy(table, "senescent_fraction", n_boot=300).table,
        dose_grid_synergy(shuffled, "senescent_fraction", n_boot=300).table,
    )


def test_the_summary_sentence_states_the_mean_its_interval_and_the_verdict():
    grid = dose_grid_synergy(grid_table(extra={(2.0, 2.0): -0.3}), "senescent_fraction")
    summary = dose_grid_summary(grid).set_index("method").loc["bliss"]
    sentence = summary["sentence"]
    assert sentence.startswith(
        "Across the 3×2 combination cells of the dose grid "
        f"({RAPA} × {OXY}), Bliss excess on senescent fraction averages "
    )
    mean = f"{100 * summary['mean_excess']:+.1f}%".replace("-", "−")
    low = f"{100 * summary['ci_low']:+.1f}%".replace("-", "−")
    assert f"averages {mean} (95% CI {low} to " in sentence
    assert f"): {summary['verdict']};" in sentence
    assert "0 of 6 synergistic, 1 antagonistic" in sentence


def test_the_summary_needs_the_whole_result_not_its_table():
    grid = dose_grid_synergy(grid_table(n=3), "senescent_fraction", n_boot=10)
    with pytest.raises(TypeError, match="grid is a DataFrame; allowed: the output of dose_grid"):
        dose_grid_summary(grid.table)


# --- per-run values: healthspan and other quantities computed elsewhere -----------------------


def test_per_run_values_give_the_same_scores_as_the_readout():
    table = grid_table(seed=9)
    values = end_state(table.assign(tissue_function=1.0))
    pd.testing.assert_frame_equal(
        dose_grid_synergy(table, "senescent_fraction", n_boot=300).table,
        dose_grid_synergy(table, "senescent_fraction", n_boot=300, values=values).table,
    )


def test_healthspan_not_reached_is_censored_at_the_end_age():
    # Runs end at 730 days. Healthspan lost at 600 (130 days lost) untreated; drug A:
    # 665 and not reached (65 and 0 days, mean 32.5: y_A = 0.75); drug B: 704 twice (26 days:
    # y_B = 0.8); both: not reached (0 days: y_AB = 1). Bliss 0.75 + 0.8 − 0.6 = 0.95.
    spans = {
        (0.0, 0.0): [600.0, 600.0],
        (1.0, 0.0): [665.0, np.nan],
        (0.0, 1.0): [704.0, 704.0],
        (1.0, 1.0): [np.nan, np.nan],
    }
    table = grid_table(n=2, doses_a=(0.0, 1.0), doses_b=(0.0, 1.0))
    values = end_state(table.assign(tissue_function=1.0)).drop(columns="healthspan")
    values["healthspan"] = [
        spans[a, b][r]
        for a, b, r in zip(values[RAPA], values[OXY], values["replicate"], strict=True)
    ]
    grid = dose_grid_synergy(table, "healthspan", values=values)
    result = grid.table.set_index("method")
    assert grid.event_age and grid.higher_is_better
    assert grid.censored == 3
    assert result.loc["bliss", ["y_a", "y_b", "y_ab"]].tolist() == pytest.approx([0.75, 0.8, 1])
    assert result.loc["bliss", "excess"] == pytest.approx(0.05)
    assert result.loc["hsa", "excess"] == pytest.approx(0.2)


# --- bad input: one line naming the argument or column and what is allowed --------------------


@pytest.mark.parametrize(
    ("change", "options", "message"),
    [
        (
            lambda t: t.drop(columns=OXY),
            {},
            r"dose_b column 'therapy.oxytocin.dose' is not in the "
            r"results; allowed: a sweep column",
        ),
        (
            lambda t: t[(t[RAPA] != 0) | (t[OXY] != 0)],
            {},
            r"no runs with a value in the dose cell\(s\) therapy.rapamycin.dose=0 × "
            r"therapy.oxytocin.dose=0 \(control\)",
        ),
        (
            lambda t: t[(t[RAPA] != 2) | (t[OXY] != 0)],
            {},
            r"dose cell\(s\) therapy.rapamycin.dose=2 × therapy.oxytocin.dose=0 \(drug A alone\)",
        ),
        (
            lambda t: t[t[OXY] != 0],
            {},
            r"dose_b column 'therapy.oxytocin.dose' has doses 1, 2 in "
            r"scenario 'dose_grid'; allowed: dose 0",
        ),
        (lambda t: t, {"readout": "sasp"}, r"unknown readout 'sasp'"),
        (lambda t: t, {"dose_a": "immune_kill"}, r"dose_a column 'immune_kill' is not in"),
        (
            lambda t: t,
            {"scenario": "other"},
            r"no dose-grid scenario 'other' in the results; "
            r"available scenarios: dose_grid",
        ),
        (lambda t: t, {"confidence": 1.5}, r"confidence = 1.5 is not allowed"),
        (lambda t: t, {"n_boot": 0}, r"n_boot = 0 is not allowed"),
    ],
)
def test_bad_input_is_a_one_line_value_error(change, options, message):
    options = {"readout": "senescent_fraction", **options}
    with pytest.raises(ValueError, match=message) as error:
        dose_grid_synergy(change(grid_table(n=3)), **options)
    assert "\n" not in str(error.value)


def test_several_scenarios_or_sweep_points_must_be_narrowed():
    table = grid_table(n=3)
    both = pd.concat([table, table.assign(scenario="copy")], ignore_index=True)
    with pytest.raises(
        ValueError,
        match=r"scenario=None is not allowed when the results hold "
        r"2 scenarios; allowed: one of copy, dose_grid",
    ):
        dose_grid_synergy(both, "senescent_fraction")
    assert (
        len(dose_grid_synergy(both, "senescent_fraction", scenario="copy", n_boot=10).table) == 12
    )
    swept = pd.concat(
        [table.assign(immune_kill=0.4), table.assign(immune_kill=0.8)], ignore_index=True
    )
    swept = swept[[*table.columns[:4], "immune_kill", *table.columns[4:]]]
    with pytest.raises(
        ValueError,
        match=r"several sweep points per dose cell \(also swept: "
        r"immune_kill\)",
    ):
        dose_grid_synergy(swept, "senescent_fraction")


def test_per_run_values_are_checked():
    table = grid_table(n=3)
    values = end_state(table.assign(tissue_function=1.0))
    with pytest.raises(ValueError, match=r"day = 640 is not allowed with values"):
        dose_grid_synergy(table, "senescent_fraction", values=values, day=640)
    with pytest.raises(ValueError, match=r"values have no column 'age'"):
        dose_grid_synergy(table, "healthspan", values=values.drop(columns="age"))
    with pytest.raises(ValueError, match=r"values have several rows for one run"):
        dose_grid_synergy(table, "senescent_fraction", values=pd.concat([values, values]))
    with pytest.raises(
        ValueError,
        match=r"higher_is_better=False is not allowed for the event "
        r"age 'healthspan'",
    ):
        dose_grid_synergy(table, "healthspan", values=values, higher_is_better=False)


# --- the synergy map --------------------------------------------------------------------------


def test_synergy_surface_marks_the_cells_whose_interval_excludes_zero():
    grid = dose_grid_synergy(grid_table(extra={(1.0, 1.0): 0.25}), "senescent_fraction")
    fig = synergy_surface(grid)
    ax = fig.axes[0]
    texts = {t.get_text(): t.get_fontweight() for t in ax.texts}
    bliss = grid.table[grid.table["method"] == "bliss"].set_index(["dose_a", "dose_b"])
    assert len(texts) == len(bliss) == 6
    starred = [t for t in texts if t.endswith("*")]
    assert starred == [f"{100 * bliss.loc[(1.0, 1.0), 'excess']:+.1f}*"]
    assert texts[starred[0]] == "bold"
    low, high = ax.collections[0].get_clim()
    assert low == -high and high >= 25.0  # centred on 0, spanning the +25% cell
    assert "Bliss" in ax.get_title() and "senescent fraction" in fig.get_suptitle()
    assert len(synergy_surface(grid, method=None).axes) == 3  # two maps and a colour bar
    with pytest.raises(
        ValueError,
        match=r"method = 'zip' is not allowed; allowed: None or one "
        r"of bliss, hsa",
    ):
        synergy_surface(grid, method="zip")


# --- the experiment file and a real batch -----------------------------------------------------


def test_the_dose_grid_experiment_sweeps_both_doses_from_zero():
    scenario = load_scenario(ROOT / "scenarios" / "experiments" / "dose_grid.toml")
    points = scenario.sweep_points("dose_grid.toml")
    cells = {(p.values[RAPA], p.values[OXY]) for p in points}
    assert cells == set(itertools.product([0.0, 0.25, 0.5, 1.0, 2.0], [0.0, 0.5, 1.0, 2.0]))
    assert scenario.therapy.rapamycin.start_age == scenario.therapy.oxytocin.start_age == 365


def test_a_real_two_by_two_batch_scores_end_to_end(tmp_path):
    text = "\n".join(
        [
            'name = "tiny_grid"',
            "seed = 3",
            "replicates = 2",
            "size = 20",
            "start_age = 600",
            "end_age = 660",
            "[sweep.grid]",
            f'"{RAPA}" = [0.0, 2.0]',
            f'"{OXY}" = [0.0, 2.0]',
            "[therapy.rapamycin]",
            "dose = 1.0",
            "start_age = 600",
            "[therapy.oxytocin]",
            "dose = 1.0",
            "start_age = 600",
            "",
        ]
    )
    (tmp_path / "tiny.toml").write_text(text)
    summary = run_batch(plan_batch([tmp_path / "tiny.toml"]), tmp_path / "out", workers=1)
    assert summary.failed == 0 and summary.done == 8
    results = load_results(tmp_path / "out")
    grid = dose_grid_synergy(results, "senescent_fraction", n_boot=200)
    result = grid.table.set_index("method")
    ends = end_state(results).groupby([RAPA, OXY])["senescent_fraction"].mean()
    control = ends[0.0, 0.0]
    # Independent recomputation of y = 1 − treated/control: equal up to rounding.
    for column, cell in (("y_a", (2.0, 0.0)), ("y_b", (0.0, 2.0)), ("y_ab", (2.0, 2.0))):
        assert result.loc["bliss", column] == pytest.approx(1 - ends[cell] / control, rel=1e-9)
    assert grid.n == {cell: 2 for cell in itertools.product([0.0, 2.0], repeat=2)}
    assert len(synergy_surface(grid).axes) == 2  # one map, a colour bar

"""`tissue-abm answer`: the combination against the better single drug over the posterior."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from tissue_abm.cli import main
from tissue_abm.runs.results import OutputError
from tissue_abm.runs.scenario import ScenarioError, parse_scenario
from tissue_abm.studies import answer
from tissue_abm.studies.abc import FITTED

HORIZON = 1460.0


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval, from its textbook formula."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def draws_table(rapamycin, oxytocin, combined, untreated=None, outcome="median_lifespan"):
    """A per-draw table (`answer.per_draw`'s shape) for one outcome."""
    untreated = untreated if untreated is not None else [800.0] * len(rapamycin)
    return pd.DataFrame(
        {
            f"untreated:{outcome}": untreated,
            f"rapamycin:{outcome}": rapamycin,
            f"oxytocin:{outcome}": oxytocin,
            f"combined:{outcome}": combined,
        }
    )


def test_the_probability_is_the_share_of_draws_where_the_combination_beats_both():
    # 10 draws: rapamycin is the better single drug in 6, oxytocin in 4; the combination
    # beats the better one in 7 (draws 0-6) and not in 3 (7 equal, 8-9 below)
    rapa = np.array([900, 900, 900, 900, 900, 900, 850, 900, 900, 900], float)
    ot = np.array([850, 850, 850, 850, 850, 850, 880, 850, 850, 850], float)
    comb = np.array([990, 945, 909, 1000, 918, 927, 968, 900, 890, 880], float)
    v = answer.verdict(
        draws_table(rapa, ot, comb), "rapamycin", "oxytocin", "combined", "median_lifespan", HORIZON
    )
    assert v.draws == 10 and v.probability == pytest.approx(0.7)
    assert (v.low, v.high) == pytest.approx(wilson(7, 10))
    np.testing.assert_allclose(
        v.gain, [0.1, 0.05, 0.01, 1 / 9, 0.02, 0.03, 0.1, 0.0, -1 / 90, -2 / 90]
    )


def test_a_median_not_reached_counts_as_the_horizon_and_a_lower_burden_is_better():
    never = draws_table([900.0], [np.nan], [np.nan])  # oxytocin and both never reach it
    v = answer.verdict(never, "rapamycin", "oxytocin", "combined", "median_lifespan", HORIZON)
    assert v.probability == 0.0  # both count as the horizon: not better than the better one
    burden = draws_table(
        [0.004, 0.004], [0.005, 0.003], [0.003, 0.0036], [0.006, 0.006], outcome="burden"
    )
    v = answer.verdict(burden, "rapamycin", "oxytocin", "combined", "burden", HORIZON)
    assert v.probability == 0.5  # below the better single drug in the first draw only
    np.testing.assert_allclose(v.gain, [0.25, -0.2])


def test_bliss_and_hsa_excess_over_the_draws():
    # untreated loses 660 days before the horizon; the drugs save 20% and 50% of them; the
    # combination saves 60% (Bliss expects 1 - 0.8 * 0.5 = 60%: additive) or 70% (+10)
    untreated = [800.0, 800.0]
    rapa = [800.0 + 0.2 * 660, 800.0 + 0.2 * 660]
    ot = [800.0 + 0.5 * 660, 800.0 + 0.5 * 660]
    comb = [800.0 + 0.6 * 660, 800.0 + 0.7 * 660]
    scores = answer.excess_scores(
        draws_table(rapa, ot, comb, untreated),
        "rapamycin",
        "oxytocin",
        "combined",
        "median_lifespan",
        HORIZON,
    )
    np.testing.assert_allclose(scores["Bliss"], [0.0, 0.1], atol=1e-12)
    np.testing.assert_allclose(scores["HSA"], [0.1, 0.2], atol=1e-12)


def test_the_reading_follows_the_ten_point_band_over_the_whole_distribution():
    assert answer._reading(0.0, -0.05, 0.05) == "additive"
    assert answer._reading(0.2, 0.12, 0.3) == "synergistic"
    assert answer._reading(-0.2, -0.3, -0.11) == "antagonistic"
    assert answer._reading(0.0, -0.2, 0.05).startswith("additive at the median, not")


@pytest.fixture
def posterior(tmp_path):
    """Three particles; the second carries all the weight."""
    table = pd.DataFrame(
        {
            "weight": [0.0, 1.0, 0.0],
            "distance": 0.5,
            **{name: [p.low, (p.low + p.high) / 2, p.high] for name, p in FITTED.items()},
        }
    )
    path = tmp_path / "posterior.csv"
    table.to_csv(path, index=False)
    return path


def test_draws_follow_the_weights_and_every_arm_file_is_a_valid_scenario(posterior):
    study = answer.plan_answer(posterior, replace(answer.QUICK, draws=4))
    assert study.draws["particle"].tolist() == [1, 1, 1, 1]
    grid = answer.grid_arms()
    assert len(study.texts) == len(answer.ARMS) + 4 * len(answer.HYPOTHESIS_ARMS) + len(grid)
    for name, text in study.texts.items():
        scenario = parse_scenario(text, name)
        assert scenario.name == name and scenario.replicates == answer.QUICK.replicates
    combined = parse_scenario(study.texts["combined"], "combined")
    assert combined.therapy.rapamycin.dose == 1.0 and combined.therapy.oxytocin.dose == 1.0
    off = parse_scenario(study.texts["combined__no_hypotheses"], "off")
    assert all(
        getattr(off.parameters, name) == 0.0
        for name in answer.hypothesis_variants()["no_hypotheses"]
    )
    again = answer.plan_answer(posterior, replace(answer.QUICK, draws=4))
    assert again.texts == study.texts  # the same inputs plan the same files (resume)


def test_the_dose_grid_covers_every_cell_and_runs_at_the_first_draws_only(posterior):
    cells = answer.grid_cells()
    doses = answer.GRID_DOSES
    for r in doses["rapamycin"]:
        for o in doses["oxytocin"]:
            assert (r, o) in cells
    for x in answer.SHAM_DOSES:  # the sham's cells: rapamycin alone at every sum of doses
        for y in answer.SHAM_DOSES:
            assert (x + y, 0.0) in cells
    # the main arms keep their names (their runs serve the grid too)
    assert cells[(1.0, 1.0)] == "combined" and cells[(0.5, 0.0)] == "rapamycin_half"
    study = answer.plan_answer(posterior, replace(answer.QUICK, draws=4, grid_draws=2))
    for name, arm in answer.grid_arms().items():
        scenario = parse_scenario(study.texts[name], name)
        assert len(scenario.sweep_points(name, 100)) == 2  # the first 2 of the 4 draws
        doses_given = {d: getattr(scenario.therapy, d) for d in ("rapamycin", "oxytocin")}
        for drug, regimen in doses_given.items():
            dose = getattr(arm, drug)
            assert (regimen.dose if regimen else 0.0) == dose
            assert regimen is None or regimen.start_age == 365
    assert replace(answer.QUICK, draws=4).grid == 4  # at most the draws
    no_grid = answer.plan_answer(posterior, replace(answer.QUICK, draws=4, grid_draws=0))
    assert not set(answer.grid_arms()) & set(no_grid.texts)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"draws": 0}, ScenarioError, "--draws 0"),
        ({"replicates": -1}, ScenarioError, "--replicates -1"),
        ({"grid_draws": -1}, ScenarioError, "--grid-draws -1"),
    ],
)
def test_bad_numbers_are_refused(posterior, change, error, message):
    with pytest.raises(error, match=message):
        answer.plan_answer(posterior, replace(answer.QUICK, **change))


def test_bad_posteriors_are_refused_in_one_line_with_status_2(tmp_path, capsys):
    pd.DataFrame({"weight": [1.0], "x": [2.0]}).to_csv(tmp_path / "bad.csv", index=False)
    for path, message in (
        (tmp_path / "missing.csv", "no such posterior file"),
        (tmp_path / "bad.csv", "lacks column(s) immune_recruit_max"),
    ):
        code = main(["answer", "--posterior", str(path), "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # nothing written
    with pytest.raises(OutputError, match="weights"):
        negative = pd.read_csv(tmp_path / "bad.csv").assign(
            **{name: 1.0 for name in FITTED}, weight=-1.0
        )
        negative.to_csv(tmp_path / "negative.csv", index=False)
        answer.plan_answer(tmp_path / "negative.csv")
    with pytest.raises(SystemExit) as exit_:  # argparse's own one-line error
        main(["answer", "--draws", "0"])
    assert exit_.value.code == 2 and "--draws: '0' is not allowed" in capsys.readouterr().err


TINY = answer.Design(draws=2, replicates=1, size=12, end_age=700, hypotheses=False, grid_draws=1)
"""A study small enough for a test: the numbers mean nothing, the machinery runs."""


def test_an_interrupted_study_resumes_to_the_identical_page(posterior, tmp_path, monkeypatch):
    study = answer.plan_answer(posterior, TINY)
    whole = tmp_path / "whole"
    answer.run_answer(study, whole, workers=1)
    reference = answer.answer_page(answer.analyse_answer(study, whole))
    assert "**Verdict.** Over 2 parameter sets" in reference
    assert "| dose grid | median lifespan | Loewe |" in reference  # the grid ran and is scored

    def stop_after_three(done, failed, total):
        if done >= 3:
            raise KeyboardInterrupt

    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        answer.run_answer(study, cut, workers=1, progress=stop_after_three)
    with pytest.raises(OutputError, match="pass --resume"):
        answer.run_answer(study, cut, workers=1)
    with pytest.raises(OutputError, match="other inputs"):
        answer.run_answer(answer.plan_answer(posterior, replace(TINY, seed=2)), cut, resume=True)
    summary = answer.run_answer(study, cut, workers=2, resume=True)
    assert summary.skipped >= 3 and summary.done == study.runs
    assert answer.answer_page(answer.analyse_answer(study, cut)) == reference
    assert answer.answer_page(answer.analyse_answer(study, cut, workers=1)) == reference
    # without the optional `synergy` package the page says how to add Loewe and ZIP, and the
    # rest (from the probabilities to the four-group synergy) stays as it was
    monkeypatch.setattr(answer, "optional_package", lambda: False)
    page = answer.answer_page(answer.analyse_answer(study, cut))
    assert 'pip install "tissue-abm[synergy]"' in page and "| Loewe |" not in page
    assert "under Loewe" in reference and "under Loewe" not in page

    def middle(text: str) -> str:
        return text.split("## Does the combination")[1].split("## Synergy over the dose grid")[0]

    assert middle(page) == middle(reference)


def test_the_posterior_reads_back_its_exact_floats(tmp_path):
    # The draws are the study's identity on resume: a parser that rounds the 17th digit (the
    # C parser's default before pandas 3) would refuse to resume a study it planned itself.
    value = 0.028885721125646992
    table = pd.DataFrame({"weight": [1.0], **{name: [value] for name in FITTED}})
    table.to_csv(tmp_path / "posterior.csv", index=False)
    study = answer.plan_answer(tmp_path / "posterior.csv", replace(answer.QUICK, draws=1))
    assert study.draws.loc[0, "immune_recruit_max"] == value


def test_the_hazard_ratio_recovers_a_known_proportional_effect():
    # From the treatment start (365 d), the combination's organisms die at half the rate of
    # rapamycin's (exponential), in 4 draws whose baselines differ (stratified away) and 5 runs
    # per arm and draw; a death before the start is left out. Tolerance: the 95% interval
    # must hold 0.5 and the estimate lie within 10% of it (about 3 standard errors with 4000
    # organisms an arm; fixed seed).
    rng = np.random.default_rng(3)
    parts = []
    for draw in range(4):
        for arm, rate in (("rapamycin", 0.01), ("combined", 0.005)):
            parts.append(
                pd.DataFrame(
                    {
                        "scenario": arm,
                        "point": draw,
                        "replicate": np.repeat(np.arange(5), 200),
                        "lifespan": 365 + rng.exponential(1 / (rate * (1 + draw)), 1000),
                        "observed": True,
                    }
                )
            )
    early = pd.DataFrame(
        {"scenario": ["rapamycin"], "point": 0, "replicate": 0, "lifespan": 200.0, "observed": True}
    )
    never = parts[0].assign(scenario="untreated", observed=False)  # no death: no estimate
    table = answer.hazard_ratios(pd.concat([*parts, early, never], ignore_index=True))
    table = table.set_index("question")
    row = table.loc["both vs rapamycin"]
    assert row["low"] < 0.5 < row["high"] and row["hazard_ratio"] == pytest.approx(0.5, rel=0.1)
    assert row["organisms"] == 8000  # the death before the start is not counted
    # only the pairs present are fitted; a pair where one arm has no death gives NaN
    assert list(table.index) == ["rapamycin vs untreated", "both vs untreated", "both vs rapamycin"]
    assert table.loc[["rapamycin vs untreated", "both vs untreated"], "hazard_ratio"].isna().all()


@pytest.mark.slow
def test_the_sham_combination_comes_out_additive_over_the_posterior(tmp_path):
    # Rapamycin at 0.5 mg/kg counted as both drugs, 1 mg/kg as their combination, at 6 draws of
    # the repository's posterior (2 paired replicates, 40x40, to 4 years). A drug cannot be
    # synergistic with itself: on lifespan the Bliss excess must stay inside the ±10-point
    # additive band at 90% of the draws (the page's "additive" reading).
    from tissue_abm.studies.validation import POSTERIOR

    study = answer.plan_answer(POSTERIOR, replace(answer.QUICK, hypotheses=False))
    answer.run_answer(study, tmp_path / "sham", workers=2)
    main_arms = answer.per_draw(answer.analyse_answer(study, tmp_path / "sham").outcomes)
    bliss = answer.excess_scores(
        main_arms, "rapamycin_half", "rapamycin_half", "rapamycin", "median_lifespan", 1460.0
    )["Bliss"]
    assert np.isfinite(bliss).all() and answer._reading(*answer.spread(bliss)) == "additive"

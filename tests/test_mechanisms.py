"""Each mechanism of the model card pushes the tissue in the direction the literature says.

Stochastic comparisons use independent replicate runs (fixed seeds 0..n-1, a different seed
block per arm) and a one-sided Welch t-test at alpha = 0.001 unless stated otherwise: with the
effect sizes the mechanisms produce, a false failure is that unlikely, while a mechanism that is
switched off or reversed fails the test.
"""

import numpy as np
import pytest
from scipy import stats

from tissue_abm import Oxytocin, Parameters, Rapamycin, Therapy, TissueModel
from tissue_abm.biology.rules import HEALTHY, SENESCENT
from tissue_abm.engines.agents.agents import SenescentCell

ALPHA = 0.001


def run(days, seed, size=30, start_age=500, therapy=None, **params):
    """Run a model and return it (readouts in model.readouts)."""
    model = TissueModel(
        params=Parameters(**params),
        therapy=therapy,
        size=size,
        start_age=start_age,
        days=days,
        rng=seed,
    )
    model.run_for(days)
    return model


def replicates(n, first_seed, measure, **kwargs):
    """measure(model) over n independent runs with seeds first_seed .. first_seed + n - 1."""
    return np.array([measure(run(seed=first_seed + i, **kwargs)) for i in range(n)])


def assert_greater(high, low):
    """One-sided Welch t-test that mean(high) > mean(low) at ALPHA."""
    result = stats.ttest_ind(high, low, equal_var=False, alternative="greater")
    assert result.pvalue < ALPHA, (
        f"mean {np.mean(high):.4g} not significantly above {np.mean(low):.4g} "
        f"(p = {result.pvalue:.3g})"
    )


def mean_secretion_per_senescent_cell(model):
    day = model._days[round(model.time)]
    cells = model.agents_by_type[SenescentCell]
    return np.mean([cell.secretion(day) for cell in cells])


# --- rapamycin and the SASP -------------------------------------------------------------------


def test_rapamycin_lowers_sasp_output_per_senescent_cell():
    # Senescent cells of old tissue, 60 days into daily rapamycin versus untreated (8 runs each);
    # immune killing is off so that both arms keep their senescent cells to measure.
    kwargs = {"days": 60, "start_age": 500, "initial_senescent_fraction": 0.05, "immune_kill": 0.0}
    treated = replicates(
        8,
        100,
        mean_secretion_per_senescent_cell,
        therapy=Therapy(rapamycin=Rapamycin(dose=1.0, start_age=500)),
        **kwargs,
    )
    untreated = replicates(8, 200, mean_secretion_per_senescent_cell, **kwargs)
    assert_greater(untreated, treated)


def test_rapamycin_never_turns_a_senescent_cell_healthy():
    # High-dose rapamycin in old tissue: follow every senescent cell and every site, every day.
    model = TissueModel(
        params=Parameters(initial_senescent_fraction=0.05),
        size=30,
        start_age=500,
        days=60,
        rng=3,
        therapy=Therapy(rapamycin=Rapamycin(dose=10.0, start_age=500)),
    )
    seen = {}
    for _ in range(60):
        before = model.tissue.data.copy()
        for cell in model.agents_by_type[SenescentCell]:
            seen.setdefault(cell, cell.cell.coordinate)
        model.step()
        after = model.tissue.data
        assert not np.any((before == SENESCENT) & (after == HEALTHY))
        for cell, coordinate in seen.items():
            if cell in model.agents:  # still alive: still senescent, still in place
                assert isinstance(cell, SenescentCell)
                assert cell.cell.coordinate == coordinate
    assert len(seen) > 20  # the test followed enough cells to mean something


# --- immune clearance -------------------------------------------------------------------------


@pytest.mark.slow
def test_no_immune_killing_raises_the_senescent_fraction():
    # A perforin knock-out keeps the phagocytic route, so the burden rises less than without
    # any clearance, and varies from run to run (a few outbreaks of paracrine spread): 12 runs
    # per arm.
    kwargs = {"days": 150, "start_age": 400}
    knockout = replicates(
        12,
        300,
        lambda m: m.readouts.senescent_fraction.iloc[-30:].mean(),
        immune_kill=0.0,
        **kwargs,
    )
    wild_type = replicates(
        12, 400, lambda m: m.readouts.senescent_fraction.iloc[-30:].mean(), **kwargs
    )
    assert_greater(knockout, wild_type)


def test_no_immune_killing_means_no_immune_clearance():
    model = run(days=100, seed=5, immune_kill=0.0, initial_senescent_fraction=0.05)
    assert model.readouts.cleared_immune.sum() == 0
    assert model.readouts.immune.iloc[1:].min() > 0  # immune cells are there, they just fail


# --- SASP field and paracrine senescence ------------------------------------------------------

PARACRINE = {
    "days": 100,
    "start_age": 500,
    "paracrine_max_rate": 0.05,
    "initial_senescent_fraction": 0.02,
    # no clearance: the initial senescent cells stay and keep secreting
    "immune_kill": 0.0,
    "phagocytic_rate": 0.0,
}


def test_paracrine_senescence_happens_with_the_sasp():
    counts = replicates(4, 500, lambda m: m.readouts.new_paracrine.sum(), **PARACRINE)
    assert counts.min() > 0


def test_no_sasp_secretion_removes_paracrine_senescence():
    models = [run(seed=600 + i, sasp_secretion=0.0, **PARACRINE) for i in range(4)]
    for model in models:
        assert model.readouts.new_paracrine.sum() == 0
        assert model.readouts.mean_sasp.max() == 0.0
    assert sum(m.readouts.new_primary.sum() for m in models) > 0  # other arrest still happens


def test_no_sasp_diffusion_removes_paracrine_senescence():
    # Without diffusion the SASP stays on the senescent cell's own site, which no healthy cell
    # shares. Only a daughter born into a just-cleared site sees its decaying residue, so allow
    # at most a tenth of the paracrine arrests of the diffusing field (replicates pooled).
    still = replicates(
        4, 700, lambda m: m.readouts.new_paracrine.sum(), sasp_diffusion=0.0, **PARACRINE
    )
    diffusing = replicates(4, 800, lambda m: m.readouts.new_paracrine.sum(), **PARACRINE)
    assert still.sum() <= 0.1 * diffusing.sum()
    assert diffusing.sum() >= 20


# --- oxytocin and regeneration ----------------------------------------------------------------


def divisions_after_injury(start_age, oxytocin, seed):
    """Divisions in 5 days into a tissue with 40% vacancies (no other events)."""
    therapy = Therapy(oxytocin=Oxytocin(dose=1.0, start_age=start_age)) if oxytocin else None
    model = run(
        days=5,
        seed=seed,
        size=40,
        start_age=start_age,
        therapy=therapy,
        initial_occupancy=0.6,
        initial_senescent_fraction=0.0,
        healthy_death_rate=0.0,
        primary_max_rate=0.0,
    )
    return model.readouts.divisions.sum()


@pytest.fixture(scope="module")
def regeneration():
    """Division counts for young (90 d) and old (660 d) tissue, with and without oxytocin."""
    return {
        (age, ot): np.array(
            [divisions_after_injury(age, ot, 1000 * age + 10 * ot + i) for i in range(8)]
        )
        for age in (90, 660)
        for ot in (False, True)
    }


def test_oxytocin_raises_regeneration_in_old_tissue(regeneration):
    treated, untreated = regeneration[660, True], regeneration[660, False]
    assert_greater(treated, untreated)
    assert treated.mean() > 1.5 * untreated.mean()  # Elabd 2014: a large rescue in old muscle


def test_oxytocin_does_not_raise_regeneration_in_young_tissue(regeneration):
    # "Not in young": the young gain is small in absolute terms (< 10%, the point estimate,
    # whose standard error here is about 2%) and far below the old gain.
    young_gain = regeneration[90, True].mean() / regeneration[90, False].mean() - 1
    old_gain = regeneration[660, True].mean() / regeneration[660, False].mean() - 1
    assert young_gain < 0.10
    assert young_gain < old_gain / 5


# --- rapamycin, mTORC2 and immune competence --------------------------------------------------


def competence_after_60_days(dose):
    therapy = Therapy(rapamycin=Rapamycin(dose=dose, start_age=500)) if dose else None
    model = run(days=60, seed=9, size=10, start_age=500, therapy=therapy)
    return model.readouts.immune_competence.iloc[-1]


def test_high_chronic_rapamycin_lowers_immune_competence():
    assert competence_after_60_days(8.0) < 0.9 * competence_after_60_days(0.0)


def test_low_dose_rapamycin_does_not_lower_immune_competence():
    assert competence_after_60_days(0.1) >= competence_after_60_days(0.0)


# --- the untreated aging trajectory -----------------------------------------------------------


@pytest.mark.slow
def test_untreated_senescence_starts_low_and_accelerates_with_age():
    # One 100x100 tissue from 3 to 24 months on defaults (about half a minute).
    model = run(days=640, seed=1, size=100, start_age=90)
    fraction = model.readouts.set_index("age").senescent_fraction
    assert fraction.iloc[0] < 0.01

    def window(age):
        return fraction.loc[age - 30 : age].mean()

    early, middle, late = window(150), window(440), window(730)
    assert early < middle < late
    assert late - middle > middle - early  # faster late than early

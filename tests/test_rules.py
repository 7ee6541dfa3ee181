"""Behavioural tests of the pure biological rules in `tissue_abm.biology.rules`."""

import math

import numpy as np
import pytest

from tissue_abm.biology import rules

GRID = np.linspace(0.0, 20.0, 401)
"""A grid of non-negative inputs for monotonicity and bound checks."""


def nondecreasing(y):
    return bool(np.all(np.diff(y) >= 0.0))


def nonincreasing(y):
    return bool(np.all(np.diff(y) <= 0.0))


def in_unit_interval(y, closed_top=True):
    y = np.asarray(y)
    upper = np.all(y <= 1.0) if closed_top else np.all(y < 1.0)
    return bool(np.all(y >= 0.0) and upper)


# --- hill -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("half", "n"), [(0.5, 1.0), (1.0, 2.0), (3.0, 4.0), (0.2, 0.7)])
def test_hill_is_in_unit_interval_and_increasing(half, n):
    y = rules.hill(GRID, half, n)
    assert in_unit_interval(y)
    assert nondecreasing(y)


@pytest.mark.parametrize(("half", "n"), [(0.5, 1.0), (1.0, 2.0), (3.0, 4.0)])
def test_hill_below_one_for_moderate_signal(half, n):
    # The response is (x/h)^n / (1 + (x/h)^n) < 1 for every finite x (visible before rounding).
    x = np.linspace(0.0, 10.0 * half, 50)
    assert np.all(rules.hill(x, half, n) < 1.0)


@pytest.mark.parametrize(("half", "n"), [(0.5, 1.0), (1.0, 2.0), (3.0, 4.0), (0.2, 0.7)])
def test_hill_limits(half, n):
    assert rules.hill(0.0, half, n) == 0.0
    assert rules.hill(half, half, n) == pytest.approx(0.5)
    # 1 - hill(x) = 1 / (1 + (x/half)^n); at x = 1e6 * half this is below 1e-6^n.
    assert rules.hill(1e6 * half, half, n) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("n", [0.5, 0.99, 1.0, 1.5, 2.0, 3.7, 8.0])
@pytest.mark.parametrize("half", [0.01, 0.4, 3.0])
def test_hill_bound_bounds_hill_and_is_tight_near_zero(half, n):
    x = np.concatenate([[0.0], np.logspace(-8, 4, 600)]) * half
    bounds, responses = rules.hill_bound(x, half, n), rules.hill(x, half, n)
    # The bound is x * (1 / half) squared, not (x / half) squared: both roundings are ~1e-16
    # relative, which the kernel's margin (1e-9) covers; here 1e-12 is ample.
    assert (bounds >= responses * (1.0 - 1e-12)).all()
    assert (bounds <= 1.0).all()
    # tight where the response is small, for the coefficients the defaults use (n = 2)
    if n == 2.0:
        low = x < 0.01 * half
        np.testing.assert_allclose(bounds[low], responses[low], rtol=1.1e-4, atol=0.0)


def test_hill_steeper_with_larger_coefficient():
    below = 0.5
    above = 2.0
    assert rules.hill(below, 1.0, 4.0) < rules.hill(below, 1.0, 1.0)
    assert rules.hill(above, 1.0, 4.0) > rules.hill(above, 1.0, 1.0)


# --- age_decline ------------------------------------------------------------------------------


@pytest.mark.parametrize("old_fraction", [0.0, 0.2, 0.7, 1.0])
def test_age_decline_limits_and_monotone(old_fraction):
    ages = np.linspace(0.0, 5000.0, 501)
    y = rules.age_decline(ages, old_fraction, 365.0)
    assert rules.age_decline(0.0, old_fraction, 365.0) == 1.0
    assert nonincreasing(y)
    assert np.all(y >= old_fraction - 1e-12)
    assert np.all(y <= 1.0)
    # Halfway between 1 and old_fraction at half_age.
    assert rules.age_decline(365.0, old_fraction, 365.0) == pytest.approx((1 + old_fraction) / 2)
    assert rules.age_decline(1e7, old_fraction, 365.0) == pytest.approx(old_fraction, abs=1e-6)


# --- emax_inhibition, mTORC1, autophagy -------------------------------------------------------


@pytest.mark.parametrize(("emax", "n"), [(1.0, 1.0), (0.9, 1.0), (0.5, 2.0)])
def test_emax_inhibition_bounds_monotone_and_limits(emax, n):
    ic50 = 2.0
    y = rules.emax_inhibition(GRID, ic50, emax, n)
    assert np.all(y >= 0.0)
    assert np.all(y <= emax)
    assert nondecreasing(y)
    assert rules.emax_inhibition(0.0, ic50, emax, n) == 0.0
    assert rules.emax_inhibition(ic50, ic50, emax, n) == pytest.approx(emax / 2)
    assert rules.emax_inhibition(1e8, ic50, emax, n) == pytest.approx(emax, rel=1e-6)


def test_mtorc1_activity_rises_with_age_and_falls_with_inhibition():
    ages = np.linspace(0.0, 1500.0, 301)
    assert nondecreasing(rules.mtorc1_activity(ages, 0.5, 0.0))
    inhibitions = np.linspace(0.0, 1.0, 101)
    assert nonincreasing(rules.mtorc1_activity(400.0, 0.5, inhibitions))
    assert rules.mtorc1_activity(0.0, 0.5, 0.0) == 1.0
    # One year of age adds slope_per_year.
    assert rules.mtorc1_activity(rules.DAYS_PER_YEAR, 0.5, 0.0) == pytest.approx(1.5)
    # Full inhibition removes all activity.
    assert rules.mtorc1_activity(700.0, 0.5, 1.0) == 0.0


@pytest.mark.parametrize(("half", "n"), [(1.0, 2.0), (0.5, 1.0), (2.0, 4.0)])
def test_autophagy_bounds_monotone_and_limits(half, n):
    y = rules.autophagy(GRID, half, n)
    assert in_unit_interval(y)
    assert nonincreasing(y)
    assert rules.autophagy(0.0, half, n) == 1.0
    assert rules.autophagy(1e-9, half, n) == pytest.approx(1.0)
    assert rules.autophagy(half, half, n) == pytest.approx(0.5)


# --- damage -----------------------------------------------------------------------------------


def test_damage_step_nonnegative_and_monotone_in_each_input():
    base = {"damage": 0.5, "drive": 0.02, "repair": 0.1, "sasp": 0.3, "sasp_gain": 1.0}
    unit = np.linspace(0.0, 1.0, 101)
    for name, values, check in [
        ("damage", GRID, nondecreasing),
        ("drive", GRID, nondecreasing),
        ("sasp", GRID, nondecreasing),
        ("repair", unit, nonincreasing),
    ]:
        y = rules.damage_step(**{**base, name: values})
        assert np.all(y >= 0.0), name
        assert check(y), name


def test_damage_step_nonnegative_over_random_valid_inputs():
    rng = np.random.default_rng(1)
    n = 10_000
    y = rules.damage_step(rng.random(n) * 5, rng.random(n), rng.random(n), rng.random(n) * 3, 2.0)
    assert np.all(y >= 0.0)


@pytest.mark.parametrize(("drive", "repair"), [(0.01, 0.1), (0.5, 0.9), (0.003, 0.02), (1.0, 1.0)])
def test_equilibrium_damage_is_fixed_point_without_sasp(drive, repair):
    eq = rules.equilibrium_damage(drive, repair)
    assert eq >= 0.0
    assert rules.damage_step(eq, drive, repair, 0.0, 1.0) == pytest.approx(eq, rel=1e-12)


def test_damage_iteration_converges_to_equilibrium():
    drive, repair = 0.01, 0.1
    damage = 0.0
    for _ in range(500):  # error shrinks by (1 - repair) per day: 0.9^500 ~ 1e-23
        damage = rules.damage_step(damage, drive, repair, 0.0, 1.0)
    assert damage == pytest.approx(rules.equilibrium_damage(drive, repair), rel=1e-9)


# --- SASP exposure ----------------------------------------------------------------------------


@pytest.mark.parametrize("memory", [1.0, 3.0, 10.0])
@pytest.mark.parametrize("start", [0.0, 5.0])
def test_exposure_step_converges_to_constant_sasp(memory, start):
    sasp = 1.7
    exposure = start
    previous_gap = abs(start - sasp)
    for _ in range(400):  # gap shrinks by (1 - 1/memory) per day: 0.9^400 ~ 5e-19
        exposure = rules.exposure_step(exposure, sasp, memory)
        gap = abs(exposure - sasp)
        assert gap <= previous_gap
        previous_gap = gap
    assert exposure == pytest.approx(sasp, rel=1e-9)


def test_exposure_step_with_unit_memory_takes_the_new_value():
    assert rules.exposure_step(0.3, 2.5, 1.0) == pytest.approx(2.5)


def test_exposure_step_monotone_in_inputs():
    assert nondecreasing(rules.exposure_step(GRID, 1.0, 3.0))
    assert nondecreasing(rules.exposure_step(1.0, GRID, 3.0))
    assert np.all(rules.exposure_step(GRID, GRID[::-1], 3.0) >= 0.0)


# --- primary and paracrine senescence ---------------------------------------------------------


@pytest.mark.parametrize("rule", [rules.primary_senescence_prob, rules.paracrine_senescence_prob])
@pytest.mark.parametrize(
    ("max_rate", "half", "n"), [(0.002, 1.0, 4.0), (1.0, 0.4, 2.0), (0.3, 2.0, 1.0)]
)
def test_senescence_probabilities_bounded_and_increasing(rule, max_rate, half, n):
    y = rule(GRID, max_rate, half, n)
    assert in_unit_interval(y)
    assert np.all(y <= max_rate)
    assert nondecreasing(y)
    assert rule(0.0, max_rate, half, n) == 0.0
    assert rule(half, max_rate, half, n) == pytest.approx(max_rate / 2)
    assert rule(1e6 * half, max_rate, half, n) == pytest.approx(max_rate, rel=1e-3)


# --- SASP secretion and output ----------------------------------------------------------------


@pytest.mark.parametrize(("maturation", "output"), [(3.0, 1.0), (0.5, 0.4), (20.0, 0.0)])
def test_sasp_secretion_limits_and_monotone(maturation, output):
    ages = np.linspace(0.0, 200.0, 401)
    y = rules.sasp_secretion(ages, maturation, output)
    assert np.all(y >= 0.0)
    assert np.all(y <= output)
    assert nondecreasing(y)
    assert rules.sasp_secretion(0.0, maturation, output) == 0.0
    assert rules.sasp_secretion(maturation, maturation, output) == pytest.approx(output / 2)
    assert rules.sasp_secretion(1e9, maturation, output) == pytest.approx(output, rel=1e-6)


def test_sasp_output_bounds_and_monotone():
    inhibition = np.linspace(0.0, 1.0, 101)
    for suppression in (0.0, 0.5, 0.8, 1.0):
        y = rules.sasp_output(inhibition, suppression)
        assert in_unit_interval(y)
        assert nonincreasing(y)
        assert rules.sasp_output(0.0, suppression) == 1.0
        assert rules.sasp_output(1.0, suppression) == pytest.approx(1.0 - suppression)


# --- immune system ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "max_rate", "half"), [(0.0005, 0.02, 0.2), (0.0, 1.0, 1.0), (0.3, 0.7, 5.0)]
)
def test_recruitment_prob_between_base_and_base_plus_max(base, max_rate, half):
    y = rules.recruitment_prob(GRID, base, max_rate, half)
    assert np.all(y >= base)
    assert np.all(y <= base + max_rate)
    assert in_unit_interval(y)
    assert nondecreasing(y)
    assert rules.recruitment_prob(0.0, base, max_rate, half) == base
    assert rules.recruitment_prob(1e9, base, max_rate, half) == pytest.approx(base + max_rate)


IMMUNE = {
    "age": 300.0,
    "kill": 0.8,
    "old_fraction": 0.1,
    "decline_age": 365.0,
    "mtorc1_inhibition": 0.2,
    "mtorc2_inhibition": 0.1,
    "boost": 0.2,
    "mtorc2_loss": 0.5,
    "ot_response": 0.8,
    "ot_gain": 0.3,
}


def immune(**changes):
    return rules.immune_competence(**{**IMMUNE, **changes})


def test_immune_competence_monotone_in_each_input():
    unit = np.linspace(0.0, 1.0, 101)
    ages = np.linspace(0.0, 3000.0, 301)
    assert nonincreasing(immune(age=ages))
    assert nondecreasing(immune(mtorc1_inhibition=unit))
    assert nonincreasing(immune(mtorc2_inhibition=unit))
    assert nondecreasing(immune(ot_response=unit))
    assert nondecreasing(immune(kill=unit))
    # Strict versions at two points each.
    assert immune(age=900.0) < immune(age=100.0)
    assert immune(mtorc1_inhibition=0.8) > immune(mtorc1_inhibition=0.0)
    assert immune(mtorc2_inhibition=0.8) < immune(mtorc2_inhibition=0.0)


def test_immune_competence_is_clipped_to_unit_interval():
    # Unclipped level 1 * 1 * (1 + 2 * 1) * 1 * 1 = 3 must be clipped to 1.
    high = immune(
        age=0.0, kill=1.0, boost=2.0, mtorc1_inhibition=1.0, mtorc2_inhibition=0.0, ot_response=1.0
    )
    assert high == 1.0
    # Unclipped level 0.8 * (1 - 2 * 1) < 0 must be clipped to 0.
    low = immune(age=0.0, mtorc2_loss=2.0, mtorc2_inhibition=1.0, mtorc1_inhibition=0.0)
    assert low == 0.0
    rng = np.random.default_rng(2)
    n = 5000
    y = rules.immune_competence(
        rng.random(n) * 3000,
        rng.random(n),
        rng.random(n),
        365.0,
        rng.random(n),
        rng.random(n),
        2.0,
        rng.random(n) * 2,
        rng.random(n),
        rng.random(n),
    )
    assert in_unit_interval(y)


def test_immune_competence_young_untreated_equals_kill():
    assert immune(
        age=0.0, mtorc1_inhibition=0.0, mtorc2_inhibition=0.0, ot_response=1.0
    ) == pytest.approx(IMMUNE["kill"])


# --- oxytocin, regeneration, inflammation, function -------------------------------------------


def test_oxytocin_response_bounded_increasing():
    y = rules.oxytocin_response(GRID, 0.35, 3.0)
    assert in_unit_interval(y)
    assert nondecreasing(y)
    assert rules.oxytocin_response(0.0, 0.35, 3.0) == 0.0
    assert rules.oxytocin_response(0.35, 0.35, 3.0) == pytest.approx(0.5)


@pytest.mark.parametrize("gain", [0.0, 0.3, 0.8, 1.0])
def test_dependent_fraction_bounds_and_limits(gain):
    response = np.linspace(0.0, 1.0, 101)
    y = rules.dependent_fraction(response, gain)
    assert in_unit_interval(y)
    assert nondecreasing(y)
    assert rules.dependent_fraction(1.0, gain) == 1.0
    assert rules.dependent_fraction(0.0, gain) == pytest.approx(1.0 - gain)


@pytest.mark.parametrize("damping", [0.0, 0.5, 1.0])
def test_inflammation_factor_bounds_and_monotone(damping):
    response = np.linspace(0.0, 1.0, 101)
    y = rules.inflammation_factor(response, damping)
    assert in_unit_interval(y)
    assert nonincreasing(y)
    assert rules.inflammation_factor(0.0, damping) == 1.0
    assert rules.inflammation_factor(1.0, damping) == pytest.approx(1.0 - damping)


def test_tissue_function_monotone_and_limits():
    cost, half = 0.5, 0.5
    assert nonincreasing(rules.tissue_function(0.9, GRID, cost, half))
    assert rules.tissue_function(0.9, 1.0, cost, half) < rules.tissue_function(0.9, 0.0, cost, half)
    healthy = np.linspace(0.0, 1.0, 101)
    assert nondecreasing(rules.tissue_function(healthy, 0.3, cost, half))
    # Inflammation costs a share of the healthy fraction: none without SASP, cost/2 of it at
    # the half-saturating SASP, all of `cost` at saturation.
    assert rules.tissue_function(0.8, 0.0, cost, half) == 0.8
    assert rules.tissue_function(0.8, half, cost, half) == pytest.approx(0.8 * (1 - cost / 2))
    assert rules.tissue_function(0.8, 1e9, cost, half) == pytest.approx(0.8 * (1 - cost))
    # Never negative, never above the healthy fraction, whatever the cost in [0, 1].
    for any_cost in (0.0, 0.5, 1.0):
        y = rules.tissue_function(0.8, GRID, any_cost, half)
        assert np.all(y >= 0.0)
        assert np.all(y <= 0.8)


# --- scalar / array agreement -----------------------------------------------------------------

RNG_CASES = np.random.default_rng(3)
N_CASES = 64


def _pos(scale=1.0):
    return RNG_CASES.random(N_CASES) * scale


# (name, rule, array arguments, constant keyword arguments)
SCALAR_RULES = [
    ("hill", rules.hill, [_pos(5.0)], {"half": 0.7, "n": 2.5}),
    (
        "damage_step",
        rules.damage_step,
        [_pos(3.0), _pos(0.1), _pos(), _pos(2.0)],
        {"sasp_gain": 1.5},
    ),
    ("exposure_step", rules.exposure_step, [_pos(3.0), _pos(3.0)], {"memory": 3.0}),
    (
        "primary_senescence_prob",
        rules.primary_senescence_prob,
        [_pos(3.0)],
        {"max_rate": 0.002, "half": 1.0, "n": 4.0},
    ),
    (
        "paracrine_senescence_prob",
        rules.paracrine_senescence_prob,
        [_pos(3.0)],
        {"max_rate": 0.02, "half": 0.4, "n": 2.0},
    ),
    (
        "lognormal_multiplier",
        rules.lognormal_multiplier,
        [RNG_CASES.standard_normal(N_CASES)],
        {"sigma": 0.3},
    ),
    ("sasp_secretion", rules.sasp_secretion, [_pos(20.0)], {"maturation": 3.0, "output": 0.7}),
]


@pytest.mark.parametrize(
    ("rule", "arrays", "kwargs"),
    [case[1:] for case in SCALAR_RULES],
    ids=[case[0] for case in SCALAR_RULES],
)
def test_per_cell_rule_returns_python_float_matching_array_call(rule, arrays, kwargs):
    vector = rule(*arrays, **kwargs)
    assert isinstance(vector, np.ndarray)
    assert vector.shape == (N_CASES,)
    scalars = []
    for i in range(N_CASES):
        value = rule(*(float(a[i]) for a in arrays), **kwargs)
        assert type(value) is float, f"{type(value)} at {i}"
        scalars.append(value)
    np.testing.assert_allclose(np.array(scalars), vector, rtol=1e-12, atol=0.0)


OTHER_RULES = [
    ("age_decline", rules.age_decline, [_pos(2000.0)], {"old_fraction": 0.2, "half_age": 365.0}),
    ("emax_inhibition", rules.emax_inhibition, [_pos(10.0)], {"ic50": 2.0, "emax": 0.9}),
    (
        "mtorc1_activity",
        rules.mtorc1_activity,
        [_pos(1000.0)],
        {"slope_per_year": 0.5, "inhibition": 0.3},
    ),
    ("autophagy", rules.autophagy, [_pos(3.0)], {"half": 1.0, "n": 2.0}),
    ("equilibrium_damage", rules.equilibrium_damage, [_pos(0.1), 0.01 + _pos()], {}),
    ("sasp_output", rules.sasp_output, [_pos()], {"suppression": 0.8}),
    (
        "recruitment_prob",
        rules.recruitment_prob,
        [_pos(2.0)],
        {"base": 0.0005, "max_rate": 0.02, "half": 0.2},
    ),
    ("oxytocin_response", rules.oxytocin_response, [_pos(2.0)], {"half": 0.35, "n": 3.0}),
    ("dependent_fraction", rules.dependent_fraction, [_pos()], {"gain": 0.8}),
    ("inflammation_factor", rules.inflammation_factor, [_pos()], {"damping": 0.5}),
    ("tissue_function", rules.tissue_function, [_pos(), _pos(3.0)], {"cost": 0.5, "half": 0.5}),
]


@pytest.mark.parametrize(
    ("rule", "arrays", "kwargs"),
    [case[1:] for case in OTHER_RULES],
    ids=[case[0] for case in OTHER_RULES],
)
def test_other_rules_scalar_and_array_calls_agree(rule, arrays, kwargs):
    vector = rule(*arrays, **kwargs)
    scalars = [rule(*(float(a[i]) for a in arrays), **kwargs) for i in range(N_CASES)]
    np.testing.assert_allclose(np.array(scalars, dtype=float), vector, rtol=1e-12, atol=0.0)


def test_immune_competence_scalar_and_array_calls_agree():
    rng = np.random.default_rng(4)
    ages, inh1, inh2, resp = (
        rng.random(N_CASES) * 1000,
        rng.random(N_CASES),
        rng.random(N_CASES),
        rng.random(N_CASES),
    )
    vector = rules.immune_competence(ages, 0.8, 0.1, 365.0, inh1, inh2, 0.2, 0.5, resp, 0.3)
    scalars = [
        float(
            rules.immune_competence(
                float(ages[i]),
                0.8,
                0.1,
                365.0,
                float(inh1[i]),
                float(inh2[i]),
                0.2,
                0.5,
                float(resp[i]),
                0.3,
            )
        )
        for i in range(N_CASES)
    ]
    np.testing.assert_allclose(scalars, vector, rtol=1e-12, atol=0.0)


# --- first_event ------------------------------------------------------------------------------


def test_first_event_below_first_threshold_is_event_one():
    assert rules.first_event(0.0, (0.1, 0.5)) == 1
    assert rules.first_event(0.0999, (0.1, 0.5)) == 1


def test_first_event_band_edges():
    # Thresholds for (0.5, 0.5): c1 = 0.5, c2 = 0.75; bands [0, .5) -> 1, [.5, .75) -> 2.
    assert rules.first_event(0.4999, (0.5, 0.5)) == 1
    assert rules.first_event(0.5, (0.5, 0.5)) == 2
    assert rules.first_event(0.7499, (0.5, 0.5)) == 2
    assert rules.first_event(0.75, (0.5, 0.5)) == rules.NO_EVENT


@pytest.mark.parametrize("u", [0.0, 0.3, 0.999999])
def test_first_event_all_zero_probabilities_is_no_event(u):
    assert rules.first_event(u, (0.0, 0.0, 0.0)) == rules.NO_EVENT
    us = np.linspace(0.0, 0.999, 50)
    assert np.all(rules.first_event(us, (0.0, 0.0, 0.0)) == rules.NO_EVENT)


def test_first_event_certain_first_event_always_wins():
    us = np.linspace(0.0, 0.999999, 1000)
    assert np.all(rules.first_event(us, (1.0, 1.0, 0.3)) == 1)
    assert rules.first_event(0.999999, (1.0, 0.5)) == 1


def test_first_event_certain_later_event_catches_the_rest():
    us = np.linspace(0.0, 0.999999, 1000)
    result = rules.first_event(us, (0.2, 1.0, 0.7))
    assert set(np.unique(result)) == {1, 2}
    assert np.all(result[us < 0.2] == 1)
    assert np.all(result[us >= 0.2] == 2)


def test_first_event_empty_probabilities_is_no_event():
    assert rules.first_event(0.5, ()) == rules.NO_EVENT


@pytest.mark.parametrize("probs", [(0.1, 0.2, 0.3), (0.5, 0.05), (0.01, 0.9, 0.5, 0.2)])
def test_first_event_frequencies_match_competing_probabilities(probs):
    n = 200_000
    u = np.random.default_rng(5).random(n)
    events = rules.first_event(u, probs)
    counts = np.bincount(events, minlength=len(probs) + 1)
    assert counts.sum() == n
    survive = 1.0
    expected = []
    for p in probs:
        expected.append(survive * p)
        survive *= 1.0 - p
    expected = [survive, *expected]  # index 0 is NO_EVENT
    for k, p_k in enumerate(expected):
        # Each count is Binomial(n, p_k); its frequency has standard error sqrt(p(1-p)/n).
        # 5 standard errors: a correct rule fails with probability < 1e-6 per event for any
        # seed, while a wrong band (e.g. p_k instead of p_k * prod(1 - p_j)) is off by far more.
        se = math.sqrt(p_k * (1.0 - p_k) / n)
        assert abs(counts[k] / n - p_k) <= 5.0 * se + 1e-12, (k, counts[k] / n, p_k)


def test_first_event_array_matches_scalar_draw_by_draw():
    rng = np.random.default_rng(6)
    n = 5000
    u = rng.random(n)
    probs = (0.1, 0.2, 0.3)
    vector = rules.first_event(u, probs)
    assert vector.dtype.kind == "i"
    for i in range(n):
        scalar = rules.first_event(float(u[i]), probs)
        assert type(scalar) is int
        assert scalar == vector[i]


def test_first_event_with_per_cell_probability_arrays_matches_scalar():
    rng = np.random.default_rng(7)
    n = 3000
    u = rng.random(n)
    probs = (rng.random(n) * 0.3, rng.random(n) * 0.5, rng.random(n))
    vector = rules.first_event(u, probs)
    for i in range(n):
        assert rules.first_event(float(u[i]), tuple(float(p[i]) for p in probs)) == vector[i]


# --- lognormal_multiplier ---------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.1, 0.3, 1.0])
def test_lognormal_multiplier_has_mean_one(sigma):
    n = 1_000_000
    z = np.random.default_rng(8).standard_normal(n)
    m = rules.lognormal_multiplier(z, sigma)
    assert np.all(m > 0.0)
    # Var of exp(sigma Z - sigma^2/2) is exp(sigma^2) - 1, so the sample mean has standard
    # error sqrt((exp(sigma^2) - 1) / n); allow 5 of them.
    se = math.sqrt(math.expm1(sigma * sigma) / n)
    assert abs(m.mean() - 1.0) <= 5.0 * se
    # log of the multiplier is normal with mean -sigma^2/2 and s.d. sigma.
    assert abs(np.log(m).mean() + 0.5 * sigma * sigma) <= 5.0 * sigma / math.sqrt(n)


def test_lognormal_multiplier_sigma_zero_is_exactly_one():
    z = np.random.default_rng(9).standard_normal(100)
    assert np.all(rules.lognormal_multiplier(z, 0.0) == 1.0)
    assert rules.lognormal_multiplier(1.3, 0.0) == 1.0


def test_lognormal_multiplier_increasing_in_z():
    z = np.linspace(-4.0, 4.0, 81)
    assert np.all(np.diff(rules.lognormal_multiplier(z, 0.3)) > 0.0)


# --- diffusion --------------------------------------------------------------------------------


def delta(shape=(21, 21), at=None, amount=1.0):
    field = np.zeros(shape)
    field[at if at is not None else (shape[0] // 2, shape[1] // 2)] = amount
    return field


@pytest.mark.parametrize("torus", [True, False])
@pytest.mark.parametrize("at", [(10, 10), (0, 0), (0, 7), (20, 3)])
def test_diffuse_decay_conserves_total_without_decay_or_source(torus, at):
    field = delta(at=at)
    source = np.zeros_like(field)
    total = field.sum()
    peak = field.max()
    for _ in range(5):
        rules.diffuse_decay(field, source, 0.5, 0.0, torus)
        assert field.sum() == pytest.approx(total, rel=1e-9)
        assert field.max() < peak
        peak = field.max()
    assert np.all(field >= 0.0)
    assert np.count_nonzero(field) > 1


@pytest.mark.parametrize("torus", [True, False])
@pytest.mark.parametrize(
    ("diffusion", "decay"), [(0.5, 0.5), (3.0, 0.0), (10.0, 4.0), (0.0, 4.0), (0.01, 0.01)]
)
def test_diffuse_decay_keeps_delta_nonnegative(torus, diffusion, decay):
    field = delta(at=(3, 17))
    source = np.zeros_like(field)
    for _ in range(3):
        rules.diffuse_decay(field, source, diffusion, decay, torus)
        assert np.all(field >= 0.0)


@pytest.mark.parametrize("torus", [True, False])
def test_diffuse_decay_decay_lowers_total(torus):
    field = delta(amount=5.0)
    source = np.zeros_like(field)
    before = field.sum()
    rules.diffuse_decay(field, source, 0.5, 0.5, torus)
    assert 0.0 < field.sum() < before


@pytest.mark.parametrize("torus", [True, False])
def test_diffuse_decay_source_adds_its_total_each_day_without_decay(torus):
    rng = np.random.default_rng(10)
    field = rng.random((12, 9))
    source = rng.random((12, 9))
    before = field.sum()
    rules.diffuse_decay(field, source, 0.7, 0.0, torus)
    assert field.sum() == pytest.approx(before + source.sum(), rel=1e-9)


@pytest.mark.parametrize("torus", [True, False])
@pytest.mark.parametrize(("diffusion", "decay"), [(0.5, 0.5), (2.0, 1.5), (0.0, 0.3)])
def test_diffuse_decay_converges_to_uniform_steady_state(torus, diffusion, decay):
    s = 0.3
    rng = np.random.default_rng(11)
    field = rng.random((15, 15)) * 2.0
    source = np.full((15, 15), s)
    for _ in range(300):
        rules.diffuse_decay(field, source, diffusion, decay, torus)
    # Uniform steady state of D lap f - decay f + s = 0 is f = s / decay.
    np.testing.assert_allclose(field, s / decay, rtol=1e-8)


def test_diffuse_decay_without_diffusion_sites_are_independent():
    rng = np.random.default_rng(12)
    field = rng.random((8, 8))
    source = rng.random((8, 8))
    perturbed = field.copy()
    perturbed[3, 4] += 10.0
    a = rules.diffuse_decay(field.copy(), source, 0.0, 0.4, True)
    b = rules.diffuse_decay(perturbed, source, 0.0, 0.4, True)
    changed = a != b
    assert changed[3, 4]
    assert changed.sum() == 1


def test_diffuse_decay_without_diffusion_approaches_site_steady_state():
    rng = np.random.default_rng(13)
    field = rng.random((6, 6)) * 4.0
    source = rng.random((6, 6))
    decay = 0.5
    target = source / decay
    gap = np.abs(field - target)
    out = rules.diffuse_decay(field.copy(), source, 0.0, decay, False)
    new_gap = np.abs(out - target)
    # Each site moves towards its own source/decay without overshooting.
    assert np.all(new_gap <= gap)
    assert np.all(np.sign(out - target) * np.sign(field - target) >= 0.0)


@pytest.mark.parametrize("torus", [True, False])
def test_diffuse_decay_updates_in_place(torus):
    field = delta()
    source = np.zeros_like(field)
    original = field
    result = rules.diffuse_decay(field, source, 0.5, 0.1, torus)
    assert result is original
    assert original[10, 10] < 1.0


@pytest.mark.parametrize("torus", [True, False])
@pytest.mark.parametrize("shape", [(15, 15), (9, 13)])
def test_diffuse_decay_spreads_centred_delta_symmetrically(torus, shape):
    field = delta(shape=shape)
    source = np.zeros_like(field)
    for _ in range(4):
        rules.diffuse_decay(field, source, 0.8, 0.2, torus)
    np.testing.assert_allclose(field, field[::-1, :], rtol=0, atol=1e-12)
    np.testing.assert_allclose(field, field[:, ::-1], rtol=0, atol=1e-12)
    if shape[0] == shape[1]:
        np.testing.assert_allclose(field, field.T, rtol=0, atol=1e-12)
    centre = (shape[0] // 2, shape[1] // 2)
    assert field[centre] == field.max()


@pytest.mark.parametrize("torus", [True, False])
def test_diffuse_decay_larger_diffusion_spreads_further(torus):
    slow, fast = delta(), delta()
    source = np.zeros_like(slow)
    rules.diffuse_decay(slow, source, 0.2, 0.0, torus)
    rules.diffuse_decay(fast, source, 2.0, 0.0, torus)
    assert fast.max() < slow.max()


def test_diffusion_substeps_grows_with_coefficients_and_is_stable():
    values = np.linspace(0.0, 10.0, 101)
    for decay in (0.0, 0.5, 4.0):
        steps = [rules.diffusion_substeps(d, decay) for d in values]
        assert nondecreasing(steps)
    for diffusion in (0.0, 0.5, 10.0):
        steps = [rules.diffusion_substeps(diffusion, k) for k in values]
        assert nondecreasing(steps)
    for d in values:
        for k in values:
            n = rules.diffusion_substeps(d, k)
            assert isinstance(n, int)
            assert n >= 1
            # Explicit 5-point scheme is positive (and stable) when dt * (4D + decay) <= 1.
            assert (4.0 * d + k) / n <= 1.0
    assert rules.diffusion_substeps(0.0, 0.0) == 1
    assert rules.diffusion_substeps(10.0, 4.0) > rules.diffusion_substeps(0.5, 0.5)


def test_immune_occupancy_is_the_renewal_steady_state():
    # Free spells last 1/r days on average, occupied spells L days: occupied fraction rL/(1+rL).
    recruitment = np.linspace(0.0, 1.0, 101)
    occupancy = rules.immune_occupancy(recruitment, 5.0)
    assert in_unit_interval(occupancy)
    assert nondecreasing(occupancy)
    assert rules.immune_occupancy(0.0, 5.0) == 0.0
    assert rules.immune_occupancy(0.2, 5.0) == pytest.approx(0.5)
    # Simulated: a two-state chain with those daily transition probabilities.
    rng = np.random.default_rng(11)
    occupied, days, r, lifetime = False, 200_000, 0.05, 4.0
    busy = 0
    for u in rng.random(days):
        occupied = (u >= 1.0 / lifetime) if occupied else (u < r)
        busy += occupied
    expected = rules.immune_occupancy(r, lifetime)
    # Tolerance: correlated chain, so allow 0.01 absolute (about 5 s.e. for these spell lengths).
    assert busy / days == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("probs", [(0.0,), (0.3,), (0.002, 0.01, 0.02, 0.1), (0.5, 1.0, 0.2)])
def test_any_event_prob_is_where_first_event_stops_giving_events(probs):
    bound = rules.any_event_prob(probs)
    u = np.linspace(0.0, 1.0, 100_001, endpoint=False)
    events = rules.first_event(u, probs) != rules.NO_EVENT
    # every draw below the bound gives an event, none at or above it does
    assert events[u < bound].all()
    assert not events[u >= bound + 1e-12].any()


def test_an_upper_bound_on_each_probability_bounds_the_chance_of_any_event():
    rng = np.random.default_rng(5)
    highs = np.array([0.002, 0.01, 0.02, 0.1])
    for _ in range(200):
        actual = tuple(rng.random(4) * highs)
        assert rules.any_event_prob(actual) <= rules.any_event_prob(tuple(highs))


def test_max_recruitment_prob_bounds_recruitment_at_every_sasp():
    sasp = np.concatenate([[0.0], np.logspace(-6, 6, 200)])
    probs = rules.recruitment_prob(sasp, 0.0005, 0.02, 0.2)
    assert (probs < rules.max_recruitment_prob(0.0005, 0.02)).all()
    assert probs[-1] == pytest.approx(rules.max_recruitment_prob(0.0005, 0.02), rel=1e-6)


@pytest.mark.parametrize("half", [0.2, 1.0, 7.5])
def test_recruitment_prob_bound_bounds_recruitment_and_is_tight_at_zero(half):
    sasp = np.concatenate([[0.0], np.logspace(-8, 6, 400)]).astype(np.float32)
    probs = rules.recruitment_prob(sasp, 0.0005, 0.02, half)
    bounds = rules.recruitment_prob_bound(sasp, 0.0005, 0.02, half)
    # sasp * (1 / half) may round one unit in the last place below sasp / half (~1e-16
    # relative), which the kernel's margin (1e-9) covers; here 1e-12 is ample.
    assert (probs <= bounds * (1.0 + 1e-12)).all()
    assert bounds[0] == probs[0] == pytest.approx(0.0005)
    # tight where SASP is low (most sites), never above the SASP-free maximum
    low = sasp < 0.01 * half
    assert (bounds[low] - probs[low] <= 0.02 * 0.011).all()
    assert (bounds <= rules.max_recruitment_prob(0.0005, 0.02)).all()


@pytest.mark.parametrize("n", [1.0, 2.0, 3.5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hill_without_a_power_equals_the_power_formula(n, dtype):
    x = np.concatenate([[0.0], np.logspace(-6, 6, 500)]).astype(dtype)
    expected = (x / dtype(0.7)) ** dtype(n) / (1 + (x / dtype(0.7)) ** dtype(n))
    np.testing.assert_allclose(rules.hill(x, 0.7, n), expected, rtol=4 * np.finfo(dtype).eps)
    # a Python float gives the array's value (agents and array engines agree)
    assert rules.hill(float(x[250]), 0.7, n) == pytest.approx(
        float(rules.hill(x[250:251].astype(np.float64), 0.7, n)[0]), rel=1e-15
    )


@pytest.mark.parametrize("lifetime", [1.0, 6.0, 30.0])
def test_departure_prob_gives_the_mean_residence_time(lifetime):
    p = rules.departure_prob(lifetime)
    assert 0.0 < p <= 1.0
    # mean of the geometric residence on 1, 2, ... days: sum of P(K >= k) = sum (1 - p)^(k-1)
    days = np.arange(1, 20_000)
    assert np.sum((1.0 - p) ** (days - 1)) == pytest.approx(lifetime, rel=1e-9)


# --- bounded effects and the second clearance route (model v2) --------------------------------


@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
def test_rapamycin_lowers_only_the_mtorc1_dependent_share_of_the_damage_drive(share):
    untreated = rules.damage_drive(0.01, 365.25, 0.5, 0.0, share)
    assert untreated == pytest.approx(0.01 * 1.5)  # the drive rises with age as mTORC1 does
    full = rules.damage_drive(0.01, 365.25, 0.5, 1.0, share)
    assert full == pytest.approx(untreated * (1.0 - share))  # full inhibition leaves 1 − share
    half = rules.damage_drive(0.01, 365.25, 0.5, 0.5, share)
    assert full <= half <= untreated


@pytest.mark.parametrize("share", [0.0, 0.4, 1.0])
def test_only_the_autophagy_dependent_share_of_repair_follows_autophagy(share):
    assert rules.damage_repair(0.1, 1.0, share) == pytest.approx(0.1)
    assert rules.damage_repair(0.1, 0.0, share) == pytest.approx(0.1 * (1.0 - share))
    low, high = rules.damage_repair(0.1, 0.2, share), rules.damage_repair(0.1, 0.8, share)
    assert high - low == pytest.approx(0.1 * share * 0.6)


def test_phagocytic_removal_is_first_order_at_low_burden_and_saturates_at_its_capacity():
    rate, half = 0.1, 0.01
    per_cell = [rules.phagocytic_clearance_prob(s, rate, half) for s in (0.0, 0.01, 0.1, 0.5)]
    assert per_cell[0] == pytest.approx(rate) and per_cell[1] == pytest.approx(rate / 2)
    assert per_cell == sorted(per_cell, reverse=True)  # shared capacity: less per cell
    total = [s * rules.phagocytic_clearance_prob(s, rate, half) for s in (0.001, 0.1, 0.5, 1.0)]
    assert total == sorted(total)  # more cells, more removed in all ...
    assert max(total) < rate * half  # ... but never above the capacity rate · half
    assert total[-1] > 0.98 * rate * half

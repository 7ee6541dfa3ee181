"""Tests of dosing schedules, pharmacokinetics and the systemic timeline."""

import math

import numpy as np
import pytest
from pydantic import ValidationError

from tissue_abm.biology.params import Parameters
from tissue_abm.biology.systemic import Day, days_of, systemic_timeline
from tissue_abm.biology.therapy import (
    Oxytocin,
    Rapamycin,
    Schedule,
    Senolytic,
    Therapy,
    bolus_of_exposure,
    dose_series,
    one_compartment,
    running_average,
)

AGES = np.arange(30)


def dosed(schedule, ages=AGES):
    return [int(a) for a in np.asarray(ages)[schedule.dose_days(ages)]]


# --- Schedule.dose_days -----------------------------------------------------------------------


def test_default_schedule_doses_daily_from_birth():
    assert dosed(Schedule()) == list(range(30))


def test_schedule_every_k_days_from_start():
    assert dosed(Schedule(every=3)) == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27]
    assert dosed(Schedule(start_age=4, every=7)) == [4, 11, 18, 25]


def test_schedule_start_and_exclusive_stop():
    assert dosed(Schedule(start_age=5, stop_age=9)) == [5, 6, 7, 8]
    assert dosed(Schedule(start_age=5, stop_age=6)) == [5]
    assert dosed(Schedule(start_age=2, stop_age=12, every=4)) == [2, 6, 10]


def test_schedule_before_start_age_has_no_doses():
    assert dosed(Schedule(start_age=100)) == []


def test_schedule_five_on_two_off():
    mask = Schedule(on_days=5, off_days=2).dose_days(np.arange(21))
    week = [True] * 5 + [False] * 2
    assert mask.tolist() == week * 3


def test_schedule_cycle_starts_at_start_age():
    assert dosed(Schedule(start_age=3, on_days=2, off_days=3)) == [
        3,
        4,
        8,
        9,
        13,
        14,
        18,
        19,
        23,
        24,
        28,
        29,
    ]


def test_schedule_cycle_respects_stop_age():
    assert dosed(Schedule(start_age=1, stop_age=12, on_days=3, off_days=1)) == [
        1,
        2,
        3,
        5,
        6,
        7,
        9,
        10,
        11,
    ]


def test_schedule_float_ages_give_same_mask_as_int_ages():
    schedule = Schedule(start_age=3, stop_age=25, every=2, on_days=4, off_days=2)
    np.testing.assert_array_equal(schedule.dose_days(AGES.astype(float)), schedule.dose_days(AGES))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"start_age": 10, "stop_age": 10},
        {"start_age": 10, "stop_age": 5},
        {"on_days": 5},
        {"off_days": 2},
        {"every": 0},
        {"start_age": -1},
        {"unknown": 1},
    ],
)
def test_schedule_validation_errors(kwargs):
    with pytest.raises(ValidationError):
        Schedule(**kwargs)


@pytest.mark.parametrize("cls", [Rapamycin, Oxytocin, Senolytic])
def test_drug_schedules_validate_like_schedule(cls):
    with pytest.raises(ValidationError):
        cls(start_age=30, stop_age=20)
    with pytest.raises(ValidationError):
        cls(on_days=3)


def test_schedule_is_frozen():
    schedule = Schedule()
    with pytest.raises(ValidationError):
        schedule.every = 2


def test_negative_dose_rejected():
    with pytest.raises(ValidationError):
        Rapamycin(dose=-1.0)


# --- dose_series ------------------------------------------------------------------------------


def test_dose_series_zero_without_regimen():
    series = dose_series(None, AGES)
    assert series.shape == AGES.shape
    assert np.all(series == 0.0)


def test_dose_series_gives_dose_on_dose_days_only():
    regimen = Rapamycin(dose=2.5, start_age=4, every=3)
    series = dose_series(regimen, AGES)
    mask = regimen.dose_days(AGES)
    assert np.all(series[mask] == 2.5)
    assert np.all(series[~mask] == 0.0)
    assert mask.sum() > 0


# --- one_compartment --------------------------------------------------------------------------


@pytest.mark.parametrize("half_life", [1, 2, 3, 7])
def test_single_bolus_halves_every_half_life(half_life):
    doses = np.zeros(8 * half_life)
    doses[0] = 2.0
    peak, mean = one_compartment(doses, float(half_life))
    assert peak[0] == pytest.approx(2.0)
    assert peak[half_life] == pytest.approx(1.0)
    assert peak[2 * half_life] == pytest.approx(0.5)
    t = np.arange(len(doses))
    np.testing.assert_allclose(peak, 2.0 * 0.5 ** (t / half_life), rtol=1e-12)
    assert np.all(np.diff(mean) < 0.0)


def test_bolus_starting_later_is_zero_before_first_dose():
    doses = np.zeros(20)
    doses[7] = 1.0
    peak, mean = one_compartment(doses, 2.6)
    assert np.all(peak[:7] == 0.0)
    assert np.all(mean[:7] == 0.0)
    assert peak[7] == pytest.approx(1.0)


@pytest.mark.parametrize("half_life", [0.5, 2.6, 10.0])
def test_daily_dosing_reaches_steady_state_peak(half_life):
    dose = 1.3
    peak, _ = one_compartment(np.full(400, dose), half_life)
    # Peak just after dose at steady state P satisfies P = P e^{-k} + dose.
    k = math.log(2.0) / half_life
    steady = dose / (1.0 - math.exp(-k))
    assert peak[-1] == pytest.approx(steady, rel=1e-9)
    assert np.all(np.diff(peak) >= 0.0)
    assert np.all(peak <= steady * (1 + 1e-12))


@pytest.mark.parametrize("half_life", [0.3, 2.6, 10.0])
def test_mean_lies_between_end_of_day_and_peak(half_life):
    rng = np.random.default_rng(20)
    doses = np.where(rng.random(100) < 0.4, rng.random(100) * 3.0, 0.0)
    peak, mean = one_compartment(doses, half_life)
    carry = math.exp(-math.log(2.0) / half_life)
    # Within a day the concentration falls from peak to peak * e^{-k}; the mean is in between.
    assert np.all(mean <= peak)
    assert np.all(mean >= peak * carry)
    # Without a new dose the next day's peak is exactly today's end-of-day concentration.
    no_dose_next = doses[1:] == 0.0
    assert np.all(peak[1:][no_dose_next] <= mean[:-1][no_dose_next])


@pytest.mark.parametrize("half_life", [0.3, 2.6, 10.0])
def test_mean_is_integral_of_exponential_decay_over_the_day(half_life):
    peak, mean = one_compartment(np.array([1.0, 0.0, 0.5]), half_life)
    k = math.log(2.0) / half_life
    t = np.linspace(0.0, 1.0, 20_001)
    for day in range(3):
        numeric = np.trapezoid(peak[day] * np.exp(-k * t), t)
        assert mean[day] == pytest.approx(numeric, rel=1e-6)


def test_one_compartment_is_linear_in_doses():
    rng = np.random.default_rng(21)
    a = rng.random(50)
    b = rng.random(50)
    pa, ma = one_compartment(a, 2.6)
    pb, mb = one_compartment(b, 2.6)
    pab, mab = one_compartment(2.0 * a + b, 2.6)
    np.testing.assert_allclose(pab, 2.0 * pa + pb, rtol=1e-12)
    np.testing.assert_allclose(mab, 2.0 * ma + mb, rtol=1e-12)


def test_oxytocin_short_half_life_is_a_daily_pulse():
    half_life = Parameters().ot_half_life
    assert half_life == pytest.approx(0.0021)
    doses = np.tile([2.0, 0.0], 10)
    peak, _ = one_compartment(doses, half_life)
    # After one day, exp(-ln2 / 0.0021) ~ 1e-143 of the dose is left.
    np.testing.assert_allclose(peak[::2], 2.0, rtol=1e-12)
    assert np.all(peak[1::2] < 1e-12)


@pytest.mark.parametrize("half_life", [0.0021, 0.05, 1.0, 5.0])
def test_an_oxytocin_dose_is_the_exposure_it_gives_whatever_the_half_life(half_life):
    # A dose stated as an exposure (young-level days) gives exactly that area under the curve,
    # however fast the hormone is cleared: the sum of the day-mean levels over the days after
    # it (the mean over a day is its area, days of length 1).
    doses = np.zeros(400)
    doses[0] = 2.0
    _, mean = one_compartment(bolus_of_exposure(doses, half_life), half_life)
    assert mean.sum() == pytest.approx(2.0, rel=1e-9)
    if half_life < 0.01:  # minutes: all of it on the dose day, so the day's mean is the dose
        assert mean[0] == pytest.approx(2.0, rel=1e-9)


# --- running_average --------------------------------------------------------------------------


@pytest.mark.parametrize("window", [1.0, 3.0, 14.0, 60.0])
def test_running_average_converges_to_constant(window):
    y = running_average(np.full(int(40 * window), 2.5), window)
    assert y[-1] == pytest.approx(2.5, rel=1e-9)
    assert np.all(np.diff(y) >= 0.0)
    assert np.all(y <= 2.5 * (1 + 1e-12))


@pytest.mark.parametrize("window", [1, 2, 7, 14, 30])
def test_running_average_time_constant(window):
    # Starting at 0, each day closes a fraction 1/window of the gap to the input, so after
    # `window` days of input 1 the average is 1 - (1 - 1/window)^window (about 1 - 1/e).
    y = running_average(np.ones(3 * window), float(window))
    assert y[window - 1] == pytest.approx(1.0 - (1.0 - 1.0 / window) ** window, rel=1e-12)
    if window >= 7:
        assert y[window - 1] == pytest.approx(1.0 - math.exp(-1.0), abs=0.03)


def test_running_average_window_one_is_identity():
    x = np.random.default_rng(22).random(30)
    np.testing.assert_allclose(running_average(x, 1.0), x, rtol=1e-12)


def test_running_average_stays_within_input_range():
    x = np.random.default_rng(23).random(200) * 4.0
    y = running_average(x, 5.0)
    assert np.all(y >= 0.0)
    assert np.all(y <= x.max())


# --- systemic timeline ------------------------------------------------------------------------

START = 60
DAYS = 900  # ages 60 .. 960 cover 3 months (90 d) and 22 months (660 d)
RAPA_START = 200


@pytest.fixture(scope="module")
def params():
    return Parameters()


@pytest.fixture(scope="module")
def untreated(params):
    return systemic_timeline(params, Therapy(), START, DAYS)


def timeline(params, **drugs):
    return systemic_timeline(params, Therapy(**drugs), START, DAYS)


def at_age(frame, age):
    return frame.loc[frame["age"] == age].iloc[0]


def test_timeline_shape_and_columns(untreated):
    assert list(untreated.columns) == list(Day._fields)
    assert len(untreated) == DAYS + 1
    np.testing.assert_array_equal(untreated["day"], np.arange(DAYS + 1))
    np.testing.assert_array_equal(untreated["age"], START + np.arange(DAYS + 1))


def test_untreated_has_no_drug_exposure(untreated):
    for column in (
        "rapamycin_dose",
        "rapamycin_exposure",
        "rapamycin_chronic",
        "senolytic_fraction",
        "mtorc1_inhibition",
        "mtorc2_inhibition",
    ):
        assert np.all(untreated[column] == 0.0), column
    # Untreated mature SASP output does not change with age.
    sasp = untreated["sasp_output"]
    assert sasp.iloc[0] > 0.0
    assert np.all(sasp == sasp.iloc[0])


def test_untreated_mtorc1_rises_and_autophagy_falls_with_age(untreated):
    assert np.all(np.diff(untreated["mtorc1"]) > 0.0)
    assert np.all(np.diff(untreated["autophagy"]) < 0.0)
    assert np.all(np.diff(untreated["damage_drive"]) > 0.0)
    assert np.all(np.diff(untreated["damage_repair"]) < 0.0)


def test_endogenous_oxytocin_falls_at_least_threefold_by_22_months(untreated):
    # Calibration anchor (Elabd 2014): young (3-month) mice have at least 3x the plasma
    # oxytocin of old (22-month) mice.
    young = at_age(untreated, 90)["oxytocin_level"]
    old = at_age(untreated, 660)["oxytocin_level"]
    assert old <= young / 3.0
    assert np.all(np.diff(untreated["oxytocin_level"]) <= 0.0)


def test_untreated_immune_competence_falls_with_age(untreated):
    competence = untreated["immune_competence"]
    assert np.all(np.diff(competence) <= 0.0)
    assert competence.iloc[-1] < competence.iloc[0]


@pytest.mark.parametrize(
    "column",
    [
        "autophagy",
        "immune_competence",
        "mtorc1_inhibition",
        "mtorc2_inhibition",
        "inflammation",
        "division_prob",
        "damage_repair",
        "ot_response",
    ],
)
def test_timeline_probabilities_in_unit_interval(untreated, params, column):
    treated = timeline(params, rapamycin=Rapamycin(dose=8.0), oxytocin=Oxytocin(dose=5.0))
    for frame in (untreated, treated):
        assert np.all(frame[column] >= 0.0)
        assert np.all(frame[column] <= 1.0)


@pytest.fixture(scope="module")
def rapa(params):
    return timeline(params, rapamycin=Rapamycin(dose=1.0, start_age=RAPA_START))


def test_rapamycin_exposure_starts_at_start_age(rapa):
    before = rapa["age"] < RAPA_START
    assert np.all(rapa.loc[before, "rapamycin_exposure"] == 0.0)
    assert np.all(rapa.loc[before, "rapamycin_dose"] == 0.0)
    assert np.all(rapa.loc[~before, "rapamycin_exposure"] > 0.0)
    assert np.all(rapa.loc[~before, "rapamycin_dose"] == 1.0)


def test_rapamycin_lowers_mtorc1_and_sasp_on_treated_days(rapa, untreated, params):
    treated = rapa["age"] >= RAPA_START
    assert np.all(rapa.loc[treated, "mtorc1"] < untreated.loc[treated, "mtorc1"])
    assert np.all(rapa.loc[treated, "autophagy"] > untreated.loc[treated, "autophagy"])
    ratio = rapa.loc[treated, "sasp_output"] / untreated.loc[treated, "sasp_output"]
    # Output is lowered, but at most by the suppression fraction (inhibition <= 1).
    assert np.all(ratio < 1.0)
    assert np.all(ratio >= 1.0 - params.rapa_sasp_suppression)
    np.testing.assert_array_equal(rapa.loc[~treated, "mtorc1"], untreated.loc[~treated, "mtorc1"])


def test_high_chronic_rapamycin_lowers_immune_competence(params, untreated):
    high = timeline(params, rapamycin=Rapamycin(dose=8.0, start_age=RAPA_START))
    # Chronic: compare after a month of treatment, once the running average (mtorc2_window)
    # has built up.
    chronic = high["age"] >= RAPA_START + 30
    assert np.all(
        high.loc[chronic, "immune_competence"] < untreated.loc[chronic, "immune_competence"]
    )


def test_low_dose_rapamycin_does_not_lower_immune_competence(params, untreated):
    low = timeline(params, rapamycin=Rapamycin(dose=0.1, start_age=RAPA_START))
    assert np.all(low["immune_competence"] >= untreated["immune_competence"] - 1e-12)


@pytest.fixture(scope="module")
def oxy(params):
    return timeline(params, oxytocin=Oxytocin(dose=1.0, every=2, start_age=START))


def test_oxytocin_raises_level_only_on_dose_days(oxy, untreated):
    dose_day = (oxy["age"] - START) % 2 == 0
    np.testing.assert_allclose(
        oxy.loc[dose_day, "oxytocin_level"],
        untreated.loc[dose_day, "oxytocin_level"] + 1.0,
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        oxy.loc[~dose_day, "oxytocin_level"], untreated.loc[~dose_day, "oxytocin_level"], rtol=1e-12
    )
    # Oxytocin does not touch mTOR.
    np.testing.assert_array_equal(oxy["mtorc1"], untreated["mtorc1"])


def test_oxytocin_helps_regeneration_much_more_in_old_than_young(oxy, untreated):
    # Ages 90 and 660 are both dose days (even days after START = 60).
    def relative_gain(age):
        return at_age(oxy, age)["division_prob"] / at_age(untreated, age)["division_prob"] - 1.0

    young, old = relative_gain(90), relative_gain(660)
    assert young >= 0.0
    assert old > 0.0
    assert old > 5.0 * young


def test_senolytic_fraction_on_dose_days_only(params):
    frame = timeline(params, senolytic=Senolytic(fraction=0.4, every=30, start_age=START))
    dose_day = (frame["age"] - START) % 30 == 0
    assert np.all(frame.loc[dose_day, "senolytic_fraction"] == 0.4)
    assert np.all(frame.loc[~dose_day, "senolytic_fraction"] == 0.0)


def test_days_of_returns_plain_python_records(rapa):
    records = days_of(rapa)
    assert len(records) == len(rapa)
    for i in (0, RAPA_START - START, len(records) - 1):
        record = records[i]
        assert isinstance(record, Day)
        assert type(record.day) is int
        assert record.day == i
        for name in Day._fields[1:]:
            value = getattr(record, name)
            assert type(value) is float, name
            assert value == rapa.iloc[i][name]


def test_the_pharmacokinetics_and_running_average_give_lfilters_values_bit_for_bit():
    # They were computed by scipy.signal.lfilter; the recursion that replaced it must give the
    # very same floats (so that no run changes), on random dosing series, half-lives, windows.
    from scipy.signal import lfilter

    from tissue_abm.biology.therapy import one_compartment, running_average

    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(1, 1000))
        x = rng.random(n) * rng.integers(0, 2, n) * 10 ** rng.uniform(-3, 3)
        half_life, window = rng.uniform(0.1, 30.0), rng.uniform(1.0, 400.0)
        carry = math.exp(-math.log(2.0) / half_life)
        np.testing.assert_array_equal(
            one_compartment(x, half_life)[0], lfilter([1.0], [1.0, -carry], x)
        )
        w = 1.0 / window
        np.testing.assert_array_equal(running_average(x, window), lfilter([w], [1.0, -(1 - w)], x))
    # ... and the comparison has teeth: a window one ulp longer changes the values
    assert not np.array_equal(
        running_average(x, np.nextafter(window, 500.0)), running_average(x, window)
    )

"""Therapies: dosing schedules and one-compartment pharmacokinetics, giving each day's exposure.

A schedule doses on day ages `start_age, start_age + every, ...` before `stop_age`, optionally in
on/off cycles: `on_days` of dosing (every `every` days, from the first day of each cycle), then
`off_days` of pause. Doses are boluses at the start of a
day; first-order elimination with the drug's half-life gives the peak (just after the dose) and
the mean concentration over each day. Rapamycin (half-life days) accumulates and acts through its
mean exposure; oxytocin (half-life minutes) is gone within the day and acts as a daily pulse.
"""

from __future__ import annotations

import math
from typing import Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.config import JsonDict

DAYS: JsonDict = {"unit": "day"}

MAX_AGE = 36500
"""Largest age (days) a scenario or schedule may name: 100 years."""


class Schedule(BaseModel):
    """When doses are given. Ages are in days; stop_age is exclusive (None: never stops)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    start_age: int = Field(
        0, ge=0, le=MAX_AGE, description="Age of the first dose.", json_schema_extra=DAYS
    )
    stop_age: int | None = Field(
        None, ge=1, le=MAX_AGE, description="No doses from this age on.", json_schema_extra=DAYS
    )
    every: int = Field(
        1, ge=1, le=3650, description="Days between doses (1 = daily).", json_schema_extra=DAYS
    )
    on_days: int = Field(
        0,
        ge=0,
        le=3650,
        description="Cycle: days of dosing (0 = no cycle).",
        json_schema_extra=DAYS,
    )
    off_days: int = Field(
        0, ge=0, le=3650, description="Cycle: days of pause after on_days.", json_schema_extra=DAYS
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.stop_age is not None and self.stop_age <= self.start_age:
            raise ValueError(
                f"stop_age ({self.stop_age}) must be after start_age ({self.start_age})"
            )
        if (self.on_days == 0) != (self.off_days == 0):
            raise ValueError(
                f"on_days ({self.on_days}) and off_days ({self.off_days}) must both "
                "be 0 (no cycle) or both be > 0"
            )
        return self

    def dose_days(self, ages: np.ndarray) -> np.ndarray:
        """Boolean mask of the integer `ages` (days) on which a dose is given."""
        since = ages - self.start_age
        stop = np.inf if self.stop_age is None else self.stop_age
        active = (since >= 0) & (ages < stop)
        if self.on_days:
            day_of_cycle = since % (self.on_days + self.off_days)
            active &= day_of_cycle < self.on_days
        else:
            day_of_cycle = since
        return active & (day_of_cycle % self.every == 0)


class Rapamycin(Schedule):
    """Rapamycin (mTORC1 inhibitor) dosing."""

    dose: float = Field(
        1.0,
        ge=0.0,
        le=100.0,
        description="Dose per administration.",
        json_schema_extra={"unit": "mg/kg"},
    )


class Oxytocin(Schedule):
    """Oxytocin dosing; a dose is the exposure it gives, in young-level days.

    Oxytocin is cleared within minutes, so a dose acts through its exposure: a daily dose of 1
    adds one young endogenous level to the day-mean level (replacement in old animals).
    """

    dose: float = Field(
        1.0,
        ge=0.0,
        le=100.0,
        description="Exposure per administration (area under the concentration curve).",
        json_schema_extra={"unit": "young-level days"},
    )


class Senolytic(Schedule):
    """A generic senolytic, the positive control: each dose kills a fraction of senescent cells."""

    every: int = Field(30, ge=1, le=3650, description="Days between doses.", json_schema_extra=DAYS)
    fraction: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Probability that a dose kills each senescent cell.",
        json_schema_extra={"unit": "probability"},
    )


class Therapy(BaseModel):
    """The therapies of a scenario; an absent drug is not given."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    rapamycin: Rapamycin | None = None
    oxytocin: Oxytocin | None = None
    senolytic: Senolytic | None = None


def dose_series(regimen: Rapamycin | Oxytocin | None, ages: np.ndarray) -> np.ndarray:
    """Dose given on each day of `ages` (0 where none, and everywhere for no regimen)."""
    if regimen is None:
        return np.zeros(len(ages))
    return np.where(regimen.dose_days(ages), regimen.dose, 0.0)


def bolus_of_exposure(exposure: np.ndarray, half_life: float) -> np.ndarray:
    """Bolus concentrations that give each day's dose as an exposure (area under the curve).

    For a drug cleared within minutes (oxytocin) the dose is best stated by the exposure it
    gives: a dose of 1 young-level day raises the day-mean level by 1 - e^{-k} young levels
    (k = ln 2 / half_life per day; ~1 for a half-life of minutes), whatever the route's
    absorption, since for linear kinetics the exposure depends on the amount absorbed only.

    Args:
        exposure: Exposure given at the start of each day (concentration x days).
        half_life: Elimination half-life, days, > 0.
    """
    return np.asarray(exposure, dtype=float) * (math.log(2.0) / half_life)


def one_compartment(doses: np.ndarray, half_life: float) -> tuple[np.ndarray, np.ndarray]:
    """Peak and mean daily concentration for bolus doses at the start of each day.

    Args:
        doses: Dose given at the start of each day (dose units per volume).
        half_life: Elimination half-life, days, > 0.

    Returns:
        (peak, mean): the concentration just after each day's dose, and its mean over the day,
        C0 (1 - e^{-k}) / k with k = ln 2 / half_life.
    """
    k = math.log(2.0) / half_life
    carry = math.exp(-k)
    peak = _recursive_filter(doses, 1.0, carry)
    mean = peak * (-math.expm1(-k) / k)
    return peak, mean


def running_average(x: np.ndarray, window: float) -> np.ndarray:
    """Exponential running average with time constant `window` days (>= 1), starting at 0."""
    w = 1.0 / window
    return _recursive_filter(x, w, 1.0 - w)


def _recursive_filter(x: np.ndarray, gain: float, carry: float) -> np.ndarray:
    """y[t] = carry * y[t-1] + gain * x[t], from y[-1] = 0 (float64).

    The same operations in the same order as `scipy.signal.lfilter([gain], [1, -carry], x)`,
    hence the same values, without importing scipy.signal (0.6 s, which every command that
    reads a scenario file would pay).
    """
    y, state = np.empty(len(x)), 0.0
    for t, value in enumerate(np.asarray(x, dtype=float).tolist()):
        y[t] = state = state + gain * value
        state = carry * state
    return y

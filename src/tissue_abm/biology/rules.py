"""The biology as pure functions: every rate and probability of the model card.

Each function takes numbers and returns numbers, and works alike on Python floats (the agents
engine calls them once per agent) and on numpy arrays (whole-grid engines and the systemic
timeline call them once per day). Per-cell rules use only arithmetic, so a Python float stays a
fast Python float; the few that need `exp` go through `_exp`, which picks `math.exp` for floats.

Conventions: time in days, probabilities per day in [0, 1], damage in units of
`primary_damage_half`, SASP in units of one mature senescent cell's daily secretion, oxytocin in
units of the young endogenous level, drug exposure in dose units (mg/kg for rapamycin).
"""

from __future__ import annotations

import math
from typing import overload

import numpy as np

type Num = float | np.ndarray
"""A Python float (agents engine) or a numpy array (whole-grid and timeline code).

Each rule's `typing.overload` signatures tell which it returns: a float for floats, an array
when its first argument is an array (its other `Num` arguments may then be either).
"""

EMPTY, HEALTHY, SENESCENT = 0, 1, 2
"""Site states of the tissue lattice."""

NO_EVENT = 0
"""`first_event` result when none of the competing events happens."""

DAYS_PER_YEAR = 365.25


def _exp(x: Num) -> Num:
    """`exp` that keeps Python floats as floats (fast) and maps arrays elementwise."""
    return math.exp(x) if isinstance(x, float | int) else np.exp(x)


def _at_most_one(x: Num) -> Num:
    """min(x, 1), elementwise for arrays (compiled for scalars as a plain comparison)."""
    return np.minimum(x, 1.0)


# --- generic responses ------------------------------------------------------------------------


@overload
def hill(x: float, half: float, n: float) -> float: ...
@overload
def hill(x: np.ndarray, half: float, n: float) -> np.ndarray: ...
def hill(x: Num, half: float, n: float) -> Num:
    """Increasing Hill response (x/half)^n / (1 + (x/half)^n).

    Args:
        x: Signal, >= 0.
        half: Signal at half-maximal response, > 0.
        n: Hill coefficient, > 0.

    Returns:
        Response in [0, 1): 0 at x = 0, 1/2 at x = half, monotone increasing in x.
    """
    r = x / half
    # The usual coefficients without a power function (the same values: x**2 and x**1 are
    # exact products and copies in numpy and the C library alike), for the compiled kernel,
    # where a power is the costliest operation of a cell's day.
    if n == 2.0:
        r = r * r
    elif n != 1.0:
        r = r**n
    return r / (1.0 + r)


@overload
def hill_bound(x: float, half: float, n: float) -> float: ...
@overload
def hill_bound(x: np.ndarray, half: float, n: float) -> np.ndarray: ...
def hill_bound(x: Num, half: float, n: float) -> Num:
    """An upper bound of `hill` without a power: min(1, x/half)^m, m = 2, 1 or 0.

    The response is below r^n and below 1 (r = x/half); for r < 1, r^n <= r^m with m the
    largest of 2, 1, 0 not above n. Near zero signal, where most cells are, the bound is tight.
    """
    r = _at_most_one(x * (1.0 / half))  # a product: far cheaper than a division
    return r * r if n >= 2.0 else r if n >= 1.0 else np.maximum(r, 1.0)  # r <= 1: 1, as r


@overload
def age_decline(age: float, old_fraction: float, half_age: float, n: float = ...) -> float: ...
@overload
def age_decline(
    age: np.ndarray, old_fraction: float, half_age: float, n: float = ...
) -> np.ndarray: ...
def age_decline(age: Num, old_fraction: float, half_age: float, n: float = 4.0) -> Num:
    """Level relative to youth that falls with age towards `old_fraction`.

    Args:
        age: Age in days, >= 0.
        old_fraction: Level in very old age relative to young, in [0, 1].
        half_age: Age (days) at which the level is halfway between 1 and old_fraction.
        n: Steepness of the decline (Hill coefficient).

    Returns:
        1 at age 0, decreasing monotonically to old_fraction.
    """
    return old_fraction + (1.0 - old_fraction) * (1.0 - hill(age, half_age, n))


@overload
def first_event(u: float, probs: tuple[float, ...]) -> int: ...
@overload
def first_event(u: np.ndarray, probs: tuple[Num, ...]) -> np.ndarray: ...
def first_event(u: Num, probs: tuple) -> Num:
    """Which of several competing daily events happens, tried in order with one uniform draw.

    Event k (1-based) happens with probability p_k * prod_{j<k} (1 - p_j); 0 means none.
    The cumulative thresholds c_k = c_{k-1} + (1 - c_{k-1}) p_k rise with k, so counting the
    thresholds above u tells which band u fell in.

    Args:
        u: Uniform random number(s) in [0, 1).
        probs: Per-day probabilities (floats or arrays) in [0, 1], in order of precedence.

    Returns:
        The event number, 1..len(probs), or 0 (NO_EVENT); an int array for array input.
    """
    threshold = 0.0
    above = 0
    for p in probs:
        threshold = threshold + (1.0 - threshold) * p
        above = above + (u < threshold)
    return (len(probs) + 1 - above) % (len(probs) + 1)


@overload
def any_event_prob(probs: tuple[float, ...]) -> float: ...
@overload
def any_event_prob(probs: tuple[Num, ...]) -> Num: ...
def any_event_prob(probs: tuple) -> Num:
    """Probability that one of several competing events happens: 1 - prod(1 - p_k).

    It is the last threshold of `first_event`: with each p_k replaced by an upper bound, draws u
    at or above it give no event, so only the draws below need the probabilities themselves.
    """
    none = 1.0
    for p in probs:
        none = none * (1.0 - p)
    return 1.0 - none


@overload
def lognormal_multiplier(z: float, sigma: float) -> float: ...
@overload
def lognormal_multiplier(z: np.ndarray, sigma: float) -> np.ndarray: ...
def lognormal_multiplier(z: Num, sigma: float) -> Num:
    """Log-normal multiplier with mean 1 from standard normal draw(s) z."""
    return _exp(sigma * z - 0.5 * sigma * sigma)


# --- mTORC1, mTORC2 and autophagy -------------------------------------------------------------


@overload
def emax_inhibition(exposure: float, ic50: float, emax: float = ..., n: float = ...) -> float: ...
@overload
def emax_inhibition(
    exposure: np.ndarray, ic50: float, emax: float = ..., n: float = ...
) -> np.ndarray: ...
def emax_inhibition(exposure: Num, ic50: float, emax: float = 1.0, n: float = 1.0) -> Num:
    """Fractional inhibition Emax * C^n / (C^n + IC50^n), in [0, emax)."""
    return emax * hill(exposure, ic50, n)


@overload
def mtorc1_activity(age: float, slope_per_year: float, inhibition: float) -> float: ...
@overload
def mtorc1_activity(age: np.ndarray, slope_per_year: float, inhibition: Num) -> np.ndarray: ...
def mtorc1_activity(age: Num, slope_per_year: float, inhibition: Num) -> Num:
    """Systemic mTORC1 activity: 1 at birth, rising linearly with age, lowered by rapamycin.

    Args:
        age: Age in days.
        slope_per_year: Rise in activity per year of age.
        inhibition: Fractional mTORC1 inhibition by rapamycin, in [0, 1].
    """
    return (1.0 + slope_per_year * age / DAYS_PER_YEAR) * (1.0 - inhibition)


@overload
def autophagy(mtorc1: float, half: float, n: float) -> float: ...
@overload
def autophagy(mtorc1: np.ndarray, half: float, n: float) -> np.ndarray: ...
def autophagy(mtorc1: Num, half: float, n: float) -> Num:
    """Autophagy in [0, 1], falling as mTORC1 activity rises (1 at mTORC1 = 0)."""
    return 1.0 - hill(mtorc1, half, n)


@overload
def damage_drive(
    rate: float, age: float, slope_per_year: float, mtorc1_inhibition: float, share: float
) -> float: ...
@overload
def damage_drive(
    rate: float, age: np.ndarray, slope_per_year: float, mtorc1_inhibition: Num, share: float
) -> np.ndarray: ...
def damage_drive(
    rate: float, age: Num, slope_per_year: float, mtorc1_inhibition: Num, share: float
) -> Num:
    """Daily damage accrual of an average cell without SASP (damage units per day).

    The drive rises with age as mTORC1 does; rapamycin lowers only its mTORC1-dependent
    `share`, so even full inhibition leaves 1 - share of it (the effect is bounded).

    Args:
        rate: Accrual at birth, damage/day.
        age: Age in days.
        slope_per_year: Rise per year of age (as mTORC1's).
        mtorc1_inhibition: Fractional mTORC1 inhibition by rapamycin, in [0, 1].
        share: mTORC1-dependent share of the drive, in [0, 1].
    """
    return rate * (1.0 + slope_per_year * age / DAYS_PER_YEAR) * (1.0 - share * mtorc1_inhibition)


@overload
def damage_repair(rate: float, autophagy: float, share: float) -> float: ...
@overload
def damage_repair(rate: float, autophagy: np.ndarray, share: float) -> np.ndarray: ...
def damage_repair(rate: float, autophagy: Num, share: float) -> Num:
    """Fraction of damage repaired per day: an autophagy-dependent `share` and the rest.

    Args:
        rate: Repair at full autophagy, 1/day, in [0, 1].
        autophagy: Autophagy, in [0, 1].
        share: Autophagy-dependent share of repair, in [0, 1].
    """
    return rate * ((1.0 - share) + share * autophagy)


# --- damage and senescence --------------------------------------------------------------------


@overload
def damage_step(
    damage: float, drive: float, repair: float, sasp: float, sasp_gain: float
) -> float: ...
@overload
def damage_step(
    damage: np.ndarray, drive: Num, repair: Num, sasp: Num, sasp_gain: float
) -> np.ndarray: ...
def damage_step(damage: Num, drive: Num, repair: Num, sasp: Num, sasp_gain: float) -> Num:
    """Damage after one day: accrual scaled up by local SASP, first-order repair.

    Args:
        damage: Damage at the start of the day, >= 0.
        drive: Accrual per day without SASP (damage_rate * mTORC1 * the cell's multiplier).
        repair: Fraction repaired per day, in [0, 1] (damage_repair * autophagy).
        sasp: Effective local SASP seen by the cell, >= 0.
        sasp_gain: Relative increase of accrual per unit SASP.

    Returns:
        New damage, >= 0; increasing in damage, drive and sasp, decreasing in repair.
    """
    return damage * (1.0 - repair) + drive * (1.0 + sasp_gain * sasp)


@overload
def equilibrium_damage(drive: float, repair: float) -> float: ...
@overload
def equilibrium_damage(drive: np.ndarray, repair: Num) -> np.ndarray: ...
def equilibrium_damage(drive: Num, repair: Num) -> Num:
    """Steady state of `damage_step` without SASP: drive / repair (repair > 0)."""
    return drive / repair


@overload
def exposure_step(exposure: float, sasp: float, memory: float) -> float: ...
@overload
def exposure_step(exposure: np.ndarray, sasp: Num, memory: float) -> np.ndarray: ...
def exposure_step(exposure: Num, sasp: Num, memory: float) -> Num:
    """Running average of SASP exposure with time constant `memory` days (>= 1)."""
    return exposure + (sasp - exposure) / memory


@overload
def primary_senescence_prob(damage: float, max_rate: float, half: float, n: float) -> float: ...
@overload
def primary_senescence_prob(
    damage: np.ndarray, max_rate: float, half: float, n: float
) -> np.ndarray: ...
def primary_senescence_prob(damage: Num, max_rate: float, half: float, n: float) -> Num:
    """Daily probability of damage-induced senescence: a Hill function of damage."""
    return max_rate * hill(damage, half, n)


@overload
def paracrine_senescence_prob(exposure: float, max_rate: float, half: float, n: float) -> float: ...
@overload
def paracrine_senescence_prob(
    exposure: np.ndarray, max_rate: float, half: float, n: float
) -> np.ndarray: ...
def paracrine_senescence_prob(exposure: Num, max_rate: float, half: float, n: float) -> Num:
    """Daily probability of SASP-induced (bystander) senescence: Hill in sustained exposure."""
    return max_rate * hill(exposure, half, n)


# --- SASP -------------------------------------------------------------------------------------


@overload
def sasp_secretion(arrest_age: float, maturation: float, output: float) -> float: ...
@overload
def sasp_secretion(arrest_age: np.ndarray, maturation: float, output: float) -> np.ndarray: ...
def sasp_secretion(arrest_age: Num, maturation: float, output: float) -> Num:
    """Daily SASP secretion of a senescent cell `arrest_age` days after arrest.

    Args:
        arrest_age: Days since arrest, >= 0.
        maturation: Days to half-mature secretion, > 0.
        output: Secretion of a mature cell (1 untreated; lowered by rapamycin).
    """
    return output * hill(arrest_age, maturation, 1.0)


@overload
def sasp_output(rapa_inhibition: float, suppression: float) -> float: ...
@overload
def sasp_output(rapa_inhibition: np.ndarray, suppression: float) -> np.ndarray: ...
def sasp_output(rapa_inhibition: Num, suppression: float) -> Num:
    """Mature SASP output relative to untreated: 1 - suppression * mTORC1 inhibition, in [0, 1]."""
    return 1.0 - suppression * rapa_inhibition


def diffusion_substeps(diffusion: float, decay: float) -> int:
    """Sub-steps per day that keep the explicit 5-point scheme stable and positive."""
    return max(1, math.ceil((4.0 * diffusion + decay) / 0.9))


def diffusion_scheme(diffusion: float, decay: float) -> tuple[int, float, float, float]:
    """The explicit scheme's numbers: sub-steps n, step dt, weight kept, weight of inflow.

    One sub-step is f <- keep f + spread (sum of the 4 neighbours) + dt source, i.e.
    f + dt (D (sum of 4 - 4 f) - decay f + source).
    """
    n = diffusion_substeps(diffusion, decay)
    dt = 1.0 / n
    return n, dt, 1.0 - dt * (4.0 * diffusion + decay), dt * diffusion


def diffuse_decay(
    field: np.ndarray, source: np.ndarray, diffusion: float, decay: float, torus: bool
) -> np.ndarray:
    """Advance a 2-D field by one day in place: diffusion, first-order decay and a source.

    Explicit 5-point finite differences with enough sub-steps for stability; the source is
    released evenly over the day. Boundaries wrap on a torus, otherwise are closed (no flux).
    With decay 0 and no source the total is conserved; the field stays non-negative.

    Args:
        field: The field (updated in place), >= 0.
        source: Amount added per day at each site, >= 0, same shape.
        diffusion: Diffusion coefficient, sites^2/day.
        decay: Decay rate, 1/day.
        torus: Whether the lattice wraps around.

    Returns:
        `field`, for chaining.
    """
    n, dt, keep, spread = diffusion_scheme(diffusion, decay)
    released = dt * source
    padded = np.empty((field.shape[0] + 2, field.shape[1] + 2), dtype=field.dtype)
    inflow = np.empty_like(field)
    for _ in range(n):
        padded[1:-1, 1:-1] = field
        if torus:
            padded[0, 1:-1], padded[-1, 1:-1] = field[-1], field[0]
            padded[1:-1, 0], padded[1:-1, -1] = field[:, -1], field[:, 0]
        else:  # closed: a mirror of the edge, so nothing flows across it
            padded[0, 1:-1], padded[-1, 1:-1] = field[0], field[-1]
            padded[1:-1, 0], padded[1:-1, -1] = field[:, 0], field[:, -1]
        np.add(padded[:-2, 1:-1], padded[2:, 1:-1], out=inflow)
        inflow += padded[1:-1, :-2]
        inflow += padded[1:-1, 2:]
        inflow *= spread
        field *= keep
        field += inflow
        field += released
    return field


# --- immune system ----------------------------------------------------------------------------


@overload
def recruitment_prob(sasp: float, base: float, max_rate: float, half: float) -> float: ...
@overload
def recruitment_prob(sasp: np.ndarray, base: float, max_rate: float, half: float) -> np.ndarray: ...
def recruitment_prob(sasp: Num, base: float, max_rate: float, half: float) -> Num:
    """Daily probability that an immune-free site receives an immune cell, rising with SASP."""
    return base + max_rate * hill(sasp, half, 1.0)


def max_recruitment_prob(base: float, max_rate: float) -> float:
    """Upper bound of `recruitment_prob` over all SASP levels (the Hill term stays below 1)."""
    return base + max_rate


@overload
def recruitment_prob_bound(sasp: float, base: float, max_rate: float, half: float) -> float: ...
@overload
def recruitment_prob_bound(
    sasp: np.ndarray, base: float, max_rate: float, half: float
) -> np.ndarray: ...
def recruitment_prob_bound(sasp: Num, base: float, max_rate: float, half: float) -> Num:
    """An upper bound of `recruitment_prob` without a power: base + max_rate min(1, sasp/half).

    The Hill term x / (half + x) is at most x / half and at most 1. Near zero SASP, where most
    sites are, the bound is close to `base`: draws above it need not compute the probability.
    (sasp/half is computed as a product, which may round one unit in the last place lower:
    compare draws with the bound enlarged by a relative margin far above that.)
    """
    return base + max_rate * _at_most_one(sasp * (1.0 / half))


def phagocytic_clearance_prob(senescent_fraction: float, rate: float, half_burden: float) -> float:
    """Daily probability that phagocytes engulf a given senescent cell (perforin-independent).

    The phagocytes' capacity is shared among the senescent cells, so the total removal,
    senescent_fraction * this probability, saturates at rate * half_burden per site and day:
    Karin et al. 2019's saturating removal, rate * half / (half + burden) per cell.

    Args:
        senescent_fraction: Senescent cells per site at the start of the day, in [0, 1].
        rate: Per-cell probability while the burden is far below `half_burden`, in [0, 1].
        half_burden: Senescent fraction at which the per-cell probability is halved, > 0.
    """
    return rate * half_burden / (half_burden + senescent_fraction)


def departure_prob(lifetime: float) -> float:
    """Daily probability that a resident immune cell leaves: 1 / its mean residence time.

    Args:
        lifetime: Mean residence time, days, >= 1 (residence is geometric on 1, 2, ... days).
    """
    return 1.0 / lifetime


@overload
def immune_occupancy(recruitment: float, lifetime: float) -> float: ...
@overload
def immune_occupancy(recruitment: np.ndarray, lifetime: float) -> np.ndarray: ...
def immune_occupancy(recruitment: Num, lifetime: float) -> Num:
    """Steady-state probability that a site holds an immune cell.

    A free site fills with daily probability `recruitment`; a resident stays `lifetime` days on
    average, so the site is occupied a fraction r L / (1 + r L) of the time.
    """
    busy = recruitment * lifetime
    return busy / (1.0 + busy)


@overload
def immune_competence(
    age: float,
    kill: float,
    old_fraction: float,
    decline_age: float,
    mtorc1_inhibition: float,
    mtorc2_inhibition: float,
    boost: float,
    mtorc2_loss: float,
    ot_response: float,
    ot_gain: float,
) -> float: ...
@overload
def immune_competence(
    age: np.ndarray,
    kill: float,
    old_fraction: float,
    decline_age: float,
    mtorc1_inhibition: Num,
    mtorc2_inhibition: Num,
    boost: float,
    mtorc2_loss: float,
    ot_response: Num,
    ot_gain: float,
) -> np.ndarray: ...
def immune_competence(
    age: Num,
    kill: float,
    old_fraction: float,
    decline_age: float,
    mtorc1_inhibition: Num,
    mtorc2_inhibition: Num,
    boost: float,
    mtorc2_loss: float,
    ot_response: Num,
    ot_gain: float,
) -> Num:
    """Daily probability that an immune cell kills an adjacent senescent cell.

    Competence falls with age; mTORC1 inhibition raises it (low-dose rapamycin), mTORC2
    inhibition (chronic high dose) lowers it, and a weak oxytocin-MAPK response lowers it.
    A systemic rule, called on timeline arrays (it clips with numpy).

    Returns:
        Kill probability in [0, 1].
    """
    level = (
        kill
        * age_decline(age, old_fraction, decline_age)
        * (1.0 + boost * mtorc1_inhibition)
        * (1.0 - mtorc2_loss * mtorc2_inhibition)
        * (1.0 - ot_gain * (1.0 - ot_response))
    )
    return np.clip(level, 0.0, 1.0)


# --- oxytocin, regeneration and function ------------------------------------------------------


@overload
def oxytocin_response(level: float, half: float, n: float) -> float: ...
@overload
def oxytocin_response(level: np.ndarray, half: float, n: float) -> np.ndarray: ...
def oxytocin_response(level: Num, half: float, n: float) -> Num:
    """Oxytocin-MAPK response in [0, 1): a Hill function of the oxytocin level."""
    return hill(level, half, n)


@overload
def dependent_fraction(response: float, gain: float) -> float: ...
@overload
def dependent_fraction(response: np.ndarray, gain: float) -> np.ndarray: ...
def dependent_fraction(response: Num, gain: float) -> Num:
    """Capacity when a fraction `gain` of it needs a response in [0, 1]: 1 - gain (1 - response)."""
    return 1.0 - gain * (1.0 - response)


@overload
def inflammation_factor(ot_response: float, damping: float) -> float: ...
@overload
def inflammation_factor(ot_response: np.ndarray, damping: float) -> np.ndarray: ...
def inflammation_factor(ot_response: Num, damping: float) -> Num:
    """Fraction of the SASP's inflammatory effect left after oxytocin-MAPK damping."""
    return 1.0 - damping * ot_response


@overload
def tissue_function(
    healthy_fraction: float, effective_sasp: float, cost: float, half: float
) -> float: ...
@overload
def tissue_function(
    healthy_fraction: np.ndarray, effective_sasp: Num, cost: float, half: float
) -> np.ndarray: ...
@overload  # `readouts.readout_row`'s aggregates: floats for a day, arrays for many days
def tissue_function(
    healthy_fraction: Num, effective_sasp: Num, cost: float, half: float
) -> Num: ...
def tissue_function(healthy_fraction: Num, effective_sasp: Num, cost: float, half: float) -> Num:
    """Tissue function in [0, 1]: the healthy fraction, of which inflammation costs a share.

    The share lost is cost * Hill(effective SASP; half, 1), so it saturates at `cost`.
    """
    return healthy_fraction * (1.0 - cost * hill(effective_sasp, half, 1.0))

"""What both array-engine kernels agree on: kinds of intent, their slots, neighbour order, rates.

An intent is one cell's decision for the day: a kind, the site that acts and the target site
whose tissue or immune slot it claims. Every site has at most one intent of its tissue cell and
one of its immune slot (an immune cell's, or a recruitment into the empty slot). The claim with
the highest random priority (`draws.bits` of stream PRIORITY for `claim_id`) wins its slot:
the same distribution as applying all intents in a uniformly random order, first claim wins.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from tissue_abm.biology import rules
from tissue_abm.biology.params import Parameters
from tissue_abm.biology.systemic import Day
from tissue_abm.engines.array import draws

KINDS = (
    "healthy_deaths",
    "new_primary",
    "new_paracrine",
    "new_replicative",
    "divisions",
    "senescent_deaths",
    "cleared_senolytic",
    "cleared_phagocytic",
    "cleared_immune",
    "immune_departed",
    "",
    "immune_recruited",
)
"""Kinds of intent (1-based codes below; 0 = none) and the readout tally each counts."""
(
    DIE,
    PRIMARY,
    PARACRINE,
    REPLICATIVE,
    DIVIDE,
    SEN_DEATH,
    SENOLYSIS,
    PHAGOCYTOSIS,
    KILL,
    DEPART,
    MOVE,
    RECRUIT,
) = range(1, len(KINDS) + 1)
EVENTS = len(KINDS) + 1
"""Length of a tally indexed by kind code (index 0, no intent, stays 0)."""

ON_IMMUNE_SLOT = np.isin(np.arange(EVENTS), (DEPART, MOVE, RECRUIT))
"""Kinds that claim the immune slot of their target site (all others claim its tissue slot)."""
BY_IMMUNE = np.isin(np.arange(EVENTS), (DEPART, KILL, MOVE, RECRUIT))
"""Kinds decided by a site's immune slot (all others by its tissue cell)."""

OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
"""The eight Moore neighbours (dx, dy), in the order in which choices among them are ranked."""


def claim_id(source, by_immune):
    """Identity of a claim, unique per day: 2 * acting site + 1 if the immune slot decided it."""
    return 2 * source + by_immune


def tally(events: np.ndarray) -> dict[str, np.ndarray]:
    """Readout event counts over days from tallies indexed by kind code, shape (days, EVENTS)."""
    return {name: events[:, code] for code, name in enumerate(KINDS, start=1) if name}


MARGIN = 1e-9
"""Relative margin kept from a band edge, far above float64 rounding (~1e-16)."""


class Rates(NamedTuple):
    """The numbers one day's decisions use, for cells of this day (all floats)."""

    inflammation: float
    exposure_memory: float
    damage_drive: float
    damage_repair: float
    damage_sasp_gain: float
    healthy_death: float
    primary_max: float
    primary_half: float
    primary_hill: float
    paracrine_max: float
    paracrine_half: float
    paracrine_hill: float
    division: float
    replicative_limit: float
    event_bound: float
    division_from: float
    division_to: float
    senescent_death: float
    senolysis: float
    phagocytic_rate: float
    phagocytic_half: float
    immune_competence: float
    immune_chemotaxis: float
    recruit_base: float
    recruit_max: float
    recruit_half: float
    recruit_bound: float
    sasp_maturation: float
    sasp_output: float
    damage_heterogeneity: float
    residence_log: float


RATES = len(Rates._fields)
"""Number of rates a day has (columns of `rates_table`)."""


def rates_table(p: Parameters, days: Day) -> np.ndarray:
    """`day_rates` of many days, one row each in `Rates` order: shape (days, RATES), float64.

    Args:
        p: Model parameters.
        days: A `Day` of arrays over the days (`systemic.day_columns`).
    """
    return np.column_stack(np.broadcast_arrays(*map(np.asarray, day_rates(p, days))))


def day_rates(p: Parameters, day: Day) -> Rates:
    """The rates of `day` under parameters `p`, with the bounds that let draws skip cells.

    Given a `Day` of arrays over days, the rates that vary are arrays over the same days.
    """
    return Rates(
        inflammation=day.inflammation,
        exposure_memory=p.exposure_memory,
        damage_drive=day.damage_drive,
        damage_repair=day.damage_repair,
        damage_sasp_gain=p.damage_sasp_gain,
        healthy_death=p.healthy_death_rate,
        primary_max=p.primary_max_rate,
        primary_half=p.primary_damage_half,
        primary_hill=p.primary_hill,
        paracrine_max=p.paracrine_max_rate,
        paracrine_half=p.paracrine_half_sasp,
        paracrine_hill=p.paracrine_hill,
        division=day.division_prob,
        replicative_limit=float(p.replicative_limit),
        event_bound=rules.any_event_prob(
            (p.healthy_death_rate, p.primary_max_rate, p.paracrine_max_rate, day.division_prob)
        ),
        # Draws in [division_from, division_to) divide whatever the senescence probabilities:
        # above the chance of death or senescence at their highest, below the chance of any
        # event at their lowest (0). The margins cover rounding in `rules.first_event`.
        division_from=rules.any_event_prob(
            (p.healthy_death_rate, p.primary_max_rate, p.paracrine_max_rate)
        )
        * (1.0 + MARGIN),
        division_to=rules.any_event_prob((p.healthy_death_rate, day.division_prob))
        * (1.0 - MARGIN),
        senescent_death=p.senescent_death_rate,
        senolysis=day.senolytic_fraction,
        phagocytic_rate=p.phagocytic_rate,
        phagocytic_half=p.phagocytic_half_burden,
        immune_competence=day.immune_competence,
        immune_chemotaxis=p.immune_chemotaxis,
        recruit_base=p.immune_recruit_base,
        recruit_max=p.immune_recruit_max,
        recruit_half=p.immune_recruit_half_sasp,
        recruit_bound=rules.max_recruitment_prob(p.immune_recruit_base, p.immune_recruit_max),
        sasp_maturation=p.sasp_maturation,
        sasp_output=day.sasp_output,
        damage_heterogeneity=p.damage_heterogeneity,
        residence_log=draws.log_stay_prob(rules.departure_prob(p.immune_lifetime)),
    )

"""The organism-level (systemic) state of every simulated day, computed once per run.

Age, drug exposure, oxytocin level, mTORC1, autophagy and immune competence do not depend on the
tissue's spatial state, so they are a deterministic function of (parameters, therapy, start age).
Both engines read one row of this timeline per day; all rates come from `rules`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from tissue_abm.biology import rules
from tissue_abm.biology.params import Parameters
from tissue_abm.biology.therapy import (
    Therapy,
    bolus_of_exposure,
    dose_series,
    one_compartment,
    running_average,
)


class Day(NamedTuple):
    """Systemic state and derived per-day rates for one simulated day."""

    day: int
    """Days since the start of the run."""
    age: float
    """Organism age, days."""
    rapamycin_dose: float
    """Rapamycin given this day, mg/kg."""
    rapamycin_exposure: float
    """Mean rapamycin concentration over the day, mg/kg."""
    rapamycin_chronic: float
    """Running average of rapamycin exposure (mtorc2_window), mg/kg."""
    oxytocin_level: float
    """Endogenous oxytocin plus the day-mean level of today's dose, young levels."""
    senolytic_fraction: float
    """Probability that today's senolytic dose kills each senescent cell (0: no dose)."""
    mtorc1_inhibition: float
    """Fractional mTORC1 inhibition by rapamycin, [0, 1]."""
    mtorc2_inhibition: float
    """Fractional mTORC2 inhibition by chronic rapamycin, [0, 1]."""
    mtorc1: float
    """Systemic mTORC1 activity (1 at birth, untreated)."""
    autophagy: float
    """Autophagy, [0, 1]."""
    ot_response: float
    """Oxytocin-MAPK response, [0, 1)."""
    immune_competence: float
    """Daily kill probability of an immune cell next to a senescent cell, [0, 1]."""
    inflammation: float
    """Fraction of the SASP's inflammatory effect left after oxytocin damping, [0, 1]."""
    division_prob: float
    """Daily division probability of a healthy cell next to a vacancy, [0, 1]."""
    damage_drive: float
    """Damage accrued per day by an average cell without SASP (`rules.damage_drive`)."""
    damage_repair: float
    """Fraction of damage repaired per day, [0, 1]."""
    sasp_output: float
    """Daily SASP secretion of a mature senescent cell today (lowered by rapamycin), SASP/day."""


def systemic_timeline(
    params: Parameters, therapy: Therapy, start_age: int, days: int
) -> pd.DataFrame:
    """The systemic state for days 0..days (one row each), columns named as the `Day` fields.

    Args:
        params: Model parameters.
        therapy: Drug regimens.
        start_age: Organism age at day 0, days.
        days: Number of simulated days after day 0.
    """
    p = params
    day = np.arange(days + 1)
    age = (start_age + day).astype(float)

    rapa_dose = dose_series(therapy.rapamycin, age)
    _, rapa_mean = one_compartment(rapa_dose, p.rapa_half_life)
    rapa_chronic = running_average(rapa_mean, p.mtorc2_window)
    # Oxytocin doses are exposures (young-level days); its response follows the day-mean level.
    ot_dose = dose_series(therapy.oxytocin, age)
    _, ot_mean = one_compartment(bolus_of_exposure(ot_dose, p.ot_half_life), p.ot_half_life)
    ot_level = rules.age_decline(age, p.ot_old_fraction, p.ot_decline_age) + ot_mean
    senolytic = np.zeros(len(age))
    if therapy.senolytic is not None:
        senolytic[therapy.senolytic.dose_days(age)] = therapy.senolytic.fraction

    inh1 = rules.emax_inhibition(rapa_mean, p.rapa_ic50, p.rapa_emax)
    inh2 = rules.emax_inhibition(rapa_chronic, p.mtorc2_ic50, 1.0, p.mtorc2_hill)
    mtorc1 = rules.mtorc1_activity(age, p.mtorc1_age_slope, inh1)
    auto = rules.autophagy(mtorc1, p.autophagy_half_mtorc1, p.autophagy_hill)
    ot_resp = rules.oxytocin_response(ot_level, p.ot_half_level, p.ot_hill)
    competence = rules.immune_competence(
        age,
        p.immune_kill,
        p.immune_old_fraction,
        p.immune_decline_age,
        inh1,
        inh2,
        p.rapa_immune_boost,
        p.mtorc2_immune_loss,
        ot_resp,
        p.ot_immune_gain,
    )

    return pd.DataFrame(
        {
            "day": day,
            "age": age,
            "rapamycin_dose": rapa_dose,
            "rapamycin_exposure": rapa_mean,
            "rapamycin_chronic": rapa_chronic,
            "oxytocin_level": ot_level,
            "senolytic_fraction": senolytic,
            "mtorc1_inhibition": inh1,
            "mtorc2_inhibition": inh2,
            "mtorc1": mtorc1,
            "autophagy": auto,
            "ot_response": ot_resp,
            "immune_competence": competence,
            "inflammation": rules.inflammation_factor(ot_resp, p.ot_sasp_damping),
            "division_prob": p.regeneration_rate
            * rules.dependent_fraction(ot_resp, p.ot_regeneration_gain),
            "damage_drive": rules.damage_drive(
                p.damage_rate, age, p.mtorc1_age_slope, inh1, p.rapa_damage_share
            ),
            "damage_repair": rules.damage_repair(p.damage_repair, auto, p.autophagy_repair_share),
            "sasp_output": p.sasp_secretion * rules.sasp_output(inh1, p.rapa_sasp_suppression),
        },
        columns=list(Day._fields),
    )


def days_of(timeline: pd.DataFrame) -> list[Day]:
    """The timeline as a list of `Day` records with plain Python numbers (fast attribute access)."""
    return [
        Day(int(row[0]), *map(float, row[1:]))
        for row in timeline.itertuples(index=False, name=None)
    ]


def day_columns(timeline: pd.DataFrame) -> Day:
    """The timeline as one `Day` whose fields are numpy arrays over its days (whole columns)."""
    return Day._make(timeline[name].to_numpy() for name in Day._fields)

"""The daily readouts: their names, units and meaning, and the one function that computes them.

Every engine tallies the same aggregates (counts, event tallies, field and damage sums) and calls
`readout_row`, so the columns are identical whichever engine ran.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from tissue_abm.biology import rules
from tissue_abm.biology.params import Parameters
from tissue_abm.biology.rules import Num
from tissue_abm.biology.systemic import Day

EVENTS: dict[str, str] = {
    "new_primary": "healthy cells turned senescent by damage today (count)",
    "new_paracrine": "healthy cells turned senescent by SASP exposure today (count)",
    "new_replicative": "healthy cells arrested at the replicative limit today (count)",
    "cleared_immune": "senescent cells killed by immune cells (perforin route) today (count)",
    "cleared_phagocytic": "senescent cells engulfed by phagocytes today (count)",
    "cleared_senolytic": "senescent cells killed by the senolytic today (count)",
    "senescent_deaths": "senescent cells that died without help today (count)",
    "healthy_deaths": "healthy cells lost to turnover today (count)",
    "divisions": "healthy cells born into vacancies today (count)",
    "immune_recruited": "immune cells that entered the tissue today (count)",
    "immune_departed": "immune cells that left or died today (count)",
}
"""Event tallies for one day; engines count each as it is applied."""

READOUTS: dict[str, str] = {
    "day": "days since the start of the run",
    "age": "organism age (days)",
    "healthy": "healthy cells (count)",
    "senescent": "senescent cells (count)",
    "empty": "empty sites (count)",
    "immune": "immune cells (count)",
    "healthy_fraction": "healthy cells / sites",
    "senescent_fraction": "senescent cells / sites",
    "empty_fraction": "empty sites / sites",
    **EVENTS,
    "mean_sasp": "mean SASP field over the lattice (SASP units)",
    "mean_damage": "mean damage of healthy cells (damage units; NaN without healthy cells)",
    "mtorc1": "systemic mTORC1 activity (1 = newborn, untreated)",
    "autophagy": "autophagy, 0-1",
    "immune_competence": "daily kill probability of an immune cell next to a senescent cell",
    "division_prob": "daily division probability next to a vacancy (regenerative capacity)",
    "rapamycin_exposure": "mean rapamycin concentration over the day (mg/kg)",
    "rapamycin_chronic": "running average of rapamycin exposure driving mTORC2 loss (mg/kg)",
    "mtorc2_inhibition": "fractional mTORC2 inhibition by chronic rapamycin, 0-1",
    "oxytocin_level": "endogenous oxytocin plus the day-mean level of today's dose (young levels)",
    "senolytic_fraction": "share of the senescent cells a senolytic dose removes today (0: none)",
    "tissue_function": "healthy fraction less the share lost to inflammation, 0-1",
}
"""Column name -> meaning (with unit) of the daily readout table."""


def readout_row(
    day: Day,
    params: Parameters,
    sites: int,
    healthy: Num,
    senescent: Num,
    immune: Num,
    events: Mapping[str, Num],
    sasp_sum: Num,
    damage_sum: Num,
) -> dict[str, Num]:
    """One row of the daily readout table, from the aggregates an engine tallies.

    Or many rows at once: given a `Day` of arrays (`systemic.day_columns`) and arrays of the
    aggregates over the same days, it returns the table's columns.

    Args:
        day: The systemic state of the day.
        params: Model parameters.
        sites: Number of lattice sites.
        healthy: Healthy cells at the end of the day.
        senescent: Senescent cells at the end of the day.
        immune: Immune cells at the end of the day.
        events: Today's event tallies, keys from `EVENTS` (missing keys count 0).
        sasp_sum: Sum of the SASP field over the lattice.
        damage_sum: Sum of damage over healthy cells.
    """
    mean_sasp = sasp_sum / sites
    healthy_fraction = healthy / sites
    return {
        "day": day.day,
        "age": day.age,
        "healthy": healthy,
        "senescent": senescent,
        "empty": sites - healthy - senescent,
        "immune": immune,
        "healthy_fraction": healthy_fraction,
        "senescent_fraction": senescent / sites,
        "empty_fraction": (sites - healthy - senescent) / sites,
        **{name: events.get(name, 0) for name in EVENTS},
        "mean_sasp": mean_sasp,
        "mean_damage": damage_sum / np.where(healthy > 0, healthy, np.nan),
        "mtorc1": day.mtorc1,
        "autophagy": day.autophagy,
        "immune_competence": day.immune_competence,
        "division_prob": day.division_prob,
        "rapamycin_exposure": day.rapamycin_exposure,
        "rapamycin_chronic": day.rapamycin_chronic,
        "mtorc2_inhibition": day.mtorc2_inhibition,
        "oxytocin_level": day.oxytocin_level,
        "senolytic_fraction": day.senolytic_fraction,
        "tissue_function": rules.tissue_function(
            healthy_fraction,
            mean_sasp * day.inflammation,
            params.inflammation_cost,
            params.inflammation_half_sasp,
        ),
    }


def kept_days(table: pd.DataFrame, every: int) -> pd.DataFrame:
    """The readouts of every `every`-th day (and the last), each summing the days it stands for.

    A kept row stands for the days since the previous kept row: its event tallies are their
    sums and its `senolytic_fraction` the share removed by all their doses, 1 - prod(1 - f);
    the other columns are the kept day's own. With every = 1 the table is unchanged.

    Args:
        table: Daily readouts of one run (columns `READOUTS`, one row per day from day 0).
        every: Keep day 0, every `every`-th day and the last day, >= 1.
    """
    day = table["day"].to_numpy()
    kept = (day % every == 0) | (day == day.max())
    if kept.all():
        return table.reset_index(drop=True)
    window = np.cumsum(kept) - kept  # a row's number: kept rows before it (its kept row's)
    sums = table[list(EVENTS)].groupby(window).sum()
    kept_rows = table[kept].reset_index(drop=True)
    kept_rows[list(EVENTS)] = sums.to_numpy()
    left = (1.0 - table["senolytic_fraction"]).groupby(window).prod().to_numpy()
    kept_rows["senolytic_fraction"] = 1.0 - left
    return kept_rows


SITE_STATES = ("empty", "healthy", "senescent")
"""Names of the tissue states, indexed by `rules.EMPTY`, `rules.HEALTHY`, `rules.SENESCENT`."""

SNAPSHOT: dict[str, str] = {
    "age": "organism age (days)",
    "x": "first grid coordinate of the site (0 .. size-1)",
    "y": "second grid coordinate of the site (0 .. size-1)",
    "state": "tissue state of the site: empty, healthy or senescent (categorical)",
    "immune": "whether an immune cell is on the site",
    "sasp": "SASP field at the site (SASP units)",
}
"""Column name -> meaning of a whole-grid snapshot (one row per site)."""


def grid_snapshot(
    age: float, tissue: np.ndarray, immune: np.ndarray, sasp: np.ndarray
) -> pd.DataFrame:
    """A snapshot of the whole grid, one row per site, columns as in `SNAPSHOT`.

    Args:
        age: Organism age (days).
        tissue: Site states (`rules.EMPTY`, `HEALTHY`, `SENESCENT`), shape (size, size).
        immune: Immune presence per site, same shape.
        sasp: SASP field, same shape.
    """
    x, y = np.indices(tissue.shape)
    return pd.DataFrame(
        {
            "age": np.full(tissue.size, age, dtype=float),
            "x": x.ravel().astype(np.int32),
            "y": y.ravel().astype(np.int32),
            "state": pd.Categorical.from_codes(tissue.ravel().astype(np.int8), SITE_STATES),
            "immune": immune.ravel().astype(bool),
            "sasp": sasp.ravel().astype(np.float32),
        }
    )

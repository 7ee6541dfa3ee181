"""What both engines share: the systemic timeline, the organism's age and the readout table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from tissue_abm import rules
from tissue_abm.params import Parameters
from tissue_abm.systemic import Day, days_of, systemic_timeline
from tissue_abm.therapy import Therapy

INITIAL_ARREST_AGE_MAX = 30
"""Initial senescent cells were arrested 0..29 days before the start (assumed: a recent cohort)."""


class TissueBase:
    """Base of `TissueModel` (agents) and `ArrayTissue` (arrays).

    Subclasses set `params`, `therapy`, `start_age` and `time` (days simulated), and append one
    `readouts.readout_row` per day to `_records`.
    """

    params: Parameters
    therapy: Therapy
    start_age: int
    time: float
    torus: bool
    rng: np.random.Generator
    _records: list[dict[str, float]]

    @staticmethod
    def _check_run(size: int, start_age: int, days: int) -> None:
        """Refuse a lattice below 3 x 3, a negative start age or a negative number of days."""
        if size < 3 or start_age < 0 or days < 0:
            raise ValueError(f"need size >= 3, start_age >= 0 and days >= 0; got size={size}, "
                             f"start_age={start_age}, days={days}")

    def _extend_timeline(self, days: int) -> None:
        """(Re)compute the systemic timeline for days 0..days; earlier days do not change."""
        self.timeline = systemic_timeline(self.params, self.therapy, self.start_age, days)
        self._days = days_of(self.timeline)

    def _day(self, t: int) -> Day:
        """The systemic state of day `t`, extending the timeline when a run goes on past it."""
        if t >= len(self._days):
            self._extend_timeline(2 * t)
        return self._days[t]

    def _recruitment_prob(self, sasp: np.ndarray) -> np.ndarray:
        """Daily probability that an immune-free site with SASP `sasp` recruits an immune cell."""
        p = self.params
        return rules.recruitment_prob(sasp, p.immune_recruit_base, p.immune_recruit_max,
                                      p.immune_recruit_half_sasp)

    def _settle_field(self, field: np.ndarray, source: np.ndarray) -> None:
        """Run the SASP field of the initial senescent cells to its steady state, in place."""
        p = self.params
        for _ in range(math.ceil(10.0 / p.sasp_decay)):  # ~e^-10 of the initial transient left
            rules.diffuse_decay(field, source, p.sasp_diffusion, p.sasp_decay, self.torus)

    def _initial_immune_prob(self, sasp: np.ndarray) -> np.ndarray:
        """Chance that a site starts with an immune cell: recruitment/departure balance."""
        return rules.immune_occupancy(self._recruitment_prob(sasp), self.params.immune_lifetime)

    def _lifetimes(self, count: int | None = None) -> np.ndarray | int:
        """Geometric residence time(s) with mean `immune_lifetime` days (>= 1); one if no count."""
        return self.rng.geometric(rules.departure_prob(self.params.immune_lifetime), count)

    @property
    def readouts(self) -> pd.DataFrame:
        """Daily readouts so far (one row per day, day 0 = initial state)."""
        return pd.DataFrame.from_records(self._records)

    @property
    def age(self) -> float:
        """Organism age now, days."""
        return self.start_age + self.time

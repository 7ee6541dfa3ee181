"""What both engines share: timeline, age, readouts and experimental perturbations."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from tissue_abm.biology import rules
from tissue_abm.biology.params import Parameters
from tissue_abm.biology.perturbation import (
    Perturbation,
    check_perturbations,
    choose_sites,
    made_state,
    perturbation_rng,
    perturbation_seed,
)
from tissue_abm.biology.readouts import grid_snapshot
from tissue_abm.biology.systemic import Day, days_of, systemic_timeline
from tissue_abm.biology.therapy import Therapy

INITIAL_ARREST_AGE_MAX = 30
"""Initial senescent cells were arrested 0..29 days before the start (assumed: a recent cohort)."""


class TissueBase:
    """Base of `TissueModel` (agents) and `ArrayTissue` (arrays).

    Subclasses set `params`, `therapy`, `start_age` and `time` (days simulated), give the
    `readouts` table (rows from `readouts.readout_row`), call `_perturb` at the start of each
    step and make cells with `_make_senescent` and `_make_healthy`.
    """

    params: Parameters
    therapy: Therapy
    start_age: int
    time: float
    torus: bool
    rng: np.random.Generator
    perturbations: tuple[Perturbation, ...]
    _perturbation_seed: int

    def _set_up_run(
        self,
        size: int,
        start_age: int,
        days: int,
        perturbations: Sequence[Perturbation],
        rng: int | np.random.Generator | None,
    ) -> None:
        """Check the run's arguments; keep the perturbations and the seed of their draws.

        Must be called before `rng` is used (the seed of a Generator is drawn from a copy of
        it; see `perturbation.perturbation_seed`).

        Raises:
            ValueError: For a lattice below 3 x 3, a negative start age or number of days, or a
                perturbation the run cannot apply (`perturbation.check_perturbations`).
        """
        if size < 3 or start_age < 0 or days < 0:
            raise ValueError(
                f"need size >= 3, start_age >= 0 and days >= 0; got size={size}, "
                f"start_age={start_age}, days={days}"
            )
        check_perturbations(perturbations, size, start_age, start_age + days)
        self.perturbations = tuple(perturbations)
        self._perturbation_seed = perturbation_seed(rng)

    def _perturb(self, age: int, tissue: np.ndarray) -> None:
        """Apply the perturbations due at `age`, in list order (the step leaving `age` starts).

        The sites come from `perturbation.choose_sites` with the perturbation's own generator;
        a transplant of healthy cells then draws their damage multipliers from it.

        Args:
            age: The age the starting step leaves, days.
            tissue: The engine's site states, shape (L, L) (read before each perturbation).
        """
        for index, perturbation in enumerate(self.perturbations):
            if perturbation.age != age:
                continue
            rng = perturbation_rng(self._perturbation_seed, index)
            sites = choose_sites(perturbation, tissue, rng)
            if made_state(perturbation) == rules.SENESCENT:
                self._make_senescent(sites)
            else:
                self._make_healthy(
                    sites,
                    rules.lognormal_multiplier(
                        rng.standard_normal(sites.size), self.params.damage_heterogeneity
                    ),
                )

    def _make_senescent(self, sites: np.ndarray) -> None:
        """Put a new senescent cell on each of `sites`, replacing what was there.

        The new cells start at arrest age 0; immune cells on the sites stay.

        Args:
            sites: Flat site indices (row-major, x * L + y), each at most once.
        """
        raise NotImplementedError

    def _make_healthy(self, sites: np.ndarray, damage_scale: np.ndarray) -> None:
        """Put a young healthy cell on each of `sites`, replacing what was there.

        The new cells have damage 0, no divisions and no SASP exposure yet; immune cells on the
        sites stay.

        Args:
            sites: Flat site indices (row-major, x * L + y), each at most once.
            damage_scale: Damage-rate multiplier of each new cell (> 0, mean 1).
        """
        raise NotImplementedError

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
        return rules.recruitment_prob(
            sasp, p.immune_recruit_base, p.immune_recruit_max, p.immune_recruit_half_sasp
        )

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
    def age(self) -> float:
        """Organism age now, days."""
        return self.start_age + self.time

    def _fields(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The site states, immune presence and SASP field, each shape (L, L) (not copies)."""
        raise NotImplementedError

    def snapshot(self) -> pd.DataFrame:
        """The whole grid now, one row per site (see `readouts.SNAPSHOT`)."""
        return grid_snapshot(self.age, *self._fields())

    def site_states(self) -> np.ndarray:
        """Site states now (EMPTY/HEALTHY/SENESCENT), int8, shape (L, L); a copy."""
        return self._fields()[0].copy()

    def immune_sites(self) -> np.ndarray:
        """Whether each site holds an immune cell now, bool, shape (L, L); a copy."""
        return self._fields()[1].copy()

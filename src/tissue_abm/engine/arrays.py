"""`ArrayTissue`: the model card's processes on whole-grid numpy arrays (the array engine).

The same day as `tissue_abm.model.TissueModel`, with the same rules (`tissue_abm.rules`), the
same update scheme and conflict rule, and the same readouts — only the bookkeeping differs: a
cell is a site index, its state lives in arrays, and the daily decisions of all cells are made
at once.

1. *Decide* from the start-of-day state. Healthy cells accrue damage and exposure and draw one
   competing event (death, primary, paracrine senescence, division into a random vacant
   neighbour or a replicative arrest); senescent cells age and draw death or senolysis; immune
   cells depart, attack a random senescent cell on or next to their site, or move to a free
   neighbour (up the SASP gradient, ties at random, or at random); immune-free sites draw
   recruits. Each decision is an intent on one slot (the tissue or the immune slot of a site).
2. *Apply* in a uniformly random priority: the first intent on a slot wins.
3. *SASP field*, 4. *readouts*: as in the agents engine.

Arrays are indexed by flat site number (row-major, `x * size + y`); `neighbours[i]` holds the
eight Moore neighbours of site i (-1 beyond a closed boundary).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tissue_abm import rules
from tissue_abm.params import Parameters
from tissue_abm.readouts import grid_snapshot, readout_row
from tissue_abm.rules import EMPTY, HEALTHY, SENESCENT
from tissue_abm.systemic import Day
from tissue_abm.therapy import Therapy
from tissue_abm.tissue import INITIAL_ARREST_AGE_MAX, TissueBase

# Kinds of intent, and the readout tally each counts (moves count nothing).
_KINDS = ("healthy_deaths", "new_primary", "new_paracrine", "new_replicative", "divisions",
          "senescent_deaths", "cleared_senolytic", "cleared_immune", "immune_departed", "",
          "immune_recruited")
(_DIE, _PRIMARY, _PARACRINE, _REPLICATIVE, _DIVIDE, _SEN_DEATH, _SENOLYSIS, _KILL, _DEPART,
 _MOVE, _RECRUIT) = range(len(_KINDS))

_ON_IMMUNE_SLOT = np.isin(np.arange(len(_KINDS)), (_DEPART, _MOVE, _RECRUIT))
"""Kinds that claim the immune slot of their target site (all others claim its tissue slot)."""

Intents = list[tuple[int, np.ndarray, np.ndarray]]
"""Groups of intents of one kind: (kind, acting sites, target sites)."""

def moore_neighbours(size: int, torus: bool) -> np.ndarray:
    """Flat indices of the 8 Moore neighbours of every site, shape (size², 8); -1 = none."""
    x, y = np.divmod(np.arange(size * size), size)
    columns = []
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            if dx == dy == 0:
                continue
            nx, ny = x + dx, y + dy
            if torus:
                columns.append((nx % size) * size + ny % size)
            else:
                inside = (nx >= 0) & (nx < size) & (ny >= 0) & (ny < size)
                columns.append(np.where(inside, nx * size + ny, -1))
    return np.stack(columns, axis=1).astype(np.int64)


def pick(mask: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Column of a uniformly chosen True in each row of `mask` (each row must have one).

    Args:
        mask: Boolean array, shape (rows, columns).
        u: Uniform draws in [0, 1), one per row.
    """
    count = mask.sum(axis=1)
    rank = np.minimum((u * count).astype(np.int64), count - 1)
    return np.argmax(mask.cumsum(axis=1) > rank[:, None], axis=1)


class ArrayTissue(TissueBase):
    """An L x L tissue patch held in arrays; the same interface as `TissueModel` for runs.

    Attributes:
        params: Biological parameters.
        therapy: Drug regimens.
        start_age: Organism age at day 0, days.
        days: Planned length of the run, days; `running` turns False when it is reached.
        time: Days simulated so far.
        tissue: Site states (EMPTY/HEALTHY/SENESCENT), int8, shape (size, size).
        immune: Immune cell present, bool, shape (size, size).
        sasp: SASP field (SASP units), shape (size, size).
    """

    def __init__(self, params: Parameters | None = None, therapy: Therapy | None = None,
                 size: int = 100, start_age: int = 90, days: int = 640, torus: bool = True,
                 rng: int | np.random.Generator | None = None) -> None:
        """Create the tissue at `start_age` and record day 0 (arguments as `TissueModel`)."""
        if size < 3 or start_age < 0 or days < 0:
            raise ValueError(f"need size >= 3, start_age >= 0 and days >= 0; got size={size}, "
                             f"start_age={start_age}, days={days}")
        self.params = params if params is not None else Parameters()
        self.therapy = therapy if therapy is not None else Therapy()
        self.start_age, self.days, self.torus, self.time = start_age, days, torus, 0
        self.rng = np.random.default_rng(rng)
        self._extend_timeline(days)

        sites = size * size
        self.neighbours = moore_neighbours(size, torus)
        self.tissue = np.full((size, size), EMPTY, dtype=np.int8)
        self.immune = np.zeros((size, size), dtype=bool)
        self.sasp = np.zeros((size, size))
        self.damage = np.zeros(sites)
        self.exposure = np.zeros(sites)
        self.damage_scale = np.ones(sites)
        self.divisions = np.zeros(sites, dtype=np.int64)
        self.arrest_age = np.zeros(sites, dtype=np.int64)
        self.lifetime = np.zeros(sites, dtype=np.int64)

        self._populate(self._days[0])
        self._records = [self._readout(self._days[0], np.zeros(len(_KINDS), dtype=np.int64))]
        self.running = days > 0

    # --- set-up -----------------------------------------------------------------------------

    def _populate(self, day: Day) -> None:
        """Seed cells, settle the SASP field of the initial senescent cells, seed immune cells."""
        p, rng = self.params, self.rng
        tissue = self.tissue.ravel()
        u = rng.random(tissue.size)
        senescent = np.flatnonzero(u < p.initial_senescent_fraction)
        healthy = np.flatnonzero((u >= p.initial_senescent_fraction) & (u < p.initial_occupancy))
        tissue[senescent] = SENESCENT
        self.arrest_age[senescent] = rng.integers(0, INITIAL_ARREST_AGE_MAX, senescent.size)
        tissue[healthy] = HEALTHY
        self.divisions[healthy] = rng.integers(0, p.replicative_limit // 2 + 1, healthy.size)
        self.damage_scale[healthy] = rules.lognormal_multiplier(
            rng.standard_normal(healthy.size), p.damage_heterogeneity)
        self.damage[healthy] = self.damage_scale[healthy] * rules.equilibrium_damage(
            day.damage_drive, day.damage_repair)

        self._settle_field(self.sasp, self._secretion(day))
        occupied = np.flatnonzero(rng.random(tissue.size)
                                  < self._initial_immune_prob(self.sasp.ravel()))
        self.immune.ravel()[occupied] = True
        self.lifetime[occupied] = self._lifetimes(occupied.size)
        self.exposure[healthy] = self.sasp.ravel()[healthy] * day.inflammation

    # --- one day ----------------------------------------------------------------------------

    def step(self) -> None:
        """Advance the tissue by one day (decide, apply in random priority, field, readouts)."""
        self.time += 1
        t = self.time
        day = self._day(t)

        groups = [*self._healthy_intents(day), *self._senescent_intents(day),
                  *self._immune_intents(day), *self._recruitment_intents()]
        kind = np.concatenate([np.full(len(sources), k) for k, sources, _ in groups])
        source = np.concatenate([sources for _, sources, _ in groups])
        target = np.concatenate([targets for _, _, targets in groups])
        slot = target + self.tissue.size * _ON_IMMUNE_SLOT[kind]
        order = np.lexsort((self.rng.random(slot.size), slot))  # random priority within a slot
        first = np.ones(order.size, dtype=bool)
        first[1:] = slot[order][1:] != slot[order][:-1]
        won = order[first]
        self._apply(kind[won], source[won], target[won])

        rules.diffuse_decay(self.sasp, self._secretion(day), self.params.sasp_diffusion,
                            self.params.sasp_decay, self.torus)
        self._records.append(self._readout(day, np.bincount(kind[won], minlength=len(_KINDS))))
        self.running = t < self.days

    def _healthy_intents(self, day: Day) -> Intents:
        p, rng = self.params, self.rng
        tissue = self.tissue.ravel()
        # Damage and exposure advance at every site (values off healthy sites are never read):
        # whole-array arithmetic, no gathers.
        sasp = self.sasp.ravel() * day.inflammation
        self.exposure = rules.exposure_step(self.exposure, sasp, p.exposure_memory)
        self.damage = rules.damage_step(self.damage, day.damage_drive * self.damage_scale,
                                        day.damage_repair, sasp, p.damage_sasp_gain)
        # Only draws below the chance of any event at the highest rates can give one: the
        # probabilities are computed for those few cells alone.
        u = rng.random(tissue.size)
        bound = rules.any_event_prob((p.healthy_death_rate, p.primary_max_rate,
                                      p.paracrine_max_rate, day.division_prob))
        cells = np.flatnonzero((u < bound) & (tissue == HEALTHY))
        event = rules.first_event(u[cells], (
            p.healthy_death_rate,
            rules.primary_senescence_prob(self.damage[cells], p.primary_max_rate,
                                          p.primary_damage_half, p.primary_hill),
            rules.paracrine_senescence_prob(self.exposure[cells], p.paracrine_max_rate,
                                            p.paracrine_half_sasp, p.paracrine_hill),
            day.division_prob,
        ))
        dividing = cells[event == 4]
        around = self.neighbours[dividing]
        vacant = (around >= 0) & (tissue[around] == EMPTY)
        able = vacant.any(axis=1)
        dividing, around, vacant = dividing[able], around[able], vacant[able]
        arrested = self.divisions[dividing] >= p.replicative_limit
        daughters = around[~arrested][np.arange((~arrested).sum()),
                                      pick(vacant[~arrested], rng.random((~arrested).sum()))]
        return [*((kind, cells[event == k], cells[event == k])
                  for k, kind in ((1, _DIE), (2, _PRIMARY), (3, _PARACRINE))),
                (_REPLICATIVE, dividing[arrested], dividing[arrested]),
                (_DIVIDE, dividing[~arrested], daughters)]

    def _senescent_intents(self, day: Day) -> Intents:
        cells = np.flatnonzero(self.tissue.ravel() == SENESCENT)
        self.arrest_age[cells] += 1
        event = rules.first_event(self.rng.random(cells.size), (
            self.params.senescent_death_rate, day.senolytic_fraction))
        return [(_SEN_DEATH, cells[event == 1], cells[event == 1]),
                (_SENOLYSIS, cells[event == 2], cells[event == 2])]

    def _immune_intents(self, day: Day) -> Intents:
        p, rng = self.params, self.rng
        tissue, immune, sasp = self.tissue.ravel(), self.immune.ravel(), self.sasp.ravel()
        cells = np.flatnonzero(immune)
        self.lifetime[cells] -= 1
        leaving = self.lifetime[cells] <= 0
        staying = cells[~leaving]

        near = np.concatenate([staying[:, None], self.neighbours[staying]], axis=1)
        prey = (near >= 0) & (tissue[near] == SENESCENT)
        hunting = prey.any(axis=1)
        strike = rng.random(hunting.sum()) < day.immune_competence
        hunters, near_h, prey_h = staying[hunting][strike], near[hunting][strike], prey[hunting][
            strike]
        victims = near_h[np.arange(hunters.size), pick(prey_h, rng.random(hunters.size))]

        walkers = staying[~hunting]
        around = self.neighbours[walkers]
        free = (around >= 0) & ~immune[around]
        able = free.any(axis=1)
        walkers, around, free = walkers[able], around[able], free[able]
        level = np.where(free, sasp[around], -np.inf)
        chemotactic = rng.random(walkers.size) < p.immune_chemotaxis
        best = free & (level == level.max(axis=1, keepdims=True))
        choice = np.where(chemotactic[:, None], best, free)
        steps = around[np.arange(walkers.size), pick(choice, rng.random(walkers.size))]
        return [(_DEPART, cells[leaving], cells[leaving]), (_KILL, hunters, victims),
                (_MOVE, walkers, steps)]

    def _recruitment_intents(self) -> Intents:
        p = self.params
        sasp, immune = self.sasp.ravel(), self.immune.ravel()
        u = self.rng.random(sasp.size)
        bound = rules.max_recruitment_prob(p.immune_recruit_base, p.immune_recruit_max)
        maybe = np.flatnonzero((u < bound) & ~immune)
        arrivals = maybe[u[maybe] < self._recruitment_prob(sasp[maybe])]
        return [(_RECRUIT, arrivals, arrivals)]

    def _apply(self, kind: np.ndarray, source: np.ndarray, target: np.ndarray) -> None:
        """Carry out the winning intents (no two touch the same slot)."""
        tissue, immune = self.tissue.ravel(), self.immune.ravel()
        of = {k: kind == k for k in range(len(_KINDS))}
        tissue[source[of[_DIE] | of[_SEN_DEATH] | of[_SENOLYSIS]]] = EMPTY
        tissue[target[of[_KILL]]] = EMPTY
        arrest = source[of[_PRIMARY] | of[_PARACRINE] | of[_REPLICATIVE]]
        tissue[arrest] = SENESCENT
        self.arrest_age[arrest] = 0

        parents, daughters = source[of[_DIVIDE]], target[of[_DIVIDE]]
        self.divisions[parents] += 1
        tissue[daughters] = HEALTHY
        for state in (self.damage, self.exposure, self.divisions):
            state[daughters] = state[parents]
        self.damage_scale[daughters] = rules.lognormal_multiplier(
            self.rng.standard_normal(daughters.size), self.params.damage_heterogeneity)

        immune[source[of[_DEPART]]] = False
        movers, steps = source[of[_MOVE]], target[of[_MOVE]]
        immune[movers] = False
        immune[steps] = True
        self.lifetime[steps] = self.lifetime[movers]
        recruits = source[of[_RECRUIT]]
        immune[recruits] = True
        self.lifetime[recruits] = self._lifetimes(recruits.size)

    # --- shared pieces ----------------------------------------------------------------------

    def _secretion(self, day: Day) -> np.ndarray:
        """SASP secreted today at each site (SASP units per day)."""
        source = np.zeros(self.sasp.shape)
        cells = np.flatnonzero(self.tissue.ravel() == SENESCENT)
        source.ravel()[cells] = rules.sasp_secretion(self.arrest_age[cells],
                                                     self.params.sasp_maturation, day.sasp_output)
        return source

    def _readout(self, day: Day, events: np.ndarray) -> dict[str, float]:
        tissue = self.tissue.ravel()
        healthy = tissue == HEALTHY
        return readout_row(
            day, self.params, sites=tissue.size, healthy=int(healthy.sum()),
            senescent=int(np.count_nonzero(tissue == SENESCENT)),
            immune=int(np.count_nonzero(self.immune)),
            events={name: int(n) for name, n in zip(_KINDS, events, strict=True) if name},
            sasp_sum=float(self.sasp.sum()), damage_sum=float(self.damage[healthy].sum()))

    def snapshot(self) -> pd.DataFrame:
        """The whole grid now, one row per site (see `readouts.SNAPSHOT`)."""
        return grid_snapshot(self.age, self.tissue, self.immune, self.sasp)


"""`TissueModel`: the tissue patch as a Mesa model (the agents engine, the readable reference).

One step is one day. Each day:

0. *Perturbations* due at the age the step leaves (a pulse of induced senescence, a transplant;
   see `perturbation`).
1. *Systemic state* — age, drug exposure, oxytocin, mTORC1, autophagy, immune competence: one row
   of the precomputed `systemic_timeline`.
2. *Decide* — every agent reads the start-of-day state and returns at most one `Intent`
   (see `agents`); immune-free sites draw immune recruitment from the start-of-day SASP.
3. *Apply* — intents run in random order (a uniformly random priority); the first intent to claim
   a tissue or immune slot wins, later claims on that slot are dropped. This is the one conflict
   rule: it settles two divisions into one empty site, two immune cells (or an immune cell and a
   recruit) moving into one site, and two removals of one senescent cell.
4. *SASP field* — senescent cells secrete; the field diffuses and decays (`rules.diffuse_decay`,
   in place on the `sasp` property layer).
5. *Readouts* — one row of `readouts.READOUTS`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from functools import partial

import mesa
import numpy as np
import pandas as pd
from mesa.discrete_space import Cell, OrthogonalMooreGrid

from tissue_abm.biology import rules
from tissue_abm.biology.params import Parameters, merged_parameters
from tissue_abm.biology.perturbation import Perturbation
from tissue_abm.biology.readouts import READOUTS, readout_row
from tissue_abm.biology.rules import EMPTY, HEALTHY, SENESCENT, Num
from tissue_abm.biology.systemic import Day
from tissue_abm.biology.therapy import Therapy
from tissue_abm.engines.agents.agents import (
    HealthyCell,
    ImmuneCell,
    Intent,
    SenescentCell,
    TissueCell,
    immune_slot,
)
from tissue_abm.engines.base import INITIAL_ARREST_AGE_MAX, TissueBase


class TissueModel(TissueBase, mesa.Model):
    """An L x L tissue patch of healthy, senescent and immune cells with a SASP field.

    Attributes:
        params: Biological parameters.
        datacollector: Mesa `DataCollector` with one model reporter per readout
            (`readouts.READOUTS`), collected at day 0 and after every step; `readouts` is its
            table, so `mesa.visualization.make_plot_component("senescent_fraction")` works.
        today: Today's readouts (readout name -> value).
        therapy: Drug regimens.
        start_age: Organism age at day 0, days.
        days: Planned length of the run, days; `running` turns False when it is reached.
            Stepping on is allowed (the systemic timeline is extended as needed).
        grid: `OrthogonalMooreGrid` with property layers `tissue` (EMPTY/HEALTHY/SENESCENT),
            `immune` (bool) and `sasp` (SASP units).
        timeline: Systemic state of every day (pandas DataFrame, one row per day).
        perturbations: Experimental perturbations, in time order (`perturbation`).
    """

    def __init__(
        self,
        params: Parameters | None = None,
        therapy: Therapy | None = None,
        size: int = 100,
        start_age: int = 90,
        days: int = 640,
        torus: bool = True,
        rng: int | np.random.Generator | None = None,
        perturbations: Sequence[Perturbation] = (),
        scenario: object | None = None,
        **parameters: float,
    ) -> None:
        """Create the tissue at `start_age` and record day 0.

        Args:
            params: Biological parameters (defaults if None).
            therapy: Drug regimens (untreated if None).
            size: Lattice side L (sites), >= 3.
            start_age: Organism age at day 0, days, >= 0.
            days: Planned number of days, >= 0 (`running` is False after them).
            torus: Whether the lattice wraps around (else closed boundaries).
            rng: Seed or numpy Generator; same seed, same run. The perturbations draw from
                their own generators (`perturbation.perturbation_seed`).
            perturbations: Pulses and transplants, ages in [start_age, start_age + days) and
                not decreasing; each is applied at the start of the step leaving its age.
            scenario: Ignored: the (experimental) Mesa scenario that SolaraViz's Reset passes
                to a model taking keywords; the arguments above are the run's settings.
            **parameters: Biological parameters by name (`TissueModel(immune_kill=0.5)`), set
                over `params` and validated as a scenario file's (`tissue-abm params`).

        Raises:
            ValueError: If an argument or a parameter value is out of range (one line).
            TypeError: If a keyword is neither an argument nor a parameter.
        """
        if "seed" in parameters:
            raise TypeError("TissueModel takes rng= (a seed or a numpy Generator), not seed=")
        self._set_up_run(size, start_age, days, perturbations, rng)
        super().__init__(rng=rng)
        self.params = merged_parameters(params, parameters)
        self.therapy = therapy if therapy is not None else Therapy()
        self.start_age = start_age
        self.days = days
        self.torus = torus
        self._extend_timeline(days)

        self.grid = OrthogonalMooreGrid((size, size), torus=torus, random=self.random)
        self.tissue = self.grid.create_property_layer("tissue", EMPTY, dtype=np.int8)
        self.immune = self.grid.create_property_layer("immune", False, dtype=bool)
        self.sasp = self.grid.create_property_layer("sasp", 0.0, dtype=float)

        self._populate(self._days[0])
        self.datacollector = mesa.DataCollector(
            model_reporters={name: partial(_today, name) for name in READOUTS}
        )
        self._record(self._readout(self._days[0], Counter()))
        self.running = days > 0

    # --- set-up -----------------------------------------------------------------------------

    def _populate(self, day: Day) -> None:
        """Seed cells, settle the SASP field of the initial senescent cells, seed immune cells."""
        p = self.params
        u = self.rng.random(self.tissue.data.shape)
        equilibrium = rules.equilibrium_damage(day.damage_drive, day.damage_repair)
        for cell in self.grid.all_cells:
            draw = u[cell.coordinate]
            if draw < p.initial_senescent_fraction:
                SenescentCell(
                    self,
                    cell,
                    cause="initial",
                    arrest_age=self.random.randrange(INITIAL_ARREST_AGE_MAX),
                )
            elif draw < p.initial_occupancy:
                healthy = HealthyCell(
                    self,
                    cell,
                    damage=0.0,
                    divisions=self.random.randrange(p.replicative_limit // 2 + 1),
                )
                healthy.damage = healthy.damage_scale * equilibrium

        self._settle_field(self.sasp.data, self._secretion(day))
        occupied = self.rng.random(self.immune.data.shape) < self._initial_immune_prob(
            self.sasp.data
        )
        for coordinate in zip(*np.nonzero(occupied), strict=True):
            ImmuneCell(self, self.grid[coordinate], lifetime=int(self._lifetimes()))

        for healthy in self.agents_by_type[HealthyCell]:
            healthy.exposure = float(healthy.cell.sasp) * day.inflammation

    # --- one day ----------------------------------------------------------------------------

    def run_for(self, days: int) -> None:
        """Advance the tissue by `days` whole days (Mesa's `run_for`), as the array engine.

        Args:
            days: Days to simulate, >= 0 (past the planned `days` too: the run goes on).

        Raises:
            ValueError: If `days` is negative (Mesa itself would only warn).
        """
        if days < 0:
            raise ValueError(f"need days >= 0, got {days}")
        if days > 0:  # Mesa warns on an empty interval
            super().run_for(days)

    def step(self) -> None:
        """Advance the tissue by one day (decide, apply in random priority, field, readouts)."""
        t = round(self.time)  # Mesa has advanced the clock already: this step makes day t
        self._perturb(self.start_age + t - 1, self.tissue.data)
        day = self._day(t)
        senescent = len(self.agents_by_type.get(SenescentCell, ()))
        self.phagocytosis: float = rules.phagocytic_clearance_prob(
            senescent / self.tissue.data.size,
            self.params.phagocytic_rate,
            self.params.phagocytic_half_burden,
        )

        intents = [
            intent
            for agents in self._agent_sets()
            for agent in agents
            if (intent := agent.decide(day)) is not None
        ]
        intents.extend(self._recruitment_intents())
        self.random.shuffle(intents)
        events: Counter[str] = Counter()
        claimed = set()
        for intent in intents:
            if intent.slot in claimed:
                continue
            claimed.add(intent.slot)
            intent.action()
            events[intent.event] += 1

        rules.diffuse_decay(
            self.sasp.data,
            self._secretion(day),
            self.params.sasp_diffusion,
            self.params.sasp_decay,
            self.torus,
        )
        self._record(self._readout(day, events))
        self.running = t < self.days

    def _agent_sets(self) -> list:
        """The agent sets in decide order (absent types give nothing)."""
        by_type = self.agents_by_type
        return [
            by_type[kind] for kind in (HealthyCell, SenescentCell, ImmuneCell) if kind in by_type
        ]

    def _recruitment_intents(self) -> list[Intent]:
        """Each immune-free site draws a recruit with a probability rising with its SASP."""
        u = self.rng.random(self.immune.data.shape)
        arrivals = ~self.immune.data & (u < self._recruitment_prob(self.sasp.data))
        return [
            Intent(immune_slot(cell), partial(self._recruit, cell), "immune_recruited")
            for cell in map(self.grid.__getitem__, zip(*np.nonzero(arrivals), strict=True))
        ]

    def _recruit(self, cell: Cell) -> None:
        ImmuneCell(self, cell, lifetime=int(self._lifetimes()))

    def _make_senescent(self, sites: np.ndarray) -> None:
        for cell in self._replaced(sites):
            SenescentCell(self, cell, cause="perturbation")

    def _make_healthy(self, sites: np.ndarray, damage_scale: np.ndarray) -> None:
        for cell, scale in zip(self._replaced(sites), damage_scale, strict=True):
            HealthyCell(self, cell, damage=0.0, divisions=0, damage_scale=float(scale))

    def _replaced(self, sites: np.ndarray) -> list[Cell]:
        """The grid cells of `sites` (flat indices), each cleared of its tissue cell."""
        cells = [
            self.grid[coordinate]
            for coordinate in zip(*np.unravel_index(sites, self.tissue.data.shape), strict=True)
        ]
        for cell in cells:
            for agent in [a for a in cell.agents if isinstance(a, TissueCell)]:
                agent.vacate()
        return cells

    def _secretion(self, day: Day) -> np.ndarray:
        """SASP secreted today at each site (SASP units per day)."""
        source = np.zeros(self.sasp.data.shape)
        for agent in self.agents_by_type.get(SenescentCell, ()):
            source[agent.cell.coordinate] = agent.secretion(day)
        return source

    # --- readouts ---------------------------------------------------------------------------

    @property
    def readouts(self) -> pd.DataFrame:
        """Daily readouts so far (one row per day, day 0 = initial state).

        The `datacollector`'s table; read while a day is being collected (by a view in another
        thread), it holds the days collected in full.
        """
        columns = self.datacollector.model_vars
        days = min(map(len, columns.values()))
        return pd.DataFrame({name: values[:days] for name, values in columns.items()})

    def _record(self, row: dict[str, Num]) -> None:
        """Keep today's readouts in the `datacollector` (Mesa's `DataCollector`)."""
        self.today = row
        self.datacollector.collect(self)

    def _readout(self, day: Day, events: Counter[str]) -> dict[str, Num]:
        by_type = self.agents_by_type
        healthy = by_type.get(HealthyCell, ())
        return readout_row(
            day,
            self.params,
            sites=self.tissue.data.size,
            healthy=len(healthy),
            senescent=len(by_type.get(SenescentCell, ())),
            immune=len(by_type.get(ImmuneCell, ())),
            events=events,
            sasp_sum=float(self.sasp.data.sum()),
            damage_sum=sum(a.damage for a in healthy),
        )

    def _fields(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.tissue.data, self.immune.data, self.sasp.data

    def counts(self) -> dict[str, int]:
        """Sites in each tissue state and immune cells, counted on the property layers."""
        tissue = self.tissue.data
        return {
            "empty": int(np.count_nonzero(tissue == EMPTY)),
            "healthy": int(np.count_nonzero(tissue == HEALTHY)),
            "senescent": int(np.count_nonzero(tissue == SENESCENT)),
            "immune": int(np.count_nonzero(self.immune.data)),
        }


def _today(name: str, model: TissueModel) -> Num:
    """Model reporter of the `datacollector`: readout `name` today."""
    return model.today[name]

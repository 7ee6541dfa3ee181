"""Mesa agents of the tissue: healthy, senescent and immune cells.

Each day has two passes (see `TissueModel.step`). In the *decide* pass every agent reads the
start-of-day state (the property layers `tissue`, `immune` and `sasp` are not touched until the
pass ends), updates its own private state (damage, exposure, ages, lifetime) and returns at most
one `Intent`: an action on one lattice slot. In the *apply* pass the model executes the intents in
random order; an intent whose slot was already claimed that day is dropped.

Tissue cells are fixed to their site (`FixedAgent`) and mirror their state into the `tissue`
layer; immune cells move (`CellAgent`) and mirror their position into the `immune` layer.
`agent.remove()`, Mesa's idiom, keeps the layers consistent: the site turns empty (a tissue
cell) or loses its immune mark (an immune cell). A site
holds at most one tissue cell and at most one immune cell.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

from mesa.discrete_space import Cell, CellAgent, FixedAgent

from tissue_abm.biology import rules
from tissue_abm.biology.rules import EMPTY, HEALTHY, SENESCENT
from tissue_abm.biology.systemic import Day

if TYPE_CHECKING:
    from tissue_abm.engines.agents.model import TissueModel

# Competing daily events of a healthy cell, in order of precedence (see rules.first_event).
_DIE, _PRIMARY, _PARACRINE, _DIVIDE = 1, 2, 3, 4
# Competing daily events of a senescent cell.
_SENESCENT_EVENTS = ("", "cleared_senolytic", "senescent_deaths", "cleared_phagocytic")
"""Readout tally of a senescent cell's event, by `rules.first_event` number."""


class Intent(NamedTuple):
    """An action decided from the start-of-day state, applied if its slot is still unclaimed."""

    slot: tuple
    """("tissue" | "immune", coordinate): the lattice slot the action needs."""
    action: Callable[[], None]
    """What to do when the slot is won."""
    event: str
    """Readout tally that counts the action (see `readouts.EVENTS`); "" for none (moves)."""


def tissue_slot(cell: Cell) -> tuple:
    """The claim key for the tissue-cell slot of a site."""
    return ("tissue", cell.coordinate)


def immune_slot(cell: Cell) -> tuple:
    """The claim key for the immune-cell slot of a site."""
    return ("immune", cell.coordinate)


class TissueCell(FixedAgent):
    """A parenchymal cell fixed to one site; subclasses set `STATE` in the `tissue` layer."""

    STATE: int

    model: TissueModel

    def __init__(self, model: TissueModel, cell: Cell) -> None:
        super().__init__(model)
        self.cell = cell
        cell.tissue = self.STATE

    def vacate(self) -> None:
        """Leave the site empty and remove the agent from the model (as `remove`)."""
        self.remove()

    def remove(self) -> None:
        """Remove the cell from the model (Mesa's idiom) and mark its site empty."""
        self.cell.tissue = EMPTY
        super().remove()


class HealthyCell(TissueCell):
    """A proliferation-competent cell that accrues damage and may senesce, die or divide.

    Attributes:
        damage: Accumulated damage (units of primary_damage_half), >= 0.
        exposure: Running average of the effective SASP it has seen (SASP units), >= 0.
        divisions: Divisions so far; at `replicative_limit` a division attempt arrests it.
        damage_scale: Its own multiplier of the damage rate (log-normal, mean 1), drawn at
            birth unless given (a transplant draws it from the perturbation's generator).
    """

    STATE = HEALTHY

    def __init__(
        self,
        model: TissueModel,
        cell: Cell,
        damage: float,
        divisions: int,
        exposure: float = 0.0,
        damage_scale: float | None = None,
    ) -> None:
        super().__init__(model, cell)
        self.damage = damage
        self.exposure = exposure
        self.divisions = divisions
        self.damage_scale = (
            damage_scale
            if damage_scale is not None
            else (
                rules.lognormal_multiplier(
                    self.random.gauss(0.0, 1.0), model.params.damage_heterogeneity
                )
            )
        )

    def decide(self, day: Day) -> Intent | None:
        """Accrue damage and SASP exposure, then draw today's event.

        The competing events, in order: death, primary senescence, paracrine senescence,
        division into a random empty neighbour (a replicative arrest instead at the limit).
        """
        p = self.model.params
        sasp = float(self.cell.sasp) * day.inflammation
        self.exposure = rules.exposure_step(self.exposure, sasp, p.exposure_memory)
        self.damage = rules.damage_step(
            self.damage,
            day.damage_drive * self.damage_scale,
            day.damage_repair,
            sasp,
            p.damage_sasp_gain,
        )
        event = rules.first_event(
            self.random.random(),
            (
                p.healthy_death_rate,
                rules.primary_senescence_prob(
                    self.damage, p.primary_max_rate, p.primary_damage_half, p.primary_hill
                ),
                rules.paracrine_senescence_prob(
                    self.exposure, p.paracrine_max_rate, p.paracrine_half_sasp, p.paracrine_hill
                ),
                day.division_prob,
            ),
        )
        if event == rules.NO_EVENT:
            return None
        own = tissue_slot(self.cell)
        if event == _DIE:
            return Intent(own, self.vacate, "healthy_deaths")
        if event == _PRIMARY:
            return Intent(own, partial(self.senesce, "new_primary"), "new_primary")
        if event == _PARACRINE:
            return Intent(own, partial(self.senesce, "new_paracrine"), "new_paracrine")
        vacancies = [c for c in self.cell.neighborhood if c.tissue == EMPTY]
        if not vacancies:
            return None
        if self.divisions >= p.replicative_limit:
            return Intent(own, partial(self.senesce, "new_replicative"), "new_replicative")
        target = self.random.choice(vacancies)
        return Intent(tissue_slot(target), partial(self.divide_into, target), "divisions")

    def senesce(self, cause: str) -> None:
        """Arrest permanently: replace this agent by a `SenescentCell` on the same site."""
        cell = self.cell
        self.vacate()
        SenescentCell(self.model, cell, cause=cause)

    def divide_into(self, target: Cell) -> None:
        """Divide into `target`; parent and daughter both count one more division.

        The daughter inherits damage and exposure and draws its own damage multiplier.
        """
        self.divisions += 1
        HealthyCell(self.model, target, self.damage, self.divisions, self.exposure)


class SenescentCell(TissueCell):
    """A permanently arrested cell that secretes SASP until it dies or is cleared.

    Attributes:
        arrest_age: Days since arrest; the SASP matures with it.
        cause: How it arose: "new_primary", "new_paracrine", "new_replicative", "initial" or
            "perturbation" (a pulse or a transplant).
    """

    STATE = SENESCENT

    def __init__(self, model: TissueModel, cell: Cell, cause: str, arrest_age: int = 0) -> None:
        super().__init__(model, cell)
        self.cause = cause
        self.arrest_age = arrest_age

    def decide(self, day: Day) -> Intent | None:
        """Age by a day; draw removal by a senolytic dose (if given today), death or phagocytes."""
        self.arrest_age += 1
        event = rules.first_event(
            self.random.random(),
            (
                day.senolytic_fraction,
                self.model.params.senescent_death_rate,
                self.model.phagocytosis,
            ),
        )
        if event == 0:
            return None
        return Intent(tissue_slot(self.cell), self.vacate, _SENESCENT_EVENTS[event])

    def secretion(self, day: Day) -> float:
        """SASP secreted today (SASP units): matures after arrest, lowered by rapamycin."""
        return rules.sasp_secretion(
            self.arrest_age, self.model.params.sasp_maturation, day.sasp_output
        )


class ImmuneCell(CellAgent):
    """An NK/macrophage-like cell that patrols up the SASP gradient and kills senescent cells.

    Attributes:
        lifetime: Days left in the tissue; it departs when this reaches 0.
    """

    model: TissueModel

    def __init__(self, model: TissueModel, cell: Cell, lifetime: int) -> None:
        super().__init__(model)
        self.lifetime = lifetime
        self.cell = cell
        cell.immune = True

    def decide(self, day: Day) -> Intent | None:
        """Depart, attack or move.

        It departs when its lifetime is over; else it attacks a random senescent cell on or
        next to its site (killing it with probability `immune_competence`, at most one a day);
        else it moves to a free neighbour: up the SASP gradient with probability
        `immune_chemotaxis` (ties at random), otherwise at random.
        """
        self.lifetime -= 1
        if self.lifetime <= 0:
            return Intent(immune_slot(self.cell), self.depart, "immune_departed")
        targets = [
            c for c in self.cell.get_neighborhood(include_center=True) if c.tissue == SENESCENT
        ]
        if targets:
            if self.random.random() < day.immune_competence:
                target = self.random.choice(targets)
                return Intent(tissue_slot(target), partial(self.kill, target), "cleared_immune")
            return None
        free = [c for c in self.cell.neighborhood if not c.immune]
        if not free:
            return None
        if self.random.random() < self.model.params.immune_chemotaxis:
            self.random.shuffle(free)
            target = max(free, key=lambda c: c.sasp)
        else:
            target = self.random.choice(free)
        return Intent(immune_slot(target), partial(self.move, target), "")

    def kill(self, target: Cell) -> None:
        """Kill the senescent cell on `target`."""
        next(a for a in target.agents if isinstance(a, SenescentCell)).vacate()

    def move(self, target: Cell) -> None:
        """Step to `target`, keeping the `immune` layer in sync."""
        self.cell.immune = False
        self.move_to(target)
        target.immune = True

    def depart(self) -> None:
        """Leave the tissue (as `remove`)."""
        self.remove()

    def remove(self) -> None:
        """Remove the cell from the model (Mesa's idiom) and clear its site's `immune` mark."""
        self.cell.immune = False
        super().remove()

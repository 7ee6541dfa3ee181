"""Experimental perturbations: a pulse of induced senescence and a transplant of cells.

A scenario lists them as `[[perturbation]]` tables, in time order::

    [[perturbation]]
    kind = "pulse"          # each healthy cell turns senescent with probability `fraction`
    age = 90                # days
    fraction = 0.05

    [[perturbation]]
    kind = "transplant"     # the `cells` sites nearest the lattice centre are replaced
    age = 180
    cells = 50
    state = "senescent"     # or "healthy": young donor cells, the control transplant

The first models a pulse-chase of senescent cells (Karin 2019, bleomycin), the second the
transplantation of senescent cells (Xu 2018, da Silva 2019).

A perturbation is applied at the start of the step that leaves age `age`, before the day's
decisions: the readout row at `age` shows the tissue before it, the next row the tissue one day
after it. Perturbations due at the same age are applied in list order. Made cells are not
counted as events (`new_primary`, ... stay as they were). A new senescent cell starts at arrest
age 0, so its SASP matures as any new senescent cell's; a transplanted healthy cell is a young
donor cell (damage 0, no divisions, no SASP exposure yet) with its own damage multiplier. An
immune cell on a changed site stays there.

Both engines choose the sites with `choose_sites`, from the same site states and a generator of
their own (`perturbation_rng`), independent of the engine's random stream; each engine then makes
the cells its own way (`TissueBase._perturb`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Annotated, Literal, cast

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tissue_abm.biology.rules import HEALTHY, SENESCENT
from tissue_abm.biology.therapy import DAYS, MAX_AGE

STREAM = 0x9E37
"""Second word of every perturbation generator's seed: keeps its numbers apart from others."""

_AGE_HELP = "Applied at the start of the step that leaves this age."


class Pulse(BaseModel):
    """Induced senescence: each healthy cell turns senescent with probability `fraction`."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    kind: Literal["pulse"] = "pulse"
    age: int = Field(ge=0, le=MAX_AGE, description=_AGE_HELP, json_schema_extra=DAYS)
    fraction: float = Field(
        ge=0.0,
        le=1.0,
        description="Chance that a healthy cell turns senescent.",
        json_schema_extra={"unit": "probability"},
    )


class Transplant(BaseModel):
    """A compact cluster of `cells` sites at the lattice centre replaced by new cells."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    kind: Literal["transplant"] = "transplant"
    age: int = Field(ge=0, le=MAX_AGE, description=_AGE_HELP, json_schema_extra=DAYS)
    cells: int = Field(
        ge=1,
        le=4000 * 4000,
        description="Number of sites replaced (at most the lattice's size²).",
        json_schema_extra={"unit": "sites"},
    )
    state: Literal["senescent", "healthy"] = Field(
        description="What the new cells are: senescent, or healthy (the control)."
    )


type Perturbation = Annotated[Pulse | Transplant, Field(discriminator="kind")]
"""One perturbation; `kind` tells which."""

PERTURBATIONS: dict[str, type[Pulse] | type[Transplant]] = {
    "pulse": Pulse,
    "transplant": Transplant,
}
"""The perturbation classes by `kind`."""


def check_perturbations(
    perturbations: Sequence[Pulse | Transplant], size: int, start_age: int, end_age: int
) -> None:
    """Refuse perturbations that a run of this tissue cannot apply as asked.

    Args:
        perturbations: In the order they are given.
        size: Lattice side L (sites).
        start_age: Age at the start of the run, days.
        end_age: Age at its end, days; a perturbation is applied when leaving an age in
            [start_age, end_age).

    Raises:
        ValueError: One line naming the perturbation (by its position, from 0), the key, the
            value and what is allowed: an age outside [start_age, end_age), ages out of time
            order, or a transplant of more cells than the lattice has sites.
    """
    for index, perturbation in enumerate(perturbations):
        key = f"perturbation.{index}"
        if not start_age <= perturbation.age < end_age:
            raise ValueError(
                f"{key}.age = {perturbation.age} is outside the run; allowed: an "
                f"age from start_age ({start_age}) to end_age - 1 ({end_age - 1}) "
                "(days)"
            )
        if index and perturbation.age < perturbations[index - 1].age:
            raise ValueError(
                f"{key}.age = {perturbation.age} is before perturbation."
                f"{index - 1}.age ({perturbations[index - 1].age}); allowed: "
                "perturbations in time order (ages not decreasing)"
            )
        if isinstance(perturbation, Transplant) and perturbation.cells > size * size:
            raise ValueError(
                f"{key}.cells = {perturbation.cells} is not allowed; allowed: at "
                f"most size² = {size * size} (sites)"
            )


def perturbation_seed(rng: int | np.integer | np.random.Generator | None) -> int:
    """The seed of a run's perturbations, from the engine's `rng` argument.

    An integer is its own seed. A Generator gives a number drawn from a copy of it, so it is
    not advanced and the same generator state gives the same seed; None gives fresh entropy
    (an unrepeatable run, as the engine's own).
    """
    if isinstance(rng, int | np.integer):
        return int(rng)
    if isinstance(rng, np.random.Generator):
        return int(copy.deepcopy(rng).integers(2**63))
    # Made without `entropy`, a SeedSequence draws an int (its type allows any given entropy).
    return int(cast(int, np.random.SeedSequence().entropy))


def perturbation_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of perturbation `index` (position in the list, from 0) of a run.

    `np.random.default_rng([seed, STREAM, index])`: it does not touch the engine's random
    stream, so a perturbed run and its unperturbed control with the same seed stay identical
    up to the perturbation.
    """
    return np.random.default_rng([seed, STREAM, index])


def central_sites(size: int, cells: int) -> np.ndarray:
    """The `cells` sites nearest the centre of an L x L lattice, nearest first.

    The centre is the point ((L - 1)/2, (L - 1)/2) (a site if L is odd, between four sites if
    it is even); distance is Euclidean, ties are broken by flat index, so the sites form a
    compact disc.

    Args:
        size: Lattice side L (sites).
        cells: How many sites, 0 to L².

    Returns:
        Flat site indices (row-major, x * L + y), int64.
    """
    twice = 2 * np.arange(size, dtype=np.int64) - (size - 1)  # 2 x coordinate from the centre
    distance = (twice[:, None] ** 2 + twice[None, :] ** 2).ravel()  # (2 d)², exact
    return np.argsort(distance, kind="stable")[:cells]


def choose_sites(
    perturbation: Pulse | Transplant, tissue: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """The sites a perturbation changes, the same on both engines.

    Args:
        perturbation: A pulse or a transplant.
        tissue: Site states (`rules.EMPTY`/`HEALTHY`/`SENESCENT`), shape (L, L).
        rng: The perturbation's generator (`perturbation_rng`). A pulse draws one uniform per
            healthy site, in flat order; a transplant draws nothing.

    Returns:
        Flat site indices (row-major, x * L + y), int64: for a pulse the healthy sites that
        turn senescent, in increasing order; for a transplant `central_sites`.
    """
    if isinstance(perturbation, Pulse):
        healthy = np.flatnonzero(tissue.ravel() == HEALTHY)
        return healthy[rng.random(healthy.size) < perturbation.fraction]
    return central_sites(tissue.shape[0], perturbation.cells)


def made_state(perturbation: Pulse | Transplant) -> int:
    """The site state a perturbation makes: `rules.SENESCENT` or `rules.HEALTHY`."""
    if isinstance(perturbation, Transplant) and perturbation.state == "healthy":
        return HEALTHY
    return SENESCENT

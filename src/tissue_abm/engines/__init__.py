"""The simulation engines: one contract (`Engine`), two implementations, one registry.

- ``agents`` — `tissue_abm.engines.agents.TissueModel`: a Mesa model whose cells are agents on
  a `mesa.discrete_space` grid; the readable reference, and what the browser view shows.
- ``array`` — `tissue_abm.engines.array.ArrayTissue`: the same rules on whole-grid arrays
  (a compiled numba kernel, or numpy); the fast default.

Both call `tissue_abm.biology.rules` for every rate and probability and share
`tissue_abm.engines.base.TissueBase`, so a rule is written once. Importing this package imports
neither Mesa nor numba: `engine_class` loads an engine on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np
    import pandas as pd

    from tissue_abm.biology.params import Parameters
    from tissue_abm.biology.perturbation import Perturbation
    from tissue_abm.biology.therapy import Therapy

EngineName = Literal["array", "agents"]
"""Names of the engines a scenario may ask for."""

ENGINES: dict[str, str] = {
    "array": "tissue_abm.engines.array.model:ArrayTissue",
    "agents": "tissue_abm.engines.agents.model:TissueModel",
}
"""Engine name -> ``module:class`` of its implementation (the array engine first: the default)."""


@runtime_checkable
class Engine(Protocol):
    """What every engine offers a run: the same constructor, clock, stepping and readouts.

    The constructor takes ``params``, ``therapy``, ``size`` (lattice side L, >= 3),
    ``start_age`` (days), ``days`` (planned length), ``torus``, ``rng`` (seed or numpy
    Generator; same seed, same run) and ``perturbations`` as keywords.
    """

    params: Parameters
    """Biological parameters of the run."""
    therapy: Therapy
    """Drug regimens of the run."""
    start_age: int
    """Organism age at day 0, days."""
    days: int
    """Planned length of the run, days; `running` turns False when it is reached."""
    torus: bool
    """Whether the lattice wraps around."""
    time: float
    """Days simulated so far."""
    running: bool
    """False once `days` days have been simulated (stepping on is allowed)."""
    perturbations: tuple[Perturbation, ...]
    """Experimental perturbations, in time order."""

    if TYPE_CHECKING:  # for type checkers only: at run time a protocol keeps no constructor

        def __init__(
            self,
            *,
            params: Parameters | None = ...,
            therapy: Therapy | None = ...,
            size: int = ...,
            start_age: int = ...,
            days: int = ...,
            torus: bool = ...,
            rng: int | np.random.Generator | None = ...,
            perturbations: Sequence[Perturbation] = ...,
        ) -> None:
            """The constructor every engine has (keywords as in the class docstring)."""

    @property
    def age(self) -> float:
        """Organism age now, days."""
        ...

    @property
    def readouts(self) -> pd.DataFrame:
        """One row per simulated day (day 0 = the initial state), columns `READOUTS`."""
        ...

    def step(self) -> None:
        """Advance the tissue by one day."""
        ...

    def run_for(self, days: int) -> None:
        """Advance the tissue by `days` days (>= 0): the same run as as many `step` calls."""
        ...

    def snapshot(self) -> pd.DataFrame:
        """The whole grid now, one row per site (columns `readouts.SNAPSHOT`)."""
        ...

    def site_states(self) -> np.ndarray:
        """Site states now (EMPTY/HEALTHY/SENESCENT), int8, shape (L, L); a copy."""
        ...

    def immune_sites(self) -> np.ndarray:
        """Whether each site holds an immune cell now, bool, shape (L, L); a copy."""
        ...


THREADS_VARIABLE = "TISSUE_ABM_THREADS"
"""Environment variable that fixes the array kernel's threads (a whole number >= 1)."""


def requested_threads(value: str | None) -> int | None:
    """The thread count `value` asks for (from the command line or `THREADS_VARIABLE`).

    None or "" asks for none (the kernel chooses). Raises ValueError (one line) otherwise,
    unless `value` is a whole number >= 1.
    """
    if value is None or not value.strip():
        return None
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"{value!r} threads is not allowed; allowed: a whole number >= 1")
    return count


def engine_class(name: str) -> type[Engine]:
    """The class of engine `name` (imported now: Mesa for ``agents``, numba for ``array``).

    Raises:
        ValueError: If `name` is not an engine; the message lists the allowed names.
    """
    if name not in ENGINES:
        raise ValueError(f"engine {name!r} is not allowed; allowed: {', '.join(ENGINES)}")
    module, _, cls = ENGINES[name].partition(":")
    engine: type[Engine] = getattr(importlib.import_module(module), cls)
    return engine


__all__ = [
    "ENGINES",
    "THREADS_VARIABLE",
    "Engine",
    "EngineName",
    "engine_class",
    "requested_threads",
]

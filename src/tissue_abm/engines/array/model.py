"""`ArrayTissue`: the model card's processes on whole-grid arrays (the array engine).

The same day as the agents engine's `TissueModel`, with the same rules (`biology.rules`), the
same update scheme and conflict rule, and the same readouts — only the bookkeeping differs: a
cell is a site index, its state lives in compact arrays (float32 fields), and the daily
decisions of all cells are made at once.

0. *Perturbations* due at the age the step leaves (`tissue_abm.biology.perturbation`), on the state
   arrays, between days.
1. *Decide* from the start-of-day state. Healthy cells accrue damage and exposure and draw one
   competing event (death, primary, paracrine senescence, division into a random vacant
   neighbour or a replicative arrest); senescent cells age and draw senolysis, death or
   phagocytosis; immune cells depart, attack a random senescent cell on or next to their
   site, or move to a free neighbour (up the SASP gradient, ties at random, or at random);
   immune-free sites draw recruits. Each decision is an intent on one slot (the tissue or the
   immune slot of a site).
2. *Apply*: the intent of highest random priority on a slot wins (`intents`).
3. *SASP field*, 4. *readouts*: as in the agents engine.

Two kernels carry out the day: `kernel` (numba, compiled and multithreaded; the default where
numba is installed) and the whole-array numpy methods below (everywhere). Random numbers are
counter-based (`draws`): both kernels draw the very same numbers, in any number of threads.

Arrays are indexed by flat site number (row-major, `x * size + y`); `neighbours[i]` holds the
eight Moore neighbours of site i (-1 beyond a closed boundary).
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from functools import cached_property
from subprocess import DEVNULL, PIPE
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from tissue_abm.biology import rules
from tissue_abm.biology.params import Parameters
from tissue_abm.biology.perturbation import Perturbation
from tissue_abm.biology.readouts import readout_row
from tissue_abm.biology.rules import EMPTY, HEALTHY, SENESCENT
from tissue_abm.biology.systemic import Day, day_columns
from tissue_abm.biology.therapy import Therapy
from tissue_abm.engines.array import draws
from tissue_abm.engines.array.intents import (
    BY_IMMUNE,
    DEPART,
    DIE,
    DIVIDE,
    EVENTS,
    KILL,
    MOVE,
    OFFSETS,
    ON_IMMUNE_SLOT,
    PARACRINE,
    PHAGOCYTOSIS,
    PRIMARY,
    RECRUIT,
    REPLICATIVE,
    SEN_DEATH,
    SENOLYSIS,
    Rates,
    claim_id,
    rates_table,
    tally,
)
from tissue_abm.engines.base import INITIAL_ARREST_AGE_MAX, TissueBase

try:
    from tissue_abm.engines.array import kernel as compiled
except ImportError:  # numba missing or unusable on this platform: the numpy path runs alone
    compiled = None  # type: ignore[assignment]  # mypy types the name as the module alone

type Kernel = Literal["numba", "numpy"]
KERNELS: tuple[Kernel, ...] = ("numba", "numpy") if compiled is not None else ("numpy",)
"""Kernels available here, the default first."""


def set_threads(count: int | None) -> None:
    """Fix the compiled kernel's threads in this process; None lets it choose.

    It then chooses by lattice size and free cores (`kernel.kernel_threads`), unless the
    environment variable TISSUE_ABM_THREADS fixes a count. Batch workers run one thread each,
    so that workers x threads does not exceed the cores. Results do not depend on it. Without
    numba this does nothing.
    """
    if compiled is not None:
        compiled.set_threads(count)


COMPILE_SECONDS = 10
"""About how long compiling the kernel takes on a first run (7-12 s on a 2-core machine)."""

COMPILE_SIGN = 1.0
"""Seconds after which `warm_up` takes it that the kernel compiles (loading it takes less)."""

HELPER = (
    sys.executable,
    "-c",
    "from tissue_abm.engines.array.model import compile_helper_steps; compile_helper_steps()",
)
"""The command of the process that compiles `kernel.HELPER_STEPS` during a compile."""


def _compile_arguments() -> tuple[Any, ...]:
    """Arguments of `kernel.run_days` of a tiny model: their types are those of every run."""
    return ArrayTissue(size=8, days=1, rng=0, kernel="numba")._kernel_arguments(1, 1, False)


def warm_up(compiling: Callable[[], None] | None = None) -> None:
    """Compile the kernel now, or load it from numba's cache, without running it.

    Called before workers start, so that they find it compiled instead of each compiling it
    at their first run. One process compiles at a time (`kernel.compile_lock`); the others
    then load what it cached. When nothing of the kernel is cached, a helper process
    (`HELPER`) compiles `kernel.HELPER_STEPS` while this one compiles `kernel.OWN_STEPS`,
    each waiting for the helper's functions it calls, then `run_days`, which loads them all
    from the cache: a compile takes about two thirds of the time. If loading takes over
    `COMPILE_SIGN` s (a stale cache), the helper starts then. It is stopped on return (if
    this process is killed, it ends by itself within seconds, when its compile is done).

    Args:
        compiling: Called once if loading takes over `COMPILE_SIGN` s, i.e. the kernel is
            compiling.
    """
    if compiled is None or "numba" not in KERNELS:
        return
    helper = _Helper()

    def slow() -> None:
        if compiling is not None:
            compiling()
        helper.start()

    arguments = _compile_arguments()
    with compiled.compile_lock(), compiled.optimisation_level():
        timer = threading.Timer(COMPILE_SIGN, slow)
        timer.daemon = True
        timer.start()
        try:
            if not compiled.cached():
                helper.start()
                functions = compiled.callees(arguments)
                for name, needs in compiled.OWN_STEPS:
                    helper.wait_for(needs)
                    function, its_arguments = functions[name]
                    function.compile(compiled.signature(its_arguments))
                helper.wait_for(compiled.HELPER_STEPS)
            compiled.run_days.compile(compiled.signature(arguments))
        finally:
            timer.cancel()
            if timer.is_alive():
                timer.join()
            helper.stop()


class _Helper:
    """The helper process of `warm_up`, which says the name of each function it has compiled."""

    PATIENCE = 120.0
    """Seconds a `wait_for` waits for the helper at most (then it is not waited for again)."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None
        self.done: queue.Queue[str] = queue.Queue()
        self.seen: set[str] = set()
        self.ended = False  # it has ended: there is nothing more to wait for
        self.lock = threading.Lock()  # `warm_up`'s timer may start it too

    def start(self) -> None:
        """Start it, unless started already (if it cannot start, this process does it all)."""
        with self.lock, suppress(OSError):
            if self.process is not None:
                return
            self.process = subprocess.Popen(
                HELPER, stdin=DEVNULL, stdout=PIPE, stderr=DEVNULL, text=True
            )
            self.reader = threading.Thread(target=self._listen, args=(self.process,), daemon=True)
            self.reader.start()

    def _listen(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.done.put(line.strip())
        self.done.put("")  # it has ended

    def wait_for(self, names: Sequence[str]) -> None:
        """Wait until the helper has cached the functions `names`, or has ended."""
        deadline = time.monotonic() + self.PATIENCE
        while self.process is not None and not self.ended and not set(names) <= self.seen:
            try:
                name = self.done.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:  # given up on: this process compiles what it needs
                self.ended = True
                return
            self.ended = not name
            self.seen.add(name)

    def stop(self) -> None:
        """Stop it (at once, whatever it is compiling) and wait for it."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait()
            self.reader.join(1.0)  # it reads to the end of the pipe, then ends
            if self.process.stdout is not None and not self.reader.is_alive():
                self.process.stdout.close()


def load_kernel() -> None:
    """Load the kernel into this process (from numba's cache, or compile it), without running it.

    A batch worker calls it before each chunk of runs (it returns at once once loaded), so
    that loading (~0.3 s) is not counted in its first run's time. Waits for a compile in
    another process (`kernel.compile_lock`), then loads its result; no helper process and no
    notice (`warm_up` does those, once, before the workers start).
    """
    if compiled is None or "numba" not in KERNELS or compiled.run_days.signatures:
        return  # no numba, or loaded already
    with compiled.compile_lock(), compiled.optimisation_level():
        compiled.run_days.compile(compiled.signature(_compile_arguments()))


def load_kernel_for_forks() -> bool:
    """Load the cached kernel into a process that will fork workers, if they can use it.

    For a batch's fork server: its workers then start with the kernel loaded. That needs
    numba's fork-safe threads (`kernel.use_fork_safe_threads`), chosen here before they start.
    Returns whether the kernel was loaded: not where numba or its fork-safe threads are
    missing, and not if the kernel is not cached (this process never compiles it: a compile
    is `warm_up`'s, with its helper, and the workers then load its result themselves).
    """
    if compiled is None or "numba" not in KERNELS or not compiled.cached():
        return False
    if not compiled.use_fork_safe_threads():
        return False
    load_kernel()
    return True


def compile_helper_steps() -> None:
    """Compile (or load) `kernel.HELPER_STEPS` into numba's cache: the helper of `warm_up`.

    Prints the name of each function once it is cached, a line each.
    """
    if compiled is None:
        return
    functions = compiled.callees(_compile_arguments())
    with compiled.optimisation_level():
        for name in compiled.HELPER_STEPS:
            function, arguments = functions[name]
            function.compile(compiled.signature(arguments))
            print(name, flush=True)


Intents = list[tuple[int, np.ndarray, np.ndarray]]
"""Groups of intents of one kind: (kind, acting sites, target sites)."""

Totals = tuple[int, int, int, float, float]
"""End-of-day totals: healthy, senescent and immune counts, SASP sum, damage sum of healthy."""
TOTALS = len(get_args(Totals))


def moore_neighbours(size: int, torus: bool) -> np.ndarray:
    """Flat indices of the 8 Moore neighbours of every site, shape (size², 8); -1 = none."""
    x, y = np.divmod(np.arange(size * size), size)
    columns = []
    for dx, dy in OFFSETS:
        nx, ny = x + dx, y + dy
        if torus:
            columns.append((nx % size) * size + ny % size)
        else:
            inside = (nx >= 0) & (nx < size) & (ny >= 0) & (ny < size)
            columns.append(np.where(inside, nx * size + ny, -1))
    return np.stack(columns, axis=1).astype(np.int64)


def pick(mask: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Column of a uniformly chosen True in each row of `mask` (each row must have one).

    The choice is the rank min(floor(u * count), count - 1) among the row's True columns.

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
        kernel: "numba" (compiled, multithreaded) or "numpy" (whole-array numpy); the same
            random numbers and rules, so the same run up to float32 rounding.
        key: The run's random key (uint64): every daily draw is `draws.uniform` of it.
        tissue: Site states (EMPTY/HEALTHY/SENESCENT), int8, shape (size, size).
        immune: Immune cell present, bool, shape (size, size).
        sasp: SASP field (SASP units), float32, shape (size, size).
        perturbations: Experimental perturbations, in time order (`perturbation`).
    """

    time: int  # whole days (the agents engine keeps Mesa's float clock)

    def __init__(
        self,
        params: Parameters | None = None,
        therapy: Therapy | None = None,
        size: int = 100,
        start_age: int = 90,
        days: int = 640,
        torus: bool = True,
        rng: int | np.random.Generator | None = None,
        kernel: Kernel | None = None,
        perturbations: Sequence[Perturbation] = (),
    ) -> None:
        """Create the tissue at `start_age` and record day 0.

        Args:
            params: Biological parameters (defaults if None).
            therapy: Drug regimens (untreated if None).
            size: Lattice side L (sites), >= 3.
            start_age: Organism age at day 0, days, >= 0.
            days: Planned number of days, >= 0 (`running` is False after them).
            torus: Whether the lattice wraps around (else closed boundaries).
            rng: Seed or numpy Generator of the set-up and of the run's random key. The
                perturbations draw from their own generators (`perturbation.perturbation_seed`).
            kernel: "numba" or "numpy"; None picks the first of `KERNELS` (numba if installed).
            perturbations: Pulses and transplants, ages in [start_age, start_age + days) and
                not decreasing; each is applied at the start of the step leaving its age.

        Raises:
            ValueError: If an argument is out of range (see `TissueBase._set_up_run`) or the
                kernel is not available.
        """
        self._set_up_run(size, start_age, days, perturbations, rng)
        if kernel is not None and kernel not in KERNELS:
            raise ValueError(f"kernel {kernel!r} is not available here; allowed: {KERNELS}")
        self.kernel = kernel or KERNELS[0]
        self.params = params if params is not None else Parameters()
        self.therapy = therapy if therapy is not None else Therapy()
        self.start_age, self.days, self.torus, self.time = start_age, days, torus, 0
        self.rng = np.random.default_rng(rng)
        # Each day's event tally (by kind code) and totals (as in `Totals`), row t = day t.
        self._tallies = np.zeros((0, EVENTS), dtype=np.int64)
        self._aggregates = np.zeros((0, TOTALS))
        self._extend_timeline(days)

        sites = size * size
        self.tissue = np.full((size, size), EMPTY, dtype=np.int8)
        self.immune = np.zeros((size, size), dtype=bool)
        self.sasp = np.zeros((size, size), dtype=np.float32)
        self.damage = np.zeros(sites, dtype=np.float32)
        self.exposure = np.zeros(sites, dtype=np.float32)
        self.damage_scale = np.ones(sites, dtype=np.float32)
        self.divisions = np.zeros(sites, dtype=np.int16)
        self.arrest_age = np.zeros(sites, dtype=np.int32)
        self.lifetime = np.zeros(sites, dtype=np.int32)

        self._populate(self._days[0])
        self.key = self.rng.integers(0, 2**64, dtype=np.uint64, endpoint=False)
        if self.kernel == "numba":
            self._buffers = compiled.Buffers(size)
        self._aggregates[0] = self._totals()
        self.running = days > 0

    @cached_property
    def neighbours(self) -> np.ndarray:
        """Flat indices of the 8 Moore neighbours of every site (`moore_neighbours`)."""
        return moore_neighbours(self.tissue.shape[0], self.torus)

    @cached_property
    def _sites(self) -> np.ndarray:
        """Every flat site index, as uint64 draw counters."""
        return np.arange(self.tissue.size, dtype=np.uint64)

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
            rng.standard_normal(healthy.size), p.damage_heterogeneity
        )
        self.damage[healthy] = self.damage_scale[healthy] * rules.equilibrium_damage(
            day.damage_drive, day.damage_repair
        )

        self._settle_field(self.sasp, self._secretion(day.sasp_output))
        occupied = np.flatnonzero(
            rng.random(tissue.size) < self._initial_immune_prob(self.sasp.ravel())
        )
        self.immune.ravel()[occupied] = True
        self.lifetime[occupied] = self._lifetimes(occupied.size)
        self.exposure[healthy] = self.sasp.ravel()[healthy] * day.inflammation

    def _extend_timeline(self, days: int) -> None:
        """The timeline, the rates of its days, and rows for their tallies and totals."""
        super()._extend_timeline(days)
        self._rates = rates_table(self.params, day_columns(self.timeline))
        more = len(self.timeline) - len(self._tallies)
        self._tallies = np.concatenate([self._tallies, np.zeros((more, EVENTS), np.int64)])
        self._aggregates = np.concatenate([self._aggregates, np.zeros((more, TOTALS))])

    # --- days -------------------------------------------------------------------------------

    def step(self) -> None:
        """Advance the tissue by one day (decide, apply in random priority, field, readouts)."""
        self.run_for(1)

    def run_for(self, days: int) -> None:
        """Advance the tissue by `days` days: the same as as many `step`s, in fewer calls.

        The compiled kernel runs the days between perturbations in one call.

        Args:
            days: Days to simulate, >= 0 (past the planned `days` too: the run goes on).

        Raises:
            ValueError: If `days` is negative.
        """
        if days < 0:
            raise ValueError(f"need days >= 0, got {days}")
        end = self.time + days
        self._day(end)  # the timeline and its rates reach the last day
        while self.time < end:
            self._perturb(self.start_age + self.time, self.tissue)
            # Perturbations act between days: go on to the next one due, or to the end.
            stop = min(
                [end]
                + [
                    q.age - self.start_age
                    for q in self.perturbations
                    if q.age - self.start_age > self.time
                ]
            )
            if self.kernel == "numba":
                self._numba_days(self.time + 1, stop)
            else:
                for t in range(self.time + 1, stop + 1):
                    self._numpy_day(t)
            self.time = stop
        self.running = self.time < self.days

    @property
    def readouts(self) -> pd.DataFrame:
        """Daily readouts so far (one row per day, day 0 = initial state)."""
        days = slice(0, self.time + 1)
        healthy, senescent, immune = self._aggregates[days, :3].T.astype(np.int64)
        sasp_sum, damage_sum = self._aggregates[days, 3:].T
        return pd.DataFrame(
            readout_row(
                day_columns(self.timeline.iloc[days]),
                self.params,
                sites=self.tissue.size,
                healthy=healthy,
                senescent=senescent,
                immune=immune,
                events=tally(self._tallies[days]),
                sasp_sum=sasp_sum,
                damage_sum=damage_sum,
            )
        )

    def _numba_days(self, first: int, last: int) -> None:
        """Days first..last by the compiled kernel (`tissue_abm.engines.array.kernel`)."""
        load_kernel()  # compiled as `warm_up` would (`kernel.optimisation_level`), if not yet
        parallel = compiled.prepare_threads(self.tissue.shape[0])
        if compiled.run_days(*self._kernel_arguments(first, last, parallel)):
            self.sasp, self._buffers.field = self._buffers.field, self.sasp

    def _kernel_arguments(self, first: int, last: int, parallel: bool) -> tuple[Any, ...]:
        """The arguments of `kernel.run_days` for days first..last (`parallel` diffusion)."""
        p, b = self.params, self._buffers
        return (
            first,
            last,
            self.torus,
            self.tissue,
            self.immune,
            self.damage,
            self.exposure,
            self.damage_scale,
            self.divisions,
            self.arrest_age,
            self.lifetime,
            self.sasp,
            self.key,
            self._rates,
            self._tallies,
            self._aggregates,
            np.count_nonzero(self.tissue == SENESCENT),
            *b.day_arguments(),
            *rules.diffusion_scheme(p.sasp_diffusion, p.sasp_decay),
            parallel,
        )

    def _numpy_day(self, t: int) -> None:
        """Day t by whole-array numpy operations."""
        # Python floats, as numpy treats them (NEP 50): float32 arithmetic stays float32.
        rates, keys = Rates(*self._rates[t].tolist()), draws.day_keys(self.key, t)
        groups = [
            *self._healthy_intents(rates, keys),
            *self._senescent_intents(rates, keys),
            *self._immune_intents(rates, keys),
            *self._recruitment_intents(rates, keys),
        ]
        kind = np.concatenate([np.full(len(sources), k) for k, sources, _ in groups])
        source = np.concatenate([sources for _, sources, _ in groups])
        target = np.concatenate([targets for _, _, targets in groups])
        slot = target + self.tissue.size * ON_IMMUNE_SLOT[kind]
        priority = draws.bits(
            keys[draws.PRIORITY], claim_id(source, BY_IMMUNE[kind]).astype(np.uint64)
        )
        order = np.lexsort((~priority, slot))  # within a slot, the highest priority first
        first = np.ones(order.size, dtype=bool)
        first[1:] = slot[order][1:] != slot[order][:-1]
        won = order[first]
        self._apply(kind[won], source[won], target[won], rates, keys)
        rules.diffuse_decay(
            self.sasp,
            self._secretion(rates.sasp_output),
            self.params.sasp_diffusion,
            self.params.sasp_decay,
            self.torus,
        )
        self._tallies[t] = np.bincount(kind[won], minlength=EVENTS)
        self._aggregates[t] = self._totals()

    def _draw(self, keys: np.ndarray, stream: int, sites: np.ndarray | None = None) -> np.ndarray:
        """Uniforms of `stream` today for `sites` (flat indices; all sites if None)."""
        counters = self._sites if sites is None else sites.astype(np.uint64)
        return draws.uniform(keys[stream], counters)

    def _healthy_intents(self, r: Rates, keys: np.ndarray) -> Intents:
        tissue = self.tissue.ravel()
        # Damage and exposure advance at every site (values off healthy sites are never read):
        # whole-array arithmetic, no gathers.
        sasp = self.sasp.ravel() * np.float32(r.inflammation)
        self.exposure[:] = rules.exposure_step(self.exposure, sasp, r.exposure_memory)
        self.damage[:] = rules.damage_step(
            self.damage,
            r.damage_drive * self.damage_scale,
            r.damage_repair,
            sasp,
            r.damage_sasp_gain,
        )
        # Only draws below the chance of any event at the highest rates can give one: the
        # probabilities are computed for those few cells alone.
        u = self._draw(keys, draws.EVENT)
        cells = np.flatnonzero((u < r.event_bound) & (tissue == HEALTHY))
        event = rules.first_event(
            u[cells],
            (
                r.healthy_death,
                rules.primary_senescence_prob(
                    self.damage[cells], r.primary_max, r.primary_half, r.primary_hill
                ),
                rules.paracrine_senescence_prob(
                    self.exposure[cells], r.paracrine_max, r.paracrine_half, r.paracrine_hill
                ),
                r.division,
            ),
        )
        dividing = cells[event == 4]
        around = self.neighbours[dividing]
        vacant = (around >= 0) & (tissue[around] == EMPTY)
        able = vacant.any(axis=1)
        dividing, around, vacant = dividing[able], around[able], vacant[able]
        arrested = self.divisions[dividing] >= r.replicative_limit
        parents = dividing[~arrested]
        daughters = around[~arrested][
            np.arange(parents.size),
            pick(vacant[~arrested], self._draw(keys, draws.DIVISION_PICK, parents)),
        ]
        return [
            *(
                (kind, cells[event == k], cells[event == k])
                for k, kind in ((1, DIE), (2, PRIMARY), (3, PARACRINE))
            ),
            (REPLICATIVE, dividing[arrested], dividing[arrested]),
            (DIVIDE, parents, daughters),
        ]

    def _senescent_intents(self, r: Rates, keys: np.ndarray) -> Intents:
        cells = np.flatnonzero(self.tissue.ravel() == SENESCENT)
        self.arrest_age[cells] += 1
        phagocytosis = rules.phagocytic_clearance_prob(
            cells.size / self.tissue.size, r.phagocytic_rate, r.phagocytic_half
        )
        event = rules.first_event(
            self._draw(keys, draws.EVENT, cells), (r.senolysis, r.senescent_death, phagocytosis)
        )
        return [
            (kind, cells[event == k], cells[event == k])
            for k, kind in ((1, SENOLYSIS), (2, SEN_DEATH), (3, PHAGOCYTOSIS))
        ]

    def _immune_intents(self, r: Rates, keys: np.ndarray) -> Intents:
        tissue, immune, sasp = self.tissue.ravel(), self.immune.ravel(), self.sasp.ravel()
        cells = np.flatnonzero(immune)
        self.lifetime[cells] -= 1
        leaving = self.lifetime[cells] <= 0
        staying = cells[~leaving]

        near = np.concatenate([staying[:, None], self.neighbours[staying]], axis=1)
        prey = (near >= 0) & (tissue[near] == SENESCENT)
        hunting = prey.any(axis=1)
        strike = self._draw(keys, draws.STRIKE, staying[hunting]) < r.immune_competence
        hunters = staying[hunting][strike]
        victims = near[hunting][strike][
            np.arange(hunters.size),
            pick(prey[hunting][strike], self._draw(keys, draws.PREY_PICK, hunters)),
        ]

        walkers = staying[~hunting]
        around = self.neighbours[walkers]
        free = (around >= 0) & ~immune[around]
        able = free.any(axis=1)
        walkers, around, free = walkers[able], around[able], free[able]
        level = np.where(free, sasp[around], -np.inf)
        chemotactic = self._draw(keys, draws.CHEMOTAXIS, walkers) < r.immune_chemotaxis
        best = free & (level == level.max(axis=1, keepdims=True))
        choice = np.where(chemotactic[:, None], best, free)
        steps = around[
            np.arange(walkers.size), pick(choice, self._draw(keys, draws.MOVE_PICK, walkers))
        ]
        return [
            (DEPART, cells[leaving], cells[leaving]),
            (KILL, hunters, victims),
            (MOVE, walkers, steps),
        ]

    def _recruitment_intents(self, r: Rates, keys: np.ndarray) -> Intents:
        sasp, immune = self.sasp.ravel(), self.immune.ravel()
        u = self._draw(keys, draws.RECRUIT)
        maybe = np.flatnonzero((u < r.recruit_bound) & ~immune)
        arrivals = maybe[
            u[maybe]
            < rules.recruitment_prob(sasp[maybe], r.recruit_base, r.recruit_max, r.recruit_half)
        ]
        return [(RECRUIT, arrivals, arrivals)]

    def _apply(
        self, kind: np.ndarray, source: np.ndarray, target: np.ndarray, r: Rates, keys: np.ndarray
    ) -> None:
        """Carry out the winning intents (no two touch the same slot)."""
        tissue, immune = self.tissue.ravel(), self.immune.ravel()
        of = {k: kind == k for k in range(EVENTS)}
        tissue[source[of[DIE] | of[SEN_DEATH] | of[SENOLYSIS] | of[PHAGOCYTOSIS]]] = EMPTY
        tissue[target[of[KILL]]] = EMPTY
        arrest = source[of[PRIMARY] | of[PARACRINE] | of[REPLICATIVE]]
        tissue[arrest] = SENESCENT
        self.arrest_age[arrest] = 0

        parents, daughters = source[of[DIVIDE]], target[of[DIVIDE]]
        self.divisions[parents] += 1
        tissue[daughters] = HEALTHY
        for state in (self.damage, self.exposure, self.divisions):
            state[daughters] = state[parents]
        self.damage_scale[daughters] = rules.lognormal_multiplier(
            draws.standard_normal(
                self._draw(keys, draws.DAUGHTER_A, daughters),
                self._draw(keys, draws.DAUGHTER_B, daughters),
            ),
            r.damage_heterogeneity,
        )

        immune[source[of[DEPART]]] = False
        movers, steps = source[of[MOVE]], target[of[MOVE]]
        immune[movers] = False
        immune[steps] = True
        self.lifetime[steps] = self.lifetime[movers]
        recruits = source[of[RECRUIT]]
        immune[recruits] = True
        self.lifetime[recruits] = draws.geometric(
            self._draw(keys, draws.RESIDENCE, recruits), r.residence_log
        )

    def _make_senescent(self, sites: np.ndarray) -> None:
        self.tissue.ravel()[sites] = SENESCENT
        self.arrest_age[sites] = 0

    def _make_healthy(self, sites: np.ndarray, damage_scale: np.ndarray) -> None:
        self.tissue.ravel()[sites] = HEALTHY
        for state in (self.damage, self.exposure, self.divisions):
            state[sites] = 0
        self.damage_scale[sites] = damage_scale

    # --- shared pieces ----------------------------------------------------------------------

    def _secretion(self, output: float) -> np.ndarray:
        """SASP secreted today at each site (SASP units per day), float32."""
        source = np.zeros(self.sasp.shape, dtype=np.float32)
        cells = np.flatnonzero(self.tissue.ravel() == SENESCENT)
        source.ravel()[cells] = rules.sasp_secretion(
            self.arrest_age[cells], self.params.sasp_maturation, output
        )
        return source

    def _totals(self) -> Totals:
        tissue = self.tissue.ravel()
        healthy = tissue == HEALTHY
        return (
            int(healthy.sum()),
            int(np.count_nonzero(tissue == SENESCENT)),
            int(np.count_nonzero(self.immune)),
            float(self.sasp.sum(dtype=np.float64)),
            float(self.damage[healthy].sum(dtype=np.float64)),
        )

    def _fields(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.tissue, self.immune, self.sasp

"""The array engine's day compiled with numba (the default kernel of `ArrayTissue`).

Three steps a day, which `run_days` runs for many days in one call from Python:

1. `decide` (parallel over blocks of rows): damage and exposure advance everywhere, and cheap
   draws and bounds rule out most sites; the few candidates left (about 1%) are listed per
   block and write the intent of their tissue cell and of their immune slot
   (`intents.KINDS`) beside them.
2. `resolve_and_apply` (serial, over the intents): the claim of highest random priority wins
   each slot; winners are carried out.
3. `secrete_and_diffuse` (by rows, once per sub-step; in parallel on large lattices): the SASP
   field diffuses and decays, and the senescent cells (all among the candidates) secrete; then
   the day's totals are summed.

The biology is `tissue_abm.biology.rules` compiled as it is (each rule registered with
`register_jitable`) and the random numbers are `tissue_abm.engines.array.draws`: the functions the
numpy kernel calls on arrays. Both kernels therefore draw the same numbers and decide alike;
float32 rounding of damage and exposure may differ in the last bit. Every site's decision
depends only on the start-of-day state and its own draws, and the totals are summed serially,
so the result does not depend on the number of threads (`set_threads`).
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, cast

# Idle OpenMP threads sleep instead of spinning (unless the user chose otherwise): a spinning
# thread takes a core from the others, and under load its spinning made days 10-20x slower
# (benchmarks/bench_contention.py). Set before numba loads its threading layer, on first use.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numba
import numpy as np
from numba.extending import overload, register_jitable
from numba.np.unsafe.ndarray import to_fixed_tuple

from tissue_abm.biology import rules
from tissue_abm.biology.rules import EMPTY, HEALTHY, SENESCENT
from tissue_abm.engines import THREADS_VARIABLE, requested_threads
from tissue_abm.engines.array import draws, intents
from tissue_abm.engines.array.intents import (
    BY_IMMUNE,
    DEPART,
    DIE,
    DIVIDE,
    KILL,
    MARGIN,
    MOVE,
    OFFSETS,
    ON_IMMUNE_SLOT,
    PARACRINE,
    PHAGOCYTOSIS,
    PRIMARY,
    RATES,
    RECRUIT,
    REPLICATIVE,
    SEN_DEATH,
    SENOLYSIS,
    Rates,
    claim_id,
)


@overload(rules._exp)
def _scalar_exp(x):
    """`rules._exp` in compiled code, where it only ever sees scalars: `math.exp`."""
    return lambda x: math.exp(x)


@overload(rules._at_most_one)
def _scalar_at_most_one(x):
    """`rules._at_most_one` for scalars: one comparison (no NaN propagation to vectorise)."""
    return lambda x: x if x < 1.0 else 1.0


for _function in (
    rules.hill,
    rules.hill_bound,
    rules.any_event_prob,
    rules.first_event,
    rules.lognormal_multiplier,
    rules.damage_step,
    rules.exposure_step,
    rules.primary_senescence_prob,
    rules.paracrine_senescence_prob,
    rules.sasp_secretion,
    rules.recruitment_prob,
    rules.recruitment_prob_bound,
    rules.phagocytic_clearance_prob,
    draws.mix,
    draws.bits,
    draws.uniform,
    draws.standard_normal,
    draws.geometric,
    claim_id,
):
    register_jitable(_function)


_requested: int | None = None
"""The thread count `set_threads` fixed in this process (None: `kernel_threads` chooses)."""


def set_threads(count: int | None) -> None:
    """Fix the kernel's threads in this process; None lets `kernel_threads` choose."""
    global _requested
    _requested = count


def kernel_threads(size: int) -> int:
    """Threads for the days of an L x L lattice (`size` = L), at most numba's.

    The count fixed by `set_threads`, else by the environment variable `THREADS_VARIABLE`,
    else: one on a lattice below `PARALLEL_SIDE` while every core is free (a parallel loop
    costs more there than it saves), and otherwise all of numba's threads. Idle threads sleep
    (OMP_WAIT_POLICY=PASSIVE), so a thread that shares its core with another busy process
    holds up a parallel loop only briefly; on a busy machine more threads get more of it
    (docs/speed.md#threads).
    """
    # numba.config sets its options at import, out of sight of numba's type information.
    available: int = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
    count = _requested
    if count is None:
        count = requested_threads(os.environ.get(THREADS_VARIABLE))
    if count is None:
        count = available if size >= PARALLEL_SIDE or free_cores() < _cores() else 1
    return max(1, min(count, available))


def _cores() -> int:
    """Cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


FORK_SAFE_LAYER = "tbb"
"""numba's threading layer that survives a fork (Intel TBB, the `tbb` package): numba stops its
threads before a fork and starts them again after. GNU OpenMP, numba's default where TBB is not
found, cannot be used again in a forked child, and numba's `workqueue` layer made one-thread
days 1.8x slower (docs/speed.md#batch-runs)."""


TBB_INTERFACE = 12060
"""The oldest TBB numba's layer works with (TBB 2021.6's runtime interface version)."""


def use_fork_safe_threads() -> bool:
    """Give numba's threads in this process the `FORK_SAFE_LAYER`, before they start.

    For a process that loads the kernel and then forks workers (a batch's fork server). The
    layer's library is loaded from where pip installed the `tbb` package (numba looks for it
    on the system's library path only). Returns whether the threads are fork-safe: False
    where TBB is not installed (or on another system than Linux) or where numba's threads
    have started already with another layer.
    """
    try:
        return bool(numba.threading_layer() == FORK_SAFE_LAYER)
    except ValueError:  # numba's threads have not started: the layer may still be chosen
        pass
    try:
        library = next(file for file in metadata.files("tbb") or [] if file.name == "libtbb.so.12")
        tbb = ctypes.CDLL(str(library.locate()), mode=ctypes.RTLD_GLOBAL)  # found by name now
        if tbb.TBB_runtime_interface_version() < TBB_INTERFACE:
            return False
    except (metadata.PackageNotFoundError, StopIteration, OSError, AttributeError):
        return False
    # Not in the environment, where child processes would find it without the library.
    numba.config.THREADING_LAYER = FORK_SAFE_LAYER  # type: ignore[attr-defined]
    return True


_seen: tuple[float, int] = (-math.inf, 0)
"""(time.monotonic() of the last look, cores free then): `free_cores` looks every second."""


def free_cores() -> int:
    """Cores of this process's CPU set not taken by other running threads (>= 1).

    Linux: the kernel's count of running threads (/proc/loadavg) less this process's own;
    elsewhere the one-minute load average stands in for the other threads. Looked up at most
    once a second (about 0.1 ms a look).
    """
    global _seen
    if time.monotonic() - _seen[0] < 1.0:
        return _seen[1]
    try:
        running = int(Path("/proc/loadavg").read_text().split()[3].partition("/")[0])
        others = running - sum(_state(task) == "R" for task in Path("/proc/self/task").iterdir())
    except (OSError, ValueError, IndexError):
        others = round(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0
    _seen = (time.monotonic(), max(1, _cores() - max(0, others)))
    return _seen[1]


def _state(task: Path) -> str:
    """The scheduler state of a thread (/proc/self/task/ID): R = running or runnable."""
    try:
        return (task / "stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return "?"


def prepare_threads(size: int) -> bool:
    """Set the threads of the next call from this thread (`kernel_threads`).

    Returns:
        Whether the diffusion runs in parallel (`run_days`' argument `parallel`).
    """
    threads = kernel_threads(size)
    numba.set_num_threads(threads)
    return threads > 1 and size >= PARALLEL_DIFFUSION


PARALLEL_SIDE = 256
"""Lattice side from which `kernel_threads` always chooses all threads (below it, one while
the machine is otherwise idle): benchmarks/bench_contention.py."""


day_keys = numba.njit(cache=True)(draws.day_keys)
"""`draws.day_keys`, compiled: the same keys, without the cost of a dozen tiny numpy calls."""

_DX = np.array([dx for dx, _ in OFFSETS])
_DY = np.array([dy for _, dy in OFFSETS])


BLOCK_SITES = 512
"""`decide` works on blocks of whole rows of at least this many sites (or the whole lattice).

A block is one loop over consecutive sites, and each loop ends with a few sites done one at a
time, outside its vectorised body: blocks of 6 rows instead of single rows made a 100 x 100
day 8% faster here (61 x 61: 10%; 1000 x 1000, where a row is a block: the same).
"""


type WorkArrays = tuple[
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
]
"""The 13 work arrays of `Buffers.day_arguments`: a tuple of fixed length, so that type checkers
can count the arguments of `run_days`."""


class Buffers:
    """Work arrays allocated once per run and reused every day."""

    def __init__(self, size: int) -> None:
        """Buffers for an L x L grid (`size` = L)."""
        sites = size * size
        rows = min(size, -(-BLOCK_SITES // size))  # rows per block (`BLOCK_SITES`)
        blocks = -(-size // rows)
        # Block b holds the sites starts[b] .. starts[b + 1] - 1 (whole rows).
        self.starts = np.minimum(np.arange(blocks + 1) * rows * size, sites)
        self.vacancies = np.zeros((size, size), dtype=np.int8)
        self.wall = np.full(size, HEALTHY, dtype=np.int8)  # beyond a closed edge: never empty
        self.marks = np.zeros((blocks, -(-rows * size // 8) * 8), dtype=np.int8)  # whole words
        # The candidates of block b and their intents are at starts[b] ... + counts[b] - 1.
        self.counts = np.zeros(blocks, dtype=np.int32)
        self.candidates = np.zeros(sites, dtype=np.int32)
        self.tissue_kind = np.zeros(sites, dtype=np.int8)
        self.tissue_target = np.zeros(sites, dtype=np.int32)
        self.immune_kind = np.zeros(sites, dtype=np.int8)
        self.immune_target = np.zeros(sites, dtype=np.int32)
        self.field = np.zeros((size, size), dtype=np.float32)
        self.secreting = np.zeros(sites, dtype=np.int32)  # senescent sites, ...
        self.secretion = np.zeros(sites, dtype=np.float32)  # ... and what each secretes

    def day_arguments(self) -> WorkArrays:
        """The work arrays in the order `run_days` takes them."""
        return (
            self.starts,
            self.vacancies,
            self.wall,
            self.marks,
            self.counts,
            self.candidates,
            self.tissue_kind,
            self.tissue_target,
            self.immune_kind,
            self.immune_target,
            self.field,
            self.secreting,
            self.secretion,
        )


@numba.njit(inline="always")
def _neighbour(x, y, k, size, torus):
    """Flat index of Moore neighbour k (`OFFSETS` order) of site (x, y); -1 beyond the edge."""
    nx, ny = x + _DX[k], y + _DY[k]
    if 0 <= nx < size and 0 <= ny < size:
        return nx * size + ny
    if torus:
        return _wrap(nx, size, True) * size + _wrap(ny, size, True)
    return -1


@numba.njit(inline="always")
def _wrap(z, size, torus):
    """Coordinate z in -1..size on the lattice: wrapped on a torus, clamped otherwise.

    (Clamping is the closed boundary's mirror for diffusion; comparisons, not `%`, which
    would cost an integer division.)
    """
    if z < 0:
        return size - 1 if torus else 0
    if z >= size:
        return 0 if torus else size - 1
    return z


@numba.njit(inline="always")
def _rank(u, count):
    """Which of `count` options a uniform u chooses (as `arrays.pick`)."""
    return min(int(u * count), count - 1)


_TISSUE, _IMMUNE = 1, 2
"""Bits of a site's mark: its tissue cell, its immune slot may have an intent today."""


@numba.njit(cache=True)
def run_days(
    first: int,
    last: int,
    torus: bool,
    tissue,
    immune,
    damage,
    exposure,
    damage_scale,
    divisions,
    arrest_age,
    lifetime,
    sasp,
    key,
    rates,
    tallies,
    aggregates,
    senescent,
    b_starts,
    b_vacancies,
    b_wall,
    b_marks,
    b_counts,
    b_candidates,
    b_tissue_kind,
    b_tissue_target,
    b_immune_kind,
    b_immune_target,
    b_field,
    b_secreting,
    b_secretion,
    substeps: int,
    dt: float,
    keep: float,
    spread: float,
    parallel: bool,
) -> bool:
    """Days `first` to `last` (inclusive) in one call from Python.

    Each day is `decide`, `resolve_and_apply` and `secrete_and_diffuse`. Args are the state
    arrays (`tissue`, `immune` and `sasp` (L, L); the others flat), the run key, the rates of
    every day of the timeline (`intents.rates_table`, row t = day t), the tables that receive
    each day's event tally (`tallies`, int64, (days, EVENTS)) and totals (`aggregates`,
    float64, (days, 5): healthy, senescent, immune, SASP sum, damage sum of healthy cells),
    the number of senescent cells at the start of day `first` (after its perturbations: it
    sets the day's phagocytic clearance, `rules.phagocytic_clearance_prob`), the work arrays
    of `Buffers` (b_..., in the order of `Buffers.day_arguments`) and the
    diffusion scheme (`rules.diffusion_scheme`) and whether it runs in parallel
    (`prepare_threads`).

    Returns:
        Whether the final field is in `b_field` (the sub-steps alternate between the two).
    """
    field, other, swapped = sasp, b_field, False
    for t in range(first, last + 1):
        # numba types the intrinsic's definition (typing context, array, length), not its call.
        keys, r = day_keys(key, t), Rates(*to_fixed_tuple(rates[t], RATES))  # type: ignore[call-arg]
        phagocytosis = rules.phagocytic_clearance_prob(
            senescent / tissue.size, r.phagocytic_rate, r.phagocytic_half
        )
        decide(
            torus,
            tissue,
            immune,
            damage,
            exposure,
            damage_scale,
            divisions,
            arrest_age,
            lifetime,
            field,
            keys,
            r,
            phagocytosis,
            b_starts,
            b_vacancies,
            b_wall,
            b_marks,
            b_counts,
            b_candidates,
            b_tissue_kind,
            b_tissue_target,
            b_immune_kind,
            b_immune_target,
        )
        resolve_and_apply(
            tissue.ravel(),
            immune.ravel(),
            damage,
            exposure,
            damage_scale,
            divisions,
            arrest_age,
            lifetime,
            keys,
            r,
            b_starts,
            b_counts,
            b_candidates,
            b_tissue_kind,
            b_tissue_target,
            b_immune_kind,
            b_immune_target,
            tallies[t],
        )
        if secrete_and_diffuse(
            torus,
            tissue,
            immune,
            damage,
            arrest_age,
            field,
            other,
            b_starts,
            b_counts,
            b_candidates,
            b_secreting,
            b_secretion,
            r,
            substeps,
            dt,
            keep,
            spread,
            parallel,
            aggregates[t],
        ):
            field, other, swapped = other, field, not swapped
        senescent = aggregates[t, 1]  # at the start of the next day
    return swapped


@numba.njit(parallel=True, cache=True)
def decide(
    torus: bool,
    tissue,
    immune,
    damage,
    exposure,
    damage_scale,
    divisions,
    arrest_age,
    lifetime,
    sasp,
    keys,
    r: Rates,
    phagocytosis: float,
    starts,
    vacancies,
    wall,
    marks,
    counts,
    candidates,
    tissue_kind,
    tissue_target,
    immune_kind,
    immune_target,
) -> None:
    """Advance damage and exposure and write the intents of every site, block by block.

    `tissue`, `immune`, `sasp` and `vacancies` are (L, L), the other state arrays flat; block
    b is the whole rows of sites starts[b] .. starts[b + 1] - 1 (`Buffers`), `marks[b]` its
    marks. Each block is done in three passes while it is in cache:

    1. a pass without branches over every site (it vectorises): damage, exposure and the
       cheap draws that rule most sites out, written as marks (`_TISSUE`, `_IMMUNE`), after
       each row's count of vacancies around each site;
    2. the marked sites' indices, gathered into the block's part of `candidates`;
    3. the decisions of those few sites, written beside them (`tissue_kind`, ...).

    One loop with the decisions inline runs at half the speed: its rare branches slow down
    the common path. Blocks are independent (a decision reads its neighbours' start-of-day
    state only), so they run in parallel.
    """
    size = tissue.shape[0]
    flat_tissue, flat_immune, flat_sasp = tissue.ravel(), immune.ravel(), sasp.ravel()
    flat_vacancies = vacancies.ravel()
    for b in numba.prange(counts.size):
        start, end = starts[b], starts[b + 1]
        for x in range(start // size, end // size):
            up = tissue[_wrap(x - 1, size, True)] if torus or x > 0 else wall
            down = tissue[_wrap(x + 1, size, True)] if torus or x < size - 1 else wall
            _count_row(up, tissue[x], down, torus, vacancies[x])
        _mark_sites(
            start,
            flat_tissue[start:end],
            flat_immune[start:end],
            damage[start:end],
            exposure[start:end],
            damage_scale[start:end],
            flat_sasp[start:end],
            flat_vacancies[start:end],
            keys,
            r,
            marks[b],
        )
        counts[b] = found = _gather(marks[b], start, end - start, candidates)
        for c in range(start, start + found):
            i = np.int64(candidates[c])
            mark = marks[b, i - start]
            tissue_kind[c] = immune_kind[c] = 0
            if mark & _TISSUE:
                tissue_kind[c], tissue_target[c] = _tissue_intent(
                    i,
                    size,
                    torus,
                    flat_tissue,
                    damage,
                    exposure,
                    divisions,
                    arrest_age,
                    keys,
                    r,
                    phagocytosis,
                )
            if mark & _IMMUNE:
                immune_kind[c], immune_target[c] = _immune_intent(
                    i, size, torus, flat_tissue, flat_immune, lifetime, flat_sasp, keys, r
                )


@numba.njit(inline="always")
def _count_row(up, row, down, torus, out):
    """Number of empty Moore neighbours of each site of one row, into `out`.

    `up` and `down` are the rows either side (a never-empty wall beyond a closed edge); the
    inner loop has no branches, so it vectorises.
    """
    last = row.size - 1
    for y in range(1, last):
        out[y] = (
            (up[y - 1] == EMPTY)
            + (up[y] == EMPTY)
            + (up[y + 1] == EMPTY)
            + (row[y - 1] == EMPTY)
            + (row[y + 1] == EMPTY)
            + (down[y - 1] == EMPTY)
            + (down[y] == EMPTY)
            + (down[y + 1] == EMPTY)
        )
    for y, inner, outer in ((0, 1, last), (last, last - 1, 0)):  # outer: across a torus's seam
        out[y] = (
            (up[y] == EMPTY)
            + (down[y] == EMPTY)
            + (up[inner] == EMPTY)
            + (row[inner] == EMPTY)
            + (down[inner] == EMPTY)
            + torus * ((up[outer] == EMPTY) + (row[outer] == EMPTY) + (down[outer] == EMPTY))
        )


@numba.njit(inline="always")
def _mark_sites(
    start, states, immune, damage, exposure, damage_scale, sasp, vacancies, keys, r, marks
):
    """Advance damage and exposure of consecutive sites (flat indices start...), mark them.

    Every array is those sites' (indexed from 0, so that no index can be negative and the
    loop vectorises). A healthy cell whose draw is at or above a bound of its chance of death or
    senescence can only divide (or do nothing): it is marked only next to a vacancy. Most cells
    have none, so this rules out most of the draws that fall below `event_bound`, which
    division dominates. The bound (`rules.hill_bound`) needs no power.
    """
    inflammation, memory = np.float32(r.inflammation), r.exposure_memory
    drive, repair, gain = r.damage_drive, r.damage_repair, r.damage_sasp_gain
    event_key, recruit_key = keys[draws.EVENT], keys[draws.RECRUIT]
    for y in range(states.size):
        seen = sasp[y] * inflammation
        exposure[y] = rules.exposure_step(exposure[y], seen, memory)
        damage[y] = rules.damage_step(damage[y], drive * damage_scale[y], repair, seen, gain)
        counter = np.uint64(start + y)
        u = draws.uniform(event_key, counter)
        # Draws at or above this bound of the chance of death or senescence can only divide.
        only_division = (1.0 + MARGIN) * rules.any_event_prob(
            (
                r.healthy_death,
                r.primary_max * rules.hill_bound(damage[y], r.primary_half, r.primary_hill),
                r.paracrine_max * rules.hill_bound(exposure[y], r.paracrine_half, r.paracrine_hill),
            )
        )
        tissue_mark = (states[y] == SENESCENT) | (
            (states[y] == HEALTHY)
            & ((u < only_division) | ((u < r.event_bound) & (vacancies[y] > 0)))
        )
        immune_mark = immune[y] | (
            draws.uniform(recruit_key, counter)
            < (1.0 + MARGIN)
            * (rules.recruitment_prob_bound(sasp[y], r.recruit_base, r.recruit_max, r.recruit_half))
        )
        marks[y] = _TISSUE * np.int8(tissue_mark) + _IMMUNE * np.int8(immune_mark)


@numba.njit(inline="always")
def _gather(marks, start, sites, out):
    """Write the flat indices (start + y) of the marked sites among marks[:sites] to out[start...].

    Returns their number. Marks are read 8 at a time (`marks` is padded to whole words):
    most words hold none.
    """
    found = 0
    words = marks.view(np.uint64)
    for word in range(words.size):
        if words[word]:
            for y in range(8 * word, min(8 * word + 8, sites)):
                out[start + found] = start + y
                found += marks[y] != 0
    return found


@numba.njit(inline="always")
def _tissue_intent(
    i, size, torus, tissue, damage, exposure, divisions, arrest_age, keys, r, phagocytosis
):
    """(kind, target) of the marked tissue cell on site i (`phagocytosis`: today's chance)."""
    u = draws.uniform(keys[draws.EVENT], np.uint64(i))
    if tissue[i] == SENESCENT:
        arrest_age[i] += 1
        event = rules.first_event(u, (r.senolysis, r.senescent_death, phagocytosis))
        return (0, SENOLYSIS, SEN_DEATH, PHAGOCYTOSIS)[event], i
    return _healthy_intent(i, u, size, torus, tissue, damage, exposure, divisions, keys, r)


@numba.njit(inline="always")
def _healthy_intent(i, u, size, torus, tissue, damage, exposure, divisions, keys, r):
    """(kind, target) of healthy cell i whose draw u fell below the event bound."""
    if r.division_from <= u < r.division_to:  # division, whatever the cell's damage and exposure
        return _division(i, size, torus, tissue, divisions, keys, r.replicative_limit)
    event = rules.first_event(
        u,
        (
            r.healthy_death,
            rules.primary_senescence_prob(damage[i], r.primary_max, r.primary_half, r.primary_hill),
            rules.paracrine_senescence_prob(
                exposure[i], r.paracrine_max, r.paracrine_half, r.paracrine_hill
            ),
            r.division,
        ),
    )
    if event == 4:
        return _division(i, size, torus, tissue, divisions, keys, r.replicative_limit)
    return (0, DIE, PRIMARY, PARACRINE)[event], i


# Compiled as functions of their own, not inlined into `decide` as the frequent paths are: this
# halves the kernel's compile and costs no measurable speed (docs/speed.md#the-first-run);
# cached, so that a helper process can compile them while `decide` compiles (`HELPER_STEPS`).
@numba.njit(cache=True)
def _division(i, size, torus, tissue, divisions, keys, limit):
    """(kind, target) of healthy cell i that divides (or arrests at the replicative limit).

    It divides into a random vacant neighbour; nothing happens if none is vacant.
    """
    x, y = divmod(i, size)
    vacant = 0
    for k in range(8):
        j = _neighbour(x, y, k, size, torus)
        vacant += j >= 0 and tissue[j] == EMPTY
    if vacant == 0:
        return 0, i
    if divisions[i] >= limit:
        return REPLICATIVE, i
    rank = _rank(draws.uniform(keys[draws.DIVISION_PICK], np.uint64(i)), vacant)
    for k in range(8):
        j = _neighbour(x, y, k, size, torus)
        if j >= 0 and tissue[j] == EMPTY:
            if rank == 0:
                return DIVIDE, j
            rank -= 1
    return 0, i  # not reached: rank < vacant


@numba.njit(cache=True)  # not inlined, as `_division`
def _immune_intent(i, size, torus, tissue, immune, lifetime, sasp, keys, r):
    """(kind, target) of the marked immune slot of site i.

    An immune cell departs, kills, moves or does nothing; an empty slot may recruit one.
    """
    counter = np.uint64(i)
    if not immune[i]:
        u = draws.uniform(keys[draws.RECRUIT], counter)
        recruited = u < rules.recruitment_prob(
            sasp[i], r.recruit_base, r.recruit_max, r.recruit_half
        )
        return RECRUIT if recruited else 0, i
    lifetime[i] -= 1
    if lifetime[i] <= 0:
        return DEPART, i
    x, y = divmod(i, size)
    prey = int(tissue[i] == SENESCENT)
    for k in range(8):
        j = _neighbour(x, y, k, size, torus)
        prey += j >= 0 and tissue[j] == SENESCENT
    if prey > 0:
        if draws.uniform(keys[draws.STRIKE], counter) >= r.immune_competence:
            return 0, i
        rank = _rank(draws.uniform(keys[draws.PREY_PICK], counter), prey)
        if tissue[i] == SENESCENT:
            if rank == 0:
                return KILL, i
            rank -= 1
        for k in range(8):
            j = _neighbour(x, y, k, size, torus)
            if j >= 0 and tissue[j] == SENESCENT:
                if rank == 0:
                    return KILL, j
                rank -= 1
    free = 0
    top = np.float32(-np.inf)
    for k in range(8):
        j = _neighbour(x, y, k, size, torus)
        if j >= 0 and not immune[j]:
            free += 1
            top = max(top, sasp[j])
    if free == 0:
        return 0, i
    chemotactic = draws.uniform(keys[draws.CHEMOTAXIS], counter) < r.immune_chemotaxis
    options = 0
    for k in range(8):
        j = _neighbour(x, y, k, size, torus)
        options += j >= 0 and not immune[j] and (not chemotactic or sasp[j] == top)
    rank = _rank(draws.uniform(keys[draws.MOVE_PICK], counter), options)
    for k in range(8):
        j = _neighbour(x, y, k, size, torus)
        if j >= 0 and not immune[j] and (not chemotactic or sasp[j] == top):
            if rank == 0:
                return MOVE, j
            rank -= 1
    return 0, i  # not reached: rank < options


@numba.njit(cache=True)
def resolve_and_apply(
    tissue,
    immune,
    damage,
    exposure,
    damage_scale,
    divisions,
    arrest_age,
    lifetime,
    keys,
    r: Rates,
    starts,
    counts,
    candidates,
    tissue_kind,
    tissue_target,
    immune_kind,
    immune_target,
    events,
) -> None:
    """Settle conflicts (highest priority wins a slot), carry out the winners, tally them.

    The intents are those `decide` wrote beside each block's candidates. The winners are
    counted into `events` (zeros, indexed by kind code).
    """
    claims = 0
    for b in range(counts.size):
        for c in range(starts[b], starts[b] + counts[b]):
            claims += (tissue_kind[c] != 0) + (immune_kind[c] != 0)
    kind = np.empty(claims, dtype=np.int8)
    source = np.empty(claims, dtype=np.int64)
    target = np.empty(claims, dtype=np.int64)
    n = 0
    for b in range(counts.size):  # in site order
        for c in range(starts[b], starts[b] + counts[b]):
            if tissue_kind[c]:
                kind[n], source[n], target[n] = tissue_kind[c], candidates[c], tissue_target[c]
                n += 1
            if immune_kind[c]:
                kind[n], source[n], target[n] = immune_kind[c], candidates[c], immune_target[c]
                n += 1

    # Slot 2 t (tissue) or 2 t + 1 (immune) of target site t. The best claim on each slot is
    # kept in a small open-addressing table (about 2 entries per claim), which stays in cache
    # where an array over all slots would not.
    slot = 2 * target + ON_IMMUNE_SLOT[kind]
    priority = draws.bits(keys[draws.PRIORITY], claim_id(source, BY_IMMUNE[kind]).astype(np.uint64))
    bits = 4
    while (1 << bits) < 2 * claims:
        bits += 1
    held = np.full(1 << bits, -1, dtype=np.int64)  # the slot of each entry (-1: free)
    best = np.empty(1 << bits, dtype=np.int64)  # its best claim so far
    entry = np.empty(claims, dtype=np.int64)
    for c in range(claims):
        s = slot[c]
        e = np.int64((np.uint64(s) * draws.GOLDEN) >> np.uint64(64 - bits))  # Fibonacci hash
        while held[e] != -1 and held[e] != s:
            e = (e + 1) & ((1 << bits) - 1)
        if held[e] == -1:
            held[e], best[e] = s, c
        elif priority[c] > priority[best[e]]:
            best[e] = c
        entry[c] = e
    won = best[entry] == np.arange(claims)

    resident = np.empty(claims, dtype=np.int32)  # days left of each moving immune cell
    for c in range(claims):  # departures and state changes first, ...
        if not won[c]:
            continue
        k, i, j = kind[c], source[c], target[c]
        events[k] += 1
        if k in (DIE, SEN_DEATH, SENOLYSIS, PHAGOCYTOSIS):
            tissue[i] = EMPTY
        elif k == KILL:
            tissue[j] = EMPTY
        elif k in (PRIMARY, PARACRINE, REPLICATIVE):
            tissue[i] = SENESCENT
            arrest_age[i] = 0
        elif k == DIVIDE:
            divisions[i] += 1
            tissue[j] = HEALTHY
            damage[j], exposure[j], divisions[j] = damage[i], exposure[i], divisions[i]
            daughter = np.uint64(j)
            damage_scale[j] = rules.lognormal_multiplier(
                draws.standard_normal(
                    draws.uniform(keys[draws.DAUGHTER_A], daughter),
                    draws.uniform(keys[draws.DAUGHTER_B], daughter),
                ),
                r.damage_heterogeneity,
            )
        elif k in (DEPART, MOVE):
            resident[c] = lifetime[i]
            immune[i] = False
    for c in range(claims):  # ... then immune arrivals, into slots vacated the same day
        if not won[c]:
            continue
        k, i, j = kind[c], source[c], target[c]
        if k == MOVE:
            immune[j] = True
            lifetime[j] = resident[c]
        elif k == RECRUIT:
            immune[i] = True
            lifetime[i] = int(
                draws.geometric(draws.uniform(keys[draws.RESIDENCE], np.uint64(i)), r.residence_log)
            )


@numba.njit(cache=True)
def secrete_and_diffuse(
    torus: bool,
    tissue,
    immune,
    damage,
    arrest_age,
    field,
    other,
    starts,
    counts,
    candidates,
    secreting,
    secretion,
    r: Rates,
    substeps: int,
    dt: float,
    keep: float,
    spread: float,
    parallel: bool,
    totals,
) -> bool:
    """Secretion, diffusion and decay of one day in `substeps` sub-steps, then the totals.

    The sub-steps alternate between `field` and `other` (both (L, L) float32). Each diffuses
    every row, then adds the secretion of the few senescent cells (listed once, in the work
    arrays `secreting` and `secretion`): f <- keep f + spread (sum of the 4 neighbours), then
    f <- f + dt source, in float32 and in the order of `rules.diffuse_decay`, so both kernels
    give the same field.

    The rows of a sub-step run in parallel if `parallel` (`prepare_threads`). The day's
    totals go into `totals` (see `_totals`).

    Returns:
        Whether the new field is in `other`.
    """
    keep32, spread32 = np.float32(keep), np.float32(spread)
    # Every senescent cell is one of today's candidates: all that were senescent this morning,
    # and those arrested today (they had an intent).
    flat_tissue, sources = tissue.ravel(), 0
    for b in range(counts.size):
        for c in range(starts[b], starts[b] + counts[b]):
            i = candidates[c]
            if flat_tissue[i] == SENESCENT:
                secreting[sources] = i
                secretion[sources] = np.float32(dt) * np.float32(
                    rules.sasp_secretion(arrest_age[i], r.sasp_maturation, r.sasp_output)
                )
                sources += 1
    source, target = field, other
    for _ in range(substeps):
        if parallel:
            _diffuse_parallel(source, target, torus, keep32, spread32)
        else:
            _diffuse_serial(source, target, torus, keep32, spread32)
        flat_target = target.ravel()
        for k in range(sources):
            flat_target[secreting[k]] += secretion[k]
        source, target = target, source

    _totals(tissue, immune, source, damage, totals)
    return substeps % 2 == 1


@numba.njit(cache=True, fastmath={"reassoc"})
def _totals(tissue, immune, sasp, damage, out):
    """Healthy, senescent and immune counts, SASP sum, damage sum of healthy cells, into `out`.

    Serial, hence the same in any number of threads: letting the sums reassociate within a row
    vectorises them, and this runs faster than a parallel loop (which does not vectorise).
    """
    size = tissue.shape[0]
    rows = np.zeros((size, 5))
    for x in range(size):
        states, present, field = tissue[x], immune[x], sasp[x]
        row_damage = damage[x * size : (x + 1) * size]
        healthy = senescent = immune_cells = 0
        damage_sum: float | np.floating  # float32 terms are added to it
        sasp_sum = damage_sum = 0.0
        for y in range(size):
            healthy += states[y] == HEALTHY
            senescent += states[y] == SENESCENT
            immune_cells += present[y]
            sasp_sum += field[y]
            damage_sum += row_damage[y] if states[y] == HEALTHY else np.float32(0.0)
        rows[x, 0], rows[x, 1], rows[x, 2] = healthy, senescent, immune_cells
        rows[x, 3], rows[x, 4] = sasp_sum, damage_sum
    out[:] = 0.0
    for x in range(size):
        out += rows[x]


PARALLEL_DIFFUSION = 256
"""Lattice side from which the diffusion runs in parallel, if several threads may run.

On smaller lattices starting a parallel loop costs more than it saves (measured here: a
100 x 100 day's three sub-steps took 18 us in one thread, 32 us in two).
"""


@numba.njit(inline="always")
def _diffuse(source, target, torus, keep, spread):
    """One sub-step without sources, from `source` into `target` ((L, L) float32), by rows."""
    size = source.shape[0]
    for x in numba.prange(size):
        _diffuse_row(
            source[_wrap(x - 1, size, torus)],
            source[x],
            source[_wrap(x + 1, size, torus)],
            target[x],
            torus,
            keep,
            spread,
        )


@numba.njit(parallel=True, cache=True)
def _diffuse_parallel(source, target, torus, keep, spread):
    """`_diffuse`, the rows in parallel."""
    _diffuse(source, target, torus, keep, spread)


@numba.njit(cache=True)
def _diffuse_serial(source, target, torus, keep, spread):
    """`_diffuse` in the calling thread."""
    _diffuse(source, target, torus, keep, spread)


@numba.njit(inline="always")
def _diffuse_row(up, row, down, out, torus, keep, spread):
    """One sub-step of one row without sources: keep * f + spread * (sum of the 4 neighbours)."""
    size = row.size
    left = row[size - 1] if torus else row[0]
    right = row[0] if torus else row[size - 1]
    out[0] = row[0] * keep + ((up[0] + down[0]) + left + row[1]) * spread
    for y in range(1, size - 1):
        out[y] = row[y] * keep + ((up[y] + down[y]) + row[y - 1] + row[y + 1]) * spread
    last = size - 1
    out[last] = row[last] * keep + ((up[last] + down[last]) + row[last - 1] + right) * spread


def callees(arguments: tuple[Any, ...]) -> dict[str, tuple[Any, tuple[Any, ...]]]:
    """The functions compiled with `run_days`, with arguments of the types they get, by name.

    `arguments` are `run_days`' own. `model.warm_up` compiles them one by one, some in a helper
    process (`HELPER_STEPS`, `OWN_STEPS`); cached, they are loaded when a function that calls
    them compiles. Mirrors the calls in `run_days` and `decide` (a test checks that each is
    then compiled once only).
    """
    (first, _, torus, tissue, immune, damage, exposure, damage_scale, divisions, arrest_age,
     lifetime, sasp, key, rates, tallies, aggregates, _, starts, vacancies, wall, marks, counts,
     candidates, tissue_kind, tissue_target, immune_kind, immune_target, other, secreting,
     secretion, substeps, dt, keep, spread, parallel) = arguments  # fmt: skip
    keys, r = draws.day_keys(key, first), Rates(*rates[first].tolist())
    i, size = np.int64(0), tissue.shape[0]
    flat_tissue = tissue.ravel()
    immune_intent = (
        i, size, torus, flat_tissue, immune.ravel(), lifetime, sasp.ravel(), keys, r,
    )  # fmt: skip
    division = (i, size, torus, flat_tissue, divisions, keys, r.replicative_limit)
    deciding = (
        torus, tissue, immune, damage, exposure, damage_scale, divisions, arrest_age, lifetime,
        sasp, keys, r, 0.0, starts, vacancies, wall, marks, counts, candidates, tissue_kind,
        tissue_target, immune_kind, immune_target,
    )  # fmt: skip
    resolving = (
        flat_tissue, immune.ravel(), damage, exposure, damage_scale, divisions, arrest_age,
        lifetime, keys, r, starts, counts, candidates, tissue_kind, tissue_target, immune_kind,
        immune_target, tallies[first],
    )  # fmt: skip
    secreting_and_diffusing = (
        torus, tissue, immune, damage, arrest_age, sasp, other, starts, counts, candidates,
        secreting, secretion, r, substeps, dt, keep, spread, parallel, aggregates[first],
    )  # fmt: skip
    return {
        "day_keys": (day_keys, (key, first)),
        "_division": (_division, division),
        "_immune_intent": (_immune_intent, immune_intent),
        "decide": (decide, deciding),
        "resolve_and_apply": (resolve_and_apply, resolving),
        "secrete_and_diffuse": (secrete_and_diffuse, secreting_and_diffusing),
    }


HELPER_STEPS = ("_immune_intent", "resolve_and_apply", "secrete_and_diffuse")
"""What the helper process of `model.warm_up` compiles, in this order, while this process
compiles `OWN_STEPS`."""

OWN_STEPS = (("day_keys", ()), ("_division", ()), ("decide", ("_immune_intent",)))
"""What `model.warm_up` compiles itself before `run_days` (each after the helper's steps it
calls are cached): `day_keys` first (numba's set-up, ~0.5 s, comes with a process's first
compile), `_division` (short), then `decide`, the longest."""


def signature(arguments: tuple[Any, ...]) -> tuple[Any, ...]:
    """The numba types of a call's arguments: what `run_days.compile` takes."""
    return tuple(numba.typeof(argument) for argument in arguments)


def cached() -> bool:
    """Whether numba's cache holds a compiled `run_days` (if not, the kernel must compile).

    Cached code of other sources or of another numba is dropped on import (`drop_stale_cache`);
    a True may still be stale for another CPU or Python: loading then compiles.
    """
    folder = Path(cast(str, run_days.stats.cache_path))
    return any(folder.glob(f"{Path(__file__).stem}.run_days-*.nbi"))


@contextmanager
def compile_lock() -> Iterator[None]:
    """Hold the lock of this module's cache folder: one process compiles, the others wait.

    Without a writable cache folder, or `fcntl` (Windows), it holds nothing.
    """
    path = Path(cast(str, run_days.stats.cache_path)) / f"{__name__}.lock"
    try:
        import fcntl

        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


OPT_LEVEL = 1
"""numba's LLVM optimisation level for the kernel (0-3; numba's default is 3), unless the user
set the environment variable NUMBA_OPT: at level 1, with numba's loop vectorisation (on at
every level), the kernel ran as fast as at level 3 and gave identical results, and its compile
took 0.6-1.0 s less of about 8 s (docs/speed.md#the-first-run). Level 0 ran 20-50x slower."""


@contextmanager
def optimisation_level() -> Iterator[None]:
    """Within the block numba compiles at `OPT_LEVEL`, unless the user set NUMBA_OPT.

    numba reads its options from the environment when it is imported, and again at each
    compile if a NUMBA_ variable has changed since: then the user's setting wins, and the
    kernel compiles at numba's level (more slowly, to the same results).
    """
    if "NUMBA_OPT" in os.environ:
        yield
        return
    saved = numba.config.OPT  # type: ignore[attr-defined]
    numba.config.OPT = type(saved)(OPT_LEVEL)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        numba.config.OPT = saved  # type: ignore[attr-defined]


def drop_stale_cache(folder: Path) -> None:
    """Forget this module's compiled code cached in `folder` from other versions of its modules.

    Numba's on-disk cache checks only the contents of the file that defines a function, not of
    `rules`, `draws` and `intents`, whose functions are compiled in: without this, an edited
    rule would keep running its old compiled version. This module's own source and numba's
    version count too, so that `cached` never finds code that loading would compile again.
    (Where the cache cannot be written, as in a read-only install that is never edited, it
    does nothing.)
    """
    sources = b"".join(
        Path(cast(str, module.__file__)).read_bytes() for module in (rules, draws, intents)
    )
    sources += Path(__file__).read_bytes() + numba.__version__.encode()
    digest = hashlib.sha256(sources).hexdigest()
    stamp = folder / f"{__name__}.dependencies"
    try:
        if not stamp.is_file() or stamp.read_text() != digest:
            for cached in folder.glob(f"{Path(__file__).stem}.*.nb[ic]"):  # index and data
                cached.unlink(missing_ok=True)
            folder.mkdir(parents=True, exist_ok=True)
            stamp.write_text(digest)
    except OSError:
        pass


drop_stale_cache(Path(cast(str, run_days.stats.cache_path)))  # cache=True: it has a path

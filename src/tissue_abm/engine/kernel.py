"""The array engine's day compiled with numba (the default kernel of `ArrayTissue`).

Three steps a day, which `day` runs in one call from Python:

1. `decide` (parallel): damage and exposure advance everywhere, and the cheap draws rule out
   most sites; then the few marked sites write the intent of their tissue cell and of their
   immune slot (`intents.KINDS`) into dense kind/target arrays.
2. `resolve_and_apply` (serial, over the ~1% of sites with an intent): the claim of highest
   random priority wins each slot; winners are carried out.
3. `secrete_and_diffuse` (parallel over rows, once per sub-step): senescent cells secrete and
   the SASP field diffuses and decays; then the day's totals are summed.

The biology is `tissue_abm.rules` compiled as it is (each rule registered with
`register_jitable`) and the random numbers are `tissue_abm.engine.draws`: the functions the
numpy kernel calls on arrays. Both kernels therefore draw the same numbers and decide alike;
float32 rounding of damage and exposure may differ in the last bit. Every site's decision
depends only on the start-of-day state and its own draws, and the totals are summed serially,
so the result does not depend on the number of threads (`set_threads`).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba.extending import overload, register_jitable

from tissue_abm import rules
from tissue_abm.engine import draws
from tissue_abm.engine.intents import (
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
    PRIMARY,
    RECRUIT,
    REPLICATIVE,
    SEN_DEATH,
    SENOLYSIS,
    Rates,
    claim_id,
)
from tissue_abm.rules import EMPTY, HEALTHY, SENESCENT


@overload(rules._exp)
def _scalar_exp(x):
    """`rules._exp` in compiled code, where it only ever sees scalars: `math.exp`."""
    return lambda x: math.exp(x)


for _function in (rules.hill, rules.first_event, rules.lognormal_multiplier, rules.damage_step,
                  rules.exposure_step, rules.primary_senescence_prob,
                  rules.paracrine_senescence_prob, rules.sasp_secretion, rules.recruitment_prob,
                  rules.recruitment_prob_bound,
                  draws.mix, draws.bits, draws.uniform, draws.standard_normal, draws.geometric,
                  claim_id):
    register_jitable(_function)


def set_threads(count: int | None) -> None:
    """Threads the compiled functions use when called from this thread; None = all cores."""
    available = numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(available if count is None else max(1, min(count, available)))


day_keys = numba.njit(cache=True)(draws.day_keys)
"""`draws.day_keys`, compiled: the same keys, without the cost of a dozen tiny numpy calls."""

_DX = np.array([dx for dx, _ in OFFSETS])
_DY = np.array([dy for _, dy in OFFSETS])


class Buffers:
    """Work arrays allocated once per run and reused every day."""

    def __init__(self, size: int) -> None:
        """Buffers for an L x L grid (`size` = L)."""
        sites = size * size
        padded = -(-sites // 8) * 8  # kinds are scanned 8 at a time
        self.tissue_kind = np.zeros(padded, dtype=np.int8)
        self.tissue_target = np.zeros(sites, dtype=np.int32)
        self.immune_kind = np.zeros(padded, dtype=np.int8)
        self.immune_target = np.zeros(sites, dtype=np.int32)
        self.winner = np.full(2 * sites, -1, dtype=np.int32)
        self.field = np.zeros((size, size), dtype=np.float32)
        self.vacancies = np.zeros((size, size), dtype=np.int8)
        self.release = np.zeros((size, size), dtype=np.float32)


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


_CANDIDATE = -1
"""Kind mark of a site that may have an intent today (the first pass of `decide`)."""


@numba.njit(cache=True)
def day(size: int, torus: bool, tissue, immune, damage, exposure, damage_scale, divisions,
        arrest_age, lifetime, sasp, key, t: int, r: Rates, b_tissue_kind, b_tissue_target,
        b_immune_kind, b_immune_target, b_vacancies, b_winner, b_field, b_release,
        substeps: int, dt: float, keep: float, spread: float):
    """One day: `decide`, `resolve_and_apply`, `secrete_and_diffuse`, in one call from Python.

    Args are the state arrays (`tissue`, `immune` and `sasp` (L, L); the others flat), the
    run key, the day t, its rates, the work arrays of `Buffers` (b_...) and the diffusion
    scheme (`rules.diffusion_scheme`).

    Returns:
        (tally of events by kind code, whether the new field is in `b_field`, totals).
    """
    keys = day_keys(key, t)
    flat_tissue, flat_immune = tissue.ravel(), immune.ravel()
    decide(size, torus, flat_tissue, flat_immune, damage, exposure, damage_scale, divisions,
           arrest_age, lifetime, sasp.ravel(), keys, r, b_tissue_kind, b_tissue_target,
           b_immune_kind, b_immune_target, b_vacancies)
    events = resolve_and_apply(flat_tissue, flat_immune, damage, exposure, damage_scale,
                               divisions, arrest_age, lifetime, keys, r, b_tissue_kind,
                               b_tissue_target, b_immune_kind, b_immune_target, b_winner)
    swapped, totals = secrete_and_diffuse(torus, tissue, immune, damage, arrest_age, sasp,
                                          b_field, b_release, r, substeps, dt, keep, spread)
    return events, swapped, totals


@numba.njit(parallel=True, cache=True)
def decide(size: int, torus: bool, tissue, immune, damage, exposure, damage_scale, divisions,
           arrest_age, lifetime, sasp, keys, r: Rates, tissue_kind, tissue_target, immune_kind,
           immune_target, vacancies) -> None:
    """Advance damage and exposure and write every site's intents (flat arrays, in place).

    `vacancies` ((L, L) int8) is a work array: the number of empty neighbours of each site.

    Two passes: a light one over every site (damage, exposure and the draws that rule most
    sites out), then the decisions of the few marked sites. One loop with the decisions inline
    runs at half the speed: its rare branches slow down the common path.
    """
    # A healthy cell whose draw is at or above `division_from` can only divide (or do nothing):
    # it is a candidate only next to a vacancy. Most cells have none, so this rules out most of
    # the draws that fall below `event_bound`, which division dominates.
    _count_vacancies(tissue.reshape((size, size)), torus, vacancies)
    flat_vacancies = vacancies.ravel()
    inflammation, memory = np.float32(r.inflammation), r.exposure_memory
    drive, repair, gain = r.damage_drive, r.damage_repair, r.damage_sasp_gain
    event_key, recruit_key = keys[draws.EVENT], keys[draws.RECRUIT]
    event_bound, only_division = r.event_bound, r.division_from
    for i in numba.prange(size * size):  # flat: numba compiles a nested prange loop slower
        seen = sasp[i] * inflammation
        exposure[i] = rules.exposure_step(exposure[i], seen, memory)
        damage[i] = rules.damage_step(damage[i], drive * damage_scale[i], repair, seen, gain)
        counter = np.uint64(i)
        state = tissue[i]
        u = draws.uniform(event_key, counter)
        tissue_kind[i] = _CANDIDATE if state == SENESCENT or (state == HEALTHY and (
            u < only_division or (u < event_bound and flat_vacancies[i] > 0))) else 0
        immune_kind[i] = _CANDIDATE if immune[i] or draws.uniform(
            recruit_key, counter) < rules.recruitment_prob_bound(
                sasp[i], r.recruit_base, r.recruit_max, r.recruit_half) else 0

    marks_tissue, marks_immune = tissue_kind.view(np.uint64), immune_kind.view(np.uint64)
    for word in numba.prange(marks_tissue.size):  # 8 sites at a time; most have no mark
        if marks_tissue[word] == 0 and marks_immune[word] == 0:
            continue
        for i in range(8 * word, 8 * word + 8):
            if tissue_kind[i]:
                kind, tissue_target[i] = _tissue_intent(
                    np.int64(i), size, torus, tissue, damage, exposure, divisions, arrest_age,
                    keys, r)
                tissue_kind[i] = kind
            if immune_kind[i]:
                kind, immune_target[i] = _immune_intent(
                    np.int64(i), size, torus, tissue, immune, lifetime, sasp, keys, r)
                immune_kind[i] = kind


@numba.njit(parallel=True)
def _count_vacancies(tissue, torus, out):
    """Number of empty Moore neighbours of every site of the (L, L) grid, into `out`."""
    size = tissue.shape[0]
    for x in numba.prange(size):
        if not torus and (x == 0 or x == size - 1):
            for y in range(size):
                out[x, y] = _empty_neighbours(tissue, x, y, size, torus)
            continue
        _count_row(tissue[_wrap(x - 1, size, True)], tissue[x], tissue[_wrap(x + 1, size, True)],
                   out[x])
        out[x, 0] = _empty_neighbours(tissue, x, 0, size, torus)
        out[x, size - 1] = _empty_neighbours(tissue, x, size - 1, size, torus)


@numba.njit(inline="always")
def _count_row(up, row, down, out):
    """Empty neighbours of the inner sites of one row (a loop without branches: it vectorises)."""
    for y in range(1, row.size - 1):
        out[y] = ((up[y - 1] == EMPTY) + (up[y] == EMPTY) + (up[y + 1] == EMPTY)
                  + (row[y - 1] == EMPTY) + (row[y + 1] == EMPTY)
                  + (down[y - 1] == EMPTY) + (down[y] == EMPTY) + (down[y + 1] == EMPTY))


@numba.njit
def _empty_neighbours(tissue, x, y, size, torus):
    """Number of empty Moore neighbours of site (x, y) of the (L, L) grid (any site)."""
    count = 0
    for k in range(8):
        j = _neighbour(x, y, k, size, torus)
        count += j >= 0 and tissue.ravel()[j] == EMPTY
    return count


@numba.njit(inline="always")
def _tissue_intent(i, size, torus, tissue, damage, exposure, divisions, arrest_age, keys, r):
    """(kind, target) of the marked tissue cell on site i."""
    u = draws.uniform(keys[draws.EVENT], np.uint64(i))
    if tissue[i] == SENESCENT:
        arrest_age[i] += 1
        event = rules.first_event(u, (r.senescent_death, r.senolysis))
        return (0, SEN_DEATH, SENOLYSIS)[event], i
    return _healthy_intent(i, u, size, torus, tissue, damage, exposure, divisions, keys, r)


@numba.njit(inline="always")
def _healthy_intent(i, u, size, torus, tissue, damage, exposure, divisions, keys, r):
    """(kind, target) of healthy cell i whose draw u fell below the event bound."""
    if r.division_from <= u < r.division_to:  # division, whatever the cell's damage and exposure
        return _division(i, size, torus, tissue, divisions, keys, r.replicative_limit)
    event = rules.first_event(u, (
        r.healthy_death,
        rules.primary_senescence_prob(damage[i], r.primary_max, r.primary_half, r.primary_hill),
        rules.paracrine_senescence_prob(exposure[i], r.paracrine_max, r.paracrine_half,
                                        r.paracrine_hill),
        r.division))
    if event == 4:
        return _division(i, size, torus, tissue, divisions, keys, r.replicative_limit)
    return (0, DIE, PRIMARY, PARACRINE)[event], i


@numba.njit(inline="always")
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


@numba.njit(inline="always")
def _immune_intent(i, size, torus, tissue, immune, lifetime, sasp, keys, r):
    """(kind, target) of the marked immune slot of site i.

    An immune cell departs, kills, moves or does nothing; an empty slot may recruit one.
    """
    counter = np.uint64(i)
    if not immune[i]:
        u = draws.uniform(keys[draws.RECRUIT], counter)
        recruited = u < rules.recruitment_prob(sasp[i], r.recruit_base, r.recruit_max,
                                               r.recruit_half)
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
def resolve_and_apply(tissue, immune, damage, exposure, damage_scale, divisions, arrest_age,
                      lifetime, keys, r: Rates, tissue_kind, tissue_target, immune_kind,
                      immune_target, winner) -> np.ndarray:
    """Settle conflicts (highest priority wins a slot), carry out the winners, tally them.

    `winner` (int32, 2 slots per site) must come in all -1; it goes out so.
    Returns the tally of winning intents, indexed by kind code.
    """
    # The claims, in site order. Kinds are read 8 sites at a time (`Buffers` pads them to a
    # multiple of 8): most words hold none.
    words_tissue, words_immune = tissue_kind.view(np.uint64), immune_kind.view(np.uint64)
    claims = 0
    for word in range(words_tissue.size):
        if words_tissue[word] | words_immune[word]:
            for i in range(8 * word, 8 * word + 8):
                claims += (tissue_kind[i] != 0) + (immune_kind[i] != 0)
    kind = np.empty(claims, dtype=np.int8)
    source = np.empty(claims, dtype=np.int64)
    target = np.empty(claims, dtype=np.int64)
    c = 0
    for word in range(words_tissue.size):
        if words_tissue[word] | words_immune[word]:
            for i in range(8 * word, 8 * word + 8):
                if tissue_kind[i]:
                    kind[c], source[c], target[c] = tissue_kind[i], i, tissue_target[i]
                    c += 1
                if immune_kind[i]:
                    kind[c], source[c], target[c] = immune_kind[i], i, immune_target[i]
                    c += 1

    # Slots 2 t (tissue) and 2 t + 1 (immune) of target site t: adjacent, so that claims in
    # site order touch `winner` nearly in order. A slot's incumbent priority is recomputed (a
    # hash) rather than stored: conflicts are rare, memory traffic is not.
    slot = 2 * target + ON_IMMUNE_SLOT[kind]
    priority = draws.bits(keys[draws.PRIORITY],
                          claim_id(source, BY_IMMUNE[kind]).astype(np.uint64))
    for c in range(claims):
        s = slot[c]
        if winner[s] < 0 or priority[c] > priority[winner[s]]:
            winner[s] = c

    events = np.zeros(EVENTS, dtype=np.int64)
    resident = np.empty(claims, dtype=np.int32)  # days left of each moving immune cell
    for c in range(claims):  # departures and state changes first, ...
        if winner[slot[c]] != c:
            continue
        k, i, j = kind[c], source[c], target[c]
        events[k] += 1
        if k in (DIE, SEN_DEATH, SENOLYSIS):
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
                draws.standard_normal(draws.uniform(keys[draws.DAUGHTER_A], daughter),
                                      draws.uniform(keys[draws.DAUGHTER_B], daughter)),
                r.damage_heterogeneity)
        elif k in (DEPART, MOVE):
            resident[c] = lifetime[i]
            immune[i] = False
    for c in range(claims):  # ... then immune arrivals, into slots vacated the same day
        if winner[slot[c]] != c:
            continue
        k, i, j = kind[c], source[c], target[c]
        if k == MOVE:
            immune[j] = True
            lifetime[j] = resident[c]
        elif k == RECRUIT:
            immune[i] = True
            lifetime[i] = int(draws.geometric(
                draws.uniform(keys[draws.RESIDENCE], np.uint64(i)), r.residence_log))
    for c in range(claims):
        winner[slot[c]] = -1
    return events


@numba.njit(parallel=True, cache=True)
def secrete_and_diffuse(torus: bool, tissue, immune, damage, arrest_age, field, other, release,
                        r: Rates, substeps: int, dt: float, keep: float, spread: float):
    """Secretion, diffusion and decay of one day in `substeps` sub-steps, then the totals.

    The sub-steps alternate between `field` and `other` (both (L, L) float32); `release` is a
    work array of the same shape. Arithmetic is float32 in the order of `rules.diffuse_decay`,
    so both kernels give the same field.

    Returns:
        (whether the new field is in `other`, (healthy, senescent, immune, SASP sum,
        damage sum of healthy cells)).
    """
    size = field.shape[0]
    keep32, spread32, dt32 = np.float32(keep), np.float32(spread), np.float32(dt)
    flat_tissue, flat_release = tissue.ravel(), release.ravel()
    for i in numba.prange(size * size):
        flat_release[i] = 0
        if flat_tissue[i] == SENESCENT:
            flat_release[i] = dt32 * np.float32(rules.sasp_secretion(
                arrest_age[i], r.sasp_maturation, r.sasp_output))
    source, target = field, other
    for _ in range(substeps):
        for x in numba.prange(size):
            _diffuse_row(source[_wrap(x - 1, size, torus)], source[x],
                         source[_wrap(x + 1, size, torus)], release[x], target[x], torus,
                         keep32, spread32)
        source, target = target, source

    return substeps % 2 == 1, _totals(tissue, immune, source, damage)


@numba.njit(cache=True, fastmath={"reassoc"})
def _totals(tissue, immune, sasp, damage):
    """(healthy, senescent, immune, SASP sum, damage sum of healthy cells) of the grid.

    Serial, hence the same in any number of threads: letting the sums reassociate within a row
    vectorises them, and this runs faster than a parallel loop (which does not vectorise).
    """
    size = tissue.shape[0]
    rows = np.zeros((size, 5))
    for x in range(size):
        states, present, field = tissue[x], immune[x], sasp[x]
        row_damage = damage[x * size:(x + 1) * size]
        healthy = senescent = immune_cells = 0
        sasp_sum = damage_sum = 0.0
        for y in range(size):
            healthy += states[y] == HEALTHY
            senescent += states[y] == SENESCENT
            immune_cells += present[y]
            sasp_sum += field[y]
            damage_sum += row_damage[y] if states[y] == HEALTHY else np.float32(0.0)
        rows[x, 0], rows[x, 1], rows[x, 2] = healthy, senescent, immune_cells
        rows[x, 3], rows[x, 4] = sasp_sum, damage_sum
    totals = np.zeros(5)
    for x in range(size):
        totals += rows[x]
    return int(totals[0]), int(totals[1]), int(totals[2]), totals[3], totals[4]


@numba.njit(inline="always")
def _diffuse_row(up, row, down, release, out, torus, keep, spread):
    """One sub-step of one row: keep * f + spread * (sum of the 4 neighbours) + release."""
    size = row.size
    left = row[size - 1] if torus else row[0]
    right = row[0] if torus else row[size - 1]
    out[0] = row[0] * keep + ((up[0] + down[0]) + left + row[1]) * spread + release[0]
    for y in range(1, size - 1):
        out[y] = (row[y] * keep + ((up[y] + down[y]) + row[y - 1] + row[y + 1]) * spread
                  + release[y])
    last = size - 1
    out[last] = (row[last] * keep + ((up[last] + down[last]) + row[last - 1] + right) * spread
                 + release[last])

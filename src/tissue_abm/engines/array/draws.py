"""Counter-based random numbers of the array engine: a draw is a hash of (key, day, stream, site).

A run's random numbers are not a sequence but a function: the draw of stream s for site i on
day t is `uniform(day_keys(key, t)[s], i)`. Nothing is allocated or advanced between draws, so
the numpy path and the compiled kernel (`kernel`) — in any number of threads, in any order —
use the very same numbers, and a run is reproducible from its key alone.

The hash is SplitMix64 (Steele, Lea & Flood 2014): `mix(key + counter * GOLDEN)` with a
bijective finaliser, which passes BigCrush. Day and stream keys are themselves hashed, so no two
days or streams share numbers (an unhashed key + day would).

Every function here is plain arithmetic on `numpy.uint64`: it runs on numpy arrays (wrapping
silently on overflow) and compiles unchanged in numba's nopython mode for scalars.
"""

from __future__ import annotations

import math

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
"""2^64 / golden ratio, odd: `counter * GOLDEN` visits every uint64 once (the Weyl sequence)."""
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S11, _S27, _S30, _S31 = np.uint64(11), np.uint64(27), np.uint64(30), np.uint64(31)
_UNIT = 2.0**-53
_TWO_PI = 2.0 * np.pi

# Streams: one per kind of draw a site can make on a day.
(
    EVENT,
    DIVISION_PICK,
    DAUGHTER_A,
    DAUGHTER_B,
    STRIKE,
    PREY_PICK,
    CHEMOTAXIS,
    MOVE_PICK,
    RECRUIT,
    RESIDENCE,
    PRIORITY,
) = range(11)
STREAMS = 11


def mix(z):
    """SplitMix64 finaliser: a bijection of uint64 (scalar or array) that scrambles every bit."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def bits(key, counter):
    """64 random bits for `counter` (uint64, scalar or array) under `key` (uint64)."""
    return mix(key + counter * GOLDEN)


def uniform(key, counter):
    """Uniform draw(s) in [0, 1) with 53 random bits for `counter` under `key`."""
    return np.int64(bits(key, counter) >> _S11) * _UNIT  # int64: a cheap conversion to float


def standard_normal(u1, u2):
    """Standard normal draw(s) from two independent uniforms in [0, 1) (Box–Muller)."""
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(_TWO_PI * u2)


def geometric(u, log_stay):
    """Geometric draw(s) on 1, 2, ... (as floats): the day an event of probability p first happens.

    Inversion of the survival function P(K >= k) = (1 - p)^(k - 1).

    Args:
        u: Uniform draw(s) in [0, 1).
        log_stay: log(1 - p), < 0; -inf for p = 1 (`log_stay_prob`).
    """
    return np.maximum(np.ceil(np.log1p(-u) / log_stay), 1.0)


def log_stay_prob(p: float) -> float:
    """log(1 - p) for a daily probability p in (0, 1]: -inf for p = 1."""
    return math.log1p(-p) if p < 1.0 else -math.inf


def day_keys(key: np.uint64, day: int) -> np.ndarray:
    """Keys of every stream on `day` (uint64 array of length STREAMS), hashed from the run key."""
    base = mix(np.array([key], dtype=np.uint64) + np.array([day], dtype=np.uint64) * GOLDEN)
    return mix(base + np.arange(1, STREAMS + 1, dtype=np.uint64) * GOLDEN)

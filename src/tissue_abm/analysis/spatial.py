"""Spatial statistics of senescent cells on the lattice: is senescence clustered?

Paracrine senescence (the SASP turning neighbours senescent; Nelson et al. 2012 found
senescence-marker-positive hepatocytes clustered in mouse liver) predicts that senescent cells
sit next to each other more often than chance. Three tools measure this on a grid snapshot:

- `clark_evans`: the Clark–Evans (1954) aggregation index R, the observed mean
  nearest-neighbour distance over the one expected under complete spatial randomness (CSR) in
  the continuum, with its normal-approximation test. R < 1 means clustered, R > 1 regular.
- `clark_evans_null`: the same R compared with a Monte-Carlo null of *random labelling*: as many
  senescent cells placed at random among the occupied (cell-bearing) sites. **This is the test
  to rely on**: it accounts for the lattice and for empty sites, which the analytic CSR
  expectation does not (see `clark_evans_null`).
- `pair_correlation`: the lattice pair correlation g(r), pair counts in distance shells over
  those expected under random labelling, from an FFT autocorrelation of the indicator grid.
  g(1) is the Moore neighbourhood, the range at which paracrine senescence acts in the model.

`senescent_spatial` applies them to every snapshot of a `tissue_abm.load_snapshots` table.

Conventions: points are integer site coordinates ``(x, y)`` in ``0 .. size-1``, as in the
snapshot columns `x`, `y`; distances are Euclidean, in site spacings (lattice units). On a
torus every distance is the minimum-image (periodic) distance; on a closed lattice the plain
one.

Methods, derivations and caveats: docs/analysis.md#spatial-statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import isqrt
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import KDTree

from tissue_abm.analysis.summary import check_confidence, grouped
from tissue_abm.biology.readouts import SITE_STATES, SNAPSHOT

SITE_COLUMNS = tuple(c for c in SNAPSHOT if c != "age")
"""Per-site columns of a snapshot table; every other column labels the snapshot."""

CE_SE = np.sqrt((4 - np.pi) / (4 * np.pi))
"""Standard error of the mean nearest-neighbour distance under CSR, times n / sqrt(area)
(Clark & Evans 1954: 0.26136)."""

FFT_CELLS = 2**22
"""Grid cells per batch of Monte-Carlo FFTs (bounds the memory of a null envelope to ~100 MB)."""


class ClarkEvans(NamedTuple):
    """The Clark–Evans aggregation index of a point pattern and its normal-approximation test."""

    index: float  # type: ignore[assignment]  # shadows tuple.index on purpose, as NamedTuple allows
    """R = mean_distance / expected, > 0: < 1 clustered, 1 random (CSR), > 1 regular."""
    z: float
    """(mean_distance - expected) / standard error under CSR."""
    p_value: float
    """Two-sided p-value of z (standard normal), 0-1."""
    n: int
    """Number of points."""
    mean_distance: float
    """Observed mean nearest-neighbour distance (site spacings)."""
    expected: float
    """Mean nearest-neighbour distance expected under CSR (site spacings)."""


class ClarkEvansNull(NamedTuple):
    """The Clark–Evans index against a Monte-Carlo null of random labelling."""

    index: float  # type: ignore[assignment]  # shadows tuple.index on purpose, as NamedTuple allows
    """Observed R (as `ClarkEvans.index`)."""
    null_mean: float
    """Mean R of the random labellings."""
    low: float
    """Lower end of the central `confidence` interval of the null R."""
    high: float
    """Upper end of the central `confidence` interval of the null R."""
    p_value: float
    """Two-sided Monte-Carlo p-value, 2/(n_null+1) to 1."""
    n: int
    """Number of points."""
    n_available: int
    """Number of sites the null places points on."""
    n_null: int
    """Number of random labellings."""


def clark_evans(points: np.ndarray, size: int, torus: bool = True) -> ClarkEvans:
    """The Clark–Evans aggregation index R of points on a size×size lattice.

    R is the observed mean nearest-neighbour distance over the mean expected under complete
    spatial randomness (CSR) at the same density, 0.5 / √ρ (on a closed lattice with the
    Donnelly 1978 edge correction). Lattice discreteness biases R upwards (about 4% at the
    density of old tissue's senescent cells) and vacancies crowd the cells, so R and its p-value
    are only a rough guide: compare R with `clark_evans_null`.
    Method and caveats: docs/analysis.md#clark-evans-index.

    Args:
        points: Site coordinates, integer array of shape (n, 2), n >= 2, values 0 .. size-1,
            each site at most once.
        size: Lattice side L (sites), >= 2.
        torus: Whether the lattice wraps around (periodic distances) or is closed.

    Returns:
        The index, z score, two-sided p-value, n, observed and expected mean distances.

    Raises:
        ValueError: If `size` or `points` is malformed (see Args).
    """
    return _clark_evans(_sites(points, size, "points"), size, torus)


def clark_evans_null(
    points: np.ndarray,
    size: int,
    torus: bool = True,
    available: np.ndarray | None = None,
    n_null: int = 199,
    rng: np.random.Generator | int | None = None,
    confidence: float = 0.95,
) -> ClarkEvansNull:
    """The Clark–Evans index R against a Monte-Carlo null of random labelling.

    The null places the same number of points at random on distinct `available` sites (for
    senescent cells: the occupied sites) `n_null` times and computes the same R for each. It
    shares the lattice and the vacancies with the data, so rely on this test rather than the
    analytic one of `clark_evans`. Method and p-value:
    docs/analysis.md#clark-evans-against-random-labelling.

    Args:
        points: Site coordinates of the points (e.g. senescent cells), integer array of shape
            (n, 2), n >= 2, values 0 .. size-1, each site at most once, all in `available`.
        size: Lattice side L (sites), >= 2.
        torus: Whether the lattice wraps around (periodic distances) or is closed.
        available: Site coordinates the null may use, shape (m, 2), m >= n, each site at most
            once; None for every site of the lattice.
        n_null: Number of random labellings, >= 1 (the smallest p-value is 2/(n_null+1):
            0.01 for 199, 0.002 for 999).
        rng: Seed or numpy Generator of the random labellings.
        confidence: Central probability of the reported null interval, strictly 0-1.

    Returns:
        Observed R, mean and central interval of the null R, Monte-Carlo p-value, n, m, n_null.

    Raises:
        ValueError: If any argument is malformed (see Args).
    """
    sites = _sites(points, size, "points")
    pool = _available(available, size, sites)
    _check_n_null(n_null, minimum=1)
    check_confidence(confidence)
    observed = _clark_evans(sites, size, torus)
    draws = _draws(len(pool), len(sites), n_null, np.random.default_rng(rng))
    null = (
        np.array([_nn_distances(pool[draw], size, torus).mean() for draw in draws])
        / observed.expected
    )
    low, high = np.quantile(null, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return ClarkEvansNull(
        index=observed.index,
        null_mean=float(null.mean()),
        low=float(low),
        high=float(high),
        p_value=_mc_p_value(observed.index, null),
        n=len(sites),
        n_available=len(pool),
        n_null=n_null,
    )


def pair_correlation(
    points: np.ndarray,
    size: int,
    torus: bool = True,
    r_max: int | None = None,
    available: np.ndarray | None = None,
    n_null: int = 0,
    rng: np.random.Generator | int | None = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """The lattice pair correlation g(r) of points, normalised by random labelling.

    Shell r holds the displacements whose length rounds to r (shell 1: the 8-site Moore
    neighbourhood); g(r) is the pairs of points in it over the pairs expected for as many points
    at random on the available sites (> 1: closer than chance), counted from the FFT
    autocorrelation of the indicator grid. Method: docs/analysis.md#pair-correlation.

    Args:
        points: Site coordinates, integer array of shape (n, 2), n >= 2, values 0 .. size-1,
            each site at most once, all in `available`.
        size: Lattice side L (sites), >= 2.
        torus: Whether the lattice wraps around (minimum-image distances) or is closed.
        r_max: Largest shell (site spacings), 1 .. size//2 on a torus (beyond it the shells
            wrap around) and 1 .. size-1 on a closed lattice; None for max(1, size//4).
        available: Site coordinates the points could occupy (e.g. occupied sites), shape
            (m, 2), m >= n, each site at most once; None for every site.
        n_null: Random labellings for a pointwise envelope of g, >= 0 (0: no envelope).
        rng: Seed or numpy Generator of the random labellings.
        confidence: Central probability of the envelope, strictly 0-1.

    Returns:
        One row per shell r = 1 .. r_max: `r` (site spacings), `pairs` (unordered pairs of
        points in the shell), `expected` (their expectation under random labelling), `g`
        (pairs / expected; NaN where no pair of available sites lies in the shell) and, if
        n_null > 0, `low` and `high` (the central `confidence` interval of g over the random
        labellings).

    Raises:
        ValueError: If any argument is malformed (see Args).
    """
    sites = _sites(points, size, "points")
    pool = _available(available, size, sites)
    r_max = _check_r_max(r_max, size, torus)
    _check_n_null(n_null, minimum=0)
    check_confidence(confidence)
    shells = _shell_matrix(size, torus, r_max)
    n, m = len(sites), len(pool)
    pairs = _shell_counts(_indicator(sites[None], size), torus, shells)[0]
    expected = _shell_counts(_indicator(pool[None], size), torus, shells)[0] * (
        n * (n - 1) / (m * (m - 1))
    )
    with np.errstate(divide="ignore"):
        per_expected = np.where(expected > 0, 1 / expected, np.nan)
    table = pd.DataFrame(
        {
            "r": np.arange(1, r_max + 1),
            "pairs": pairs / 2,
            "expected": expected / 2,
            "g": pairs * per_expected,
        }
    )
    if n_null:
        rng = np.random.default_rng(rng)
        batch = max(1, FFT_CELLS // (size * size if torus else 4 * size * size))
        null = (
            np.concatenate(
                [
                    _shell_counts(
                        _indicator(pool[_draws(m, n, min(batch, n_null - start), rng)], size),
                        torus,
                        shells,
                    )
                    for start in range(0, n_null, batch)
                ]
            )
            * per_expected
        )
        table["low"], table["high"] = np.quantile(
            null, [0.5 - confidence / 2, 0.5 + confidence / 2], axis=0
        )
    return table


def senescent_spatial(
    snapshots: pd.DataFrame,
    n_null: int = 199,
    seed: int = 0,
    radii: Sequence[int] = (1, 2, 4, 8),
    torus: bool = True,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Clustering statistics of the senescent cells in every grid snapshot.

    A snapshot is the rows sharing every column that is not per-site (the run labels and `age`);
    the null places its senescent cells at random among its occupied sites.
    Method: docs/analysis.md#clustering-in-every-snapshot.

    Args:
        snapshots: A table from `tissue_abm.load_snapshots`, or `snapshot()` of a model with
            label columns added; needs `age`, `x`, `y` and `state` (values empty, healthy,
            senescent).
        n_null: Random labellings per snapshot for the Clark–Evans null, >= 1.
        seed: Seed of the random labellings; snapshot i (in sorted label order) uses the i-th
            child of `numpy.random.SeedSequence(seed)`.
        radii: Shells r (site spacings) at which g(r) is reported, each >= 1 and at most
            size//2 on a torus or size-1 on a closed lattice.
        torus: Whether the lattice wraps around, for tables without a `torus` column (a swept
            `torus` column, when present, is used instead).
        confidence: Central probability of the null interval of R, strictly 0-1.

    Returns:
        One row per snapshot: its label columns, then `sites` (size²), `occupied` (healthy or
        senescent sites), `senescent` (n), `R` (Clark–Evans index; Donnelly-corrected on a
        closed lattice), `R_null` (mean R of the random labellings), `R_low` and `R_high`
        (their central `confidence` interval), `p_value` (two-sided Monte-Carlo p of R) and
        `g_<r>` for each of `radii` (pair correlation; `g_1` is the Moore neighbourhood).
        Statistics are NaN for snapshots with fewer than 2 senescent cells.

    Raises:
        ValueError: If a column is missing, `state` has other values, a snapshot does not
            cover a square lattice once, or another argument is malformed (see Args).
    """
    missing = [c for c in ("age", "x", "y", "state") if c not in snapshots]
    if missing:
        raise ValueError(
            f"snapshots have no column {', '.join(map(repr, missing))}; expected "
            f"a table from load_snapshots (columns: age, {', '.join(SITE_COLUMNS)})"
        )
    codes = pd.Index(SITE_STATES).get_indexer(snapshots["state"])
    if (codes < 0).any():
        bad = pd.unique(snapshots["state"][codes < 0])
        raise ValueError(
            f"snapshots column 'state' has values {list(bad)!r}; allowed: {', '.join(SITE_STATES)}"
        )
    radii = sorted({_check_radius(r) for r in radii})
    if not radii:
        raise ValueError("radii is empty; allowed: one or more whole numbers >= 1")
    _check_n_null(n_null, minimum=1)
    check_confidence(confidence)
    keys = [c for c in snapshots.columns if c not in SITE_COLUMNS]
    frame = snapshots.assign(_code=codes)
    groups = list(grouped(frame, keys))
    rngs = map(np.random.default_rng, np.random.SeedSequence(seed).spawn(len(groups)))
    rows = []
    for (key, snapshot), rng in zip(groups, rngs, strict=True):
        size, tissue = _lattice(snapshot)
        swept = snapshot["torus"].iloc[0] if "torus" in snapshot else None
        wraps = torus if swept is None or pd.isna(swept) else bool(swept)
        if radii[-1] > (size // 2 if wraps else size - 1):
            raise ValueError(
                f"radii {radii} reach beyond {size // 2 if wraps else size - 1}, "
                f"the largest shell of a {size}×{size} "
                f"{'torus' if wraps else 'closed lattice'}"
            )
        senescent = np.argwhere(tissue == SITE_STATES.index("senescent"))
        occupied = np.argwhere(tissue != SITE_STATES.index("empty"))
        row = dict(zip(keys, key, strict=True))
        row.update(
            sites=size * size,
            occupied=len(occupied),
            senescent=len(senescent),
            R=np.nan,
            R_null=np.nan,
            R_low=np.nan,
            R_high=np.nan,
            p_value=np.nan,
            **{f"g_{r}": np.nan for r in radii},
        )
        if len(senescent) >= 2:
            ce = clark_evans_null(senescent, size, wraps, occupied, n_null, rng, confidence)
            g = pair_correlation(senescent, size, wraps, radii[-1], occupied)["g"].to_numpy()
            row.update(
                R=ce.index,
                R_null=ce.null_mean,
                R_low=ce.low,
                R_high=ce.high,
                p_value=ce.p_value,
                **{f"g_{r}": g[r - 1] for r in radii},
            )
        rows.append(row)
    return pd.DataFrame(rows).astype(snapshots[keys].dtypes.to_dict())


# --- validation -------------------------------------------------------------------------------


def _sites(points: np.ndarray, size: int, name: str) -> np.ndarray:
    """`points` as an int64 (n, 2) array, checked: n >= 2 (1 for `available`), inside, distinct."""
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 2:
        raise ValueError(
            f"size = {size!r} is not allowed; allowed: a whole number >= 2 "
            "(the lattice side, sites)"
        )
    array = np.asarray(points)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(
            f"{name} has shape {array.shape}; allowed: (n, 2), one row of site "
            "coordinates (x, y) per point"
        )
    minimum = 2 if name == "points" else 1
    if len(array) < minimum:
        raise ValueError(f"{name} has {len(array)} rows; allowed: at least {minimum}")
    if not (
        np.issubdtype(array.dtype, np.integer)
        or (
            np.issubdtype(array.dtype, np.floating)
            and np.isfinite(array).all()
            and (array == np.round(array)).all()
        )
    ):
        raise ValueError(
            f"{name} holds non-integer values; allowed: integer site coordinates 0 .. {size - 1}"
        )
    sites = array.astype(np.int64)
    outside = (sites < 0) | (sites >= size)
    if outside.any():
        x, y = sites[outside.any(axis=1)][0]
        raise ValueError(
            f"{name} has site ({x}, {y}) outside the lattice; allowed: coordinates 0 .. {size - 1}"
        )
    flat = sites[:, 0] * size + sites[:, 1]
    unique, counts = np.unique(flat, return_counts=True)
    if (counts > 1).any():
        x, y = divmod(int(unique[counts > 1][0]), size)
        raise ValueError(f"{name} has site ({x}, {y}) more than once; allowed: distinct sites")
    return sites


def _available(available: np.ndarray | None, size: int, sites: np.ndarray) -> np.ndarray:
    """The sites the null may use (all if None), checked to contain `sites` and outnumber them."""
    if available is None:
        return np.argwhere(np.ones((size, size), dtype=bool))
    pool = _sites(available, size, "available")
    inside = np.isin(sites[:, 0] * size + sites[:, 1], pool[:, 0] * size + pool[:, 1])
    if not inside.all():
        x, y = sites[~inside][0]
        raise ValueError(
            f"points has site ({x}, {y}) that is not in available; allowed: "
            "points among the available sites"
        )
    return pool


def _check_n_null(n_null: int, minimum: int) -> None:
    if isinstance(n_null, bool) or not isinstance(n_null, int | np.integer) or n_null < minimum:
        raise ValueError(
            f"n_null = {n_null!r} is not allowed; allowed: a whole number >= {minimum}"
        )


def _check_r_max(r_max: int | None, size: int, torus: bool) -> int:
    largest = size // 2 if torus else size - 1
    if r_max is None:
        return max(1, size // 4)
    if (
        isinstance(r_max, bool)
        or not isinstance(r_max, int | np.integer)
        or not 1 <= r_max <= largest
    ):
        raise ValueError(
            f"r_max = {r_max!r} is not allowed; allowed: a whole number 1 .. "
            f"{largest} (size//2 on a torus, size-1 on a closed lattice)"
        )
    return int(r_max)


def _check_radius(r: int) -> int:
    if isinstance(r, bool) or not isinstance(r, int | np.integer) or r < 1:
        raise ValueError(f"radii has {r!r}; allowed: whole numbers >= 1 (site spacings)")
    return int(r)


def _lattice(snapshot: pd.DataFrame) -> tuple[int, np.ndarray]:
    """The side and the state-code grid of one snapshot; ValueError unless it tiles a square."""
    size = isqrt(len(snapshot))
    x, y = snapshot["x"].to_numpy(), snapshot["y"].to_numpy()
    flat = x.astype(np.int64) * size + y
    if (
        size * size != len(snapshot)
        or x.min() < 0
        or y.min() < 0
        or x.max() >= size
        or y.max() >= size
        or len(np.unique(flat)) != len(flat)
    ):
        raise ValueError(
            f"a snapshot (age {snapshot['age'].iloc[0]}) has {len(snapshot)} rows "
            "that do not cover a square lattice once; allowed: one row per site, "
            "x and y in 0 .. size-1"
        )
    tissue = np.empty(size * size, dtype=np.int8)
    tissue[flat] = snapshot["_code"].to_numpy()
    return size, tissue.reshape(size, size)


# --- computation ------------------------------------------------------------------------------


def _clark_evans(sites: np.ndarray, size: int, torus: bool) -> ClarkEvans:
    """`clark_evans` of validated sites."""
    n = len(sites)
    mean_distance = float(_nn_distances(sites, size, torus).mean())
    expected, se = _csr(n, size, torus)
    z = (mean_distance - expected) / se
    return ClarkEvans(
        index=mean_distance / expected,
        z=z,
        p_value=float(2 * stats.norm.sf(abs(z))),
        n=n,
        mean_distance=mean_distance,
        expected=expected,
    )


def _nn_distances(sites: np.ndarray, size: int, torus: bool) -> np.ndarray:
    """Distance from every site to its nearest other site (minimum image on a torus)."""
    tree = KDTree(sites, boxsize=size if torus else None)
    return tree.query(sites, k=2)[0][:, 1]


def _csr(n: int, size: int, torus: bool) -> tuple[float, float]:
    """Expected mean nearest-neighbour distance of n CSR points and its standard error."""
    area = float(size * size)
    if torus:
        return float(0.5 * np.sqrt(area / n)), float(CE_SE * np.sqrt(area) / n)
    perimeter = 4.0 * size
    expected = 0.5 * np.sqrt(area / n) + (0.0514 + 0.0412 / np.sqrt(n)) * perimeter / n
    variance = 0.0703 * area / n**2 + 0.037 * perimeter * np.sqrt(area / n**5)
    return float(expected), float(np.sqrt(variance))


def _mc_p_value(observed: float, null: np.ndarray) -> float:
    """Two-sided Monte-Carlo p-value; ties (within 1e-9 relative) count on both sides."""
    tol = 1e-9 * abs(observed)
    lower = (1 + np.count_nonzero(null <= observed + tol)) / (len(null) + 1)
    upper = (1 + np.count_nonzero(null >= observed - tol)) / (len(null) + 1)
    return float(min(1.0, 2 * min(lower, upper)))


def _draws(m: int, n: int, rows: int, rng: np.random.Generator) -> np.ndarray:
    """`rows` random n-subsets of range(m) (each without repeats), shape (rows, n)."""
    return np.stack([rng.choice(m, n, replace=False) for _ in range(rows)])


def _indicator(sites: np.ndarray, size: int) -> np.ndarray:
    """0/1 grids, shape (b, size, size), of b sets of sites given as an array (b, n, 2)."""
    grids = np.zeros((len(sites), size, size))
    grids[np.arange(len(sites))[:, None], sites[..., 0], sites[..., 1]] = 1.0
    return grids


def _shell_matrix(size: int, torus: bool, r_max: int) -> tuple[np.ndarray, np.ndarray]:
    """The displacements in shells 1 .. r_max and their shells.

    Returns:
        Flat indices of those displacements in the (padded) FFT grid, and a 0/1 matrix of
        shape (displacements, r_max) whose column r-1 marks the displacements in shell r.
    """
    side = size if torus else 2 * size
    k = np.arange(side)
    offset = np.minimum(k, side - k)
    shell = np.rint(np.hypot(offset[:, None], offset[None, :])).astype(np.int64).ravel()
    keep = np.flatnonzero((shell >= 1) & (shell <= r_max))
    membership = np.zeros((len(keep), r_max))
    membership[np.arange(len(keep)), shell[keep] - 1] = 1.0
    return keep, membership


def _shell_counts(
    grids: np.ndarray, torus: bool, shells: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Ordered pairs of marked sites per shell, shape (b, r_max), for grids (b, size, size).

    The autocorrelation sum_x s(x) s(x + d) of each grid, from its FFT, counts the ordered
    pairs at every displacement d: periodic on a torus, zero-padded to 2·size on a closed
    lattice so that displacements do not wrap.
    """
    size = grids.shape[-1]
    side = size if torus else 2 * size
    spectrum = np.fft.rfft2(grids, s=(side, side))
    auto = np.fft.irfft2(spectrum * spectrum.conj(), s=(side, side)).reshape(len(grids), -1)
    keep, membership = shells
    return np.rint(auto[:, keep]) @ membership

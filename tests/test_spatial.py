"""Spatial statistics of senescent cells: Clark–Evans index, its null, pair correlation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from factories import variant
from tissue_abm.analysis.spatial import (
    clark_evans,
    clark_evans_null,
    pair_correlation,
    senescent_spatial,
)
from tissue_abm.biology.params import Parameters
from tissue_abm.biology.perturbation import Transplant
from tissue_abm.engines.array import ArrayTissue


def all_sites(size: int) -> np.ndarray:
    return np.argwhere(np.ones((size, size), dtype=bool))


def random_sites(
    size: int, n: int, rng: np.random.Generator, among: np.ndarray | None = None
) -> np.ndarray:
    pool = all_sites(size) if among is None else among
    return pool[rng.choice(len(pool), n, replace=False)]


def discs(centres: list[tuple[int, int]], radius: float) -> np.ndarray:
    """Every site within `radius` of each centre (the discs must not overlap or wrap)."""
    dx, dy = np.mgrid[-int(radius) : int(radius) + 1, -int(radius) : int(radius) + 1]
    inside = np.hypot(dx, dy) <= radius
    offsets = np.column_stack([dx[inside], dy[inside]])
    return np.concatenate([offsets + centre for centre in centres])


def brute_force_shells(points: np.ndarray, size: int, torus: bool, r_max: int) -> np.ndarray:
    """Unordered pairs per shell 1 .. r_max by looking at every pair (O(n²))."""
    delta = np.abs(points[:, None, :] - points[None, :, :])
    if torus:
        delta = np.minimum(delta, size - delta)
    shell = np.rint(np.hypot(delta[..., 0], delta[..., 1])).astype(int)
    upper = shell[np.triu_indices(len(points), k=1)]
    return np.array([np.count_nonzero(upper == r) for r in range(1, r_max + 1)])


# --- random labelling: no clustering ----------------------------------------------------------


def test_random_labelling_gives_r_and_g_near_one():
    """120 senescent cells placed at random among the occupied 80% of a 50×50 torus, 10 seeds.

    Statistic: the mean over seeds of R and of g(r), r = 1..5. Tolerance: 3 standard errors of
    that mean, the per-pattern SD taken from the null envelope ((high - low) / (2 * 1.96) for a
    95% interval) — a correct implementation fails this with probability ~0.3% per check, while
    a bias of one per-pattern SD would fail it. The Clark–Evans R is also within 0.1 of 1: the
    lattice bias at this density (~0.04, see `clark_evans`) plus 3 standard errors (0.045).
    """
    size, n, seeds = 50, 120, range(10)
    occupied = random_sites(size, int(0.8 * size * size), np.random.default_rng(99))
    rs, nulls, sds, gs, g_sds, ps = [], [], [], [], [], []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        points = random_sites(size, n, rng, among=occupied)
        ce = clark_evans_null(points, size, available=occupied, n_null=199, rng=rng)
        g = pair_correlation(points, size, r_max=5, available=occupied, n_null=199, rng=rng)
        rs.append(ce.index)
        nulls.append(ce.null_mean)
        sds.append((ce.high - ce.low) / (2 * 1.96))
        ps.append(ce.p_value)
        gs.append(g["g"].to_numpy())
        g_sds.append(((g["high"] - g["low"]) / (2 * 1.96)).to_numpy())
    k = len(seeds)
    assert abs(np.mean(rs) - np.mean(nulls)) < 3 * np.mean(sds) / np.sqrt(k)
    assert abs(np.mean(rs) - 1) < 0.1
    np.testing.assert_array_less(
        np.abs(np.mean(gs, axis=0) - 1), 3 * np.mean(g_sds, axis=0) / np.sqrt(k)
    )
    # Monte-Carlo p-values are ~uniform: P(4 or more of 10 below 0.05) = 0.001.
    assert np.count_nonzero(np.array(ps) < 0.05) <= 3


def test_null_accounts_for_empty_sites():
    """80 cells at random among the occupied half (x < 20) of a 40×40 torus.

    Confined to half the area, the cells are twice as dense as n / size² says: the analytic
    Clark–Evans test calls them clustered (R < 0.85) and g(r) against all sites is ≈ 2, but
    against the random labelling of the occupied sites R lies inside the 95% null interval and
    g(r) inside its envelope at every r but at most one of 1..6 (one pattern, seed fixed).
    """
    size = 40
    occupied = np.argwhere(np.arange(size)[:, None] < np.full((size, size), size // 2))
    points = random_sites(size, 80, np.random.default_rng(5), among=occupied)
    ce = clark_evans(points, size)
    assert ce.index < 0.85 and ce.p_value < 0.01
    null = clark_evans_null(points, size, available=occupied, n_null=199, rng=6)
    assert null.low < null.index < null.high and null.p_value > 0.05
    g = pair_correlation(points, size, r_max=6, available=occupied, n_null=199, rng=7)
    assert np.count_nonzero((g["g"] < g["low"]) | (g["g"] > g["high"])) <= 1
    assert pair_correlation(points, size, r_max=6)["g"].iloc[2:].mean() > 1.5


# --- clustered and regular patterns -----------------------------------------------------------


@pytest.mark.parametrize("torus", [True, False])
def test_discs_of_cells_are_clustered(torus):
    """Six discs of radius 3 (29 sites each) on a 60×60 lattice: R < 1, p < 0.01, g(1) > 1.

    999 labellings make the smallest Monte-Carlo p 0.002, so p < 0.01 is attainable.
    """
    size = 60
    points = discs([(8, 8), (8, 40), (25, 20), (40, 50), (50, 10), (30, 35)], 3)
    ce = clark_evans(points, size, torus)
    null = clark_evans_null(points, size, torus, n_null=999, rng=1)
    g = pair_correlation(points, size, torus, r_max=10, n_null=199, rng=2)
    assert ce.index < 1 and ce.p_value < 0.01 and ce.z < 0
    assert null.index < null.low and null.p_value < 0.01
    assert g["g"].iloc[0] > 1 and g["g"].iloc[0] > g["high"].iloc[0]


@pytest.mark.parametrize("torus", [True, False])
def test_regular_lattice_pattern_is_regular(torus):
    """Every 4th site in both axes of a 40×40 lattice: all nearest neighbours at distance 4."""
    size = 40
    points = np.argwhere(np.ones((size // 4, size // 4), dtype=bool)) * 4
    ce = clark_evans(points, size, torus)
    assert ce.mean_distance == pytest.approx(4.0)
    assert ce.index > 1 and ce.p_value < 0.01
    if torus:  # density 1/16: CSR expects 0.5 * 4 = 2, so R = 2 exactly
        assert ce.index == pytest.approx(2.0)
    else:  # the Donnelly edge correction lengthens the expectation, so R is a bit below 2
        assert 1.5 < ce.index < 2
    null = clark_evans_null(points, size, torus, n_null=199, rng=3)
    assert null.index > null.high and null.p_value == pytest.approx(0.01)
    g = pair_correlation(points, size, torus, r_max=4)
    assert (g["g"].iloc[:3] == 0).all() and g["g"].iloc[3] > 1


# --- the FFT pair counts and the geometry -----------------------------------------------------


@pytest.mark.parametrize("torus", [True, False])
@pytest.mark.parametrize("size", [7, 8])
def test_fft_pair_counts_equal_brute_force(size, torus):
    rng = np.random.default_rng(size)
    available = random_sites(size, 30, rng)
    points = available[:12]
    r_max = size // 2 if torus else size - 1
    table = pair_correlation(points, size, torus, r_max=r_max, available=available)
    np.testing.assert_array_equal(table["r"], np.arange(1, r_max + 1))
    np.testing.assert_array_equal(table["pairs"], brute_force_shells(points, size, torus, r_max))
    n, m = len(points), len(available)
    np.testing.assert_allclose(
        table["expected"],
        brute_force_shells(available, size, torus, r_max) * n * (n - 1) / (m * (m - 1)),
    )
    assert table["pairs"].sum() == pytest.approx((table["g"] * table["expected"]).sum())


def test_torus_distances_use_the_minimum_image():
    size = 10
    across = np.array([[0, 0], [size - 1, 0]])
    corner = np.array([[0, 0], [size - 1, size - 1]])
    assert clark_evans(across, size, torus=True).mean_distance == pytest.approx(1.0)
    assert clark_evans(across, size, torus=False).mean_distance == pytest.approx(size - 1)
    assert clark_evans(corner, size, torus=True).mean_distance == pytest.approx(np.sqrt(2))
    assert pair_correlation(across, size, torus=True)["pairs"].iloc[0] == 1
    assert pair_correlation(across, size, torus=False)["pairs"].sum() == 0
    assert pair_correlation(corner, size, torus=True)["pairs"].iloc[0] == 1


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: clark_evans(np.array([[0, 0], [10, 3]]), 10), "points.*outside.*0 .. 9"),
        (lambda: clark_evans(np.array([[0, -1], [1, 3]]), 10), "points.*outside"),
        (lambda: clark_evans(np.array([0, 1, 2]), 10), r"points has shape \(3,\).*\(n, 2\)"),
        (lambda: clark_evans(np.zeros((3, 3), dtype=int), 10), r"points has shape \(3, 3\)"),
        (lambda: clark_evans(np.array([[1, 1]]), 10), "points has 1 rows.*at least 2"),
        (lambda: clark_evans(np.array([[1, 1], [1, 1]]), 10), "points.*more than once"),
        (lambda: clark_evans(np.array([[1.5, 1], [2, 2]]), 10), "points.*non-integer"),
        (lambda: clark_evans(np.array([[0, 0], [1, 1]]), 1), "size = 1.*>= 2"),
        (
            lambda: clark_evans_null(
                np.array([[0, 0], [1, 1]]), 10, available=np.array([[0, 0], [2, 2]])
            ),
            "not in available",
        ),
        (lambda: clark_evans_null(np.array([[0, 0], [1, 1]]), 10, n_null=0), "n_null = 0.*>= 1"),
        (lambda: clark_evans_null(np.array([[0, 0], [1, 1]]), 10, confidence=1.5), "confidence"),
        (lambda: pair_correlation(np.array([[0, 0], [1, 1]]), 10, r_max=6), "r_max = 6.*1 .. 5"),
        (
            lambda: pair_correlation(np.array([[0, 0], [1, 1]]), 10, torus=False, r_max=10),
            "r_max = 10.*1 .. 9",
        ),
        (lambda: pair_correlation(np.array([[0, 0], [1, 1]]), 10, n_null=-1), "n_null = -1"),
    ],
)
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bad_snapshots_raise_value_error():
    snap = ArrayTissue(size=10, days=0, rng=0).snapshot()
    with pytest.raises(ValueError, match="no column 'state'"):
        senescent_spatial(snap.drop(columns="state"))
    bad = snap.assign(state=snap["state"].astype(str).replace("healthy", "dead"))
    with pytest.raises(ValueError, match=r"'state' has values.*dead.*allowed: empty, healthy"):
        senescent_spatial(bad)
    with pytest.raises(ValueError, match="do not cover a square lattice"):
        senescent_spatial(snap.iloc[1:])
    with pytest.raises(ValueError, match=r"radii.*beyond 5"):
        senescent_spatial(snap.assign(state="senescent"), radii=(1, 8))
    with pytest.raises(ValueError, match="radii has 0"):
        senescent_spatial(snap, radii=(0, 1))


# --- snapshots of real runs -------------------------------------------------------------------


@pytest.fixture(scope="module")
def snapshots() -> pd.DataFrame:
    """Two real 30×30 runs of 50 days, labelled as two replicates: a young tissue holding exactly
    one senescent cell (transplanted, with no process that makes or removes one) and an old one
    (from 650 days of age; 1.5% of the sites senescent at the start, kept: no clearance and no
    paracrine spread, so a dozen or more cells at random sites)."""
    still = Parameters(
        initial_senescent_fraction=0.0,
        primary_max_rate=0.0,
        paracrine_max_rate=0.0,
        immune_kill=0.0,
        phagocytic_rate=0.0,
        senescent_death_rate=0.0,
    )
    runs = (
        (still, 90, [Transplant(age=100, cells=1, state="senescent")]),
        (variant(still, initial_senescent_fraction=0.015, primary_max_rate=0.0005), 650, []),
    )
    frames = []
    for replicate, (params, start_age, perturbations) in enumerate(runs):
        m = ArrayTissue(
            params, size=30, start_age=start_age, days=50, rng=1, perturbations=perturbations
        )
        for _ in range(50):
            m.step()
        frames.append(m.snapshot().assign(scenario="untreated", replicate=replicate))
    table = pd.concat(frames, ignore_index=True)
    return table.assign(scenario=table["scenario"].astype("category"))


def test_senescent_spatial_on_real_runs(snapshots):
    table = senescent_spatial(snapshots, n_null=99, seed=0)
    assert list(table.columns) == [
        "age",
        "scenario",
        "replicate",
        "sites",
        "occupied",
        "senescent",
        "R",
        "R_null",
        "R_low",
        "R_high",
        "p_value",
        "g_1",
        "g_2",
        "g_4",
        "g_8",
    ]
    assert len(table) == 2 and table["replicate"].tolist() == [0, 1]
    counts = snapshots.groupby("replicate")["state"].value_counts().unstack()
    np.testing.assert_array_equal(table["senescent"], counts["senescent"])
    np.testing.assert_array_equal(table["occupied"], 900 - counts["empty"])
    assert (table["sites"] == 900).all()
    young, old = table.iloc[0], table.iloc[1]
    assert young["senescent"] == 1 and young[["R", "p_value", "g_1"]].isna().all()
    assert old["senescent"] >= 2
    assert old["R_low"] <= old["R_null"] <= old["R_high"] and 0 < old["p_value"] <= 1
    assert np.isfinite(old[["R", "g_1", "g_2", "g_4", "g_8"]].astype(float)).all()
    cells = snapshots[(snapshots["replicate"] == 1) & (snapshots["state"] == "senescent")]
    points = cells[["x", "y"]].to_numpy()
    assert old["R"] == pytest.approx(clark_evans(points, 30).index)
    pd.testing.assert_frame_equal(table, senescent_spatial(snapshots, n_null=99, seed=0))


def test_senescent_spatial_finds_a_planted_cluster(snapshots):
    """A 5×5 block of the old run's cells turned senescent: clustered against the null."""
    snap = snapshots[snapshots["replicate"] == 1].copy()
    block = snap["x"].between(10, 14) & snap["y"].between(10, 14) & (snap["state"] != "empty")
    snap.loc[block, "state"] = "senescent"
    row = senescent_spatial(snap, n_null=199, seed=1).iloc[0]
    assert row["R"] < row["R_low"] and row["p_value"] <= 0.01 and row["g_1"] > 2


def test_senescent_spatial_uses_a_swept_torus_column(snapshots):
    snap = snapshots[snapshots["replicate"] == 1]
    points = snap.loc[snap["state"] == "senescent", ["x", "y"]].to_numpy()
    closed = senescent_spatial(snap.assign(torus=False), n_null=9).iloc[0]
    assert closed["R"] == pytest.approx(clark_evans(points, 30, torus=False).index)
    assert closed["R"] != pytest.approx(clark_evans(points, 30, torus=True).index)

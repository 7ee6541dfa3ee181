"""Tests of what only the array engine `ArrayTissue` (`tissue_abm.engines.array`) has.

The engine contract (site-level invariants after every day of busy runs, determinism, the run's
end, `run_for`, the readout table, the snapshot, the initial state and limiting cases) is
checked on both kernels of this engine and on the agents engine in `test_engine_contract`; the
kernels' agreement in `test_kernels`. Here: the neighbour table.
"""

from __future__ import annotations

import pytest

from factories import active_tissue, moore_neighbours


def neighbour_indices(index: int, size: int, torus: bool) -> list[int]:
    """Flat indices of the Moore neighbours of a site, from `factories.moore_neighbours`."""
    x, y = divmod(index, size)
    return [nx * size + ny for nx, ny in moore_neighbours((x, y), size, torus)]


@pytest.mark.parametrize("torus", [True, False], ids=["torus", "closed"])
def test_neighbour_table_is_the_moore_neighbourhood(torus: bool) -> None:
    size = 6
    model = active_tissue(size=size, days=1, torus=torus)
    assert model.neighbours.shape == (size * size, 8)
    for index in range(size * size):
        row = model.neighbours[index]
        assert sorted(row[row >= 0].tolist()) == sorted(neighbour_indices(index, size, torus))
        if torus:
            assert (row >= 0).all()

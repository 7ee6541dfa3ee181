"""Shared fixtures: the engine cases of the contract suite and builders of their engines.

The builders themselves are in `factories` (importable by any test module); the fixtures here
parametrise a test over every engine and kernel: ("agents", None), ("array", "numba") and
("array", "numpy"); the numba case is skipped where numba is not installed.
"""

from __future__ import annotations

import functools

import pytest

from factories import ENGINE_CASES, active_engine, new_engine


@pytest.fixture(
    params=ENGINE_CASES,
    ids=[engine if kernel is None else f"{engine}-{kernel}" for engine, kernel in ENGINE_CASES],
)
def engine_case(request) -> tuple[str, str | None]:
    """(engine, kernel) of the engine under test (skipped if the kernel is not installed)."""
    engine, kernel = request.param
    if kernel is not None:
        from tissue_abm.engines.array import KERNELS

        if kernel not in KERNELS:
            pytest.skip(f"kernel {kernel!r} is not available here")
    return engine, kernel


@pytest.fixture
def build_engine(engine_case):
    """Build the engine under test: `build_engine(**constructor_arguments)`."""
    return functools.partial(new_engine, *engine_case)


@pytest.fixture
def build_active(engine_case):
    """Build the busy old tissue on the engine under test: `build_active(size=..., rng=...)`."""
    return functools.partial(active_engine, *engine_case)

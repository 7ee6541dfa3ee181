"""Loewe and ZIP (the optional `synergy` package) beside Bliss and HSA on known surfaces."""

from __future__ import annotations

import numpy as np
import pytest

from tissue_abm.analysis.dose_response import surface_scores

pytest.importorskip("synergy")

A = (0.0, 0.25, 0.5, 1.0, 2.0)
B = (0.0, 0.5, 1.0, 2.0)


def hill(d, emax, h, c):
    """Remaining loss of one drug (1 at dose 0, falling to 1 - emax)."""
    d = np.asarray(d, dtype=float)
    return 1.0 - emax * d**h / (c**h + d**h)


def grid(doses_a=A, doses_b=B):
    a, b = np.meshgrid(doses_a, doses_b, indexing="ij")
    return a.ravel(), b.ravel()


def test_an_independent_surface_is_additive_under_bliss_and_zip():
    # Two Hill drugs acting independently: the remaining loss is the product of theirs, which
    # is Bliss's and ZIP's reference; both must read 0 in every combination cell (exact data:
    # tolerance 0.005 for ZIP's refitted Hill curves). HSA expects only the stronger drug, so
    # it reads this as more than its reference everywhere.
    a, b = grid()
    remaining = hill(a, 0.6, 1.2, 0.6) * hill(b, 0.3, 1.0, 0.8)
    scores = surface_scores(a, b, remaining)
    both = (a > 0) & (b > 0)
    np.testing.assert_allclose(scores.excess["Bliss"][both], 0.0, atol=1e-12)
    np.testing.assert_allclose(scores.excess["ZIP"][both], 0.0, atol=0.005)
    assert (scores.excess["HSA"][both] > 0).all()
    for method in ("Bliss", "HSA", "Loewe", "ZIP"):  # single-drug cells are not scored
        assert np.isnan(scores.excess[method][~both]).all()


def test_ten_points_more_effect_in_every_combination_cell_reads_as_ten_points():
    # The independent surface with 0.10 less remaining loss wherever both drugs are given:
    # Bliss finds exactly +0.10 and ZIP (which refits the rows and columns) within 0.02.
    a, b = grid()
    both = (a > 0) & (b > 0)
    remaining = hill(a, 0.6, 1.2, 0.6) * hill(b, 0.3, 1.0, 0.8) - 0.10 * both
    scores = surface_scores(a, b, remaining)
    np.testing.assert_allclose(scores.excess["Bliss"][both], 0.10, atol=1e-12)
    np.testing.assert_allclose(scores.excess["ZIP"][both], 0.10, atol=0.02)


def test_a_drug_with_itself_is_additive_under_loewe_and_not_under_bliss():
    # The sham: one saturating Hill drug as both drugs, each cell its response at the sum of
    # the doses, its Hill curve fitted on its own single doses. Loewe is sham-compliant by
    # construction (within 0.005: the fit of exact data); Bliss reads a saturating drug with
    # itself as antagonistic (its reference assumes an exponential fall).
    single = np.array([0.0, 0.25, 0.5, 1.0, 1.5, 2.0])
    curve = (single, hill(single, 0.5, 1.0, 0.7))
    a, b = grid((0.0, 0.5, 1.0), (0.0, 0.5, 1.0))
    scores = surface_scores(a, b, hill(a + b, 0.5, 1.0, 0.7), curves=(curve, curve))
    both = (a > 0) & (b > 0)
    np.testing.assert_allclose(scores.excess["Loewe"][both], 0.0, atol=0.005)
    assert not scores.loewe_hsa.any()
    assert (scores.excess["Bliss"][both] < -0.02).all()


def test_loewe_falls_back_to_hsa_beyond_the_weaker_drugs_maximum():
    # Drug B can remove at most 20% of the loss; every dose of drug A from 0.5 removes more,
    # so Loewe's reference is undefined there and HSA's is used (and marked).
    a, b = grid()
    remaining = hill(a, 0.8, 1.0, 0.3) * hill(b, 0.2, 1.0, 0.5)
    scores = surface_scores(a, b, remaining)
    beyond = (a >= 0.5) & (b > 0)
    assert scores.loewe_hsa[beyond].all()
    np.testing.assert_allclose(
        scores.excess["Loewe"][beyond], scores.excess["HSA"][beyond], atol=0.01
    )


def test_a_surface_without_its_control_is_refused():
    a, b = grid((0.5, 1.0), (0.5, 1.0))
    with pytest.raises(ValueError, match="control cell"):
        surface_scores(a, b, np.ones(a.shape))

"""Synergy scores of a whole dose–response surface: Loewe and ZIP beside Bliss and HSA.

Loewe additivity and ZIP (zero interaction potency) need each drug's dose–response curve, so
they score a dose grid (drug A's doses × drug B's doses, zero included), not four groups. They
come from the `synergy` package (Wooten & Albert 2020), an optional dependency because it is
GPL-3.0 licensed (`pip install "tissue-abm[synergy]"`); Bliss and HSA are the
project's own (`analysis.synergy`) on the observed single-drug cells.

The surface is the *remaining loss*: the share of the control's loss that is still lost,
1 − fractional effect (1 at the control, 0 when the whole loss is prevented), which is the
decreasing, control-normalised response (E0 = 1) the `synergy` package's Hill fits and ZIP's
multiplicative reference expect. Every score is an excess in fractional-effect units (0.1 = 10
points; > 0 more effect than the reference expects), so the five read on one scale.

Where they do not fit: Loewe's reference is undefined where one drug alone already does more
than the weaker drug can ever do (its fitted maximum effect); there the `delta_hsa` mode used
here falls back to HSA, and `SurfaceScores.loewe_hsa` marks those cells. ZIP needs a full
rectangular grid. MuSyC, which the package also offers, is left out: fitted (10 parameters)
to 16 of the answer study's 20-cell surfaces (8 draws × lifespan and burden) it failed on 10 and
gave no usable estimate on the other 6 (α stayed at its starting 1, or ran to a bound: α12 = 0
with E3 = −44), taking up to 4.5 s a fit.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import numpy as np

from tissue_abm.analysis.synergy import bliss_expected, hsa_expected

METHODS = ("Bliss", "HSA", "Loewe", "ZIP")
"""Per-cell reference models of `surface_scores`, in table order."""


class SurfaceScores(NamedTuple):
    """The scores of one dose–response surface, per cell in the input order."""

    excess: dict[str, np.ndarray]
    """Method (`METHODS`) -> excess per cell (fractional-effect units); NaN at single-drug
    cells and where a fit failed."""
    loewe_hsa: np.ndarray
    """Per cell: Loewe's reference was undefined there and HSA's was used (bool)."""


def optional_package() -> bool:
    """Whether the optional `synergy` package (Loewe, ZIP) is installed."""
    from importlib.util import find_spec

    return find_spec("synergy") is not None


Curve = tuple[np.ndarray, np.ndarray]
"""One drug alone: its doses and the remaining loss at each."""


def surface_scores(
    dose_a: np.ndarray,
    dose_b: np.ndarray,
    remaining: np.ndarray,
    curves: tuple[Curve, Curve] | None = None,
) -> SurfaceScores:
    """Bliss, HSA, Loewe and ZIP excess in every cell of a dose grid.

    Args:
        dose_a: Drug A's dose per cell (its units, ≥ 0), a full grid with zero included.
        dose_b: Drug B's dose per cell (≥ 0), same length.
        remaining: Share of the control's loss still lost per cell (1 − fractional effect; 1 at
            the control). Cells with NaN are left out of the fits.
        curves: Each drug's dose–response alone, to fit its Hill curve on for Loewe and ZIP;
            None: the grid's own single-drug cells.

    Raises:
        ModuleNotFoundError: If the optional `synergy` package is not installed.
        ValueError: If the arrays differ in length or lack a control cell (both doses 0).
    """
    from synergy.combination import ZIP, Loewe

    a, b, e = (np.asarray(x, dtype=float) for x in (dose_a, dose_b, remaining))
    if not a.shape == b.shape == e.shape or a.ndim != 1:
        raise ValueError("dose_a, dose_b and remaining must be 1-d arrays of one length")
    if not ((a == 0) & (b == 0)).any():
        raise ValueError("the grid needs its control cell (both doses 0)")
    both = (a > 0) & (b > 0)
    excess = {name: np.full(a.shape, math.nan) for name in METHODS}
    ya, yb = _single_effects(a, b, 1.0 - e)
    excess["Bliss"] = np.where(both, (1.0 - e) - bliss_expected(ya, yb), math.nan)
    excess["HSA"] = np.where(both, (1.0 - e) - hsa_expected(ya, yb), math.nan)
    loewe_hsa = np.zeros(a.shape, dtype=bool)
    kept = np.isfinite(e)
    ak, bk, ek = a[kept], b[kept], e[kept]
    loewe = _fit(Loewe(mode="delta_hsa", **_hills(curves)), ak, bk, ek)
    if loewe is not None:
        model, scores = loewe
        excess["Loewe"][kept] = np.where(both[kept], scores, math.nan)
        weaker = max(model.drug1_model.Emax, model.drug2_model.Emax)
        beyond = (model.drug1_model.E(ak) < weaker) | (model.drug2_model.E(bk) < weaker)
        loewe_hsa[kept] = both[kept] & beyond
    zip_ = _fit(ZIP(**_hills(curves)), ak, bk, ek)
    if zip_ is not None:
        excess["ZIP"][kept] = np.where(both[kept], zip_[1], math.nan)
    return SurfaceScores(excess, loewe_hsa)


def _single_effects(a: np.ndarray, b: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per cell, the observed effect of drug A alone at its dose and of drug B alone at its."""
    alone_a = {dose: value for dose, other, value in zip(a, b, y, strict=True) if other == 0}
    alone_b = {dose: value for other, dose, value in zip(a, b, y, strict=True) if other == 0}
    return (
        np.array([alone_a.get(dose, math.nan) for dose in a]),
        np.array([alone_b.get(dose, math.nan) for dose in b]),
    )


def _hills(curves: tuple[Curve, Curve] | None) -> dict[str, Any]:
    """Hill curves fitted on `curves` as `drug1_model` and `drug2_model`; {} if none or failed.

    Fresh ones at each call: ZIP changes its models.
    """
    if curves is None:
        return {}
    from synergy.single import Hill

    models = {}
    for key, (doses, remaining) in zip(("drug1_model", "drug2_model"), curves, strict=True):
        d, e = np.asarray(doses, dtype=float), np.asarray(remaining, dtype=float)
        fitted = _fit(Hill(), d[np.isfinite(e)], None, e[np.isfinite(e)])
        if fitted is None:
            return {}
        models[key] = fitted[0]
    return models


def _fit(
    model: Any, a: np.ndarray, b: np.ndarray | None, e: np.ndarray
) -> tuple[Any, np.ndarray] | None:
    """Fit a `synergy` model quietly: (model, per-cell synergy), or None if the fit failed.

    A single-drug model when `b` is None.
    """
    from synergy.exceptions import ModelNotParameterizedError

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # curve_fit's covariance and overflow warnings
        try:
            scores = model.fit(a, e) if b is None else model.fit(a, b, e)
        except (ValueError, TypeError, RuntimeError, ModelNotParameterizedError):
            return None
    if scores is None:  # a single-drug model returns nothing; its fit is the result
        return (model, np.full(a.shape, math.nan)) if model.is_specified else None
    return model, np.asarray(scores, dtype=float)

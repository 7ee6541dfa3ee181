"""Every biological parameter of the model, in one place.

Each parameter has a name, unit, default, allowed range and source. The source cites
`docs/references.md` (section number and grade, [R] primary, [S] secondary, [M] recalled,
[C] computed), says "fitted" (to a calibration target of `studies.calibration`) or says
"assumed" with the reason. Parameters whose *effect* has no direct evidence are marked
`hypothesis` (0 switches the effect off; `HYPOTHESES` lists them). `docs/parameters.md` is
generated from this module (`tissue-abm params > docs/parameters.md`) and a test keeps the two in
agreement.

Units are normalised where the literature gives none: damage is measured in units of the damage at
which primary senescence is half-maximal, SASP in units of one mature senescent cell's daily
secretion, oxytocin in units of the young (3-month) endogenous level, rapamycin in mg/kg.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Self, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.config import JsonDict


def _param(
    default: float,
    unit: str,
    low: float,
    high: float,
    source: str,
    doc: str,
    *,
    hypothesis: bool = False,
) -> Any:
    """Declare one parameter: default, closed range [low, high], unit, source and meaning.

    `hypothesis` marks an effect without direct evidence; its range must hold 0 (no effect).
    """
    if hypothesis and low > 0.0:
        raise ValueError("a hypothesis parameter must allow 0 (the effect switched off)")
    return Field(
        default,
        ge=low,
        le=high,
        description=doc,
        json_schema_extra={"unit": unit, "source": source, "hypothesis": hypothesis},
    )


class Parameters(BaseModel):
    """The model card's parameters (defaults are the calibrated baseline).

    Instances are immutable and validated (type, range); derive a variant with
    `Parameters(**{**p.model_dump(), "immune_kill": 0.0})`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    # --- initial tissue -------------------------------------------------------------------------
    initial_occupancy: float = _param(
        0.97,
        "fraction of sites",
        0.0,
        1.0,
        "assumed: a nearly confluent tissue with a few empty sites",
        "Fraction of sites holding a cell at the start age.",
    )
    initial_senescent_fraction: float = _param(
        0.002,
        "fraction of sites",
        0.0,
        0.5,
        "assumed: near the model's young (3-month) steady state of ~0.2%; in vivo ~1-5% in aged "
        "tissue (§8, rule of thumb [S])",
        "Fraction of sites holding a senescent cell at the start age.",
    )

    # --- mTORC1, rapamycin and autophagy ---------------------------------------------------
    mtorc1_age_slope: float = _param(
        1.09,
        "1/year",
        0.0,
        5.0,
        "mTORC1 activity rises with age (source article, §11 [S], qualitative); slope fitted "
        "(ABC-SMC, docs/calibration.md; prior 0.2-2)",
        "Rise of normalised mTORC1 activity per year of age (activity is 1 at birth).",
    )
    rapa_emax: float = _param(
        0.9,
        "fraction",
        0.0,
        1.0,
        "assumed: rapamycin is an allosteric, incomplete mTORC1 inhibitor",
        "Maximal fractional inhibition of mTORC1 by rapamycin.",
    )
    rapa_ic50: float = _param(
        5.0,
        "mg/kg",
        0.01,
        100.0,
        "assumed: 1 mg/kg daily (mean exposure ~3.75 mg/kg) inhibits mTORC1 partially (~40%)",
        "Mean daily rapamycin exposure giving half of rapa_emax on mTORC1.",
    )
    rapa_half_life: float = _param(
        2.6,
        "day",
        0.1,
        30.0,
        "sirolimus terminal half-life ~62 h (§2 [M])",
        "Elimination half-life of rapamycin (one-compartment pharmacokinetics).",
    )
    mtorc2_ic50: float = _param(
        10.0,
        "mg/kg",
        0.01,
        1000.0,
        "assumed: mTORC2 is disrupted only by prolonged, high exposure (Lamming 2012, §2 [R])",
        "Chronic (time-averaged) rapamycin exposure giving half-maximal mTORC2 inhibition.",
    )
    mtorc2_hill: float = _param(
        2.0,
        "1",
        0.5,
        8.0,
        "assumed: threshold-like onset of mTORC2 disruption",
        "Hill coefficient of mTORC2 inhibition by chronic rapamycin exposure.",
    )
    mtorc2_window: float = _param(
        14.0,
        "day",
        1.0,
        365.0,
        "assumed: 'chronic' treatment of weeks disrupts mTORC2 (Lamming 2012, §2 [R])",
        "Time constant of the running average of rapamycin exposure that drives mTORC2 loss.",
    )
    mtorc2_hazard: float = _param(
        0.0001,
        "1/day",
        0.0,
        0.001,
        "chronic rapamycin disrupts mTORC2 and causes insulin resistance (Lamming 2012, §2 [R]); "
        "that this raises mortality, and by how much, is a hypothesis (assumed)",
        "Extra daily mortality, not caused by senescence, at full mTORC2 inhibition.",
        hypothesis=True,
    )
    autophagy_half_mtorc1: float = _param(
        1.0,
        "normalised mTORC1",
        0.05,
        20.0,
        "assumed: autophagy is half-maximal at the mTORC1 activity of a newborn",
        "mTORC1 activity at which autophagy is half of its maximum.",
    )
    autophagy_hill: float = _param(
        2.0,
        "1",
        0.5,
        8.0,
        "assumed: a graded (not switch-like) response",
        "Hill coefficient of autophagy suppression by mTORC1.",
    )
    rapa_damage_share: float = _param(
        0.129,
        "fraction",
        0.0,
        1.0,
        "mTORC1 hyperfunction drives part of the damage (source article, §11 [S]; Lamming 2012, "
        "§2 [R]: mTORC1 reduction alone extends lifespan); share fitted (ABC-SMC, "
        "docs/calibration.md; prior 0-1), above all by rapamycin at 14 ppm from 9 months "
        "(Miller 2011, §2 [R])",
        "Share of the damage drive that depends on mTORC1 and that rapamycin's inhibition "
        "lowers (at most rapa_emax of it).",
    )
    autophagy_repair_share: float = _param(
        0.141,
        "fraction",
        0.0,
        1.0,
        "autophagy clears damaged components (source article and Wu 2013 cited by it, §11 [S]); "
        "share fitted (ABC-SMC, docs/calibration.md; prior 0-1)",
        "Share of damage repair that depends on autophagy (the rest does not follow mTORC1).",
    )

    # --- damage and primary / replicative senescence ---------------------------------------------
    damage_rate: float = _param(
        0.01,
        "damage/day",
        0.0,
        1.0,
        "assumed: calibrated so primary senescence is rare in young and common in old tissue",
        "Damage accrued per day by a cell at normalised mTORC1 activity 1 and no SASP.",
    )
    damage_repair: float = _param(
        0.1,
        "1/day",
        0.001,
        1.0,
        "assumed: damage turns over in weeks at full autophagy",
        "Fraction of damage repaired per day at full autophagy (scaled by autophagy).",
    )
    damage_sasp_gain: float = _param(
        1.0,
        "1/SASP",
        0.0,
        20.0,
        "SASP/ROS cause DNA damage in neighbours (Nelson 2012, §4 [R]); magnitude assumed",
        "Relative increase of the damage rate per unit of effective local SASP.",
    )
    damage_heterogeneity: float = _param(
        0.3,
        "1 (s.d. of log)",
        0.0,
        2.0,
        "assumed: cell-to-cell variability of damage accrual",
        "Log-normal spread of each cell's damage-rate multiplier (mean multiplier 1).",
    )
    primary_max_rate: float = _param(
        0.002,
        "1/day",
        0.0,
        1.0,
        "assumed: calibrated to senescent fractions of a few percent in old tissue (§8)",
        "Daily probability of primary (damage-induced) senescence at saturating damage.",
    )
    primary_damage_half: float = _param(
        1.0,
        "damage",
        0.01,
        100.0,
        "by definition of the damage unit",
        "Damage at which primary senescence is half-maximal.",
    )
    primary_hill: float = _param(
        2.0,
        "1",
        0.5,
        12.0,
        "assumed: a graded DNA-damage response; steeper values make the old/young ratio of "
        "senescent burden far exceed the ~5x reported (Karin 2019, §1 [S])",
        "Hill coefficient of primary senescence in damage.",
    )
    replicative_limit: int = _param(
        30,
        "divisions",
        1,
        1000,
        "assumed: Hayflick-type limit, order of tens of divisions",
        "Divisions after which a cell that is stimulated to divide arrests instead.",
    )

    # --- SASP and paracrine senescence ----------------------------------------------------------
    sasp_secretion: float = _param(
        1.0,
        "SASP/day",
        0.0,
        10.0,
        "by definition of the SASP unit (0 models a SASP-null senescent cell)",
        "Daily SASP secretion of a mature, untreated senescent cell.",
    )
    sasp_maturation: float = _param(
        3.0,
        "day",
        0.01,
        60.0,
        "assumed: the SASP develops over days after arrest",
        "Days after arrest at which a senescent cell secretes half its mature SASP.",
    )
    sasp_decay: float = _param(
        0.5,
        "1/day",
        0.01,
        4.0,
        "assumed: cytokines are cleared within days",
        "First-order decay rate of the SASP field.",
    )
    sasp_diffusion: float = _param(
        0.5,
        "site²/day",
        0.0,
        10.0,
        "assumed: short range, bystander effects act on neighbours (Nelson 2012, §4 [R])",
        "Diffusion coefficient of the SASP field on the lattice.",
    )
    rapa_sasp_suppression: float = _param(
        0.8,
        "fraction",
        0.0,
        1.0,
        "rapamycin blunts the SASP via mTOR (Laberge 2015, Herranz 2015, §5 [R]); size assumed",
        "Fraction of SASP secretion that is lost per unit of fractional mTORC1 inhibition.",
    )
    paracrine_max_rate: float = _param(
        0.02,
        "1/day",
        0.0,
        1.0,
        "SASP causes paracrine senescence (Acosta 2013, §4 [R]); magnitude assumed",
        "Daily probability of paracrine senescence at saturating SASP exposure.",
    )
    paracrine_half_sasp: float = _param(
        0.4,
        "SASP",
        0.01,
        100.0,
        "assumed: a few mature senescent neighbours induce bystander arrest within weeks",
        "Sustained effective SASP exposure at which paracrine senescence is half-maximal.",
    )
    paracrine_hill: float = _param(
        2.0,
        "1",
        0.5,
        8.0,
        "assumed: cooperative cytokine signalling (IL-1, TGF-β; Acosta 2013, §4 [R])",
        "Hill coefficient of paracrine senescence in SASP exposure.",
    )
    exposure_memory: float = _param(
        3.0,
        "day",
        1.0,
        60.0,
        "bystander senescence needs continuous exposure (Nelson 2012, §4 [R]); time assumed",
        "Time constant of each cell's running average of SASP exposure.",
    )

    # --- immune clearance -----------------------------------------------------------------------
    immune_recruit_base: float = _param(
        0.0005,
        "1/site/day",
        0.0,
        1.0,
        "assumed: sparse resident surveillance",
        "Daily probability that an immune-free site receives an immune cell without SASP.",
    )
    immune_recruit_max: float = _param(
        0.0358,
        "1/site/day",
        0.0,
        1.0,
        "SASP chemokines (CCL2) recruit NK cells (Iannello 2013, §6 [R]); magnitude fitted "
        "(ABC-SMC on the six calibration targets, docs/calibration.md; prior 0.005-0.2)",
        "Extra daily recruitment probability at saturating local SASP.",
    )
    immune_recruit_half_sasp: float = _param(
        0.2,
        "SASP",
        0.001,
        100.0,
        "assumed: a single mature senescent neighbour already recruits strongly",
        "Local SASP at which SASP-driven recruitment is half-maximal.",
    )
    immune_lifetime: float = _param(
        5.0,
        "day",
        1.0,
        365.0,
        "assumed: NK cells patrol a tissue for days",
        "Mean residence time of an immune cell in the tissue (geometric lifetime).",
    )
    immune_chemotaxis: float = _param(
        0.8,
        "probability",
        0.0,
        1.0,
        "immune cells are recruited up chemokine gradients (Iannello 2013, §6 [R]); value assumed",
        "Daily probability that a moving immune cell steps up the SASP gradient, else at random.",
    )
    immune_kill: float = _param(
        0.8,
        "probability",
        0.0,
        1.0,
        "assumed: NK cells kill a contacted target within hours; the young half-life is "
        "fitted through immune_recruit_max",
        "Daily probability that a young immune cell kills an adjacent senescent cell.",
    )
    immune_old_fraction: float = _param(
        0.0355,
        "fraction",
        0.0,
        1.0,
        "per-cell NK cytotoxicity falls with age (Brauning 2022, Solana 1999, §6 [R]); fitted "
        "(ABC-SMC, docs/calibration.md; prior 0-0.5)",
        "Immune killing competence in very old tissue relative to young.",
    )
    immune_decline_age: float = _param(
        365.0,
        "day",
        1.0,
        3650.0,
        "assumed: immunosenescence sets in during the second year of a mouse's life",
        "Age at which immune competence has fallen halfway to its old level.",
    )
    rapa_immune_boost: float = _param(
        0.2,
        "fraction",
        0.0,
        2.0,
        "low-dose mTORC1 inhibition improves vaccine response ~20% (Mannick 2014, §2 [R])",
        "Relative competence gain at full mTORC1 inhibition.",
    )
    mtorc2_immune_loss: float = _param(
        0.5,
        "fraction",
        0.0,
        1.0,
        "chronic rapamycin disrupts mTORC2 (Lamming 2012, §2 [R]); size assumed",
        "Relative competence lost at full mTORC2 inhibition.",
    )

    # --- regeneration and turnover --------------------------------------------------------------
    regeneration_rate: float = _param(
        0.1,
        "1/day",
        0.0,
        1.0,
        "assumed: empty sites refill within weeks in young tissue",
        "Daily division probability of a healthy cell next to an empty site at full oxytocin "
        "signal.",
    )
    healthy_death_rate: float = _param(
        0.002,
        "1/day",
        0.0,
        1.0,
        "assumed: slow parenchymal turnover (cell lifetime ~1.4 years)",
        "Daily probability that a healthy cell dies (apoptosis, turnover).",
    )
    senescent_death_rate: float = _param(
        0.001,
        "1/day",
        0.0,
        1.0,
        "assumed: senescent cells resist apoptosis; removal is mostly immune (Ovadya 2018, §6 [R])",
        "Daily probability that a senescent cell dies without immune help.",
    )
    phagocytic_rate: float = _param(
        0.238,
        "1/day",
        0.0,
        1.0,
        "Prf1-/- mice carry a higher burden yet live into old age (Ovadya 2018, §6 [R]): some "
        "removal needs no perforin (inferred; phagocytes assumed as the route); fitted "
        "(ABC-SMC, docs/calibration.md; prior 0-0.3)",
        "Daily probability that a senescent cell is engulfed by phagocytes (perforin-"
        "independent) while the tissue's senescent burden is far below phagocytic_half_burden.",
    )
    phagocytic_half_burden: float = _param(
        0.000556,
        "fraction of sites",
        0.0001,
        1.0,
        "removal saturates through a limited capacity (Karin 2019, §1 [R]); fitted (ABC-SMC, "
        "docs/calibration.md; prior 0.0003-0.03, log-uniform)",
        "Senescent fraction of the tissue at which each senescent cell's phagocytic removal "
        "is halved (the phagocytes' capacity is shared).",
    )

    # --- oxytocin -------------------------------------------------------------------------------
    ot_old_fraction: float = _param(
        0.205,
        "fraction",
        0.0,
        1.0,
        "young mice have at least 3x the plasma oxytocin of old (Elabd 2014, §7 [S]); fitted "
        "(ABC-SMC, docs/calibration.md; prior 0.05-0.6; the default meets the bound)",
        "Endogenous oxytocin in very old animals relative to young.",
    )
    ot_decline_age: float = _param(
        365.0,
        "day",
        1.0,
        3650.0,
        "assumed: decline between young (3 mo) and old (22 mo) (Elabd 2014, §7 [R])",
        "Age at which endogenous oxytocin has fallen halfway to its old level.",
    )
    ot_half_level: float = _param(
        0.35,
        "young level",
        0.01,
        10.0,
        "assumed: the young level nearly saturates the response, so extra oxytocin helps "
        "old tissue but not young (Elabd 2014, §7 [R]/[S])",
        "Oxytocin level giving a half-maximal oxytocin-MAPK response.",
    )
    ot_hill: float = _param(
        3.0,
        "1",
        0.5,
        8.0,
        "assumed: steep, so the young level saturates the response (Elabd 2014, §7 [S])",
        "Hill coefficient of the oxytocin-MAPK response.",
    )
    ot_half_life: float = _param(
        0.0021,
        "day",
        0.0001,
        1.0,
        "IV half-life ~3 min (§7 [S])",
        "Elimination half-life of oxytocin (one-compartment pharmacokinetics).",
    )
    ot_regeneration_gain: float = _param(
        0.8,
        "fraction",
        0.0,
        1.0,
        "blocking oxytocin signalling reduces regeneration (Elabd 2014, §7 [R]); size assumed",
        "Fraction of regenerative capacity that depends on the oxytocin-MAPK response.",
    )
    ot_sasp_damping: float = _param(
        0.5,
        "fraction",
        0.0,
        1.0,
        "oxytocin lowers CRP/TGF-β and inhibits p38 MAPK (Erbas 2014 [R], Rashed 2011 [M], §7); "
        "size assumed",
        "Maximal fractional damping of SASP-driven inflammation by the oxytocin-MAPK response.",
        hypothesis=True,
    )
    ot_immune_gain: float = _param(
        0.3,
        "fraction",
        0.0,
        1.0,
        "assumed: oxytocin-MAPK modulation supports immune function (source article, §11 [S])",
        "Fraction of immune competence that depends on the oxytocin-MAPK response.",
        hypothesis=True,
    )

    # --- tissue function ------------------------------------------------------------------------
    inflammation_cost: float = _param(
        0.5,
        "fraction",
        0.0,
        1.0,
        "assumed: chronic inflammation impairs tissue function (source article, §11 [S], "
        "qualitative)",
        "Maximal share of the healthy cells' function lost to SASP-driven inflammation.",
    )
    inflammation_half_sasp: float = _param(
        0.5,
        "SASP",
        0.001,
        100.0,
        "assumed: half the cost when the average site sees half a mature cell's secretion",
        "Mean effective SASP at which the inflammation cost is half-maximal.",
    )
    healthspan_threshold: float = _param(
        0.95,
        "function",
        0.0,
        1.0,
        "assumed (range 0.85-0.98): a 5% loss from a perfect tissue counts as unhealthy; the "
        "untreated tissue crosses it at ~33 months, after the median death (docs/validation.md)",
        "Tissue function below which the organism is no longer in good health.",
    )

    # --- organism survival (Karin 2019 saturating removal) ---------------------------------------
    sr_removal_max: float = _param(
        0.15,
        "1/day",
        0.001,
        10.0,
        "Karin 2019 mouse fit to C57BL/6J survival, Fig. 4b: β = 0.15/day (§1 [R])",
        "Maximal removal rate β of the organism's senescent cells (tissue_abm.analysis.survival).",
    )
    sr_half_saturation: float = _param(
        0.5,
        "SR units",
        0.001,
        100.0,
        "Karin 2019 mouse fit, Fig. 4b: κ = 0.5 (§1 [R])",
        "Senescent abundance κ at which removal is half of sr_removal_max.",
    )
    sr_noise: float = _param(
        0.16,
        "1/day",
        0.0,
        10.0,
        "Karin 2019 mouse fit, Fig. 4b: ε = 0.16/day (§1 [R])",
        "Noise amplitude ε of the senescent abundance (the noise term is √(2ε) dW).",
    )
    sr_death_threshold: float = _param(
        17.0,
        "SR units",
        0.1,
        1000.0,
        "Karin 2019 mouse fit, Fig. 4b: X_c = 17 (§1 [R])",
        "Senescent abundance X_c above which the organism dies.",
    )
    sr_production_scale: float = _param(
        622.0,
        "SR units per (new senescent cell per site)",
        1.0,
        100000.0,
        "fitted (ABC-SMC, docs/calibration.md; prior 100-5000, log-uniform), above all by the "
        "tissue-implied production k·P(t) against Karin's η·t (Karin 2019, §1 [R])",
        "Senescent cells the organism makes per day (SR units) per new senescent cell per "
        "site and day of the simulated tissue.",
    )
    background_hazard: float = _param(
        0.00005,
        "1/day",
        0.0,
        0.001,
        "assumed: deaths not caused by senescence (accidents, early tumours) are a few per "
        "cent by the median age of laboratory mice",
        "Daily mortality that senescence does not cause (constant with age).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.initial_senescent_fraction > self.initial_occupancy:
            raise ValueError(
                f"initial_senescent_fraction ({self.initial_senescent_fraction}) cannot exceed "
                f"initial_occupancy ({self.initial_occupancy})"
            )
        return self


def parameter_table() -> list[dict[str, Any]]:
    """Rows (name, unit, default, low, high, source, hypothesis, description) per parameter."""
    rows = []
    for name, field in Parameters.model_fields.items():
        bounds = {type(m).__name__: m for m in field.metadata}
        extra = cast(JsonDict, field.json_schema_extra)  # `_param` gives each parameter a dict
        rows.append(
            {
                "name": name,
                "unit": extra["unit"],
                "default": field.default,
                "low": bounds["Ge"].ge,
                "high": bounds["Le"].le,
                "source": extra["source"],
                "hypothesis": bool(extra["hypothesis"]),
                "description": field.description,
            }
        )
    return rows


def parameters_markdown() -> str:
    """The parameter table as Markdown, the content of `docs/parameters.md`."""
    lines = [
        "# Parameters",
        "",
        "Generated by `tissue-abm params > docs/parameters.md`; do not edit by hand.",
        "Section numbers (§) refer to [references.md](references.md); grades: [R] primary text,",
        '[S] secondary source, [M] recalled, [C] computed. "fitted" values come from the',
        'calibration (studies.calibration, [validation.md](validation.md)); "assumed" values',
        "have no measurement. **hypothesis**: an effect without direct evidence (0 switches it",
        "off; docs/validation.md gives the answers with each one off).",
        "",
        "| name | unit | default | range | source | evidence | meaning |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in parameter_table():
        evidence = "**hypothesis**" if row["hypothesis"] else ""
        lines.append(
            f"| `{row['name']}` | {row['unit']} | {row['default']} | {row['low']} – {row['high']} "
            f"| {row['source']} | {evidence} | {row['description']} |"
        )
    return "\n".join(lines) + "\n"


def merged_parameters(base: Parameters | None, changes: Mapping[str, Any]) -> Parameters:
    """`base` (the defaults if None) with the parameters of `changes` set, validated as a file's.

    Args:
        base: Parameters to start from.
        changes: Parameter name -> value (units and ranges as in `tissue-abm params`).

    Raises:
        TypeError: For a name that is not a parameter (one line, with the closest name).
        ValueError: For a value of the wrong type or out of range (one line naming the
            parameter, the value and the allowed range with its unit).
    """
    start = base if base is not None else Parameters()
    if not changes:
        return start
    names = list(Parameters.model_fields)
    for name in changes:
        if name not in Parameters.model_fields:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise TypeError(
                f"{name!r} is not a parameter; {hint}the parameters are listed by "
                "`tissue-abm params` (docs/parameters.md)"
            )
    try:
        return Parameters.model_validate({**start.model_dump(), **changes})
    except ValidationError as err:
        error = err.errors()[0]
        if error["type"] == "value_error":  # a rule between parameters (`_consistent`)
            raise ValueError(str(error["ctx"]["error"])) from None
        name = str(error["loc"][0])
        row = next(row for row in parameter_table() if row["name"] == name)
        kind = "a whole number" if isinstance(row["default"], int) else "a number"
        raise ValueError(
            f"{name} = {error.get('input')!r} is not allowed; allowed: {kind} from "
            f"{row['low']} to {row['high']} ({row['unit']})"
        ) from None


HYPOTHESES: tuple[str, ...] = tuple(row["name"] for row in parameter_table() if row["hypothesis"])
"""Parameters whose effect has no direct evidence (0 switches the effect off)."""

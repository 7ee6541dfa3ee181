"""Ready-made figures of batch results.

Every function returns a `matplotlib.figure.Figure` made with `Figure()` (no pyplot, so no
global state and no display needed); save one with `fig.savefig(path)`. `save_figures` writes
every figure that applies to a results folder (PNG, SVG or PDF), and `caption` says what each
file shows.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from tissue_abm.analysis import survival, synergy
from tissue_abm.analysis.summary import (
    RUN_KEYS,
    group_columns,
    group_labels,
    grouped,
    run_values,
    scenarios,
    summarise,
    sweep_columns,
)
from tissue_abm.biology.readouts import SITE_STATES
from tissue_abm.biology.rules import DAYS_PER_YEAR
from tissue_abm.runs.results import (
    GRID_SUFFIX,
    MANIFEST,
    RUNS,
    OutputError,
    load_results,
    load_snapshots,
    prepare_output,
    read_manifest,
)

LABELS = {
    "senescent_fraction": "senescent fraction",
    "healthy_fraction": "healthy fraction",
    "empty_fraction": "empty fraction",
    "tissue_function": "tissue function (0-1)",
    "mean_sasp": "mean SASP (units)",
    "immune": "immune cells (count)",
    "senescent": "senescent cells (count)",
    "healthy": "healthy cells (count)",
    "mean_damage": "mean damage (units)",
    "mtorc1": "mTORC1 (1 = newborn)",
    "autophagy": "autophagy (0-1)",
    "immune_competence": "immune competence (kill prob./day)",
    "division_prob": "division probability (/day)",
    "oxytocin_level": "oxytocin (young levels)",
    "rapamycin_exposure": "rapamycin (mg/kg)",
}
"""Axis labels of common readouts (others are shown by name)."""

SCENARIO_COLOURS = {
    "untreated": "#4d4d4d",
    "rapamycin": "#0072B2",
    "oxytocin": "#E69F00",
    "combined": "#009E73",
    "senolytic": "#CC79A7",
}
"""Fixed colours of the canonical scenarios (Okabe-Ito), so they match across figures."""

STATE_COLOURS = {"empty": "#f0f0f0", "healthy": "#a6d96a", "senescent": "#d7301f"}
"""Colours of the tissue states in `grid_snapshot`."""

IMMUNE_COLOUR = "#2166ac"
"""Colour of the immune-cell markers in `grid_snapshot`."""

SASP_CMAP = "YlOrRd"
"""Colour map of the SASP field, in the figures and the browser view (white to red, so the blue
immune markers stay visible)."""

SASP_UNIT = "SASP units: one mature senescent cell's daily secretion"
"""The SASP field's unit, spelled out on colour bars."""

FORMATS = ("png", "svg", "pdf")
"""File formats `save_figures` writes."""


def label(readout: str) -> str:
    """Axis label of a readout: its entry in `LABELS`, else its name with spaces."""
    return LABELS.get(readout, readout.replace("_", " "))


def ordered(labels: Iterable[str], scenario_of: dict[str, str]) -> list[str]:
    """Group labels with the canonical scenarios first (in their order), then the rest."""
    canonical = list(SCENARIO_COLOURS)
    unique = list(dict.fromkeys(labels))
    return sorted(
        unique,
        key=lambda lab: (
            canonical.index(scenario_of[lab]) if scenario_of[lab] in canonical else len(canonical),
            scenario_of[lab],
            unique.index(lab),
        ),
    )


def _colours(labels: Sequence[str], scenario_of: dict[str, str]) -> dict[str, tuple | str]:
    """A colour per group label: the scenario's fixed colour if it has one group, else a palette.

    The palette starts after the colours that resemble the fixed ones, then cycles.
    """
    per_scenario = pd.Series(scenario_of).value_counts()
    palette = sns.color_palette("colorblind", 10)
    others = itertools.cycle([*palette[3:], *palette[:3]])
    colours: dict[str, tuple | str] = {}
    for lab in labels:
        scenario = scenario_of[lab]
        if scenario in SCENARIO_COLOURS and per_scenario[scenario] == 1:
            colours[lab] = SCENARIO_COLOURS[scenario]
        else:
            colours[lab] = next(others)
    return colours


def _groups(
    table: pd.DataFrame,
    sweeps: Sequence[str] | None = None,
) -> tuple[pd.Series, list[str], dict[str, tuple | str]]:
    """Per-row group labels, the labels in display order and their colours."""
    labels = group_labels(table, sweeps)
    scenario_of = dict(zip(labels, table["scenario"].astype(str), strict=True))
    order = ordered(labels, scenario_of)
    return labels, order, _colours(order, scenario_of)


def trajectories(
    results: pd.DataFrame,
    readouts: Sequence[str] = ("senescent_fraction", "tissue_function", "mean_sasp", "immune"),
    confidence: float = 0.95,
    ncols: int = 2,
    starts: Mapping[str, float] | None = None,
) -> Figure:
    """Mean trajectory of each group against age, with its confidence band, one panel a readout.

    Args:
        results: A table from `load_results`.
        readouts: Readout columns, one panel each.
        confidence: Coverage of the Student-t band of the mean across replicates (see
            `summarise`; no band where a group has a single replicate).
        ncols: Panels per row.
        starts: Group label -> age of its first dose, days (`treatment_starts`); each is
            marked by a dotted vertical line in the group's colour.

    Returns:
        The figure: one axes per readout, each with one line (and one band) per group, age in
        years on the x axis, and one legend for the figure.
    """
    starts = starts or {}
    readouts = list(readouts)
    summary = summarise(results, readouts, confidence)
    labels, order, colours = _groups(summary, sweep_columns(results))
    summary = summary.assign(label=labels.to_numpy())
    ncols = max(1, min(ncols, len(readouts)))
    nrows = -(-len(readouts) // ncols)
    fig = Figure(figsize=(5.0 * ncols + 2.0, 3.4 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(readouts) :]:
        fig.delaxes(ax)
    for ax, readout in zip(axes, readouts, strict=False):
        part = summary[summary["readout"] == readout]
        for lab in order:
            rows = part[part["label"] == lab]
            years = rows["age"].to_numpy() / DAYS_PER_YEAR
            ax.plot(years, rows["mean"].to_numpy(), color=colours[lab], label=lab, lw=1.5)
            low, high = rows["ci_low"].to_numpy(), rows["ci_high"].to_numpy()
            if np.isfinite(low).any():
                ax.fill_between(years, low, high, color=colours[lab], alpha=0.2, lw=0)
            if lab in starts:
                ax.axvline(starts[lab] / DAYS_PER_YEAR, color=colours[lab], ls=":", lw=1.2)
        ax.set_xlabel("age (years)")
        ax.set_ylabel(label(readout))
        ax.grid(alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    if set(starts) & set(order):
        handles.append(Line2D([], [], color="0.3", ls=":", lw=1.2))
        names.append("treatment start")
    fig.legend(handles, names, loc="outside right upper", title="scenario", frameon=False)
    fig.suptitle(f"Mean across replicates with {confidence:.0%} CI")
    return fig


def end_distributions(
    results: pd.DataFrame, readout: str = "senescent_fraction", day: int | None = None
) -> Figure:
    """Per-run values of a readout, one box and strip of points per group.

    Args:
        results: A table from `load_results`.
        readout: The readout column.
        day: Day of the runs (days since start); None for each run's last kept day.

    Returns:
        The figure: one axes with a box (median, quartiles, whiskers to 1.5 IQR) and the
        jittered run values (one point collection per group) for each group.
    """
    values = run_values(results, readout, day)
    values = values[values[readout].notna()].reset_index(drop=True)
    labels, order, colours = _groups(values)
    data = [values.loc[(labels == lab).to_numpy(), readout].to_numpy(dtype=float) for lab in order]
    fig = Figure(figsize=(1.2 * len(order) + 3.0, 4.0), layout="constrained")
    ax = fig.subplots()
    positions = np.arange(len(order))
    boxes = ax.boxplot(
        data,
        positions=positions,
        widths=0.55,
        showfliers=False,
        patch_artist=True,
        medianprops={"color": "black"},
    )
    jitter = np.random.default_rng(0)
    for position, lab, points, box in zip(positions, order, data, boxes["boxes"], strict=True):
        box.set_facecolor(colours[lab])
        box.set_alpha(0.35)
        ax.scatter(
            position + jitter.uniform(-0.15, 0.15, points.size),
            points,
            s=14,
            color=colours[lab],
            edgecolor="black",
            linewidth=0.4,
            zorder=3,
        )
    ax.set_xticks(
        positions,
        order,
        rotation=30 if len(order) > 4 else 0,
        ha="right" if len(order) > 4 else "center",
    )
    ax.set_ylabel(label(readout))
    ages = values["age"].to_numpy()
    when = (f"day {day}" if day is not None else "end of run") + (
        f", age {ages.min() / DAYS_PER_YEAR:.2f} y" if ages.size and np.ptp(ages) == 0 else ""
    )
    ax.set_title(f"{label(readout)} per run ({when})")
    ax.grid(axis="y", alpha=0.3)
    return fig


def survival_curves(
    lifespans_table: pd.DataFrame, confidence: float = 0.95, n_boot: int = 1000, seed: int = 0
) -> Figure:
    """Kaplan–Meier survival of the SR organisms of each group, with cluster-bootstrap bands.

    Args:
        lifespans_table: The output of `survival.lifespans`.
        confidence: Coverage of the pointwise band (resampling runs; see
            `survival.survival_curves_table`), strictly between 0 and 1.
        n_boot: Bootstrap resamples, ≥ 1.
        seed: Seed of the resampling.

    Returns:
        The figure: one axes, one step curve (and band, with ≥ 2 runs) per group against age in
        years, a dashed line at survival 0.5 (median lifespan) and a legend.
    """
    curves = survival.survival_curves_table(
        lifespans_table, confidence=confidence, n_boot=n_boot, seed=seed
    )
    labels, order, colours = _groups(curves, sweep_columns(lifespans_table))
    fig = Figure(figsize=(7.0, 4.2), layout="constrained")
    ax = fig.subplots()
    for lab in order:
        rows = curves[(labels == lab).to_numpy()]
        years = rows["age"].to_numpy() / DAYS_PER_YEAR
        ax.step(
            years, rows["survival"].to_numpy(), where="post", color=colours[lab], label=lab, lw=1.5
        )
        ax.fill_between(
            years,
            rows["ci_low"].to_numpy(),
            rows["ci_high"].to_numpy(),
            step="post",
            color=colours[lab],
            alpha=0.2,
            lw=0,
        )
    ax.axhline(0.5, color="0.3", ls="--", lw=0.8)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("age (years)")
    ax.set_ylabel("survival (fraction alive)")
    ax.grid(alpha=0.3)
    ax.legend(title="scenario", frameon=False, loc="lower left")
    ax.set_title(
        "Organism survival (Karin 2019 saturating removal)\n"
        f"{confidence:.0%} band: bootstrap over runs"
    )
    return fig


def hazard_curves(
    lifespans_table: pd.DataFrame,
    width: float = 30.0,
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> Figure:
    """Hazard of death over age of the SR organisms of each group, with cluster-bootstrap bands.

    Args:
        lifespans_table: The output of `survival.lifespans`.
        width: Width of the age bins, days (> 0).
        confidence: Coverage of the band (see `survival.hazard`), strictly between 0 and 1.
        n_boot: Bootstrap resamples, ≥ 1.
        seed: Seed of the resampling.

    Returns:
        The figure: one axes, the daily hazard per group on a log scale against the middle of
        each age bin in years (bins without deaths are left out), with its band and a legend.
    """
    table = survival.hazard(
        lifespans_table, width=width, confidence=confidence, n_boot=n_boot, seed=seed
    )
    table = table[table["deaths"] > 0]
    labels, order, colours = _groups(table, sweep_columns(lifespans_table))
    fig = Figure(figsize=(7.0, 4.2), layout="constrained")
    ax = fig.subplots()
    for lab in order:
        rows = table[(labels == lab).to_numpy()]
        years = 0.5 * (rows["age_low"] + rows["age_high"]).to_numpy() / DAYS_PER_YEAR
        ax.plot(years, rows["hazard"].to_numpy(), color=colours[lab], label=lab, lw=1.5)
        ax.fill_between(
            years,
            rows["ci_low"].to_numpy(),
            rows["ci_high"].to_numpy(),
            color=colours[lab],
            alpha=0.2,
            lw=0,
        )
    ax.set_yscale("log")
    ax.set_xlabel("age (years)")
    ax.set_ylabel("hazard (deaths per organism-day)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(title="scenario", frameon=False, loc="lower right")
    ax.set_title(
        f"Hazard over age ({width:g}-day bins)\n{confidence:.0%} band: bootstrap over runs"
    )
    return fig


def synergy_bars(scores: synergy.SynergyScores) -> Figure:
    """The excess of each synergy method as bars with CI error bars, over the ±10% band.

    Args:
        scores: The output of `synergy.synergy` (its table's columns `method`, `excess`,
            `ci_low`, `ci_high`, `verdict`; fractions, plotted ×100 as %).

    Returns:
        The figure: one axes, one bar per method (its verdict under its name), the additive
        band (−10% to 10%) shaded, titled with the readout.
    """
    table = scores.table
    fig = Figure(figsize=(4.8, 4.0), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(table))
    score = 100.0 * table["excess"].to_numpy(dtype=float)
    low = 100.0 * table["ci_low"].to_numpy(dtype=float)
    high = 100.0 * table["ci_high"].to_numpy(dtype=float)
    ax.axhspan(
        -synergy.BAND,
        synergy.BAND,
        color="0.85",
        alpha=0.6,
        lw=0,
        label=f"additive (±{synergy.BAND:g}%)",
    )
    ax.axhline(0.0, color="0.3", lw=0.8)
    ax.bar(
        x,
        score,
        width=0.55,
        color=["#0072B2", "#009E73", "#E69F00"][: len(table)],
        edgecolor="black",
        linewidth=0.6,
    )
    ok = np.isfinite(low) & np.isfinite(high)
    if ok.any():
        ax.errorbar(
            x[ok],
            score[ok],
            yerr=[score[ok] - low[ok], high[ok] - score[ok]],
            fmt="none",
            ecolor="black",
            capsize=5,
            lw=1.2,
            label=f"{scores.confidence:.0%} bootstrap CI",
        )
    extent = np.r_[np.abs(score), np.abs(low[ok]), np.abs(high[ok]), synergy.BAND]
    span = max(float(np.nanmax(extent)), 1.0)
    ax.set_ylim(-1.2 * span, 1.2 * span)
    names = [m.upper() if m == "hsa" else m.capitalize() for m in table["method"]]
    ax.set_xticks(
        x,
        [
            f"{name}\n{text.replace(' (', chr(10) + '(')}"
            for name, text in zip(names, table["verdict"], strict=True)
        ],
    )
    ax.set_ylabel("excess over expected effect (%)")
    ax.set_title(f"Synergy: {label(scores.readout)}")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    return fig


def synergy_surface(grid: synergy.DoseGridSynergy, method: str | None = "bliss") -> Figure:
    """SynergyFinder-style synergy map of a dose grid: the excess of each combination cell.

    Args:
        grid: The output of `synergy.dose_grid_synergy` (its table's columns `dose_a`,
            `dose_b`, `method`, `excess`, `ci_low`, `ci_high`; fractions, shown ×100 as %).
        method: The method to draw (`bliss` or `hsa`); None for every method, side by side.

    Returns:
        The figure: one heatmap per method, drug A's dose on x and drug B's dose on y (rising
        upwards), coloured by the excess in % on a diverging map centred on 0 (red synergy,
        blue antagonism; the same symmetric scale, at least ±10%, in every panel). Each cell is
        annotated with its excess, in bold with an asterisk where its CI excludes 0. Titles name
        the method and readout and give the mean excess over the grid with its CI.

    Raises:
        ValueError: If the table is empty, or `method` is not None or one of its methods.
    """
    table = grid.table
    present = list(dict.fromkeys(table["method"]))
    if not present:
        raise ValueError("table has no rows; allowed: the output of synergy.dose_grid_synergy")
    if method is not None and method not in present:
        raise ValueError(
            f"method = {method!r} is not allowed; allowed: None or one of " + ", ".join(present)
        )
    methods = present if method is None else [method]
    percent = 100.0 * table["excess"].to_numpy(dtype=float)
    span = max(float(np.nanmax(np.abs(percent), initial=0.0)), synergy.BAND)
    confidence = grid.confidence
    fig = Figure(figsize=(4.4 * len(methods) + 1.4, 4.4), layout="constrained")
    axes = fig.subplots(1, len(methods), squeeze=False).ravel()
    for ax, name in zip(axes, methods, strict=True):
        part = table[table["method"] == name].assign(
            percent=lambda t: 100.0 * t["excess"],
            excludes_zero=lambda t: (t["ci_low"] > 0) | (t["ci_high"] < 0),
        )
        cells = part.pivot(index="dose_b", columns="dose_a", values="percent")
        marked = part.pivot(index="dose_b", columns="dose_a", values="excludes_zero")
        mesh = ax.pcolormesh(
            np.ma.masked_invalid(cells.to_numpy(dtype=float)),
            cmap="RdBu_r",
            vmin=-span,
            vmax=span,
            edgecolors="white",
            linewidth=0.5,
        )
        ax.set_xticks(np.arange(cells.shape[1]) + 0.5, [f"{d:g}" for d in cells.columns])
        ax.set_yticks(np.arange(cells.shape[0]) + 0.5, [f"{d:g}" for d in cells.index])
        for (row, col), value in np.ndenumerate(cells.to_numpy()):
            if np.isnan(value):
                continue
            star = bool(marked.iat[row, col])
            ax.text(
                col + 0.5,
                row + 0.5,
                f"{value:+.1f}" + ("*" if star else ""),
                ha="center",
                va="center",
                fontsize=9,
                fontweight="bold" if star else "normal",
                color="white" if abs(value) > 0.6 * span else "black",
            )
        ax.set_xlabel(grid.dose_a)
        ax.set_ylabel(grid.dose_b)
        mean = grid.summary[name]
        ax.set_title(
            f"{'HSA' if name == 'hsa' else name.capitalize()}: mean "
            f"{100.0 * mean['mean_excess']:+.1f}% ({confidence:.0%} CI "
            f"{100.0 * mean['ci_low']:+.1f} to {100.0 * mean['ci_high']:+.1f})",
            fontsize=10,
        )
    fig.colorbar(mesh, ax=list(axes), label="excess over expected effect (%)")
    fig.suptitle(f"Synergy map: {label(grid.readout)} (* bold: {confidence:.0%} CI excludes 0)")
    return fig


def sensitivity_indices(table: pd.DataFrame, method: str, readout: str) -> Figure:
    """A horizontal bar chart of sensitivity indices, most influential on top.

    Args:
        table: The indices of `studies.sensitivity.indices` (its `.table`).
        method: The study's method, "morris" or "sobol" (its `.method`).
        readout: The readout behind the indices, named in the axis label (its `.readout`).

    Returns:
        Morris: bars of `mu_star` with their confidence interval, `sigma` as markers below.
        Sobol': bars of `ST` and `S1` side by side with their confidence intervals.
    """
    morris = method == "morris"
    readout = label(readout)
    fig = Figure(figsize=(6.4, 1.6 + 0.45 * len(table)), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(table))
    colours = sns.color_palette("colorblind", 3)
    if morris:
        ax.barh(
            y,
            table["mu_star"],
            0.6,
            xerr=table["mu_star_conf"],
            color=colours[0],
            capsize=3,
            label="μ* (95% CI)",
        )
        ax.plot(
            table["sigma"],
            y + 0.4,
            "D",
            mfc="white",
            mec="black",
            ms=5,
            label="σ (non-linearity, interactions)",
        )
        ax.set_xlabel(f"effect on the benefit in {readout}\nover the parameter's range")
        title = "Morris screening"
    else:
        height = 0.38
        ax.barh(
            y - height / 2,
            table["ST"],
            height,
            xerr=table["ST_conf"],
            color=colours[0],
            capsize=3,
            label="total (ST)",
        )
        ax.barh(
            y + height / 2,
            table["S1"],
            height,
            xerr=table["S1_conf"],
            color=colours[1],
            capsize=3,
            label="first order (S1)",
        )
        ax.set_xlabel(f"share of the variance of the benefit in {readout}")
        title = "Sobol' indices"
    ax.set_yticks(y, table["parameter"])
    ax.invert_yaxis()
    ax.axvline(0.0, color="0.3", lw=0.8)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.set_title(f"{title}: what drives the combination's benefit\nover the better single drug")
    return fig


def grid_snapshot(snapshot: pd.DataFrame) -> Figure:
    """One run's tissue at one age: the states with immune cells, and the SASP field.

    Args:
        snapshot: Rows of `results.load_snapshots` for a single run and age (columns `x`, `y`,
            `state`, `immune`, `sasp`, and optionally the run labels and `age`).

    Returns:
        The figure: left, the tissue states as an image (empty/healthy/senescent) with immune
        cells as small markers; right, the SASP field as a heatmap with a colour bar (three
        axes in all); a figure legend below names the states and the immune marker.

    Raises:
        ValueError: If the rows hold several runs or ages, or no sites.
    """
    keys = [c for c in (*RUN_KEYS, "seed", "age") if c in snapshot]
    if snapshot.empty:
        raise ValueError("empty snapshot: no sites to draw")
    distinct = snapshot[keys].drop_duplicates() if keys else snapshot.iloc[:1]
    if len(distinct) > 1:
        shown = "; ".join(
            ", ".join(f"{k}={v}" for k, v in row.items())
            for row in distinct.head(5).to_dict("records")
        )
        raise ValueError(
            f"snapshot holds {len(distinct)} runs/ages; select one (e.g. by "
            f"scenario, point, replicate and age): {shown}"
        )
    states, x, y = _grid_arrays(snapshot)  # rows = y, so x runs left to right
    sasp = np.full(states.shape, np.nan)
    sasp[y, x] = snapshot["sasp"].to_numpy(dtype=float)

    fig = Figure(figsize=(10.5, 5.0), layout="constrained")
    left, right = fig.subplots(1, 2)
    _draw_states(left, states, x, y, snapshot["immune"].to_numpy(dtype=bool))
    _states_legend(fig)
    left.set_title("tissue")
    image = right.imshow(sasp, cmap=SASP_CMAP, origin="lower", interpolation="nearest")
    fig.colorbar(image, ax=right, label=SASP_UNIT, shrink=0.85)
    right.set_title("SASP field")
    for ax in (left, right):
        ax.set_xlabel("x (site)")
        ax.set_ylabel("y (site)")
    first = snapshot.iloc[0]
    parts = [str(first["scenario"])] if "scenario" in snapshot else []
    if "replicate" in snapshot:
        parts.append(f"replicate {first['replicate']}")
    if "age" in snapshot:
        parts.append(f"age {first['age']:g} d ({first['age'] / DAYS_PER_YEAR:.2f} y)")
    parts.append(_census(snapshot))
    fig.suptitle(" · ".join(parts))
    return fig


def _grid_arrays(snapshot: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Site-state codes as an image (rows = y; NaN where no site), and the sites' x and y."""
    x = snapshot["x"].to_numpy(dtype=int)
    y = snapshot["y"].to_numpy(dtype=int)
    codes = pd.Categorical(snapshot["state"].astype(str), categories=SITE_STATES).codes
    states = np.full((int(y.max()) + 1, int(x.max()) + 1), np.nan)
    states[y, x] = np.where(codes < 0, np.nan, codes)
    return states, x, y


def _draw_states(
    ax: Axes, states: np.ndarray, x: np.ndarray, y: np.ndarray, immune: np.ndarray
) -> None:
    """The site states as an image with the immune cells as markers on `ax`."""
    ax.imshow(
        states,
        cmap=ListedColormap([STATE_COLOURS[s] for s in SITE_STATES]),
        vmin=-0.5,
        vmax=len(SITE_STATES) - 0.5,
        origin="lower",
        interpolation="nearest",
    )
    ax.scatter(
        x[immune],
        y[immune],
        s=max(1.0, 2000.0 / max(states.shape) ** 1.5),
        color=IMMUNE_COLOUR,
        marker="o",
        linewidths=0,
    )


def _states_legend(fig: Figure) -> None:
    """A figure legend below: the site states and the immune marker."""
    handles: list[Artist] = [
        Patch(facecolor=STATE_COLOURS[s], edgecolor="0.5", label=s) for s in SITE_STATES
    ]
    handles.append(
        Line2D(
            [], [], ls="none", marker="o", color=IMMUNE_COLOUR, markersize=4, label="immune cell"
        )
    )
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)


def _census(snapshot: pd.DataFrame) -> str:
    """The senescent share of the sites and the immune cells of a snapshot, in words."""
    senescent = float((snapshot["state"].astype(str) == "senescent").mean())
    return f"senescent {senescent:.1%}, immune cells {int(snapshot['immune'].sum())}"


def snapshot_comparison(snapshots: Mapping[str, pd.DataFrame], age: float) -> Figure:
    """The tissue of several scenarios at the same age, side by side.

    Args:
        snapshots: Scenario -> rows of `results.load_snapshots` for one of its runs at `age`.
        age: Their common age, days.

    Returns:
        The figure: one axes a scenario (states with immune cells, titled with the scenario and
        its senescent share), a figure legend below.

    Raises:
        ValueError: If there are no snapshots.
    """
    if not snapshots:
        raise ValueError("no snapshots to compare")
    ncols = min(len(snapshots), 5)
    nrows = -(-len(snapshots) // ncols)
    fig = Figure(figsize=(3.4 * ncols, 3.5 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(snapshots) :]:
        fig.delaxes(ax)
    for ax, (scenario, shot) in zip(axes, snapshots.items(), strict=False):
        states, x, y = _grid_arrays(shot)
        _draw_states(ax, states, x, y, shot["immune"].to_numpy(dtype=bool))
        ax.set_title(f"{scenario}\n{_census(shot)}", fontsize="medium")
        ax.set_xticks([])
        ax.set_yticks([])
    _states_legend(fig)
    fig.suptitle(f"The scenarios at age {age:g} d ({age / DAYS_PER_YEAR:.2f} y), first run of each")
    return fig


def snapshot_files(results_folder: str | Path) -> list[Path]:
    """The grid-snapshot files of a results folder (a batch's `runs/*/` or the folder itself)."""
    folder = Path(results_folder)
    pattern = f"{RUNS}/*/*{GRID_SUFFIX}" if (folder / MANIFEST).exists() else f"*{GRID_SUFFIX}"
    return sorted(folder.glob(pattern))


def treatment_starts(results_folder: str | Path, results: pd.DataFrame) -> dict[str, float]:
    """Group label -> age of the group's first dose of any therapy, days, from a batch manifest.

    Groups without a therapy, and folders without a batch manifest listing its sweep points
    (single runs), give none.
    """
    try:
        points = read_manifest(Path(results_folder)).get("points") or []
    except OutputError:
        return {}
    rows = []
    for entry in points:
        regimens = [r for r in (entry.get("therapy") or {}).values() if r]
        if regimens:
            start = min(float(r.get("start_age", 0)) for r in regimens)
            rows.append({"scenario": entry["scenario"], **entry.get("values", {}), "start": start})
    if not rows:
        return {}
    table = pd.DataFrame(rows)
    labels = group_labels(table, [c for c in sweep_columns(results) if c in table])
    return dict(zip(labels, table["start"], strict=True))


CAPTIONS = {
    "trajectories": "Mean of each group's replicates over age with its 95% confidence band "
    "(Student t); a dotted line in the group's colour marks its treatment start.",
    "end": "{readout} on each run's last kept day: one point a run, with the box of the "
    "median, quartiles and 1.5 IQR whiskers per group.",
    "synergy": "Excess of the combination over the Bliss and HSA expectations on {readout}, "
    "with 95% bootstrap intervals; the shaded band (−10% to 10%) reads as additive.",
    "snapshots": "The first run of each scenario at age {age} d, side by side: site states "
    "and immune cells.",
    "snapshot": "The first run of {scenario} at age {age} d: site states with immune cells "
    "(left) and the SASP field (right; unit: one mature senescent cell's daily secretion).",
    "survival": "Organism survival per group (Kaplan–Meier over each run's organisms) with "
    "95% bands from a bootstrap over runs; the dashed line marks the median.",
}
"""Caption of each kind of figure file (the part of its name before the first "_")."""


def caption(path: str | Path) -> str:
    """What a figure file written by `save_figures` (or the report) shows, in one sentence.

    Args:
        path: The file; its stem gives the kind (`CAPTIONS`), the readout, scenario or age.
    """
    stem = Path(path).stem
    kind, _, rest = stem.partition("_")
    if kind == "end":
        return CAPTIONS[kind].format(readout=label(rest).capitalize())
    if kind == "synergy":
        return CAPTIONS[kind].format(readout=label(rest))
    if kind == "snapshots":
        return CAPTIONS[kind].format(age=rest.removeprefix("age"))
    if kind == "snapshot":
        scenario, _, age = rest.rpartition("_age")
        return CAPTIONS[kind].format(scenario=scenario, age=age)
    return CAPTIONS.get(kind, stem.replace("_", " "))


def save_figures(
    results_folder: str | Path,
    out_folder: str | Path,
    readouts: Sequence[str] = ("senescent_fraction", "tissue_function"),
    *,
    results: pd.DataFrame | None = None,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    dpi: int = 120,
    fmt: str = "png",
) -> list[Path]:
    """Write every figure that applies to a results folder.

    Written (`.png` here, or the `fmt` suffix): `trajectories.png` (treatment starts marked);
    `end_<readout>.png` per readout; `synergy_<readout>.png` per readout when the canonical
    untreated/rapamycin/oxytocin/combined scenarios are all present at one sweep point each;
    `snapshots_age<age>.png`, the scenarios side by side at each age two or more of them saved;
    and `snapshot_<scenario>_age<age>.png` for the first run (lowest point and replicate) of
    each scenario with grid snapshots, one per saved age.

    Args:
        results_folder: A batch's results folder (or any folder `load_results` reads).
        out_folder: Where to write the files (created if needed).
        readouts: Readouts of the per-run distribution and synergy figures.
        results: The already loaded table of `results_folder`, to skip loading it again.
        confidence: Coverage of the confidence bands and intervals (0-1).
        n_boot: Bootstrap resamples of the synergy intervals.
        seed: Seed of the synergy bootstrap.
        dpi: Resolution (dots per inch) of PNG files and of images inside SVG and PDF.
        fmt: File format, one of `FORMATS`.

    Returns:
        The paths written, in the order above.

    Raises:
        ValueError: If `fmt` is not one of `FORMATS`.
        tissue_abm.runs.results.OutputError: If `out_folder` cannot be written.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not allowed; allowed: one of {', '.join(FORMATS)}")
    out = prepare_output(out_folder)
    if results is None:
        results = load_results(results_folder)
    readouts = list(dict.fromkeys(readouts))
    written: list[Path] = []

    def save(fig: Figure, name: str) -> None:
        path = out / f"{name}.{fmt}"
        fig.savefig(path, dpi=dpi, format=fmt)
        written.append(path)

    starts = treatment_starts(results_folder, results)
    save(trajectories(results, confidence=confidence, starts=starts), "trajectories")
    for readout in readouts:
        save(end_distributions(results, readout), f"end_{readout}")
    if has_synergy_scenarios(results):
        for readout in readouts:
            scores = synergy.synergy(
                results, readout, n_boot=n_boot, seed=seed, confidence=confidence
            )
            save(synergy_bars(scores), f"synergy_{readout}")
    firsts: dict[str, Path] = {}
    for path in snapshot_files(results_folder):
        firsts.setdefault(
            path.parent.name if (Path(results_folder) / MANIFEST).exists() else path.name, path
        )
    shots: list[tuple[str, float, pd.DataFrame]] = []
    for path in firsts.values():
        for age, shot in load_snapshots(path).groupby("age", sort=True):
            scenario = str(shot["scenario"].iloc[0]) if "scenario" in shot else path.stem
            shots.append((scenario, float(age), shot))
    by_age: dict[float, dict[str, pd.DataFrame]] = {}
    for scenario, age, shot in shots:
        by_age.setdefault(age, {})[scenario] = shot
    for age, same_age in sorted(by_age.items()):
        if len(same_age) > 1:
            order = ordered(same_age, {name: name for name in same_age})
            shown = {name: same_age[name] for name in order}
            save(snapshot_comparison(shown, age), f"snapshots_age{age:g}")
    for scenario, age, shot in shots:
        save(grid_snapshot(shot), f"snapshot_{scenario}_age{age:g}")
    return written


def has_synergy_scenarios(results: pd.DataFrame, names: Sequence[str] = synergy.CANONICAL) -> bool:
    """Whether all of `names` are present, each at a single sweep point (so `synergy` applies)."""
    if not set(names) <= set(scenarios(results)):
        return False
    groups = group_columns(results)
    chosen = results.loc[results["scenario"].isin(list(names)), groups]
    points = grouped(chosen, groups).ngroups
    return points == len(names)

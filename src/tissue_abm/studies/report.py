"""A Markdown report of a results folder: overview, end state, comparisons, synergy, figures.

`write_report(folder)` writes `<folder>/report/report.md` and the figures of
`tissue_abm.analysis.plots.save_figures` (PNG, SVG or PDF) next to it, each with a numbered
caption. Tables are plain Markdown written here (no `tabulate`); every number that is not a
whole number carries 4 significant digits (trailing zeros kept).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tissue_abm.analysis import plots, survival, synergy
from tissue_abm.analysis.summary import (
    check_readouts,
    compare,
    end_state,
    group_columns,
    group_labels,
    grouped,
    median_healthspan,
    run_columns,
    scenarios,
    summarise,
    sweep_columns,
)
from tissue_abm.biology.params import Parameters
from tissue_abm.runs.results import (
    MANIFEST,
    OutputError,
    load_results,
    now,
    point_parameters,
    prepare_output,
    read_manifest,
    write_atomic,
)

REPORT = "report.md"
"""File name of the report inside its output folder."""

END_READOUTS = ("senescent_fraction", "tissue_function", "mean_sasp")
"""Readouts of the end-state summary table."""


def number(value: float, digits: int = 4) -> str:
    """A number for the report: whole numbers as such, others with `digits` significant digits.

    Trailing zeros are kept (0.0038 is "0.003800"), so every number of a table shows the same
    precision; "–" for NaN, "not reached" for inf.

    Args:
        value: The number.
        digits: Significant digits (≥ 1).
    """
    if value is None or (isinstance(value, float | np.floating) and math.isnan(value)):
        return "–"
    if np.isinf(value):
        return "not reached"
    if float(value).is_integer() and abs(value) < 10**digits:
        return str(int(value))
    return f"{value:#.{digits}g}"


def interval(mean: float, low: float, high: float) -> str:
    """`mean [low, high]` with `number` formatting; just the mean when the interval is NaN."""
    if math.isnan(low) or math.isnan(high):
        return number(mean)
    return f"{number(mean)} [{number(low)}, {number(high)}]"


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], align: Sequence[str] | None = None
) -> str:
    """A Markdown (GitHub) table.

    Args:
        header: Column titles.
        rows: Cell values (formatted with `str`; `|` is escaped).
        align: Per column "l" or "r" (default: first column left, others right).

    Returns:
        The table as text, ending with a newline.
    """
    align = list(align) if align is not None else ["l", *["r"] * (len(header) - 1)]

    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    rule = "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows)]) + "\n"


def write_report(
    folder: str | Path,
    out: str | Path | None = None,
    readout: str = "senescent_fraction",
    reference: str = "untreated",
    *,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    threshold: float | None = None,
    dpi: int = 120,
    fmt: str = "png",
) -> Path:
    """Write the figures and a Markdown report of a results folder.

    Sections: the batch, the end state per group, the comparison with `reference` and the
    synergy of rapamycin and oxytocin (each on `readout` and tissue function), organism survival
    and the figures. What each section holds: docs/batch.md#the-report.

    Args:
        folder: A batch's results folder (or any folder `load_results` reads).
        out: Output folder; default `<folder>/report`.
        readout: Main readout of the comparison, synergy and distribution sections.
        reference: Scenario the others are compared with.
        confidence: Coverage of every interval (0-1).
        n_boot: Bootstrap resamples of the comparison and synergy intervals.
        seed: Seed of the bootstraps.
        threshold: Tissue function (0-1) below which health is lost; default
            `Parameters().healthspan_threshold`.
        dpi: Resolution of PNG figures, and of images inside SVG and PDF (dots per inch).
        fmt: Format of the figures, one of `plots.FORMATS` (PDF figures are linked, not shown).

    Returns:
        The path of `report.md`.

    Raises:
        FileNotFoundError: If `folder` holds no results.
        ValueError: If `readout` is not a readout of the results, or `fmt` not a format.
        tissue_abm.runs.results.OutputError: If the output folder cannot be written.
    """
    folder = Path(folder)
    target = prepare_output(folder / "report" if out is None else Path(out))
    results = load_results(folder)
    readouts = list(dict.fromkeys([readout, "tissue_function"]))
    check_readouts(results, readouts)
    if threshold is None:
        threshold = Parameters().healthspan_threshold
    figures = plots.save_figures(
        folder,
        target,
        readouts,
        results=results,
        confidence=confidence,
        n_boot=n_boot,
        seed=seed,
        dpi=dpi,
        fmt=fmt,
    )
    survival_figure = target / f"survival.{fmt}"
    level = f"{confidence:.0%}"
    parts = [
        f"# Results report: {folder.name}\n",
        f"Results folder: `{folder}` · written {now()}\n",
        _overview(folder, results),
        _end_section(results, confidence, threshold),
        *(
            _compare_section(results, r, reference, level, confidence, n_boot, seed)
            for r in readouts
        ),
        _synergy_section(results, readouts, level, confidence, n_boot, seed),
        _survival_section(
            folder, results, survival_figure, confidence, min(n_boot, 1000), seed, dpi
        ),
        _figure_section([survival_figure, *figures], target),
    ]
    path = target / REPORT
    text = "\n".join(parts)
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def _overview(folder: Path, results: pd.DataFrame) -> str:
    text = ["## Batch\n"]
    if (folder / MANIFEST).exists():
        manifest = read_manifest(folder)
        names = [entry["name"] for entry in manifest["scenarios"]]
        status = Counter(run["status"] for run in manifest["runs"])
        text.append(f"- Scenarios in `{MANIFEST}`: {', '.join(names)}")
        text.append(
            f"- Runs in `{MANIFEST}`: {len(manifest['runs'])} ("
            + ", ".join(f"{k}: {v}" for k, v in status.items())
            + ")"
        )
    keys = run_columns(results)
    runs = grouped(results, keys).agg(start=("age", "min"), end=("age", "max"))
    runs = runs.reset_index()
    total = len(runs)
    text.append(
        f"- Loaded: {results['scenario'].nunique()} scenarios, {total} runs, "
        f"{len(results)} rows (run × kept day)\n"
    )
    rows = []
    for name in _in_order(scenarios(results)):
        mine = runs[runs["scenario"] == name]
        points = mine["point"].nunique() if "point" in mine else 1
        replicates = (
            mine.groupby("point")["replicate"].nunique().max() if "replicate" in mine else len(mine)
        )
        rows.append(
            [
                name,
                points,
                replicates,
                len(mine),
                f"{number(mine['start'].min())}–{number(mine['end'].max())}",
            ]
        )
    text.append(
        markdown_table(["scenario", "sweep points", "replicates", "runs", "ages (days)"], rows)
    )
    return "\n".join(text)


def _in_order(names: Sequence[str]) -> list[str]:
    """Scenario names with the canonical ones first (see `plots.SCENARIO_COLOURS`)."""
    return plots.ordered(names, {name: name for name in names})


FEW = 10
"""Below this many replicates per group, the report warns that bootstrap intervals are rough."""


def _few_note(n: int) -> str:
    if n >= FEW:
        return ""
    return (
        f"With as few as {n} replicates, percentile bootstrap intervals are too narrow (they "
        "ignore the uncertainty of the spread itself): read them as rough.\n"
    )


def _end_section(results: pd.DataFrame, confidence: float, threshold: float) -> str:
    readouts = [r for r in END_READOUTS if r in results]
    summary = summarise(results, readouts, confidence)
    groups = group_columns(results)
    last = summary.groupby([*groups, "readout"], observed=True, dropna=False)["day"].transform(
        "max"
    )
    summary = summary[summary["day"] == last].reset_index(drop=True)
    summary["label"] = group_labels(summary, sweep_columns(results)).to_numpy()
    ends = end_state(results, threshold)
    ends["label"] = group_labels(ends).to_numpy()
    spans = ends.groupby("label", sort=False)["healthspan"].agg(median_healthspan)
    order = plots.ordered(
        summary["label"], dict(zip(summary["label"], summary["scenario"].astype(str), strict=True))
    )
    rows = []
    for lab in order:
        mine = summary[summary["label"] == lab].set_index("readout")
        first = mine.iloc[0]
        rows.append(
            [
                lab,
                int(first["n"]),
                number(first["age"]),
                *(
                    interval(mine.loc[r, "mean"], mine.loc[r, "ci_low"], mine.loc[r, "ci_high"])
                    for r in readouts
                ),
                number(spans.get(lab, math.nan)),
            ]
        )
    header = [
        "group",
        "n",
        "age (days)",
        *(plots.label(r) for r in readouts),
        "median healthspan (days)",
    ]
    return "\n".join(
        [
            "## End state\n",
            f"Mean across replicates with its {confidence:.0%} confidence interval (Student t) "
            "on each run's last kept day. Healthspan is the age at which tissue function first "
            f'falls below {threshold:g}; "not reached" means at least half the runs stayed above '
            "it to the end.\n",
            markdown_table(header, rows),
        ]
    )


def _compare_section(
    results: pd.DataFrame,
    readout: str,
    reference: str,
    level: str,
    confidence: float,
    n_boot: int,
    seed: int,
) -> str:
    title = f"## {plots.label(readout).capitalize()} compared with {reference}\n"
    try:
        table = compare(
            results, readout, reference, n_boot=n_boot, seed=seed, confidence=confidence
        )
    except ValueError as err:
        return "\n".join([title, f"Not computed: {err}.\n"])
    labels = group_labels(table, sweep_columns(results))
    order = plots.ordered(labels, dict(zip(labels, table["scenario"], strict=True)))
    rows = sorted(
        (
            [
                lab,
                int(row.n),
                number(row.mean),
                number(row.reference_mean),
                number(row.difference),
                f"[{number(row.ci_low)}, {number(row.ci_high)}]",
            ]
            for lab, row in zip(labels, table.itertuples(index=False), strict=True)
        ),
        key=lambda row: order.index(row[0]),
    )
    fewest = min([*table["n"], *table["reference_n"][:1]], default=FEW)
    return "\n".join(
        [
            title,
            f"Difference of the mean on each run's last kept day (group − {reference}), with a "
            f"{level} percentile bootstrap interval ({n_boot} resamples of the replicates of each "
            "scenario).\n",
            _few_note(int(fewest)),
            markdown_table(
                ["group", "n", "mean", f"{reference} mean", "difference", f"{level} CI"], rows
            ),
        ]
    )


def _synergy_section(
    results: pd.DataFrame,
    readouts: Sequence[str],
    level: str,
    confidence: float,
    n_boot: int,
    seed: int,
) -> str:
    control, drug_a, drug_b, combination = synergy.CANONICAL
    title = f"## Synergy of {drug_a} and {drug_b}\n"
    if not plots.has_synergy_scenarios(results):
        missing = [s for s in synergy.CANONICAL if s not in scenarios(results)]
        why = (
            f"missing scenario {', '.join(missing)}"
            if missing
            else "a scenario has several sweep points"
        )
        return "\n".join(
            [
                title,
                f"Not computed: needs the {', '.join(synergy.CANONICAL)} "
                f"scenarios at one sweep point each ({why}).\n",
            ]
        )
    text = [
        title,
        "Fractional effect y = share of the untreated loss prevented (1 − treated/untreated "
        "for a loss such as the senescent fraction; 1 − (1 − treated)/(1 − untreated) for "
        "tissue function), from the scenario means on each run's last kept day. Bliss "
        "expectation y_A + y_B − y_A·y_B, HSA expectation max(y_A, y_B); excess = "
        f"y_{combination} − expected, in % of the loss. Reading (SynergyFinder): below −10% "
        'antagonism, −10% to 10% additive, above 10% synergy; "uncertain" when the '
        f"{level} bootstrap interval ({n_boot} resamples) crosses a band edge.\n",
    ]
    for readout in readouts:
        scores = synergy.synergy(results, readout, n_boot=n_boot, seed=seed, confidence=confidence)
        rows = [
            [
                row.method.upper() if row.method == "hsa" else row.method.capitalize(),
                number(100 * row.y_a),
                number(100 * row.y_b),
                number(100 * row.y_ab),
                number(100 * row.expected),
                number(100 * row.excess),
                f"[{number(100 * row.ci_low)}, {number(100 * row.ci_high)}]",
                row.verdict,
            ]
            for row in scores.table.itertuples(index=False)
        ]
        n = scores.n
        if readout == readouts[0]:
            text.append(_few_note(min(n.values())))
        text.append(
            f"**{plots.label(readout)}** (replicates: {control} {n['control']}, "
            f"{drug_a} {n['drug_a']}, {drug_b} {n['drug_b']}, {combination} "
            f"{n['combination']}; effects in %)\n"
        )
        text.append(
            markdown_table(
                [
                    "method",
                    f"y {drug_a}",
                    f"y {drug_b}",
                    f"y {combination}",
                    "expected",
                    "excess",
                    f"{level} CI",
                    "verdict",
                ],
                rows,
                align=["l", *["r"] * 6, "l"],
            )
        )
    return "\n".join(text)


def _survival_section(
    folder: Path,
    results: pd.DataFrame,
    figure_path: Path,
    confidence: float,
    n_boot: int,
    seed: int,
    dpi: int,
) -> str:
    """Organism survival (Karin 2019 saturating removal) per group, and its figure."""
    try:  # each batch run's own parameters; defaults for a folder of single runs
        own = point_parameters(folder) if "point" in results else None
    except OutputError:
        own = None
    lives = survival.lifespans(results, own)
    summary = survival.survival_summary(lives, confidence=confidence, n_boot=n_boot, seed=seed)
    groups = group_columns(lives)
    ends = lives.groupby(groups, observed=True, dropna=False).agg(
        alive=("observed", lambda seen: 1.0 - seen.mean()), last=("lifespan", "max")
    )
    summary = summary.merge(ends.reset_index(), on=groups, how="left")
    summary["label"] = group_labels(summary, sweep_columns(results)).to_numpy()
    order = plots.ordered(
        summary["label"], dict(zip(summary["label"], summary["scenario"].astype(str), strict=True))
    )
    table = summary.set_index("label", drop=False).loc[order]
    rows = [
        [
            row.label,
            row.runs,
            _lifespan(row.median_lifespan, row.median_ci_low, row.median_ci_high, row.last),
            _lifespan(row.p90_lifespan, row.p90_ci_low, row.p90_ci_high, row.last),
            f"{row.alive:.0%} at {number(row.last)}",
        ]
        for row in table.itertuples()
    ]
    figure = plots.survival_curves(lives, confidence=confidence, n_boot=n_boot, seed=seed)
    figure.savefig(figure_path, dpi=dpi, format=figure_path.suffix[1:])
    short = [str(row.label) for row in table.itertuples() if math.isnan(row.median_lifespan)]
    return "\n".join(
        [
            "## Organism survival\n",
            "Each run's senescent burden drives 200 organisms of Karin et al. 2019's saturating-"
            "removal model (`tissue_abm.analysis.survival`); lifespans in days of age with "
            f'{confidence:.0%} intervals from a bootstrap over runs (an open bound: "not reached" '
            "in too many resamples). Alive at end: the share of organisms alive when the runs "
            'end; "> N (runs too short)" when more organisms than the quantile needs are still '
            "alive at the runs' last age N.\n",
            markdown_table(
                ["group", "runs", "median lifespan", "90th percentile", "alive at end"], rows
            ),
            _too_short_note(short, len(table)),
            f"See Figure 1 ({figure_path.name}).\n",
        ]
    )


def _too_short_note(short: Sequence[str], groups: int) -> str:
    """Which groups' runs end before half their organisms have died (no median lifespan)."""
    if not short:
        return "Every group's runs last past its median lifespan.\n"
    which = "Every group's runs" if len(short) == groups else "The runs of " + ", ".join(short)
    return (
        f"{which} end before half of their organisms have died, so their median lifespan is "
        "not known: run them to a later end_age (the experiment library's wild_type runs to "
        "2190 days).\n"
    )


def _lifespan(value: float, low: float, high: float, last: float) -> str:
    """A lifespan (days) with its interval; "> last (runs too short)" when runs end before it."""
    if math.isnan(value):
        return f"> {number(last)} (runs too short)"
    return interval(value, low, high)


def _figure_section(figures: Sequence[Path], target: Path) -> str:
    """Every figure with its number and caption (PDF files as links: Markdown cannot show them)."""
    lines = ["## Figures\n"]
    for number_, path in enumerate(figures, start=1):
        name = path.relative_to(target).as_posix()
        text = plots.caption(path)
        shown = f"[{name}]({name})" if path.suffix == ".pdf" else f"![Figure {number_}]({name})"
        lines.append(f"{shown}\n\n*Figure {number_}. {text}*\n")
    return "\n".join(lines)

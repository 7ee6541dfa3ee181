"""What the page draws: the grid and the readouts over age, as matplotlib figures in Solara.

The grid is one image of the site states (empty, healthy, senescent) with the immune cells as
markers on top; a switch replaces the states by the SASP field (heatmap on one fixed colour
scale, senescent cells outlined). Drawing one image instead of 10,000 agent markers keeps a
redraw of a 100×100 grid fast. With a reference run (`ViewedTissue.reference`) the page shows
its grid beside this run's and its readouts as dashed lines on every chart; every chart over
age shades each drug's treatment window and ticks its dose days along the top.

Each figure is built once per model (`GridDrawing`, `ChartDrawing`) and redrawn each day by
blitting: its frame (axes, ticks, labels, legend, treatment marks) is drawn once and kept as
pixels, and only the data (image, markers, lines) is drawn over it; the frame is drawn again
when an axis range changes. One Solara component (`TissueView`) listens to the page's frame
counter (a new frame after Step, and a few a second during Play: see `play`) and passes the day
to the others, so a frame costs one re-render of the page.
"""

from __future__ import annotations

import io
import math
import struct
import zipfile
import zlib
from collections.abc import Callable, Hashable, Sequence
from typing import cast

import numpy as np
import pandas as pd
import solara
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from tissue_abm.analysis.plots import (
    IMMUNE_COLOUR,
    SASP_CMAP,
    SASP_UNIT,
    SCENARIO_COLOURS,
    STATE_COLOURS,
    label,
)
from tissue_abm.biology.readouts import SITE_STATES
from tissue_abm.biology.rules import DAYS_PER_YEAR, SENESCENT
from tissue_abm.biology.therapy import Schedule
from tissue_abm.engines.agents.model import TissueModel
from tissue_abm.runs.run import labelled_readouts
from tissue_abm.viz.controls import describe
from tissue_abm.viz.play import FrameLog

DPI = 90
"""Resolution of the page's figures (pixels per inch)."""

STATE_CMAP = ListedColormap([STATE_COLOURS[s] for s in SITE_STATES])

DRUGS = ("rapamycin", "oxytocin", "senolytic")
DRUG_COLOURS = {drug: SCENARIO_COLOURS[drug] for drug in DRUGS}
"""Colours of each drug's treatment window and dose ticks (as its scenario in the report)."""

LINE_COLOURS = {
    "healthy_fraction": "#1a9850",
    "senescent_fraction": STATE_COLOURS["senescent"],
    "empty_fraction": "0.45",
    "tissue_function": "#1a9850",
    "mean_sasp": "#d95f0e",
    "rapamycin_exposure": "#0072B2",
    "oxytocin_level": "#E69F00",
}
"""Line colours of the charts (cell types as in the grid, drugs as in the report figures)."""

DAYS_PER_MONTH = DAYS_PER_YEAR / 12


def sasp_top(model: TissueModel) -> float:
    """The SASP colour scale's top, SASP units: fixed for a run (and its reference).

    The field next to one mature senescent cell stays below its secretion over the decay
    (`sasp_secretion / sasp_decay`), rounded up by `nice_top`; clusters above it show at the
    top colour (the colour bar's arrow).
    """
    p = model.params
    return nice_top(p.sasp_secretion / max(p.sasp_decay, 1e-6), 0.1)


def readouts_now(model: TissueModel) -> pd.DataFrame:
    """The model's readout table, built once a day however many drawings ask for it."""
    days = min(map(len, model.datacollector.model_vars.values()))  # days collected in full
    cached = getattr(model, "_viz_readouts", None)
    if cached is None or cached[0] != days:
        cached = (days, model.readouts)
        model._viz_readouts = cached
    return cached[1]


def regimens(model: TissueModel) -> dict[str, Schedule]:
    """The drugs a model is given: name -> regimen."""
    given = {drug: getattr(model.therapy, drug) for drug in DRUGS}
    return {drug: regimen for drug, regimen in given.items() if regimen is not None}


def mark_treatment(ax: Axes, model: TissueModel, last_age: float) -> None:
    """Shade each drug's treatment window on `ax` and tick its dose days along the top.

    Each drug has its own row of ticks (the first row at the top), in its colour.

    Args:
        ax: Axes over age (days).
        model: The model whose therapy is marked.
        last_age: The last age the axes may show, days.
    """
    for row, (drug, regimen) in enumerate(regimens(model).items()):
        stop = min(regimen.stop_age or math.inf, last_age)
        if regimen.start_age >= stop:
            continue
        colour = DRUG_COLOURS[drug]
        ax.axvspan(regimen.start_age, stop, color=colour, alpha=0.08, lw=0)
        ages = np.arange(regimen.start_age, math.ceil(stop))
        doses = ages[regimen.dose_days(ages)]
        top = 1.0 - 0.045 * row
        ax.vlines(doses, top - 0.04, top, colors=colour, lw=0.6, transform=ax.get_xaxis_transform())


def treatment_handles(model: TissueModel) -> list[Artist]:
    """Legend entries of the treatment marks: one per drug given."""
    return [
        Patch(facecolor=DRUG_COLOURS[drug], alpha=0.35, label=f"{drug} window, | doses")
        for drug in regimens(model)
    ]


def nice_top(value: float, floor: float) -> float:
    """An axis top at or above `value` (and `floor`): 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 × 10^k.

    Rounding up to a few steps keeps an axis range, and so the blitted frame, for many days.
    """
    value = max(value, floor)
    base = 10.0 ** math.floor(math.log10(value))
    return next(
        m * base
        for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10)
        if m * base >= value * (1 - 1e-12)
    )


class Blitted:
    """A figure redrawn by blitting: the frame once per `frame` key, the `data` artists always.

    Args:
        figure: The figure, with its data artists in place.
        data: The artists that change from day to day; drawn on top of the frame in this order.
    """

    def __init__(self, figure: Figure, data: Sequence[Artist]) -> None:
        self.figure = figure
        self.canvas = FigureCanvasAgg(figure)
        self.data = list(data)
        self._frame: Hashable = None
        self._background = None

    def png(self, frame: Hashable) -> bytes:
        """The figure as PNG; the frame is drawn again only if `frame` differs from the last."""
        if self._background is None or frame != self._frame:
            for artist in self.data:
                artist.set_visible(False)
            self.canvas.draw()
            self._background = self.canvas.copy_from_bbox(self.figure.bbox)
            self._frame = frame
            for artist in self.data:
                artist.set_visible(True)
        else:
            self.canvas.restore_region(self._background)
        renderer = self.canvas.get_renderer()
        for artist in self.data:
            artist.draw(renderer)
        return png_bytes(np.asarray(self.canvas.buffer_rgba()))


def png_bytes(rgba: np.ndarray) -> bytes:
    """An RGBA image (rows top to bottom, uint8) as an RGB PNG file.

    Rows are stored unfiltered and compressed with zlib at level 1: about twice as fast as
    Pillow's encoder on the page's figures, at much the same size.
    """
    height, width = rgba.shape[:2]
    raw = np.empty((height, 3 * width + 1), dtype=np.uint8)
    raw[:, 0] = 0  # filter type of each row: none
    raw[:, 1:] = rgba[..., :3].reshape(height, -1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 1))
        + chunk(b"IEND", b"")
    )


# --- the grid ---------------------------------------------------------------------------------


class GridDrawing:
    """The tissue of one model: site states as one image (or the SASP field), immune on top.

    Args:
        model: The model to draw (its `tissue`, `immune` and `sasp` property layers).
        show_sasp: Draw the SASP field instead of the states: one colour scale for the whole
            run (`sasp_top`), its unit on the colour bar, senescent cells outlined.
        title: A title above the grid (e.g. which run it is).

    Attributes:
        figure: A 5.4 × 5.0 inch figure, at `DPI` or more so that a site is at least 2.5 pixels
            wide; x runs left to right, y bottom to top (sites); a legend below names the states
            (or the field and the senescent outline) and the immune marker.
    """

    def __init__(self, model: TissueModel, show_sasp: bool = False, title: str = "") -> None:
        self.model = model
        self.show_sasp = show_sasp
        size_x, size_y = model.tissue.data.shape
        dpi = max(DPI, math.ceil(2.5 * max(size_x, size_y) / 3.9))
        fig = Figure(figsize=(5.4, 5.0), dpi=dpi)
        width, height = fig.get_size_inches()
        box = 3.9  # inches: the grid's longer side
        w, h = box * size_x / max(size_x, size_y), box * size_y / max(size_x, size_y)
        left, bottom = 0.6, 0.85
        ax = fig.add_axes((left / width, bottom / height, w / width, h / height))
        site_points = 72.0 * w / size_x  # width of one site in points
        self.senescent = None
        if show_sasp:
            self.senescent = ax.scatter(
                [],
                [],
                s=max(4.0, site_points**2),
                marker="s",
                facecolors="none",
                edgecolors="black",
                linewidths=0.6,
            )
            self.image = ax.imshow(
                np.zeros((size_y, size_x)),
                cmap=SASP_CMAP,
                origin="lower",
                interpolation="nearest",
                vmin=0.0,
                vmax=sasp_top(model),
            )
            cax = fig.add_axes(
                ((left + w + 0.12) / width, bottom / height, 0.14 / width, h / height)
            )
            bar = fig.colorbar(self.image, cax=cax, extend="max")
            bar.set_label(SASP_UNIT, fontsize="small")
            handles: list[Artist] = [
                Patch(facecolor="#fd8d3c", label="SASP field"),
                Line2D(
                    [],
                    [],
                    ls="none",
                    marker="s",
                    markerfacecolor="none",
                    markeredgecolor="black",
                    label="senescent cell",
                ),
            ]
        else:
            self.image = ax.imshow(
                np.zeros((size_y, size_x)),
                cmap=STATE_CMAP,
                vmin=-0.5,
                vmax=len(SITE_STATES) - 0.5,
                origin="lower",
                interpolation="nearest",
            )
            handles = [
                Patch(facecolor=STATE_COLOURS[s], edgecolor="0.5", label=s) for s in SITE_STATES
            ]
        self.markers = ax.scatter(
            [],
            [],
            s=max(6.0, (0.75 * site_points) ** 2),  # at least ~3 pixels: visible at 200×200
            color=IMMUNE_COLOUR,
            marker="o",
            linewidths=0,
        )
        handles.append(
            Line2D(
                [],
                [],
                ls="none",
                marker="o",
                color=IMMUNE_COLOUR,
                markersize=5,
                label="immune cell",
            )
        )
        ax.set_xlim(-0.5, size_x - 0.5)
        ax.set_ylim(-0.5, size_y - 0.5)
        ax.set_xlabel("x (site)", labelpad=1)
        ax.set_ylabel("y (site)", labelpad=1)
        if title:
            ax.set_title(title, fontsize="medium")
        fig.legend(
            handles=handles,
            loc="lower center",
            ncols=len(handles),
            frameon=False,
            fontsize="small",
            bbox_to_anchor=(0.5, 0.0),
        )
        self.figure = fig
        data: list[Artist] = [self.image, self.markers, *ax.spines.values()]
        if self.senescent is not None:
            data.insert(1, self.senescent)
        self._blitted = Blitted(fig, data)

    def update(self) -> Hashable:
        """Put the model's state now into the image and markers; return the frame key."""
        model = self.model
        immune = np.nonzero(model.immune.data)
        self.markers.set_offsets(np.column_stack(immune).astype(float).reshape(-1, 2))
        if self.senescent is None:
            self.image.set_data(model.tissue.data.T.copy())
            return None
        senescent = np.nonzero(model.tissue.data == SENESCENT)
        self.senescent.set_offsets(np.column_stack(senescent).astype(float).reshape(-1, 2))
        self.image.set_data(model.sasp.data.T.copy())
        return None

    def png(self) -> bytes:
        """The tissue now as PNG."""
        return self._blitted.png(self.update())


def grid_figure(model: TissueModel, show_sasp: bool = False, title: str = "") -> Figure:
    """The tissue now as a figure (see `GridDrawing`)."""
    drawing = GridDrawing(model, show_sasp, title)
    drawing.update()
    return drawing.figure


# --- the charts over age ----------------------------------------------------------------------


class ChartDrawing:
    """One chart of readouts over age for a model (see `CHARTS`).

    Every axes shades the treatment windows and ticks the dose days (`mark_treatment`); with a
    reference run (`model.reference`) each readout gets a dashed line of the reference's
    values in the same colour.

    Args:
        model: The model (for the age range, its therapy and its reference).
        name: Which chart, a key of `CHARTS`.

    Raises:
        KeyError: If there is no such chart.
    """

    def __init__(self, model: TissueModel, name: str) -> None:
        self.model = model
        self.name = name
        self.figure, self.lines, self._ranges = CHARTS[name](model)
        # Every line of a chart is drawn on axes: none is None.
        self._axes = list(dict.fromkeys(cast(Axes, line.axes) for line in self.lines.values()))
        self.reference: TissueModel | None = getattr(model, "reference", None)
        self.reference_lines = {
            column: cast(Axes, line.axes).plot(
                [], [], color=line.get_color(), lw=1.0, ls="--", alpha=0.9
            )[0]
            for column, line in self.lines.items()
            if self.reference is not None
        }
        panels = {tuple(ax.get_position().bounds): ax for ax in reversed(self._axes)}
        for ax in panels.values():  # a twin axes shares its panel: mark each panel once
            mark_treatment(ax, model, model.start_age + 10 * max(model.days, 1))
        data = [*self.reference_lines.values(), *self.lines.values()]
        self._blitted = Blitted(self.figure, data)

    def update(self, table: pd.DataFrame) -> Hashable:
        """Put the readouts (and the reference's) into the lines, set the axis ranges.

        Returns:
            The frame key (the axis ranges).
        """
        both = [table]
        if self.reference is not None:
            reference = readouts_now(self.reference)
            both.append(reference)
            _set_lines(self.reference_lines, reference)
        _set_lines(self.lines, table)
        model = self.model
        x_range = (
            model.start_age,
            max(model.start_age + model.days, model.age, model.start_age + 1),
        )
        ranges = self._ranges(pd.concat(both) if len(both) > 1 else table)
        for ax in self._axes:
            ax.set_xlim(*x_range)
        for ax, y_range in ranges.items():
            ax.set_ylim(*y_range)
        return (x_range, *ranges.values())

    def draw(self, table: pd.DataFrame) -> Figure:
        """The chart of `table` (the model's readouts) as a figure."""
        self.update(table)
        return self.figure

    def png(self, table: pd.DataFrame) -> bytes:
        """The chart of `table` (the model's readouts) as PNG."""
        return self._blitted.png(self.update(table))


def _set_lines(lines: dict[str, Line2D], table: pd.DataFrame) -> None:
    """Each readout's values over age into its line, with a dot on the last day."""
    age = table["age"].to_numpy(dtype=float)
    for column, line in lines.items():
        line.set_data(age, table[column].to_numpy(dtype=float))
        line.set_markevery([len(age) - 1])


Ranges = Callable[[pd.DataFrame], dict[Axes, tuple[float, float]]]
"""y ranges of a chart's axes for a readout table."""


def _chart(height: float = 2.6, right: float = 0.2, legend_rows: int = 1) -> Figure:
    """An empty chart figure with fixed margins (inches; a layout engine would cost time)."""
    extra = 0.18 * (legend_rows - 1)  # room for more rows of legend above the axes
    height += extra
    fig = Figure(figsize=(5.4, height), dpi=DPI)
    fig.subplots_adjust(
        left=0.9 / 5.4,
        right=1 - right / 5.4,
        bottom=0.5 / height,
        top=1 - (0.35 + extra) / height,
        hspace=0.12,
    )
    return fig


def _line(ax: Axes, column: str, name: str) -> Line2D:
    """An (empty) line of one readout, with a dot on today's value."""
    (line,) = ax.plot(
        [], [], color=LINE_COLOURS[column], lw=1.4, marker="o", markersize=3, label=name
    )
    return line


def _frame(ax: Axes, last: bool = True) -> None:
    ax.grid(alpha=0.3, lw=0.5)
    if last:
        ax.set_xlabel("age (days)")


def _legend(ax: Axes, handles: list, ncols: int = 3) -> None:
    """The chart's legend in rows above the axes (it names what the chart shows)."""
    ax.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncols=ncols,
        fontsize="small",
        frameon=False,
        borderaxespad=0.2,
        columnspacing=1.2,
        handlelength=1.5,
    )


def _cell_types(model: TissueModel) -> tuple[Figure, dict[str, Line2D], Ranges]:
    """Healthy, senescent and empty fractions of the sites over age (log scale)."""
    fig = _chart()
    ax = fig.subplots()
    lines = {
        column: _line(ax, column, label(column))
        for column in ("healthy_fraction", "senescent_fraction", "empty_fraction")
    }
    ax.set_yscale("log", nonpositive="mask")  # days with none of a kind are left out
    ticks = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    ax.set_yticks(ticks, [f"{t:.0%}" if t >= 0.01 else f"{100 * t:g}%" for t in ticks])
    ax.minorticks_off()
    ax.set_ylabel("fraction of sites")
    _legend(ax, list(lines.values()))
    _frame(ax)
    return fig, lines, lambda table: {ax: (1e-4, 1.5)}


def _function(model: TissueModel) -> tuple[Figure, dict[str, Line2D], Ranges]:
    """Tissue function (0-1) and the mean SASP (SASP units) over age, one above the other."""
    fig = _chart(3.2)
    top, bottom = fig.subplots(2, 1, sharex=True)
    threshold = model.params.healthspan_threshold
    lines = {
        "tissue_function": _line(top, "tissue_function", "tissue function"),
        "mean_sasp": _line(bottom, "mean_sasp", "mean SASP"),
    }
    limit = top.axhline(
        threshold, color="0.4", lw=0.8, ls="--", label=f"healthspan threshold ({threshold:g})"
    )
    top.set_ylabel("tissue function")
    bottom.set_ylabel("mean SASP")
    _legend(top, [lines["tissue_function"], limit, lines["mean_sasp"]])
    _frame(top, last=False)
    _frame(bottom)

    def ranges(table: pd.DataFrame) -> dict[Axes, tuple[float, float]]:
        low = float(table["tissue_function"].min())
        return {
            top: (min(0.8, math.floor(20 * (low - 0.02)) / 20), 1.005),
            bottom: (0.0, nice_top(1.1 * float(table["mean_sasp"].max()), 1e-3)),
        }

    return fig, lines, ranges


def _therapy(model: TissueModel) -> tuple[Figure, dict[str, Line2D], Ranges]:
    """Rapamycin exposure (mg/kg, left axis) and oxytocin level (young levels, right) over age.

    Its legend also names the treatment marks and, with one, the reference run's dashed lines.
    """
    reference = getattr(model, "reference", None)
    marks: list[Artist] = treatment_handles(model)
    if reference is not None:
        compare = getattr(model, "compare", "reference")
        marks.append(Line2D([], [], color="0.3", ls="--", label=f"dashed: {compare}"))
    fig = _chart(right=0.75, legend_rows=math.ceil((2 + len(marks)) / 2))
    ax = fig.subplots()
    right = ax.twinx()
    lines = {
        "rapamycin_exposure": _line(ax, "rapamycin_exposure", "rapamycin exposure"),
        "oxytocin_level": _line(right, "oxytocin_level", "oxytocin level"),
    }
    ax.set_ylabel("rapamycin (mg/kg)", color=LINE_COLOURS["rapamycin_exposure"])
    right.set_ylabel("oxytocin (young levels)", color=LINE_COLOURS["oxytocin_level"])
    _legend(ax, [*lines.values(), *marks], ncols=2)
    _frame(ax)

    def ranges(table: pd.DataFrame) -> dict[Axes, tuple[float, float]]:
        return {
            ax: (0.0, nice_top(1.1 * float(table["rapamycin_exposure"].max()), 1.0)),
            right: (0.0, nice_top(1.1 * float(table["oxytocin_level"].max()), 1.2)),
        }

    return fig, lines, ranges


CHARTS: dict[str, Callable[[TissueModel], tuple[Figure, dict[str, Line2D], Ranges]]] = {
    "cell types": _cell_types,
    "tissue function": _function,
    "therapy": _therapy,
}
"""The charts over age, in page order: name -> builder of (figure, column -> line, y ranges)."""


def chart_figure(model: TissueModel, name: str, table: pd.DataFrame | None = None) -> Figure:
    """Chart `name` of `CHARTS` for a model as a figure (`table`: its readouts, default now)."""
    return ChartDrawing(model, name).draw(model.readouts if table is None else table)


# --- text -------------------------------------------------------------------------------------


def now_text(model: TissueModel) -> str:
    """Today's readouts in one line: cell fractions, immune cells, function, drug levels."""
    row = readouts_now(model).iloc[-1]
    return (
        f"healthy {row['healthy_fraction']:.1%} · senescent {row['senescent_fraction']:.2%}"
        f" · empty {row['empty_fraction']:.1%} · immune cells {row['immune']:.0f}"
        f" · tissue function {row['tissue_function']:.3f}"
        f" · rapamycin {row['rapamycin_exposure']:.2f} mg/kg"
        f" · oxytocin {row['oxytocin_level']:.2f} young levels"
    )


def day_text(model: TissueModel) -> str:
    """The day counter: day of the run, of how many, and the organism's age."""
    day = round(model.time)
    end = " (end of run)" if not model.running else ""
    return (
        f"Day {day} of {model.days}{end} · age {model.age:g} days "
        f"({model.age / DAYS_PER_MONTH:.1f} months)"
    )


# --- downloads --------------------------------------------------------------------------------


def readouts_table(model: TissueModel) -> pd.DataFrame:
    """The run's readouts with the columns `tissue-abm run` writes (scenario, seed, engine, ...).

    Every day so far, one row a day; the engine is "agents" (the page runs Mesa's agents).
    """
    settings = getattr(model, "settings", None)
    if settings is None:
        return readouts_now(model).copy()
    return labelled_readouts(settings.model_copy(update={"engine": "agents"}), model.readouts)


def readouts_csv(model: TissueModel) -> bytes:
    """The readouts table as CSV (UTF-8)."""
    return readouts_table(model).to_csv(index=False).encode("utf-8")


def readouts_parquet(model: TissueModel) -> bytes:
    """The readouts table as Parquet."""
    buffer = io.BytesIO()
    readouts_table(model).to_parquet(buffer, index=False)
    return buffer.getvalue()


def figures_zip(model: TissueModel, fmt: str, show_sasp: bool = False) -> bytes:
    """The page's figures now (grid, reference grid, charts) as `fmt` files in a zip archive.

    Args:
        model: The model shown.
        fmt: "png" or "svg".
        show_sasp: Draw the SASP field in the grid figures, as the page does.
    """
    figures = {"grid": grid_figure(model, show_sasp, "this run")}
    reference = getattr(model, "reference", None)
    if reference is not None:
        figures["grid_reference"] = grid_figure(
            reference, show_sasp, f"reference: {getattr(model, 'compare', '')}"
        )
    table = readouts_now(model)
    for name in CHARTS:
        figures[f"chart_{name.replace(' ', '_')}"] = chart_figure(model, name, table)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, figure in figures.items():
            data = io.BytesIO()
            figure.savefig(data, format=fmt, dpi=2 * DPI)
            archive.writestr(f"{name}.{fmt}", data.getvalue())
    return buffer.getvalue()


def download_name(model: TissueModel, what: str) -> str:
    """File name of a download: scenario, seed and what it is."""
    settings = getattr(model, "settings", None)
    stem = f"{settings.name}_seed{settings.seed}" if settings is not None else "tissue"
    return f"{stem}_{what}"


# --- Solara components ------------------------------------------------------------------------


@solara.component
def TissueView(
    model: TissueModel, frames: solara.Reactive[int], log: FrameLog | None = None
) -> None:
    """The page's content: grid(s) and settings on the left, charts and downloads on the right.

    Args:
        model: The model shown.
        frames: The frame counter: each new value shows the model as it is then. This is the
            only component that listens to it: the others get the day as an argument, so a
            frame re-renders the page once.
        log: Where each frame is noted once drawn (Play waits for it).
    """
    frame = frames.value
    day = model.time
    solara.use_effect(lambda: log.drawn(frame) if log is not None else None, [frame])
    show_sasp, set_show_sasp = solara.use_state(False)
    with solara.ColumnsResponsive(12, large=6):
        TissueGrid(model, day, show_sasp, set_show_sasp)
        with solara.Column(gap="8px", classes=["tissue-charts"], style={"max-width": "620px"}):
            for name in CHARTS:
                Chart(model, name, day)
            Downloads(model, show_sasp)


@solara.component
def TissueGrid(
    model: TissueModel,
    day: float,
    show_sasp: bool = False,
    set_show_sasp: Callable[[bool], None] | None = None,
) -> None:
    """The day counter, the run's settings, today's readouts, the SASP switch and the grid(s)."""
    reference = getattr(model, "reference", None)
    size = model.tissue.data.shape[0]
    with solara.Column(
        gap="4px",
        classes=["tissue-grid"],
        style={"max-width": f"{620 if size <= 100 else 900}px"},
    ):
        solara.Text(
            day_text(model),
            classes=["tissue-day"],
            style={"font-size": "1.15em", "font-weight": "bold"},
        )
        settings = getattr(model, "settings", None)
        if settings is not None:
            solara.Text(
                describe(settings, getattr(model, "picked", None)),
                classes=["tissue-settings"],
                style={"font-size": "0.85em"},
            )
        if getattr(model, "problem", None):
            solara.Text(
                model.problem,
                classes=["tissue-problem"],
                style={"font-size": "0.85em", "color": "#b00020"},
            )
        solara.Text(now_text(model), classes=["tissue-now"], style={"font-size": "0.85em"})
        if set_show_sasp is not None:
            solara.Switch(label="show the SASP field", value=show_sasp, on_value=set_show_sasp)
        if reference is None:
            GridImage(model, day, show_sasp, "", "tissue-grid-image")
        else:
            with solara.Column(gap="2px"):  # one above the other: each as wide as one alone
                GridImage(model, day, show_sasp, "this run", "tissue-grid-image")
                GridImage(
                    reference,
                    day,
                    show_sasp,
                    f"reference: {getattr(model, 'compare', '')}",
                    "tissue-reference-image",
                )


@solara.component
def GridImage(model: TissueModel, day: float, show_sasp: bool, title: str, css: str) -> None:
    """One grid as an image, redrawn (blitted) when the day changes."""
    drawing = solara.use_memo(
        lambda: GridDrawing(model, show_sasp, title), [model, show_sasp, title]
    )
    png = solara.use_memo(drawing.png, [drawing, day])
    solara.Image(png, width="100%", classes=[css])


@solara.component
def Chart(model: TissueModel, name: str, day: float) -> None:
    """Chart `name` of `CHARTS` for a model, redrawn (blitted) when the day changes."""
    drawing = solara.use_memo(lambda: ChartDrawing(model, name), [model, name])
    png = solara.use_memo(lambda: drawing.png(readouts_now(model)), [drawing, day])
    solara.Image(png, width="100%", classes=["tissue-chart"])


@solara.component
def Downloads(model: TissueModel, show_sasp: bool) -> None:
    """Buttons that download the readouts (CSV, Parquet) and the figures (PNG, SVG) of today.

    The files are made when a button is clicked, from the model as it is then; the component
    does not re-render day by day.
    """
    files: list[tuple[str, str, Callable[[], bytes]]] = [
        ("readouts CSV", "readouts.csv", lambda: readouts_csv(model)),
        ("readouts Parquet", "readouts.parquet", lambda: readouts_parquet(model)),
        ("figures PNG", "figures_png.zip", lambda: figures_zip(model, "png", show_sasp)),
        ("figures SVG", "figures_svg.zip", lambda: figures_zip(model, "svg", show_sasp)),
    ]
    with solara.Row(gap="6px", classes=["tissue-downloads"], style={"flex-wrap": "wrap"}):
        for text, suffix, data in files:
            solara.FileDownload(
                data,
                filename=download_name(model, suffix),
                label=f"Download {text}",
                icon_name="mdi-download",
                string_encoding="utf-8",
            )

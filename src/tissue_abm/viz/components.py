"""What the page draws: the grid and the readouts over age, as matplotlib figures in Solara.

The grid is one image of the site states (empty, healthy, senescent) with the immune cells as
markers on top; a switch replaces the states by the SASP field (heatmap with a colour bar).
Drawing one image instead of 10,000 agent markers keeps a redraw of a 100×100 grid fast.

Each figure is built once per model (`GridDrawing`, `ChartDrawing`) and redrawn each day by
blitting: its frame (axes, ticks, labels, legend) is drawn once and kept as pixels, and only the
data (image, markers, lines) is drawn over it; the frame is drawn again when an axis range
changes. The Solara components at the end show the drawings as PNG images and redraw them when
Mesa's `update_counter` changes (after Step, Play and Reset).
"""

from __future__ import annotations

import io
import math
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
from mesa.visualization.utils import update_counter
from PIL import Image

from tissue_abm.analysis.plots import IMMUNE_COLOUR, STATE_COLOURS, label
from tissue_abm.biology.readouts import SITE_STATES
from tissue_abm.biology.rules import DAYS_PER_YEAR
from tissue_abm.engines.agents.model import TissueModel
from tissue_abm.viz.controls import describe

DPI = 90
"""Resolution of the page's figures (pixels per inch)."""

STATE_CMAP = ListedColormap([STATE_COLOURS[s] for s in SITE_STATES])
SASP_CMAP = "YlOrRd"
"""SASP heatmap colours: white to red, so the blue immune markers stay visible."""

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
        width, height = self.canvas.get_width_height()
        rgba = Image.frombuffer(
            "RGBA", (width, height), self.canvas.buffer_rgba(), "raw", "RGBA", 0, 1
        )
        buffer = io.BytesIO()
        rgba.convert("RGB").save(buffer, format="png", compress_level=1)
        return buffer.getvalue()


# --- the grid ---------------------------------------------------------------------------------


class GridDrawing:
    """The tissue of one model: site states as one image (or the SASP field), immune on top.

    Args:
        model: The model to draw (its `tissue`, `immune` and `sasp` property layers).
        show_sasp: Draw the SASP field (SASP units, with a colour bar) instead of the states.

    Attributes:
        figure: A 5.4 × 5.0 inch figure; x runs left to right, y bottom to top (sites); a
            legend below names the states and the immune marker.
    """

    def __init__(self, model: TissueModel, show_sasp: bool = False) -> None:
        self.model = model
        self.show_sasp = show_sasp
        size_x, size_y = model.tissue.data.shape
        fig = Figure(figsize=(5.4, 5.0), dpi=DPI)
        width, height = fig.get_size_inches()
        box = 3.9  # inches: the grid's longer side
        w, h = box * size_x / max(size_x, size_y), box * size_y / max(size_x, size_y)
        left, bottom = 0.6, 0.85
        ax = fig.add_axes((left / width, bottom / height, w / width, h / height))
        if show_sasp:
            self.image = ax.imshow(
                np.zeros((size_y, size_x)),
                cmap=SASP_CMAP,
                origin="lower",
                interpolation="nearest",
                vmin=0.0,
                vmax=1.0,
            )
            cax = fig.add_axes(
                ((left + w + 0.12) / width, bottom / height, 0.14 / width, h / height)
            )
            fig.colorbar(self.image, cax=cax, label="SASP (units)")
            handles: list[Artist] = [Patch(facecolor="#fd8d3c", label="SASP field")]
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
        site_points = 72.0 * w / size_x  # width of one site in points
        self.markers = ax.scatter(
            [],
            [],
            s=max(1.0, (0.75 * site_points) ** 2),
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
        fig.legend(
            handles=handles,
            loc="lower center",
            ncols=len(handles),
            frameon=False,
            fontsize="small",
            bbox_to_anchor=(0.5, 0.0),
        )
        self.figure = fig
        self._blitted = Blitted(fig, [self.image, self.markers, *ax.spines.values()])

    def update(self) -> Hashable:
        """Put the model's state now into the image and markers; return the frame key."""
        model = self.model
        immune = np.nonzero(model.immune.data)
        self.markers.set_offsets(np.column_stack(immune).astype(float).reshape(-1, 2))
        if not self.show_sasp:
            self.image.set_data(model.tissue.data.T.copy())
            return None
        field = model.sasp.data.T.copy()
        top = nice_top(float(field.max()), 1e-3)
        self.image.set_data(field)
        self.image.set_clim(0.0, top)
        return top

    def png(self) -> bytes:
        """The tissue now as PNG."""
        return self._blitted.png(self.update())


def grid_figure(model: TissueModel, show_sasp: bool = False) -> Figure:
    """The tissue now as a figure (see `GridDrawing`)."""
    drawing = GridDrawing(model, show_sasp)
    drawing.update()
    return drawing.figure


# --- the charts over age ----------------------------------------------------------------------


class ChartDrawing:
    """One chart of readouts over age for a model (see `CHARTS`).

    Args:
        model: The model (for the age range).
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
        self._blitted = Blitted(self.figure, list(self.lines.values()))

    def update(self, table: pd.DataFrame) -> Hashable:
        """Put the readouts into the lines and set the axis ranges; return the frame key."""
        age = table["age"].to_numpy(dtype=float)
        for column, line in self.lines.items():
            line.set_data(age, table[column].to_numpy(dtype=float))
            line.set_markevery([len(age) - 1])
        model = self.model
        x_range = (
            model.start_age,
            max(model.start_age + model.days, model.age, model.start_age + 1),
        )
        ranges = self._ranges(table)
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


Ranges = Callable[[pd.DataFrame], dict[Axes, tuple[float, float]]]
"""y ranges of a chart's axes for a readout table."""


def _chart(height: float = 2.6, right: float = 0.2) -> Figure:
    """An empty chart figure with fixed margins (inches; a layout engine would cost time)."""
    fig = Figure(figsize=(5.4, height), dpi=DPI)
    fig.subplots_adjust(
        left=0.9 / 5.4,
        right=1 - right / 5.4,
        bottom=0.5 / height,
        top=1 - 0.35 / height,
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


def _legend(ax: Axes, handles: list) -> None:
    """The chart's legend in one row above the axes (it names what the chart shows)."""
    ax.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncols=3,
        fontsize="small",
        frameon=False,
        borderaxespad=0.2,
        columnspacing=1.2,
        handlelength=1.5,
    )


def _cell_types(model: TissueModel) -> tuple[Figure, dict[str, Line2D], Ranges]:
    """Healthy, senescent and vacant fractions of the sites over age (log scale)."""
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
    """Rapamycin exposure (mg/kg, left axis) and oxytocin level (young levels, right) over age."""
    fig = _chart(right=0.75)
    ax = fig.subplots()
    right = ax.twinx()
    lines = {
        "rapamycin_exposure": _line(ax, "rapamycin_exposure", "rapamycin exposure"),
        "oxytocin_level": _line(right, "oxytocin_level", "oxytocin level"),
    }
    ax.set_ylabel("rapamycin (mg/kg)", color=LINE_COLOURS["rapamycin_exposure"])
    right.set_ylabel("oxytocin (young levels)", color=LINE_COLOURS["oxytocin_level"])
    _legend(ax, list(lines.values()))
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
    row = model.readouts.iloc[-1]
    return (
        f"healthy {row['healthy_fraction']:.1%} · senescent {row['senescent_fraction']:.2%}"
        f" · vacant {row['empty_fraction']:.1%} · immune cells {row['immune']:.0f}"
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


# --- Solara components ------------------------------------------------------------------------


@solara.component
def TissueGrid(model: TissueModel) -> None:
    """The day counter, the run's settings, today's readouts, the SASP switch and the grid."""
    update_counter.get()
    show_sasp, set_show_sasp = solara.use_state(False)
    drawing = solara.use_memo(lambda: GridDrawing(model, show_sasp), [model, show_sasp])
    png = solara.use_memo(drawing.png, [drawing, model.time])
    with solara.Column(gap="4px", classes=["tissue-grid"], style={"max-width": "620px"}):
        solara.Text(
            day_text(model),
            classes=["tissue-day"],
            style={"font-size": "1.15em", "font-weight": "bold"},
        )
        settings = getattr(model, "settings", None)
        if settings is not None:
            solara.Text(
                describe(settings), classes=["tissue-settings"], style={"font-size": "0.85em"}
            )
        if getattr(model, "problem", None):
            solara.Text(
                model.problem,
                classes=["tissue-problem"],
                style={"font-size": "0.85em", "color": "#b00020"},
            )
        solara.Text(now_text(model), classes=["tissue-now"], style={"font-size": "0.85em"})
        solara.Switch(label="show the SASP field", value=show_sasp, on_value=set_show_sasp)
        solara.Image(png, width="100%", classes=["tissue-grid-image"])


def make_chart(name: str) -> Callable[[TissueModel], solara.Element]:
    """A Solara component drawing chart `name` of `CHARTS` for a model.

    Raises:
        KeyError: If there is no such chart.
    """
    if name not in CHARTS:
        raise KeyError(f"no chart {name!r}; charts: {', '.join(CHARTS)}")

    @solara.component
    def Chart(model: TissueModel) -> None:
        update_counter.get()
        drawing = solara.use_memo(lambda: ChartDrawing(model, name), [model])
        png = solara.use_memo(lambda: drawing.png(model.readouts), [drawing, model.time])
        solara.Image(png, width="100%", classes=["tissue-chart"])

    return Chart

"""The browser view of the agents engine: a Solara page in the manner of Mesa's SolaraViz.

Run it with `tissue-abm viz [SCENARIO.toml] [--port N]`, or `solara run src/tissue_abm/viz/app.py`
(then it starts with scenarios/untreated.toml). The sidebar has Reset / Play / Step
(`play.Controls`: Play shows a few frames a second while the model runs every day) and the
controls (`controls.model_params`, in Mesa's format; Reset builds a new `ViewedTissue` from
them). The page lays out its own components in two columns — the grid, and the charts over age —
instead of SolaraViz's draggable half-width tiles, which clip a readable 100×100 grid.
"""

from __future__ import annotations

from typing import Any

import solara

from tissue_abm.viz.components import TissueView
from tissue_abm.viz.controls import ViewedTissue, initial_values, model_params, started_with
from tissue_abm.viz.play import Controls, FrameLog, Inputs

NAME = "Tissue aging (agents engine)"

SLIDER_VALUES = """
.v-slider__thumb-container .v-slider__thumb-label-container { display: block !important; }
.v-input__slider { padding-top: 22px; }
"""
"""CSS that shows every slider's value on its thumb at all times (not only while dragging)."""


@solara.component
def Page() -> None:
    """The page; each browser session gets its own model."""
    params = solara.use_memo(lambda: model_params(started_with()), [])
    first = solara.use_memo(lambda: ViewedTissue(**initial_values(params)), [])
    model: solara.Reactive[ViewedTissue] = solara.use_reactive(first)
    values: solara.Reactive[dict[str, Any]] = solara.use_reactive(initial_values(params))
    frames = solara.use_reactive(0)
    log = solara.use_memo(FrameLog, [])
    solara.Style(SLIDER_VALUES)
    with solara.AppBar():
        solara.AppBarTitle(NAME)
        solara.lab.ThemeToggle()
    with solara.Sidebar(), solara.Column():
        with solara.Card("Controls"):
            Controls(model, values, frames, log)
        with solara.Card("Model Parameters"):
            Inputs(params, values)
    TissueView(model.value, frames, log)


page = Page()

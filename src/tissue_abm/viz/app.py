"""The browser view of the agents engine: a Mesa SolaraViz page.

Run it with `tissue-abm viz [SCENARIO.toml] [--port N]`, or `solara run src/tissue_abm/viz/app.py`
(then it starts with scenarios/untreated.toml). SolaraViz gives the sidebar: Step / Play / Reset
and the controls (`controls.model_params`; Reset builds a new `ViewedTissue` from them). The page
lays out its own components in two columns — the grid, and the charts over age — instead of
SolaraViz's draggable half-width tiles, which clip a readable 100×100 grid.
"""

from __future__ import annotations

import solara
from mesa.visualization import SolaraViz

from tissue_abm.viz.components import TissueView
from tissue_abm.viz.controls import ViewedTissue, initial_values, model_params, started_with

NAME = "Tissue aging (agents engine)"

PLAY_INTERVAL_MS = 25
"""Pause between Play's days (ms). Shorter pauses (1 ms) let the play thread change the page's
state during every render pass, and Solara then stops with "Too many renders triggered"."""

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
    solara.Style(SLIDER_VALUES)
    SolaraViz(model, components=[], model_params=params, name=NAME, play_interval=PLAY_INTERVAL_MS)
    TissueView(model.value)


page = Page()

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

from tissue_abm.viz.components import TissueGrid, make_chart
from tissue_abm.viz.controls import ViewedTissue, initial_values, model_params, started_with

NAME = "Tissue aging (agents engine)"

CHARTS = [make_chart(name) for name in ("cell types", "tissue function", "therapy")]
"""The chart components, top to bottom."""


@solara.component
def Page() -> None:
    """The page; each browser session gets its own model."""
    params = solara.use_memo(lambda: model_params(started_with()), [])
    first = solara.use_memo(lambda: ViewedTissue(**initial_values(params)), [])
    model: solara.Reactive[ViewedTissue] = solara.use_reactive(first)
    SolaraViz(model, components=[], model_params=params, name=NAME, play_interval=50)
    with solara.ColumnsResponsive(12, large=6):
        TissueGrid(model.value)
        with solara.Column(gap="8px", classes=["tissue-charts"], style={"max-width": "620px"}):
            for chart in CHARTS:
                chart(model.value)


page = Page()

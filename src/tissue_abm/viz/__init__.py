"""The browser view: a Mesa SolaraViz page of the agents engine (`tissue-abm viz`).

- `controls` — the page's controls (Mesa `model_params`) and `ViewedTissue`, the `TissueModel`
  that SolaraViz's Reset builds from them;
- `components` — the drawings: the grid as one image with immune cells on top (or the SASP
  field), and charts of the readouts over age;
- `app` — the page itself (`solara run src/tissue_abm/viz/app.py`);
- `serve` — starting the Solara server, offline (front-end files from `solara-assets`).

Only `serve` is imported by the command line; the others load Solara and are imported by the
server process.
"""

"""The browser view: a Solara page of the agents engine, after Mesa's SolaraViz (`tissue-abm viz`).

- `controls` — the page's controls (in Mesa's `model_params` format) and `ViewedTissue`, the
  `TissueModel` that Reset builds from them;
- `play` — Reset, Play and Step: Play runs the model every day and shows a few frames a second;
- `components` — the drawings: the grid as one image with immune cells on top (or the SASP
  field), and charts of the readouts over age;
- `app` — the page itself (`solara run src/tissue_abm/viz/app.py`);
- `serve` — starting the Solara server, offline (front-end files from `solara-assets`).

Only `serve` is imported by the command line; the others load Solara and are imported by the
server process.
"""

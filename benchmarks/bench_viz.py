"""Days per second of Play, and the time of one Step, in the browser view at 100×100.

Targets: Play at least 20 days/s; a Step with its redraw at most 0.5 s.

Renders the page in-process (`solara.render`, no browser), as the server does: the untreated
scenario on its 100×100 grid, first run on to `--warmup-days` (12 months by default, when
senescence, SASP and immune traffic are under way). Then:

- Play: clicks Play at the page's defaults, lets it run `--play-seconds` or until the run ends
  (every day is simulated; a few frames a second are drawn and put into the page's widgets, as
  the server does), pauses, waits for the frame of the last day, and prints the days per second
  (days shown after Pause, over the time from Play to Pause) and the frames per second;
  `--rounds` times, with the median.
- Step: clicks Step `--repeats` times and prints the median time of a click: the model's day
  plus the redraw of the grid image and the three charts (PNG) and the widget updates. The parts
  are timed separately too: the model's day alone, the grid and the charts redrawn (blitted) to
  PNG, and the first drawing of all four figures (as after Reset).

Sending the PNGs to the browser and showing them is not included.

    python benchmarks/bench_viz.py [--repeats 15] [--warmup-days 275] [--sasp]
                                   [--play-seconds 5] [--rounds 3]
"""

import argparse
import contextlib
import io
import re
import statistics
import time

import ipyvuetify as v
import solara

from tissue_abm.viz import app, components
from tissue_abm.viz.controls import ViewedTissue, initial_values, model_params


@solara.component
def AppPage():
    with solara.AppLayout():
        app.Page()


def median_ms(action, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="Step clicks timed (default 15)")
    parser.add_argument(
        "--warmup-days",
        type=int,
        default=275,
        help="days run before timing (default 275: to 12 months of age)",
    )
    parser.add_argument("--sasp", action="store_true", help="time with the SASP field shown")
    parser.add_argument(
        "--play-seconds",
        type=float,
        default=5.0,
        help="seconds of each Play round, at most: until the run ends (default 5)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="Play rounds (default 3)")
    args = parser.parse_args()

    with contextlib.redirect_stdout(io.StringIO()):  # outside Jupyter, the app bar is printed
        _, rc = solara.render(AppPage(), handle_error=False)
    step = rc.find(v.Btn, children=["Step"]).widget
    interval = rc.find(v.Slider, label="Days per Step").widget
    day = rc.find(v.Html, class_="tissue-day").widget
    frames = [0]
    day.observe(lambda change: frames.__setitem__(0, frames[0] + 1), "children")

    def warm_up() -> None:
        """Reset, then run on to the warm-up age in one Step."""
        rc.find(v.Btn, children=["Reset"]).widget.click()
        if args.warmup_days:
            interval.v_model = args.warmup_days
            step.click()
            interval.v_model = 1

    def today() -> int:
        return int(re.match(r"Day (\d+)", day.children[0]).group(1))

    if args.sasp:
        rc.find(v.Switch, label="show the SASP field").widget.v_model = True

    def settled() -> int:
        """The day shown once the page has shown its last frame (no new one for 0.5 s)."""
        seen, since = frames[0], time.perf_counter()
        while time.perf_counter() - since < 0.5:
            time.sleep(0.02)
            if frames[0] != seen:
                seen, since = frames[0], time.perf_counter()
        return today()

    play_button = rc.find(v.Btn, children=["▶"]).widget

    def playing() -> bool:
        return play_button.children == ["❚❚"]

    rates, frame_rates = [], []
    for _ in range(args.rounds):  # each round from the same day
        warm_up()
        first, shown, start = today(), frames[0], time.perf_counter()
        play_button.click()
        while time.perf_counter() - start < args.play_seconds and playing():
            time.sleep(0.1)
        if playing():  # else the run ended
            play_button.click()
        seconds = time.perf_counter() - start
        frame_rates.append((frames[0] - shown) / seconds)
        rates.append((settled() - first) / seconds)
    play = statistics.median(rates)

    warm_up()
    click = median_ms(step.click, args.repeats)
    model = ViewedTissue(**initial_values(model_params(None)))
    for _ in range(args.warmup_days):
        model.step()
    model_day = median_ms(model.step, args.repeats)
    grid_drawing = components.GridDrawing(model, args.sasp)
    chart_drawings = [components.ChartDrawing(model, name) for name in components.CHARTS]
    grid = median_ms(grid_drawing.png, args.repeats)
    charts = median_ms(
        lambda: [chart.png(model.readouts) for chart in chart_drawings], args.repeats
    )
    first = median_ms(
        lambda: [
            components.GridDrawing(model, args.sasp).png(),
            *(
                components.ChartDrawing(model, name).png(model.readouts)
                for name in components.CHARTS
            ),
        ],
        3,
    )
    size = model.tissue.data.shape
    print(
        f"browser view, {size[0]}×{size[1]}, {'SASP field' if args.sasp else 'site states'}; "
        f"{day.children[0]}"
    )
    print(
        f"Play: {play:.1f} days/s (median of {args.rounds} rounds of {args.play_seconds:g} s: "
        f"{', '.join(f'{r:.1f}' for r in rates)}; target >= 20), "
        f"{statistics.median(frame_rates):.1f} frames/s"
    )
    print(f"Step + redraw (one click, median of {args.repeats}): {click:.0f} ms (target <= 500 ms)")
    rest = click - model_day - grid - charts
    print(
        f"  of which: model day {model_day:.0f} ms, grid figure {grid:.0f} ms, "
        f"charts {charts:.0f} ms, the rest (Solara, widgets) ~{rest:.0f} ms"
    )
    print(f"first drawing of the four figures (after Reset; axes, ticks, legends): {first:.0f} ms")
    rc.close()


if __name__ == "__main__":
    main()

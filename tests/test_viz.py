"""The browser view in-process: controls, the model they build, the drawings, the page, the CLI.

The page is rendered with `solara.render` (no browser) inside an `AppLayout`, so that its
sidebar (Step, Play, Reset, the controls) is rendered too; buttons are clicked and controls set on
the widgets, as the browser would.
"""

from __future__ import annotations

import inspect
import re
import signal
import socket
import time
from pathlib import Path

import ipyvuetify as v
import ipywidgets
import numpy as np
import pytest
import solara

from factories import assert_one_line_error
from tissue_abm import cli
from tissue_abm.biology.therapy import Oxytocin, Rapamycin, Senolytic
from tissue_abm.runs.scenario import ScenarioError, load_scenario
from tissue_abm.viz import app, components, controls, play, serve
from tissue_abm.viz.controls import ViewedTissue, apply_controls, initial_values, model_params

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"


def scenario(name: str):
    return load_scenario(SCENARIOS / f"{name}.toml")


# --- the controls and the model they build ----------------------------------------------------


def test_controls_left_as_in_scenario_give_the_scenario_with_seed_and_size():
    combined = scenario("combined")
    settings = apply_controls(combined, seed="7", size=30)
    assert settings.therapy == combined.therapy
    assert settings.parameters == combined.parameters
    assert (settings.seed, settings.size) == (7, 30)
    assert (settings.start_age, settings.end_age) == (combined.start_age, combined.end_age)


def test_a_schedule_overrides_the_scenario_and_none_or_off_removes_a_drug():
    untreated, combined, senolytic = (
        scenario("untreated"),
        scenario("combined"),
        scenario("senolytic"),
    )
    rapa = apply_controls(
        untreated, rapamycin="daily", rapamycin_dose=2.0, rapamycin_start_age=100
    ).therapy.rapamycin
    assert rapa == Rapamycin(dose=2.0, every=1, start_age=100)
    cycled = apply_controls(
        combined, oxytocin="5 days on, 2 off", oxytocin_dose=0.5, oxytocin_start_age=200
    ).therapy
    assert cycled.oxytocin == Oxytocin(dose=0.5, every=1, on_days=5, off_days=2, start_age=200)
    assert cycled.rapamycin == combined.therapy.rapamycin  # left as in the scenario
    assert apply_controls(combined, rapamycin="none").therapy.rapamycin is None
    assert apply_controls(combined, rapamycin="weekly").therapy.rapamycin.every == 7
    assert apply_controls(untreated, senolytic="on").therapy.senolytic == Senolytic(
        start_age=untreated.start_age
    )
    assert apply_controls(senolytic, senolytic="on").therapy.senolytic == (
        senolytic.therapy.senolytic
    )
    assert apply_controls(senolytic, senolytic="off").therapy.senolytic is None
    assert apply_controls(untreated, immune_kill=0.25).parameters.immune_kill == 0.25


@pytest.mark.parametrize(
    ("controls_given", "words"),
    [
        ({"seed": "abc"}, ["seed = 'abc'", "whole number"]),
        ({"seed": "-3"}, ["seed = '-3'"]),
        ({"size": 2}, ["size = 2", "from 3"]),
        ({"rapamycin": "hourly"}, ["rapamycin schedule 'hourly'", "daily"]),
        ({"senolytic": "maybe"}, ["senolytic 'maybe'", "on"]),
        ({"rapamycin": "daily", "rapamycin_dose": -1.0}, ["therapy.rapamycin.dose = -1.0"]),
    ],
)
def test_bad_control_values_are_one_line_errors(controls_given, words):
    with pytest.raises(ScenarioError) as caught:
        apply_controls(scenario("untreated"), **controls_given)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_model_params_start_at_the_given_scenario_and_build_it():
    params = model_params(SCENARIOS / "combined.toml")
    assert params["scenario_file"]["value"] == "combined"
    assert set(params["scenario_file"]["values"]) == {
        "combined",
        "oxytocin",
        "rapamycin",
        "senolytic",
        "untreated",
    }
    assert params["rapamycin_start_age"].value == 365
    assert params["immune_kill"].value == scenario("combined").parameters.immune_kill
    assert set(params) <= set(inspect.signature(ViewedTissue).parameters)  # Reset passes all
    model = ViewedTissue(**initial_values(params))
    assert model.settings.therapy == scenario("combined").therapy
    assert model.tissue.data.shape == (100, 100)
    assert model.start_age == 90 and model.days == 640


def test_a_scenario_file_outside_the_folder_is_offered_and_picked(tmp_path, monkeypatch):
    own = tmp_path / "mine.toml"
    own.write_text('name = "mine"\nsize = 12\nstart_age = 100\nend_age = 130\n', "utf-8")
    monkeypatch.setenv(serve.SCENARIO_ENV, str(own))
    params = model_params(controls.started_with())
    assert params["scenario_file"]["value"] == "mine"
    assert "untreated" in params["scenario_file"]["values"]
    model = ViewedTissue(**initial_values(params))
    assert (model.settings.name, model.tissue.data.shape, model.days) == ("mine", (12, 12), 30)
    with pytest.raises(ScenarioError, match="scenario 'nope' is not allowed"):
        ViewedTissue("nope")


def test_viewed_tissue_is_the_agents_engine_with_the_same_run():
    from tissue_abm.engines.agents.model import TissueModel

    file = scenario("rapamycin")
    viewed = ViewedTissue("rapamycin", rng=3, size=12)
    reference = TissueModel(
        params=file.parameters,
        therapy=file.therapy,
        size=12,
        start_age=file.start_age,
        days=file.days,
        torus=file.torus,
        rng=3,
    )
    for _ in range(5):
        viewed.step()
        reference.step()
    assert viewed.readouts.equals(reference.readouts)
    assert "rng" in inspect.signature(ViewedTissue.__init__).parameters  # Mesa 4: rng, not seed


# --- the drawings -----------------------------------------------------------------------------


@pytest.fixture
def small_model():
    model = ViewedTissue("combined", rng=5, size=20, rapamycin="daily", rapamycin_start_age=90)
    for _ in range(6):
        model.step()
    return model


def test_grid_is_one_image_of_the_states_with_immune_markers_on_top(small_model):
    fig = components.grid_figure(small_model)
    ax = fig.axes[0]
    assert len(ax.images) == 1
    np.testing.assert_array_equal(ax.images[0].get_array(), small_model.tissue.data.T)
    markers = ax.collections[0].get_offsets()
    assert sorted(map(tuple, np.asarray(markers).astype(int))) == sorted(
        zip(*np.nonzero(small_model.immune.data), strict=True)
    )
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["empty", "healthy", "senescent", "immune cell"]


def test_sasp_switch_draws_the_field_on_one_scale_with_its_unit_and_marks_senescent_cells(
    small_model,
):
    drawing = components.GridDrawing(small_model, show_sasp=True)
    drawing.update()
    ax, colour_bar = drawing.figure.axes
    np.testing.assert_allclose(ax.images[0].get_array(), small_model.sasp.data.T)
    assert "one mature senescent cell's daily secretion" in colour_bar.get_ylabel()
    outlined, immune = ax.collections  # senescent outlines, then the immune markers on top
    assert drawing.markers is immune
    senescent = zip(*np.nonzero(small_model.tissue.data == 2), strict=True)
    assert sorted(map(tuple, outlined.get_offsets().astype(int))) == sorted(senescent)
    scale = ax.images[0].get_clim()
    for _ in range(5):  # the colour scale stays while the field changes
        small_model.step()
        drawing.update()
        assert ax.images[0].get_clim() == scale
    assert scale[1] >= small_model.params.sasp_secretion  # a mature cell's site fits the scale


def test_charts_plot_the_readouts_over_age(small_model):
    table = small_model.readouts
    lines = {
        line.get_label(): line
        for name in components.CHARTS
        for ax in components.chart_figure(small_model, name, table).axes
        for line in ax.get_lines()
    }
    for name, column in [
        ("senescent fraction", "senescent_fraction"),
        ("healthy fraction", "healthy_fraction"),
        ("empty fraction", "empty_fraction"),
        ("tissue function", "tissue_function"),
        ("mean SASP", "mean_sasp"),
        ("rapamycin exposure", "rapamycin_exposure"),
        ("oxytocin level", "oxytocin_level"),
    ]:
        np.testing.assert_allclose(lines[name].get_xdata(), table["age"])
        np.testing.assert_allclose(lines[name].get_ydata(), table[column])
    assert table["rapamycin_exposure"].iloc[-1] > 0  # the daily rapamycin acts from day 0


def test_blitted_redraws_equal_full_redraws(small_model):
    """Each day only the data is drawn over the kept frame; the picture is the same."""
    grid = components.GridDrawing(small_model, show_sasp=True)
    chart = components.ChartDrawing(small_model, "tissue function")
    grid.png(), chart.png(small_model.readouts)  # the first frames
    for _ in range(3):
        small_model.step()
    pictures = [grid.png(), chart.png(small_model.readouts)]
    fresh = [
        components.GridDrawing(small_model, show_sasp=True).png(),
        components.ChartDrawing(small_model, "tissue function").png(small_model.readouts),
    ]
    for blitted, full in zip(pictures, fresh, strict=True):
        assert blitted == full


def test_nice_axis_tops_round_up_to_few_steps():
    assert [components.nice_top(v, 0.001) for v in (0.0, 0.0011, 0.013, 0.7, 1.0, 3.3, 9.1)] == [
        0.001,
        0.0012,
        0.015,
        0.8,
        1.0,
        4.0,
        10.0,
    ]
    assert components.nice_top(0.2, 1.2) == 1.2


def test_day_counter_counts_days_and_says_when_the_run_ends():
    model = ViewedTissue("untreated", size=5)
    model.days = 2
    model.running = True
    assert components.day_text(model).startswith("Day 0 of 2 · age 90 days (3.0 months)")
    model.step()
    model.step()
    assert components.day_text(model).startswith("Day 2 of 2 (end of run) · age 92 days")


# --- compare, treatment marks, downloads, large grids --------------------------------------------


def test_a_reference_run_has_the_same_seed_and_grid_and_its_own_therapy():
    treated = ViewedTissue("combined", rng=3, size=15, compare="untreated")
    plain = ViewedTissue("untreated", rng=3, size=15)
    reference = treated.reference
    assert reference.therapy.rapamycin is None and reference.therapy.oxytocin is None
    assert reference.params == treated.params and reference.tissue.data.shape == (15, 15)
    for _ in range(4):
        treated.step()
        plain.step()
    assert reference.time == treated.time == 4
    # the untreated reference is the untreated scenario's run (same seed, grid, rules)
    np.testing.assert_array_equal(reference.tissue.data, plain.tissue.data)
    assert ViewedTissue("untreated", size=10).reference is None  # no comparison by default
    senolytic = ViewedTissue("untreated", size=10, compare="senolytic").reference
    assert senolytic.therapy.senolytic == scenario("senolytic").therapy.senolytic
    with pytest.raises(ScenarioError, match="compare with 'other' is not allowed"):
        ViewedTissue("untreated", size=10, compare="other")


def test_charts_draw_the_reference_dashed_and_mark_treatment_on_every_panel():
    model = ViewedTissue(
        "untreated", rng=2, size=15, rapamycin="weekly", rapamycin_start_age=91, compare="untreated"
    )
    for _ in range(20):
        model.step()
    doses = [age for age in range(91, 111) if (age - 91) % 7 == 0]  # 91, 98, 105 within the run
    for name in components.CHARTS:
        drawing = components.ChartDrawing(model, name)
        drawing.update(model.readouts)
        reference = model.reference.readouts
        for column, line in drawing.reference_lines.items():
            assert line.get_linestyle() == "--"
            np.testing.assert_allclose(line.get_ydata(), reference[column])
        panels = {tuple(ax.get_position().bounds) for ax in drawing.figure.axes}
        ticks = [
            c
            for ax in drawing.figure.axes
            for c in ax.collections
            if np.asarray(c.get_segments()).size
        ]
        assert len(ticks) == len(panels)  # one row of dose ticks on each panel
        for collection in ticks:
            ages = sorted(float(seg[0][0]) for seg in collection.get_segments())
            assert ages[: len(doses)] == doses
        windows = [p for ax in drawing.figure.axes for p in ax.patches]
        assert len(windows) == len(panels)  # the shaded window, once a panel
        assert windows[0].get_x() == 91


def test_the_untreated_run_has_no_treatment_marks():
    model = ViewedTissue("untreated", size=10)
    for name in components.CHARTS:
        figure = components.chart_figure(model, name)
        assert not any(ax.patches or ax.collections for ax in figure.axes)


def test_downloads_hold_the_columns_of_tissue_abm_run(tmp_path):
    import io
    import zipfile

    import pandas as pd

    from tissue_abm.runs.run import run_scenario

    model = ViewedTissue("untreated", rng=4, size=10)
    for _ in range(3):
        model.step()
    from_csv = pd.read_csv(io.BytesIO(components.readouts_csv(model)))
    from_parquet = pd.read_parquet(io.BytesIO(components.readouts_parquet(model)))
    run = run_scenario(model.settings.with_overrides(days=3, engine="agents")).readouts
    assert list(from_csv.columns) == list(from_parquet.columns) == list(run.columns)
    assert len(from_parquet) == 4 and set(from_parquet["engine"]) == {"agents"}
    np.testing.assert_allclose(from_parquet["senescent_fraction"], run["senescent_fraction"])
    np.testing.assert_allclose(from_csv["tissue_function"], run["tissue_function"])
    for fmt, magic in (("png", b"\x89PNG"), ("svg", b"<?xml")):
        archive = zipfile.ZipFile(io.BytesIO(components.figures_zip(model, fmt)))
        names = archive.namelist()
        assert f"grid.{fmt}" in names and len(names) == 1 + len(components.CHARTS)
        assert all(archive.read(name).startswith(magic) for name in names)


def test_settings_line_says_when_the_page_changed_the_therapies():
    plain = ViewedTissue("untreated", size=10)
    assert controls.describe(plain.settings, plain.picked).startswith("untreated · seed")
    changed = ViewedTissue("untreated", size=10, rapamycin="daily", senolytic="on")
    line = controls.describe(changed.settings, changed.picked)
    assert line.startswith("untreated with the page's therapies: rapamycin + senolytic · ")


def test_immune_cells_stay_visible_on_a_large_grid():
    model = ViewedTissue("untreated", rng=1, size=200)
    drawing = components.GridDrawing(model)
    drawing.update()
    site_pixels = drawing.figure.dpi * drawing.figure.axes[0].get_position().width * 5.4 / 200
    marker_pixels = 2 * np.sqrt(drawing.markers.get_sizes()[0] / np.pi) * drawing.figure.dpi / 72
    assert site_pixels >= 2.5 and marker_pixels >= 3


# --- the page ---------------------------------------------------------------------------------


@solara.component
def AppPage():
    """The page inside Solara's app layout, as the server shows it (sidebar included)."""
    with solara.AppLayout():
        app.Page()


@pytest.fixture
def page():
    _, rc = solara.render(AppPage(), handle_error=False)
    yield rc
    rc.close()


def text(rc, css_class: str) -> str:
    return rc.find(v.Html, class_=css_class).widget.children[0]


def image(rc, css_class: str) -> bytes:
    return bytes(rc.find(ipywidgets.Image, _dom_classes=("solara-image", css_class)).widget.value)


def click(rc, label: str) -> None:
    rc.find(v.Btn, children=[label]).widget.click()


def test_page_shows_day_zero_and_steps_day_by_day(page):
    assert text(page, "tissue-day").startswith("Day 0 of 640 · age 90 days")
    assert "untreated · seed 1 · 100×100 sites" in text(page, "tissue-settings")
    grid, charts = (
        image(page, "tissue-grid-image"),
        [
            bytes(w.value)
            for w in page.find(
                ipywidgets.Image, _dom_classes=("solara-image", "tissue-chart")
            ).widgets
        ],
    )
    assert grid.startswith(b"\x89PNG") and len(charts) == 3
    click(page, "Step")
    assert text(page, "tissue-day").startswith("Day 1 of 640 · age 91 days")
    assert image(page, "tissue-grid-image") != grid
    after = [
        bytes(w.value)
        for w in page.find(ipywidgets.Image, _dom_classes=("solara-image", "tissue-chart")).widgets
    ]
    assert all(new != old for new, old in zip(after, charts, strict=True))
    click(page, "Step")
    assert text(page, "tissue-day").startswith("Day 2 of 640")


def wait_for(condition, timeout: float = 60.0) -> None:
    """Wait until `condition()` holds (polling); fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def button(rc, label: str):
    return rc.find(v.Btn, children=[label]).widget


def test_play_shows_frames_while_it_runs_and_the_last_day_after_pause(monkeypatch):
    built = []

    class Recorded(ViewedTissue):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            built.append(self)

    monkeypatch.setattr(app, "ViewedTissue", Recorded)
    _, rc = solara.render(AppPage(), handle_error=False)
    try:
        model = built[-1]
        shown = []  # the days the page showed
        rc.find(v.Html, class_="tissue-day").widget.observe(
            lambda change: shown.append(int(re.match(r"Day (\d+)", change["new"][0]).group(1))),
            "children",
        )
        click(rc, "▶")
        wait_for(lambda: shown)  # a frame while Play runs
        assert button(rc, "Step").disabled
        click(rc, "❚❚")
        wait_for(lambda: not button(rc, "Step").disabled)  # Play's thread ended
        day = round(model.time)
        assert day >= 1 and shown == sorted(shown) and shown[-1] == day
        assert text(rc, "tissue-day").startswith(f"Day {day} of 640")  # the last day is shown
        time.sleep(0.3)
        assert round(model.time) == day  # Play has stopped
        click(rc, "Step")
        assert round(model.time) == day + 1
        assert text(rc, "tissue-day").startswith(f"Day {day + 1} of 640")
    finally:
        rc.close()


def test_play_runs_to_the_end_of_the_run_and_shows_its_last_day(tmp_path, monkeypatch):
    own = tmp_path / "short.toml"
    own.write_text('name = "short"\nsize = 12\nstart_age = 100\nend_age = 130\n', "utf-8")
    monkeypatch.setenv(serve.SCENARIO_ENV, str(own))
    _, rc = solara.render(AppPage(), handle_error=False)
    try:
        click(rc, "▶")
        wait_for(lambda: "end of run" in text(rc, "tissue-day"))
        assert text(rc, "tissue-day").startswith("Day 30 of 30 (end of run)")
        wait_for(lambda: not rc.find(v.Btn, children=["❚❚"]).widgets)  # Play stopped ...
        assert button(rc, "▶").disabled and button(rc, "Step").disabled  # ... the run is over
    finally:
        rc.close()


class Days:
    """A model for `play`: each day takes `day_s` on the clock `now`; it runs `last` days."""

    def __init__(self, now: list[float], day_s: float, last: int) -> None:
        self.now, self.day_s, self.last, self.days = now, day_s, last, 0
        self.running = True

    def step(self) -> None:
        self.now[0] += self.day_s
        self.days += 1
        self.running = self.days < self.last


def test_play_shows_a_frame_when_frame_s_and_a_time_for_drawing_passed_and_the_last_day():
    now = [0.0]
    shown = []

    def show():  # drawing a frame takes 0.5 s
        shown.append(model.days)
        now[0] += 0.5

    def run(playing, draw_share):
        now[0], shown[:] = 0.0, []
        return play.play(
            model, playing, show, lambda: 0.0, 1.0, draw_share=draw_share, clock=lambda: now[0]
        )

    model = Days(now, day_s=0.25, last=20)  # days of 0.25 s
    assert run(lambda: True, draw_share=0.5) == 20
    assert shown == [4, 8, 12, 16, 20]  # 1 s after the end of the previous frame; 20 the last
    model = Days(now, day_s=0.25, last=20)
    run(lambda: True, draw_share=0.25)  # frames of 0.5 s: at least 1.5 s between them
    assert shown == [4, 10, 16, 20]
    model = Days(now, day_s=0.25, last=20)
    run(lambda: model.days < 6, draw_share=0.5)
    assert shown == [4, 6]  # paused after day 6: its frame


def test_play_shows_the_last_day_also_when_a_day_fails():
    now = [0.0]
    model = Days(now, day_s=0.25, last=20)
    shown = []
    failing = Days.step

    def step(self):
        failing(self)
        if self.days == 3:
            raise RuntimeError("day 3 failed")

    model.step = step.__get__(model)
    with pytest.raises(RuntimeError, match="day 3 failed"):
        play.play(
            model, lambda: True, lambda: shown.append(model.days), frame_s=1.0, clock=lambda: now[0]
        )
    assert shown == [3]


def test_frame_log_waits_until_the_frame_is_drawn():
    log = play.FrameLog()
    assert not log.wait(1, timeout=0.01)
    log.drawn(2)
    assert log.wait(1, timeout=0) and log.wait(2, timeout=0) and not log.wait(3, timeout=0.01)
    assert log.last == 2


def test_sasp_switch_on_the_page_redraws_the_grid(page):
    before = image(page, "tissue-grid-image")
    page.find(v.Switch, label="show the SASP field").widget.v_model = True
    assert image(page, "tissue-grid-image") != before


def test_reset_builds_a_model_with_the_changed_controls(page):
    click(page, "Step")
    page.find(v.Slider, label="Grid size (10-200 sites per side)").widget.v_model = 40
    page.find(v.Select, label="Rapamycin schedule").widget.v_model = "daily"
    page.find(v.Select, label="Scenario").widget.v_model = "oxytocin"
    seed = page.find(v.TextField, label="Seed").widget
    seed.v_model = "12"
    seed.fire_event("focusout", None)
    assert text(page, "tissue-day").startswith("Day 1 ")  # nothing applies before Reset
    click(page, "Reset")
    assert text(page, "tissue-day").startswith("Day 0 of 640")
    settings = text(page, "tissue-settings")
    assert settings.startswith(  # the oxytocin file's therapy, with rapamycin added on the page
        "oxytocin with the page's therapies: rapamycin + oxytocin · seed 12 · 40×40 sites · "
        "rapamycin 1 mg/kg daily from 90 d · oxytocin 1 young levels daily from 365 d"
    )
    click(page, "Step")
    assert "rapamycin 0.00 mg/kg" not in text(page, "tissue-now")  # the new regimen acts


def test_compare_on_the_page_shows_two_grids_and_offers_the_downloads(page):
    assert not page.find(ipywidgets.Image, _dom_classes=("solara-image", "tissue-reference-image"))
    page.find(v.Select, label="Compare with (same seed and grid)").widget.v_model = "untreated"
    page.find(v.Select, label="Rapamycin schedule").widget.v_model = "daily"
    click(page, "Reset")
    reference = image(page, "tissue-reference-image")
    assert reference.startswith(b"\x89PNG") and reference != image(page, "tissue-grid-image")
    click(page, "Step")
    assert image(page, "tissue-reference-image") != reference
    labels = [w.children[-1] for w in page.find(v.Btn).widgets if w.children]
    assert {
        "Download readouts CSV",
        "Download readouts Parquet",
        "Download figures PNG",
        "Download figures SVG",
    } <= set(labels)


def test_a_bad_seed_on_the_page_is_reported_and_the_scenario_seed_used(page):
    seed = page.find(v.TextField, label="Seed").widget
    seed.v_model = "12x"
    seed.fire_event("keyup.enter", None)
    click(page, "Reset")
    assert text(page, "tissue-problem") == (
        "seed = '12x' is not allowed; allowed: a whole number >= 0; the scenario's seed is used"
    )
    assert text(page, "tissue-settings").startswith("untreated · seed 1 ·")
    click(page, "Step")
    assert text(page, "tissue-day").startswith("Day 1 of 640")
    seed.v_model = "4"
    seed.fire_event("keyup.enter", None)
    click(page, "Reset")
    assert not page.find(v.Html, class_="tissue-problem").widgets
    assert text(page, "tissue-settings").startswith("untreated · seed 4 ·")


# --- the command line and the server ----------------------------------------------------------


def test_viz_rejects_a_bad_scenario_file_in_one_line_before_starting(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(
        "tissue_abm.viz.serve.start_server", lambda *a, **k: pytest.fail("server started")
    )
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nsize = 1\n', "utf-8")
    assert cli.main(["viz", str(bad)]) == 2
    assert_one_line_error(capsys.readouterr().err, str(bad), "size = 1 is not allowed")
    assert cli.main(["viz", str(tmp_path / "missing.toml")]) == 2
    assert_one_line_error(capsys.readouterr().err, "no such scenario file")


def test_viz_refuses_a_port_in_use_or_out_of_range(capsys, monkeypatch):
    monkeypatch.setattr(
        "tissue_abm.viz.serve.start_server", lambda *a, **k: pytest.fail("server started")
    )
    with socket.socket() as taken:
        taken.bind((serve.HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["viz", "--port", str(port)]) == 2
    assert_one_line_error(capsys.readouterr().err, f"port {port}", "--port")
    with pytest.raises(SystemExit) as stop:
        cli.main(["viz", "--port", "70000"])
    assert stop.value.code == 2
    assert_one_line_error(capsys.readouterr().err, "'70000' is not allowed")


def test_viz_starts_the_server_on_the_scenario_and_port(capsys, monkeypatch):
    started = []

    class Server:
        def wait(self, timeout=None):
            return 0

        def kill(self):
            pytest.fail("killed")

    def fake(scenario, port):
        started.append((scenario, port))
        return Server()

    monkeypatch.setattr("tissue_abm.viz.serve.start_server", fake)
    assert cli.main(["viz", str(SCENARIOS / "combined.toml"), "--port", "8123"]) == 0
    assert started == [(SCENARIOS / "combined.toml", 8123)]
    assert "http://127.0.0.1:8123" in capsys.readouterr().out


def test_server_command_and_environment_are_local_and_offline(tmp_path):
    command = serve.server_command(8124)
    assert command[1:4] == ["-m", "tissue_abm.viz.serve", "run"] and Path(command[4]) == serve.APP
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "8124"
    env = serve.server_environment(Path("scenarios/combined.toml"), base={"KEEP": "1"})
    assert env[serve.SCENARIO_ENV] == str((Path("scenarios") / "combined.toml").resolve())
    assert env["SOLARA_ASSETS_PROXY"] == "true" and env["KEEP"] == "1"
    assert serve.SCENARIO_ENV not in serve.server_environment(
        None, base={serve.SCENARIO_ENV: "stale.toml"}
    )


def test_solara_assets_hold_every_front_end_file_the_page_asks_for():
    """Offline: each versioned CDN package Solara's page template names is in the local cache."""
    import solara.server.settings as server_settings

    template = Path(solara.__file__).parent / "server" / "templates" / "solara.html.j2"
    wanted = set(
        re.findall(r"\{\{cdn\}\}/((?:@[\w-]+/)?[\w-]+@\d[\w.-]*)/", template.read_text("utf-8"))
    )
    assert "requirejs@2.3.6" in wanted
    cache = server_settings.assets.proxy_cache_dir
    assert (cache / server_settings.assets.fontawesome_path.lstrip("/")).is_file()
    vuetify3 = {name for name in wanted if "vuetify3" in name}  # only for ipyvuetify 3 (pinned <2)
    missing = sorted(name for name in wanted - vuetify3 if not (cache / name).is_dir())
    assert not missing, f"not in {cache} (install solara-assets): {missing}"


# --- who may talk to the server, and how long it lives -------------------------------------------


def guarded(scope: dict) -> tuple[list, list]:
    """Call `OriginGuard` (server on 127.0.0.1:8765) with `scope`: (what it sent, the calls
    it passed on to the application)."""
    import asyncio

    passed, sent = [], []

    async def application(scope, receive, send):
        passed.append(scope["path"])

    async def receive():
        return {"type": f"{scope['type']}.connect"}

    async def send(message):
        sent.append(message)

    guard = serve.OriginGuard(application, serve.HOST, 8765)
    asyncio.run(guard({"path": "/", **scope}, receive, send))
    return sent, passed


def headers(**values: str) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode()) for name, value in values.items()]


@pytest.mark.parametrize("kind", ["websocket", "http"])
@pytest.mark.parametrize(
    ("given", "allowed"),
    [
        pytest.param({"host": "127.0.0.1:8765", "origin": "http://127.0.0.1:8765"}, True, id="own"),
        pytest.param({"host": "localhost:8765", "origin": "http://localhost:8765"}, True, id="lh"),
        pytest.param({"host": "127.0.0.1:8765"}, True, id="no-origin"),
        pytest.param({"host": "127.0.0.1:8765", "origin": "http://evil.example"}, False, id="web"),
        pytest.param({"host": "127.0.0.1:8765", "origin": "null"}, False, id="file-page"),
        pytest.param({"host": "127.0.0.1:8765", "origin": "http://127.0.0.1:9"}, False, id="port"),
        pytest.param({"host": "evil.example:8765"}, False, id="dns-rebinding"),
        pytest.param({}, False, id="no-host"),
    ],
)
def test_only_the_servers_own_pages_may_connect(kind, given, allowed):
    sent, passed = guarded({"type": kind, "headers": headers(**given)})
    if allowed:
        assert (sent, passed) == ([], ["/"])
    elif kind == "websocket":
        assert (sent, passed) == ([{"type": "websocket.close", "code": 1008}], [])
    else:
        assert sent[0]["status"] == 403 and passed == []


def test_lifespan_events_pass_the_guard():
    assert guarded({"type": "lifespan"}) == ([], ["/"])


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_the_real_server_refuses_foreign_websockets_and_dies_with_tissue_abm_viz(stop):
    """`tissue-abm viz` as a user starts it; a WebSocket from another origin is refused (403),
    one from the page's origin accepted; when `tissue-abm viz` ends, however, so does the
    Solara server, and the port is free again."""
    import asyncio
    import subprocess
    import sys
    import time
    import urllib.request

    import psutil
    import websockets

    with socket.socket() as probe:
        probe.bind((serve.HOST, 0))
        port = probe.getsockname()[1]
    viz = subprocess.Popen(
        [sys.executable, "-m", "tissue_abm.cli", "viz", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert viz.poll() is None and time.monotonic() < deadline, "the server did not start"
            try:
                urllib.request.urlopen(f"http://{serve.HOST}:{port}/readyz", timeout=5)
                break
            except OSError:
                time.sleep(0.2)
        server = psutil.Process(viz.pid).children()
        assert len(server) == 1

        async def connect(origin: str) -> str:
            url = f"ws://{serve.HOST}:{port}/jupyter/api/kernels/k1/channels?session_id=s1"
            try:
                async with websockets.connect(url, origin=origin, open_timeout=30):
                    return "accepted"
            except websockets.InvalidStatus as refused:
                return f"refused {refused.response.status_code}"

        assert asyncio.run(connect("http://evil.example")) == "refused 403"
        assert asyncio.run(connect(f"http://{serve.HOST}:{port}")) == "accepted"
        viz.send_signal(stop)
        assert viz.wait(timeout=30) == (128 + stop if stop != signal.SIGKILL else -stop)
        _, alive = psutil.wait_procs(server, timeout=30)
        assert not alive, "the Solara server outlived tissue-abm viz"
    finally:
        viz.kill()
        viz.wait()

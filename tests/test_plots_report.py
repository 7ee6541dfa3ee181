"""Figures and the Markdown report of a results folder."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

from factories import BATCH_DAYS, BATCH_START, CANONICAL, make_batch, synthetic
from tissue_abm import load_results
from tissue_abm.analysis.plots import (
    SCENARIO_COLOURS,
    end_distributions,
    grid_snapshot,
    save_figures,
    snapshot_comparison,
    synergy_bars,
    trajectories,
    treatment_starts,
)
from tissue_abm.analysis.summary import summarise
from tissue_abm.analysis.synergy import synergy
from tissue_abm.biology.rules import DAYS_PER_YEAR
from tissue_abm.cli import main
from tissue_abm.runs.batch import plan_batch, run_batch
from tissue_abm.runs.results import load_snapshots
from tissue_abm.studies.report import markdown_table, number, write_report

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    # Snapshots at the last age only: each snapshot figure takes ~0.3 s to save.
    return make_batch(tmp_path_factory.mktemp("batch"), snapshots=(BATCH_START + BATCH_DAYS,))


@pytest.fixture(scope="module")
def results(batch):
    return load_results(batch)


@pytest.fixture(scope="module")
def snapshots(batch):
    return load_snapshots(batch)


@pytest.fixture(scope="module")
def report(batch):
    """The report of the batch, written once for the report tests (figures are slow to save)."""
    return write_report(batch)


def is_png(path) -> bool:
    return path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG


# --- figures ----------------------------------------------------------------------------------


def test_trajectories_draw_a_line_and_band_per_scenario_in_each_panel(results):
    readouts = ("senescent_fraction", "tissue_function", "mean_sasp", "immune")
    fig = trajectories(results, readouts)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 4
    for ax in fig.axes:
        assert len(ax.lines) == len(CANONICAL)
        assert len(ax.collections) == len(CANONICAL)  # one CI band per scenario
        assert ax.get_xlabel() == "age (years)"
        assert max(line.get_xdata().max() for line in ax.lines) == pytest.approx(
            (BATCH_START + BATCH_DAYS) / DAYS_PER_YEAR
        )
    assert len(fig.legends) == 1
    assert {t.get_text() for t in fig.legends[0].get_texts()} == set(CANONICAL)


def test_trajectory_lines_are_the_summarised_means(results):
    fig = trajectories(results, ["senescent_fraction"])
    summary = summarise(results, ["senescent_fraction"])
    line = next(line for line in fig.axes[0].lines if line.get_label() == "oxytocin")
    expected = summary.loc[summary["scenario"] == "oxytocin", "mean"].to_numpy()
    np.testing.assert_array_equal(line.get_ydata(), expected)


def test_trajectories_without_replicates_have_no_bands():
    fig = trajectories(
        synthetic({"untreated": [0.1], "combined": [0.05]}),
        ["senescent_fraction", "tissue_function", "mean_sasp"],
    )
    assert len(fig.axes) == 3  # the fourth grid cell is removed
    assert all(len(ax.lines) == 2 and len(ax.collections) == 0 for ax in fig.axes)


def test_trajectories_label_sweep_points():
    table = synthetic(
        {"untreated": [0.1, 0.2], "combined": [0.05, 0.07]}, sweep={"combined": [0.4, 0.8]}
    )
    fig = trajectories(table, ["senescent_fraction"])
    labels = {line.get_label() for line in fig.axes[0].lines}
    assert labels == {"untreated", "combined (immune_kill=0.4)", "combined (immune_kill=0.8)"}


def test_end_distributions_show_every_run_per_scenario(results):
    fig = end_distributions(results, "senescent_fraction")
    (ax,) = fig.axes
    points = [c for c in ax.collections if len(c.get_offsets())]
    assert len(points) == len(CANONICAL)
    assert all(len(c.get_offsets()) == 3 for c in points)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(CANONICAL)
    ends = results[results["day"] == BATCH_DAYS]
    shown = np.sort(np.concatenate([c.get_offsets()[:, 1] for c in points]))
    np.testing.assert_allclose(shown, np.sort(ends["senescent_fraction"].to_numpy()))


def test_synergy_bars_show_each_method_with_its_interval_and_the_band():
    rows = {"untreated": 0.1, "rapamycin": 0.07, "oxytocin": 0.05, "combined": 0.03}
    data = synthetic({k: [v, v] for k, v in rows.items()}, days=1)
    scores = synergy(data, "senescent_fraction")
    table = scores.table
    fig = synergy_bars(scores)
    (ax,) = fig.axes
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(bars) == 1 and len(bars[0]) == 2
    np.testing.assert_allclose([b.get_height() for b in bars[0]], 100 * table["excess"])
    band = [p for p in ax.patches if p not in bars[0].patches]
    assert len(band) == 1  # the shaded ±10% band
    assert band[0].get_label().startswith("additive (±10%)")
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0].startswith("Bliss") and labels[1].startswith("HSA")
    assert "synergy" in labels[1]


def test_grid_snapshot_shows_states_immune_cells_and_sasp(snapshots):
    shot = snapshots[
        (snapshots["scenario"] == "untreated")
        & (snapshots["replicate"] == 0)
        & (snapshots["age"] == BATCH_START + BATCH_DAYS)
    ]
    fig = grid_snapshot(shot)
    assert len(fig.axes) == 3  # tissue, SASP, colour bar
    tissue, sasp, _ = fig.axes
    states = tissue.images[0].get_array()
    assert states.shape == (15, 15)
    site = shot.iloc[17]
    assert states[site["y"], site["x"]] == ["empty", "healthy", "senescent"].index(site["state"])
    np.testing.assert_allclose(
        sasp.images[0].get_array()[shot["y"], shot["x"]], shot["sasp"], rtol=1e-6
    )
    (markers,) = tissue.collections
    assert len(markers.get_offsets()) == int(shot["immune"].sum())
    assert len(fig.legends) == 1
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "empty",
        "healthy",
        "senescent",
        "immune cell",
    ]


def test_grid_snapshot_wants_one_run_at_one_age(snapshots):
    with pytest.raises(ValueError, match="select one"):
        grid_snapshot(snapshots[snapshots["scenario"] == "untreated"])


# --- files ------------------------------------------------------------------------------------


def test_save_figures_writes_every_applicable_png(batch, tmp_path):
    paths = save_figures(batch, tmp_path / "figs", dpi=40)
    names = [p.name for p in paths]
    assert names[:3] == [
        "trajectories.png",
        "end_senescent_fraction.png",
        "end_tissue_function.png",
    ]
    assert {"synergy_senescent_fraction.png", "synergy_tissue_function.png"} <= set(names)
    for scenario in CANONICAL:  # the first run of each scenario, at each saved age
        assert f"snapshot_{scenario}_age{BATCH_START + BATCH_DAYS}.png" in names
    assert len([n for n in names if n.startswith("snapshot_")]) == len(CANONICAL)
    assert all(is_png(p) for p in paths)
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == sorted(names)


def test_save_figures_skips_synergy_and_snapshots_when_not_applicable(tmp_path):
    folder = make_batch(
        tmp_path / "two", scenarios=("untreated", "rapamycin"), replicates=2, snapshots=()
    )
    names = [p.name for p in save_figures(folder, tmp_path / "figs", dpi=40)]
    assert names == ["trajectories.png", "end_senescent_fraction.png", "end_tissue_function.png"]


def test_report_has_the_scenarios_summary_numbers_synergy_and_figures(batch, report):
    assert report == batch / "report" / "report.md"
    text = report.read_text()
    for scenario in CANONICAL:
        assert scenario in text
    # The end-state table shows the summarise means and CIs with 4 significant digits.
    results = load_results(batch)
    summary = summarise(results, ["senescent_fraction", "tissue_function", "mean_sasp"])
    end = summary[summary["day"] == BATCH_DAYS]
    for row in end.itertuples():
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| {row.scenario} | 3 |"))
        assert f"{number(row.mean)} [{number(row.ci_low)}, {number(row.ci_high)}]" in line
    assert "## Senescent fraction compared with untreated" in text
    assert "## Synergy of rapamycin and oxytocin" in text
    assert re.search(r"\| Bliss \|.*\| (synergy|additive|antagonism|uncertain)", text)
    # Organism survival: a row per scenario with the share of organisms alive at the end.
    assert "## Organism survival" in text
    for scenario in CANONICAL:
        assert re.search(rf"^\| {scenario} \| 3 \| .* \| \d+% at \d+ \|$", text, re.M)
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert "trajectories.png" in links and "synergy_senescent_fraction.png" in links
    assert "survival.png" in links
    assert all(is_png(report.parent / link) for link in links)


def test_report_without_the_four_scenarios_explains_the_missing_synergy(tmp_path):
    manifest = {
        "scenarios": [{"name": "untreated"}, {"name": "rapamycin"}],
        "runs": [{"status": "done"}] * 3 + [{"status": "failed"}],
    }
    folder = make_batch(
        tmp_path / "two",
        scenarios=("untreated", "rapamycin"),
        replicates=2,
        snapshots=(),
        manifest=manifest,
    )
    text = write_report(folder, out=tmp_path / "out", dpi=40).read_text()
    assert "Scenarios in `batch.json`: untreated, rapamycin" in text
    assert "Runs in `batch.json`: 4 (done: 3, failed: 1)" in text
    assert "Not computed: needs the untreated, rapamycin, oxytocin, combined scenarios" in text
    assert "missing scenario oxytocin, combined" in text
    assert "| rapamycin | 2 |" in text
    assert (tmp_path / "out" / "trajectories.png").exists()


def test_report_names_an_unknown_readout(batch, tmp_path):
    with pytest.raises(ValueError, match="unknown readout 'senescence'"):
        write_report(batch, out=tmp_path / "out", readout="senescence")


def test_markdown_table_and_numbers():
    text = markdown_table(["a", "b"], [["x|y", 1.5]])
    assert text.splitlines() == ["| a | b |", "|:---|---:|", "| x\\|y | 1.5 |"]
    assert number(0.0123456) == "0.01235"
    assert number(0.0038) == "0.003800"  # trailing zeros kept: same precision in every cell
    assert number(50.6) == "50.60"
    assert number(730.0) == "730" and number(4) == "4"  # whole numbers stay whole
    assert number(float("nan")) == "–"
    assert number(float("inf")) == "not reached"
    assert pd.isna(float("nan"))
    assert json.dumps(number(12345.6)) == '"1.235e+04"'


# --- formats, treatment starts, captions, the snapshot panel, survival too short ---------------


@pytest.fixture(scope="module")
def real_batch(tmp_path_factory):
    """A tiny batch written by run_batch (its manifest lists each point's therapy)."""
    files = [f"scenarios/{name}.toml" for name in ("untreated", "rapamycin", "senolytic")]
    out = tmp_path_factory.mktemp("real") / "batch"
    run_batch(plan_batch(files, replicates=2, days=300, size=8), out, workers=1)
    return out


def test_treatment_starts_come_from_each_points_therapy(real_batch):
    starts = treatment_starts(real_batch, load_results(real_batch))
    assert starts == {"rapamycin": 365.0, "senolytic": 365.0}  # as in the scenario files


def test_trajectories_mark_each_treatment_start_in_its_colour(results):
    fig = trajectories(results, starts={"rapamycin": 365.0})
    for ax in fig.axes:
        marks = [line for line in ax.lines if line.get_linestyle() == ":"]
        assert len(marks) == 1
        assert marks[0].get_xdata()[0] == pytest.approx(365.0 / DAYS_PER_YEAR)
        assert marks[0].get_color() == SCENARIO_COLOURS["rapamycin"]
    assert "treatment start" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_snapshot_comparison_has_one_panel_per_scenario(snapshots):
    last = snapshots[snapshots["age"] == snapshots["age"].max()]
    first = last[last["replicate"] == last["replicate"].min()]
    shots = {name: first[first["scenario"] == name] for name in ("untreated", "combined")}
    fig = snapshot_comparison(shots, float(last["age"].iloc[0]))
    assert [ax.get_title().split("\n")[0] for ax in fig.axes] == ["untreated", "combined"]


@pytest.mark.parametrize(("fmt", "magic"), [("svg", b"<?xml"), ("pdf", b"%PDF")])
def test_plot_writes_the_asked_format(real_batch, tmp_path, fmt, magic):
    out = tmp_path / "figs"
    assert main(["plot", str(real_batch), "--out", str(out), "--format", fmt]) == 0
    files = sorted(out.iterdir())
    assert files and all(f.suffix == f".{fmt}" for f in files)
    assert all(f.read_bytes().startswith(magic) for f in files)


def test_plot_dpi_scales_the_png(real_batch, tmp_path):
    from PIL import Image

    widths = []
    for dpi in (40, 80):
        out = tmp_path / f"dpi{dpi}"
        assert main(["plot", str(real_batch), "--out", str(out), "--dpi", str(dpi)]) == 0
        widths.append(Image.open(out / "end_senescent_fraction.png").size[0])
    assert widths[1] == pytest.approx(2 * widths[0], abs=2)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--format", "gif"], "invalid choice: 'gif'"),
        (["--dpi", "5"], "'5' is not allowed; allowed: a whole number from 20 to 1200"),
    ],
)
def test_plot_and_report_refuse_a_bad_figure_option(tmp_path, capsys, option, message):
    for command in ("plot", "report"):
        with pytest.raises(SystemExit) as stop:
            main([command, str(tmp_path), *option])
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


def test_report_numbers_its_figures_with_captions_and_says_which_runs_are_too_short(
    real_batch, tmp_path
):
    text = write_report(real_batch, out=tmp_path / "pdf", dpi=40, fmt="pdf", n_boot=50)
    text = text.read_text()
    links = re.findall(r"\[([^]]+\.pdf)\]\(([^)]+)\)", text)
    assert links and all((tmp_path / "pdf" / target).exists() for _, target in links)
    captions = re.findall(r"^\*Figure (\d+)\. (.+)\*$", text, re.M)
    assert [int(n) for n, _ in captions] == list(range(1, len(links) + 1))
    assert any("treatment start" in caption for _, caption in captions)
    # 300-day runs from 90 days: every organism group is still mostly alive at the end
    assert re.search(r"^\| rapamycin \| 2 \| > 390 \(runs too short\) \|", text, re.M)
    assert "Every group's runs end before half of their organisms have died" in text
    assert "not reached |" not in text.split("## Organism survival")[1]

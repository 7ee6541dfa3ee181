"""The browser view in a real browser: Debian's chromium driven by Playwright.

The test starts `tissue-abm viz scenarios/untreated.toml` on a free port (in its own process
group, stopped with Ctrl-C like a user would), opens the page, and checks what a user sees: the
grid image, Step advancing the day counter and changing the image, Play showing frames, Pause
showing the model's last day (the readouts' last day) and Step one day after it, changed
controls taking effect on Reset (daily rapamycin compared with an untreated reference: two grids,
dose ticks on the charts), sliders showing their values, the readouts downloaded as CSV and
Parquet (read back with pandas), Days per Step stepping many days at once. Every request
must go to the local server and succeed; the server is told to use an unreachable CDN, so a
front-end file missing from the local assets fails the test instead of being fetched.

It is skipped only when /usr/bin/chromium is missing and `CI` is not set (in CI it fails).
Playwright's own browser download (`playwright install`) is never used.

The README screenshot is made by the same code:

    python tests/test_browser.py docs/viz.png
"""

from __future__ import annotations

import csv
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "untreated.toml"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
NO_CDN = "http://127.0.0.1:9/no-cdn/"
"""Where the server would fetch front-end files it does not have: nowhere (port 9 refuses)."""
VIEWPORT = {"width": 1440, "height": 1000}
TIMEOUT_MS = 30_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def viz_server(scenario: Path, log: Path, startup_s: float = 60.0) -> Iterator[str]:
    """Run `tissue-abm viz SCENARIO --port N` and yield its URL; stop it with Ctrl-C after."""
    port = free_port()
    env = dict(os.environ, SOLARA_ASSETS_CDN=NO_CDN)
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "tissue_abm.cli", "viz", str(scenario), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"server exited ({server.returncode}): {log.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not up after {startup_s} s: {log.read_text()}")
            time.sleep(0.3)
        yield url
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGINT)  # Ctrl-C: the CLI and the server stop
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        stopped = server.returncode
    assert stopped == 0, f"Ctrl-C should stop the browser view cleanly; exit {stopped}"


@dataclass
class Seen:
    """What the browser saw."""

    days: list[str] = field(default_factory=list)
    settings: list[str] = field(default_factory=list)
    now: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    grid_changed_on_step: bool = False
    dose_pixels: list[int] = field(default_factory=list)
    """Pixels of rapamycin's colour in the cell-types chart: before and after adding it."""
    reference_grid: bool = False
    slider_value: str = ""
    paused_model_day: int = -1
    """The last day in the readouts downloaded right after Pause."""
    stepped_after_pause: str = ""
    downloads: dict[str, Path] = field(default_factory=dict)


RAPAMYCIN_RGB = (0, 114, 178)  # "#0072B2", rapamycin's dose ticks and window


def colour_pixels(png: bytes, rgb: tuple[int, int, int], tolerance: int = 40) -> int:
    """How many pixels of a PNG screenshot are within `tolerance` of `rgb` in every channel."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int((np.abs(pixels - np.array(rgb)).max(axis=2) <= tolerance).sum())


def day_of(text: str) -> int:
    return int(re.match(r"Day (\d+) of", text).group(1))


def use_page(
    page, url: str, screenshot: Path, render_interval_clicks: int = 1, downloads: Path | None = None
) -> Seen:
    """Drive the page as a user would and save a screenshot at the end; return what was seen.

    Loads the page, steps one day, plays and pauses, changes the rapamycin schedule to daily,
    the grid size to 80 and the comparison to untreated, resets, then steps with the largest
    Days per Step `render_interval_clicks` times, downloads the readouts (CSV and Parquet,
    into `downloads` if given), and saves the screenshot.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    seen = Seen()
    page.on("request", lambda request: seen.requests.append(request.url))
    page.on("websocket", lambda socket: seen.requests.append(socket.url))
    page.on("requestfailed", lambda request: seen.failures.append(f"failed: {request.url}"))
    page.on(
        "response",
        lambda response: (
            seen.failures.append(f"{response.status}: {response.url}")
            if response.status >= 400
            else None
        ),
    )
    day = page.locator(".tissue-day")
    grid = page.locator(".tissue-grid-image")

    page.goto(url)
    try:
        grid.wait_for(timeout=45_000)
    except PlaywrightTimeout:
        raise AssertionError(
            f"no grid image after 45 s; failed requests: {seen.failures}"
        ) from None
    expect(day).to_contain_text("Day 0 of 640", timeout=TIMEOUT_MS)
    seen.days.append(day.inner_text())
    seen.settings.append(page.locator(".tissue-settings").inner_text())
    before = grid.screenshot()
    cell_types = page.locator(".tissue-chart").first
    seen.dose_pixels.append(colour_pixels(cell_types.screenshot(), RAPAMYCIN_RGB))

    page.get_by_role("button", name="Step").click()
    expect(day).to_contain_text("Day 1 of 640", timeout=TIMEOUT_MS)
    seen.days.append(day.inner_text())
    deadline = time.monotonic() + 10
    while not seen.grid_changed_on_step and time.monotonic() < deadline:
        seen.grid_changed_on_step = grid.screenshot() != before
        page.wait_for_timeout(100)

    page.get_by_role("button", name="▶").click()
    expect(day).not_to_contain_text(re.compile(r"Day [01] of"), timeout=TIMEOUT_MS)  # a frame
    page.get_by_role("button", name="❚❚").click()
    expect(page.get_by_role("button", name="Step")).to_be_enabled(timeout=TIMEOUT_MS)
    seen.days.append(day.inner_text())
    with page.expect_download(timeout=TIMEOUT_MS) as started:  # the model's days after Pause
        page.get_by_role("button", name="Download readouts CSV").click()
    with open(started.value.path(), encoding="utf-8", newline="") as table:
        seen.paused_model_day = int(list(csv.DictReader(table))[-1]["day"])
    page.get_by_role("button", name="Step").click()
    expect(day).to_contain_text(f"Day {day_of(seen.days[2]) + 1} of", timeout=TIMEOUT_MS)
    seen.stepped_after_pause = day.inner_text()

    page.locator(".v-input", has_text="Rapamycin schedule").locator(".v-select__slot").click()
    page.get_by_role("option", name="daily", exact=True).click()
    size = page.locator(".v-input", has_text="Grid size").get_by_role("slider")
    size.focus()
    size.press("ArrowLeft")
    size.press("ArrowLeft")  # 100 -> 80 sites per side
    page.locator(".v-input", has_text="Compare with").locator(".v-select__slot").click()
    page.get_by_role("option", name="untreated", exact=True).click()
    seen.slider_value = (
        page.locator(".v-input", has_text="Grid size")
        .locator(".v-slider__thumb-label")
        .inner_text()
    )
    page.get_by_role("button", name="Reset").click()
    expect(page.locator(".tissue-settings")).to_contain_text("80×80 sites", timeout=TIMEOUT_MS)
    seen.reference_grid = page.locator(".tissue-reference-image").is_visible()
    seen.settings.append(page.locator(".tissue-settings").inner_text())
    seen.days.append(day.inner_text())

    interval = page.locator(".v-input", has_text="Days per Step").get_by_role("slider")
    interval.focus()
    interval.press("End")
    days_per_click = int(interval.get_attribute("aria-valuenow"))
    for click in range(1, render_interval_clicks + 1):
        page.get_by_role("button", name="Step").click()
        expect(day).to_contain_text(f"Day {click * days_per_click} of", timeout=60_000)
    seen.days.append(day.inner_text())
    seen.now.append(page.locator(".tissue-now").inner_text())
    page.wait_for_timeout(300)  # let the charts' images arrive
    seen.dose_pixels.append(colour_pixels(cell_types.screenshot(), RAPAMYCIN_RGB))
    page.screenshot(path=str(screenshot))
    if downloads is not None:
        for label in ("readouts CSV", "readouts Parquet"):
            with page.expect_download(timeout=TIMEOUT_MS) as started:
                page.get_by_role("button", name=f"Download {label}").click()
            path = downloads / started.value.suggested_filename
            started.value.save_as(path)
            seen.downloads[label] = path
    return seen


@contextmanager
def chromium_page() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport=VIEWPORT)
        finally:
            browser.close()


@pytest.mark.slow
def test_browser_view_steps_resets_and_stays_offline(tmp_path):
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(
                f"{CHROMIUM} is missing; CI must run the browser test (apt-get install -y chromium)"
            )
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium); not in CI")
    import pandas as pd

    from tissue_abm.biology.readouts import READOUTS

    shot = tmp_path / "viz.png"
    log = tmp_path / "server.log"
    with viz_server(SCENARIO, log) as url, chromium_page() as page:
        seen = use_page(page, url, shot, downloads=tmp_path)
    errors = [
        line for line in log.read_text().splitlines() if "Traceback" in line or "Too many" in line
    ]
    assert not errors, log.read_text()  # e.g. Solara's "Too many renders triggered"

    assert seen.days[0].startswith("Day 0 of 640 · age 90 days")
    assert seen.settings[0].startswith("untreated · seed 1 · 100×100 sites · rapamycin none")
    assert seen.days[1].startswith("Day 1 of 640 · age 91 days")
    assert seen.grid_changed_on_step, "the grid image did not change after Step"
    assert day_of(seen.days[2]) >= 2  # Play ran on, ...
    assert day_of(seen.days[2]) == seen.paused_model_day  # ... and after Pause showed its last day
    assert day_of(seen.stepped_after_pause) == seen.paused_model_day + 1  # Step: one day more
    assert seen.days[3].startswith("Day 0 of 640")  # Reset started again ...
    assert "80×80 sites · rapamycin 1 mg/kg daily from 90 d" in seen.settings[1]  # ... as set
    assert seen.settings[1].startswith("untreated with the page's therapies: rapamycin")
    assert seen.slider_value == "80"  # the slider shows its value without being dragged
    assert seen.reference_grid  # compared with the untreated run: its grid beside this one
    assert seen.dose_pixels[0] == 0 < seen.dose_pixels[1]  # the daily doses are ticked
    columns = ["scenario", "seed", "engine", *READOUTS]
    days = day_of(seen.days[4])
    for table in (
        pd.read_csv(seen.downloads["readouts CSV"]),
        pd.read_parquet(seen.downloads["readouts Parquet"]),
    ):
        assert list(table.columns) == columns
        assert table["day"].tolist() == list(range(days + 1))
        assert (table["rapamycin_exposure"].iloc[-1]) > 1.0
    assert day_of(seen.days[4]) >= 90  # one Step of the most Days per Step
    exposure = float(re.search(r"rapamycin ([\d.]+) mg/kg", seen.now[0]).group(1))
    assert exposure > 1.0, seen.now[0]  # the daily rapamycin acts
    assert shot.stat().st_size > 50_000

    server = urllib.parse.urlsplit(url).netloc
    elsewhere = sorted(
        {
            r
            for r in seen.requests
            if urllib.parse.urlsplit(r).scheme not in ("data", "blob")
            and urllib.parse.urlsplit(r).netloc != server
        }
    )
    assert seen.requests and not elsewhere, f"fetched from elsewhere than {server}: {elsewhere}"
    assert any(r.startswith("ws://") for r in seen.requests)  # the page's websocket, local too
    assert not seen.failures, seen.failures


if __name__ == "__main__":  # the README screenshot, by the same steps as the test
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/viz.png")
    log = out.with_suffix(".server.log")
    with viz_server(SCENARIO, log) as url, chromium_page() as page:
        result = use_page(page, url, out, render_interval_clicks=3)
    log.unlink()
    print(f"{out}: {result.days[-1]}; {result.settings[-1]}")

"""Step, Play and Reset of the page: the model runs every day, the page shows a few frames a second.

Mesa's `ModelController` redraws the page after every day of Play; at 100×100 the drawing and
Solara's re-render cost more than the day itself. Here Play runs the days one after another in a
thread and asks for a frame (a redraw of the page) only when `FRAME_S` have passed since the last
one was drawn (longer after a slow frame: drawing takes at most `DRAW_SHARE` of the time), and
for the last day when it stops (Pause, or the end of the run), unless that frame showed it. Step
runs `days_per_step` days and shows the last. A frame is a new value of a counter
(`frames`) that the page's view (`components.TissueView`) listens to; the view notes each
frame it drew in a `FrameLog`, and Play waits for that before it runs on, so that the model
never changes while it is drawn and at most one frame is ever waiting to be drawn (Solara stops
with "Too many renders triggered" when another thread changes the page's state during every
render pass).
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, Protocol

import solara
from mesa.visualization import Slider

from tissue_abm.viz.controls import ViewedTissue

FRAME_S = 0.2
"""Least time between the end of one frame and the next during Play (s): ≤ ~5 frames/s."""

DRAW_SHARE = 0.25
"""Most of Play's time spent drawing frames: after a frame that took t s, the next comes at
least t·(1 - DRAW_SHARE)/DRAW_SHARE s later (under load, fewer frames rather than fewer days)."""

FRAME_WAIT_S = 5.0
"""Longest wait of Play for its frame to be drawn (s) before it runs on regardless."""

PAUSE_MS = 0
"""Default pause between two days of Play (ms): none, the frames are few."""


class Stepped(Protocol):
    """What Play runs: a model with `step()` and `running`."""

    running: bool

    def step(self) -> None:
        """Advance one day."""


class FrameLog:
    """The last frame the page's view drew (`drawn`), for Play to wait on (`wait`)."""

    def __init__(self) -> None:
        self._drawn = 0
        self._changed = threading.Condition()

    @property
    def last(self) -> int:
        """The number of the last frame drawn (0: none yet)."""
        return self._drawn

    def drawn(self, frame: int) -> None:
        """Note that frame number `frame` (and so every earlier one) has been drawn."""
        with self._changed:
            self._drawn = max(self._drawn, frame)
            self._changed.notify_all()

    def wait(self, frame: int, timeout: float = FRAME_WAIT_S) -> bool:
        """Wait until frame `frame` has been drawn, at most `timeout` s; whether it was."""
        with self._changed:
            return self._changed.wait_for(lambda: self._drawn >= frame, timeout)


def play(
    model: Stepped,
    playing: Callable[[], bool],
    show: Callable[[], None],
    pause_s: Callable[[], float] = lambda: PAUSE_MS / 1000,
    frame_s: float = FRAME_S,
    draw_share: float = DRAW_SHARE,
    lock: threading.Lock | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Run `model` a day at a time while `playing()` and the model runs; return the days run.

    Args:
        model: The model.
        playing: Whether to go on (False after Pause); asked before every day.
        show: Show the model as it is now (returns once the frame is drawn).
        pause_s: Pause before every day (s).
        frame_s: `show` is called after a day when at least this long (s) has passed since the
            last call returned (or since Play started); and once at the end, unless the last
            call showed the last day.
        draw_share: ... and when the time since is at least the last call's time × (1 -
            draw_share) / draw_share: the calls take at most this share of the time.
        lock: Held while the model steps (Step holds it too): one day at a time.
        clock: Time (s).
    """
    lock = lock or threading.Lock()
    days = 0
    last = clock()
    wait = frame_s
    changed = False  # the model changed since the last frame (or since Play started)
    try:
        while playing() and model.running:
            time.sleep(pause_s())
            changed = True  # from here: a day that fails half-way has changed it too
            with lock:
                model.step()
            days += 1
            if clock() - last >= wait:
                start = clock()
                show()
                changed = False
                last = clock()
                wait = max(frame_s, (last - start) * (1 - draw_share) / draw_share)
    finally:
        if changed:
            show()  # the last day, also after an error (unless the last frame showed it)
    return days


@solara.component
def Controls(
    model: solara.Reactive[ViewedTissue],
    values: solara.Reactive[dict[str, Any]],
    frames: solara.Reactive[int],
    log: FrameLog,
) -> None:
    """Reset, Play/Pause and Step, the days a Step runs, and the pause between days of Play.

    Args:
        model: The page's model; Reset replaces it by a new `ViewedTissue(**values)`.
        values: The controls' values (keyword arguments of `ViewedTissue`).
        frames: The frame counter the page's view listens to; a new value shows the model now.
        log: Where the view notes the frames it drew.
    """
    playing = solara.use_reactive(False)
    stepping = solara.use_reactive(False)  # Play's thread runs (until its last frame is drawn)
    running = solara.use_reactive(model.value.running)
    pause_ms = solara.use_reactive(PAUSE_MS)
    days_per_step = solara.use_reactive(1)
    error: solara.Reactive[str | None] = solara.use_reactive(None)
    lock = solara.use_memo(threading.Lock, [])
    latest: list[object] = solara.use_memo(lambda: [None], [])  # the latest Play's token

    def show() -> None:
        """A frame of the model now; wait until it is drawn (Play's thread)."""
        frame = frames.value + 1
        frames.value = frame
        log.wait(frame)

    def run() -> None:
        """Play's thread: run the model until Pause, Reset, the run's end, or a newer call.

        A newer call of the task: Play pressed again, or none when the page is closed.
        """
        if not playing.value:
            return
        tissue, token = model.value, object()
        latest[0] = token
        stepping.value = True
        try:
            play(
                tissue,
                lambda: playing.value and model.value is tissue and task.is_current(),
                show,
                lambda: pause_ms.value / 1000,
                lock=lock,
            )
        except Exception as e:  # shown on the page, as Mesa's controller does
            traceback.print_exc()
            error.value = f"error in Play: {e}"
        finally:
            if model.value is tissue:
                running.value = tissue.running
                if not tissue.running:
                    playing.value = False
            if latest[0] is token:
                stepping.value = False

    task = solara.lab.use_task(run, dependencies=[playing.value], prefer_threaded=True)

    def step() -> None:
        tissue = model.value
        with lock:
            for _ in range(days_per_step.value):
                tissue.step()
                if not tissue.running:
                    break
        running.value = tissue.running
        frames.value += 1

    def reset() -> None:
        playing.value = False
        error.value = None
        model.value = ViewedTissue(**values.value)
        running.value = model.value.running

    with solara.Row(justify="space-between"):
        solara.Button(label="Reset", color="primary", on_click=reset)
        solara.Button(
            label="❚❚" if playing.value else "▶",
            color="primary",
            on_click=lambda: playing.set(not playing.value),
            disabled=not running.value,
        )
        solara.Button(
            label="Step",
            color="primary",
            on_click=step,
            disabled=playing.value or stepping.value or not running.value,
        )
    solara.SliderInt(label="Days per Step", value=days_per_step, min=1, max=100)
    solara.SliderInt(
        label="Pause between days of Play (ms)", value=pause_ms, min=0, max=500, step=10
    )
    if error.value:
        solara.Error(label=error.value)


@solara.component
def Inputs(params: dict[str, Any], values: solara.Reactive[dict[str, Any]]) -> None:
    """The controls of `controls.model_params` (Mesa's format): their values go to `values`."""
    for name, option in params.items():

        def set_value(value: Any, name: str = name) -> None:
            values.value = {**values.value, name: value}

        now = values.value[name]
        if isinstance(option, Slider):
            slider = solara.SliderFloat if option.is_float_slider else solara.SliderInt
            slider(
                option.label,
                value=now,
                on_value=set_value,
                min=option.min,
                max=option.max,
                step=option.step,
            )
        elif option["type"] == "Select":
            solara.Select(option["label"], value=now, values=option["values"], on_value=set_value)
        elif option["type"] == "InputText":
            solara.InputText(option["label"], value=now, on_value=set_value)
        else:
            raise ValueError(f"control {name!r}: unknown type {option['type']!r}")

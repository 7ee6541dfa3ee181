"""The batch's worker processes and stop signals (`tissue_abm.runs.pool`).

What a whole batch does on a signal is tested on real batches in `test_batch.py`; here the
pieces: a second signal ends the process at once after its clean-ups, ignored signals stay
ignored, a worker's error comes back as one line, workers end when their parent is killed.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import zlib

import psutil
import pytest

from tissue_abm.runs.pool import LocalPool, Signalled, stop_on_signals, task_map

SLOW_STOP = """
import sys, time
from tissue_abm.runs.pool import Signalled, at_hard_exit, stop_on_signals
with stop_on_signals(), at_hard_exit(lambda: open(sys.argv[1], "w").write("cleaned up")):
    try:
        print("ready", flush=True)
        time.sleep(60)
    except Signalled as first:
        print("stopping after", first.name, flush=True)
        time.sleep(60)  # a stop that takes long (saving a huge manifest, say)
"""


def test_a_second_signal_ends_the_process_at_once_after_its_clean_ups(tmp_path):
    marker = tmp_path / "marker"
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_STOP, str(marker)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGTERM)
    assert process.stdout.readline().strip() == "stopping after SIGTERM"
    clock = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert time.monotonic() - clock < 10  # not the 60 s the first stop would take
    assert process.returncode == 128 + signal.SIGINT
    assert err == (
        "tissue-abm: SIGINT again: stopped at once; finished runs are kept; finish with --resume\n"
    )
    assert marker.read_text() == "cleaned up"


def test_the_handlers_come_back_and_ignored_signals_stay_ignored():
    before = signal.getsignal(signal.SIGTERM)
    hangup = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        with stop_on_signals():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not before
        assert signal.getsignal(signal.SIGTERM) is before
    finally:
        signal.signal(signal.SIGHUP, hangup)


def test_a_signal_raises_signalled_naming_it():
    with pytest.raises(Signalled) as stop, stop_on_signals():
        signal.raise_signal(signal.SIGTERM)
        time.sleep(5)
    assert (stop.value.signum, stop.value.name) == (signal.SIGTERM, "SIGTERM")
    assert isinstance(stop.value, KeyboardInterrupt)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the handler stays after a signal


def test_a_task_that_raises_comes_back_as_one_line_and_the_others_run():
    done = []
    context = multiprocessing.get_context("forkserver")
    with LocalPool(math.sqrt, 2, context, replacements=0) as pool:
        pool.run([4.0, -1.0, 9.0], lambda task, result, error: done.append((task, result, error)))
        workers = [psutil.Process(pid) for pid in pool.pids()]
    assert sorted(done, key=lambda item: item[0]) == [
        (-1.0, None, "ValueError: math domain error"),
        (4.0, 2.0, None),
        (9.0, 3.0, None),
    ]
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_task_map_gives_the_results_in_the_tasks_order_and_names_a_failure(workers):
    # tasks of unequal length (a long one first), so that on 2 workers they end out of order
    tasks = [(time.sleep, (0.3,)), (math.sqrt, (4.0,)), (divmod, (7, 2)), (math.sqrt, (9.0,))]
    context = multiprocessing.get_context("forkserver")
    with task_map(workers, context) as run:
        assert run(tasks) == [None, 2.0, (3, 1), 3.0]
        assert run([(math.sqrt, (16.0,))]) == [4.0]  # the same workers serve a second map
        with pytest.raises(RuntimeError, match="sqrt: ValueError: math domain error"):
            run([(math.sqrt, (1.0,)), (math.sqrt, (-1.0,))])


def test_tasks_large_and_small_all_come_back_in_any_mix():
    """A busy worker is sent its next task only if it is small (it then waits in the pipe):
    a large one would fill the pipe while the worker sends its (large) result, and each would
    wait for the other for ever. Compressing random bytes takes a while and gives as many."""
    big, small = os.urandom(3_000_000), os.urandom(10)
    tasks = [big, small, big, big, small, big, big, small]
    done = []
    context = multiprocessing.get_context("forkserver")
    with LocalPool(zlib.compress, 2, context, replacements=0) as pool:
        pool.run(tasks, lambda task, result, error: done.append((zlib.decompress(result), error)))
    assert sorted(done) == sorted((task, None) for task in tasks)


PARENT = """
import multiprocessing, threading, time
from tissue_abm.runs.pool import LocalPool
with LocalPool(time.sleep, 2, multiprocessing.get_context("forkserver"), 0) as pool:
    # the tasks are sent as run() starts; the pids follow a moment later, from a thread
    threading.Timer(1.0, lambda: print(*pool.pids(), flush=True)).start()
    pool.run([600, 600], lambda *done: None)
"""


def test_busy_workers_end_by_themselves_when_their_parent_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    workers = [psutil.Process(int(pid)) for pid in parent.stdout.readline().split()]
    assert len(workers) == 2
    parent.kill()
    parent.wait()
    _, alive = psutil.wait_procs(workers, timeout=30)
    for worker in alive:
        worker.kill()
    assert not alive

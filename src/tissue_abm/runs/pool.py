"""Local worker processes for a batch, and the signals that stop a batch.

`LocalPool` runs tasks on worker processes it owns outright (no `concurrent.futures` machinery
in between): each worker holds the task it runs and at most one small task queued, so a worker
that dies loses only those, which are sent again to a new worker; `stop` ends every worker at
once. Workers ignore
Ctrl-C (the parent handles it) and end by themselves when the parent process is gone, however
it ended: a thread in each worker waits for the end of a pipe whose only writer is the parent.

`stop_on_signals` turns SIGINT, SIGTERM and SIGHUP into `Signalled` (a KeyboardInterrupt) in the
main thread. A second one, while the first is being handled or after, ends the process at once
(exit status 128 + the signal's number) after killing the workers and releasing the folder lock
(`at_hard_exit`). What is promised: docs/batch.md#guarantees.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from multiprocessing import forkserver
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from multiprocessing.reduction import ForkingPickler
from typing import Any

STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
"""The signals that stop a batch (each as Ctrl-C does)."""

STOP_SECONDS = 1.0
"""How long `LocalPool.stop` waits for terminated workers before killing them."""

QUEUED_BYTES = 64 * 1024
"""The largest task (pickled) sent to a busy worker to wait in its pipe: well below the pipe's
buffer (over 200 kB), so that sending it never blocks while the worker sends a result."""

_HARD_EXIT: dict[int, Callable[[], None]] = {}
"""What a second stop signal does before the process ends (kill workers, release locks)."""
_KEYS = itertools.count()


class Signalled(KeyboardInterrupt):
    """A stop signal arrived (Ctrl-C, SIGTERM or SIGHUP); `signum` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        """The signal's name, e.g. 'SIGINT'."""
        return signal.Signals(self.signum).name


class WorkersDied(Exception):
    """Worker processes died more often than the pool may replace them."""


@contextmanager
def at_hard_exit(callback: Callable[[], None]) -> Iterator[None]:
    """Within the block, a second stop signal calls `callback` before the process ends."""
    key = next(_KEYS)
    _HARD_EXIT[key] = callback
    try:
        yield
    finally:
        _HARD_EXIT.pop(key, None)


BATCH_STOPPED = "stopped at once; finished runs are kept; finish with --resume"
"""What a second stop signal during a batch says (after 'tissue-abm: SIGINT again: ')."""


@contextmanager
def stop_on_signals(second: str = BATCH_STOPPED) -> Iterator[None]:
    """Within the block, SIGINT, SIGTERM and SIGHUP raise `Signalled` in the main thread.

    A signal the process ignores (as `nohup` arranges for SIGHUP) stays ignored. After a first
    signal the handler stays in place after the block, so that a second one ends the process
    at once wherever it arrives, saying `second`; without one, the previous handlers come
    back. Outside the main thread (where Python cannot catch signals) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handle(signum: int, frame: object) -> None:
        if received:
            _hard_exit(signum, second)
        received.append(signum)
        raise Signalled(signum)

    previous = {
        signum: signal.signal(signum, handle)
        for signum in STOP_SIGNALS
        if signal.getsignal(signum) is not signal.SIG_IGN
    }
    try:
        yield
    finally:
        if not received:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _hard_exit(signum: int, message: str) -> None:
    """End the process now: run the `at_hard_exit` callbacks, say so, exit 128 + signum."""
    for callback in list(_HARD_EXIT.values()):
        with suppress(Exception):  # ending anyway; a lock left is recognised as stale later
            callback()
    name = signal.Signals(signum).name
    os.write(2, f"tissue-abm: {name} again: {message}\n".encode())
    os._exit(128 + signum)


WORKER_MODULE = "tissue_abm.runs.workers"
"""The module a batch's fork server imports for its workers (`execute`, and the compiled
kernel where the workers can use it as it is loaded there)."""


def start_fork_server() -> None:
    """Start the fork server of worker processes now (if not running), importing `WORKER_MODULE`.

    It imports in the background while this process goes on (about a second); the first
    workers then start at once. Where there is no fork server (Windows, macOS's spawn), this
    does nothing.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([WORKER_MODULE])
        forkserver.ensure_running()


# --- the pool ----------------------------------------------------------------------------------


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    tasks: list[Any] = field(default_factory=list)
    """The tasks sent to it and not yet answered, in order: the first is running."""


class LocalPool:
    """Worker processes that run `function(task)`, each a task at a time.

    Use it as a context manager: the workers start on entry and are stopped on exit (at once,
    whatever is running; `stop`). While a worker runs a task, its next task waits in its pipe
    if it is small (`QUEUED_BYTES`), so that it starts at once when the first ends.

    Args:
        function: Called in a worker on each task; must be picklable (a module-level function
            or a `functools.partial` of one).
        workers: How many worker processes.
        context: The multiprocessing context that starts them (forkserver or spawn).
        replacements: How many workers that died may be replaced before `run` gives up.
    """

    def __init__(
        self,
        function: Callable[[Any], Any],
        workers: int,
        context: BaseContext,
        replacements: int,
    ) -> None:
        self.function, self.context = function, context
        self.size, self.replacements = workers, replacements
        self.deaths = 0
        self._workers: list[_Worker] = []
        self._watch: tuple[Connection, Connection] | None = None

    def __enter__(self) -> LocalPool:
        self._watch = self.context.Pipe(duplex=False)  # (reader, writer): the parent keeps both
        self._key = next(_KEYS)
        _HARD_EXIT[self._key] = self._kill
        try:
            self._workers = [self._start() for _ in range(self.size)]
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pids(self) -> list[int]:
        """Process ids of the current workers."""
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    def _start(self) -> _Worker:
        assert self._watch is not None
        parent, child = self.context.Pipe()
        process = self.context.Process(  # type: ignore[attr-defined]
            target=_serve,
            args=(child, self._watch[0], self.function),
            daemon=True,
            name="tissue-abm worker",
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    def run(self, tasks: Sequence[Any], done: Callable[[Any, Any, str | None], None]) -> None:
        """Run every task; call done(task, result, error) in this process as each one ends.

        `error` is None, or one line ("TypeName: message") if `function` raised (then `result`
        is None). The tasks of a worker that died are sent again to a new worker.

        Raises:
            WorkersDied: If more than `replacements` workers died; the tasks not done are
                lost (the caller knows them: `done` was not called for them).
        """
        queue = [(task, _pickled(task)) for task in tasks]
        while queue or any(w.tasks for w in self._workers):
            self._send(queue)
            busy = [w for w in self._workers if w.tasks]
            ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy], 1.0))
            for worker in busy:
                if worker.conn in ready:
                    try:
                        status, value = worker.conn.recv()
                    except (EOFError, OSError):  # died while answering
                        queue[:0] = self._lost(worker)
                        continue
                    task = worker.tasks.pop(0)
                    if status == "ok":
                        done(task, value, None)
                    else:
                        done(task, None, value)
                elif worker.process.sentinel in ready:
                    queue[:0] = self._lost(worker)

    def _send(self, queue: list[tuple[Any, bytes]]) -> None:
        """Give each worker a task to run, and a small one to start next if it has none."""
        for index, worker in enumerate(self._workers):
            while queue and (
                not worker.tasks or (len(worker.tasks) == 1 and len(queue[0][1]) <= QUEUED_BYTES)
            ):
                if not worker.process.is_alive():
                    queue[:0] = self._lost(worker)
                    worker = self._workers[index]
                    continue
                try:  # never blocks: the pipe holds at most one unread task, a small one
                    worker.conn.send_bytes(queue[0][1])
                except OSError:  # it died since: its tasks go to its successor
                    queue[:0] = self._lost(worker)
                    worker = self._workers[index]
                    continue
                worker.tasks.append(queue.pop(0)[0])

    def _lost(self, worker: _Worker) -> list[tuple[Any, bytes]]:
        """A worker died: count it, replace it, and return its unanswered tasks for the queue."""
        index = self._workers.index(worker)
        self.deaths += 1
        if self.deaths > self.replacements:
            raise WorkersDied(f"worker processes died {self.deaths} times")
        worker.conn.close()
        worker.process.join(STOP_SECONDS)
        self._workers[index] = self._start()
        return [(task, _pickled(task)) for task in worker.tasks]

    def stop(self) -> None:
        """End every worker now (SIGTERM, then SIGKILL after `STOP_SECONDS`) and wait for them."""
        processes = [w.process for w in self._workers if w.process.pid is not None]
        for process in processes:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(STOP_SECONDS)
        for worker in self._workers:
            worker.conn.close()
        self._workers = []
        if self._watch is not None:
            for end in self._watch:
                end.close()
            self._watch = None
            _HARD_EXIT.pop(self._key, None)

    def _kill(self) -> None:
        """For a second signal: kill every worker, wait for none."""
        for pid in self.pids():
            with suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _pickled(task: Any) -> bytes:
    """A task as `Connection.recv` reads it."""
    return bytes(ForkingPickler.dumps(task))


def _serve(conn: Connection, watch: Connection, function: Callable[[Any], Any]) -> None:
    """A worker's life: run the tasks it is sent until told to stop or the parent is gone.

    SIGTERM and SIGHUP end it as `sys.exit` does, so that multiprocessing's exit handlers run
    (numba's process lock, a semaphore, is then unregistered: no "leaked semaphore" warning).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    for signum in STOP_SIGNALS[1:]:
        signal.signal(signum, _leave)
    threading.Thread(target=_exit_with_parent, args=(watch,), daemon=True).start()
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        try:
            reply: tuple[str, Any] = ("ok", function(task))
        except Exception as err:
            reply = ("error", f"{type(err).__name__}: {err}")
        try:
            conn.send(reply)
        except OSError:
            return
        except Exception as err:  # the result cannot be pickled
            conn.send(("error", f"{type(err).__name__}: {err}"))


def _leave(signum: int, frame: object) -> None:
    """In a worker, on SIGTERM or SIGHUP: exit cleanly."""
    raise SystemExit(128 + signum)


def _exit_with_parent(watch: Connection) -> None:
    """In a worker: end the process as soon as the parent is gone.

    Only the parent holds the pipe's writing end, and it never writes: the reading end
    becomes readable (at end of file) exactly when the parent has ended or closed it. The
    worker then sends itself SIGTERM (a clean exit, once the running kernel call returns), and
    ends at once if that has not worked within 5 s.
    """
    with suppress(OSError):
        watch.poll(None)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5 * STOP_SECONDS)
    os._exit(1)


# --- a map over the pool -----------------------------------------------------------------------

Task = tuple[Callable[..., Any], tuple[Any, ...]]
"""A function (module-level, picklable) and its arguments."""


def _call(task: tuple[int, Task]) -> Any:
    _, (function, args) = task
    return function(*args)


@contextmanager
def task_map(workers: int, context: BaseContext) -> Iterator[Callable[[Sequence[Task]], list[Any]]]:
    """Within the block, `map(tasks)` runs each (function, args) on worker processes.

    The workers live for the whole block (one start for many maps) and stop with it, at once
    (`LocalPool`); with `workers` 1 the tasks run in this process. Results come back in the
    tasks' order, so they do not depend on the number of workers.

    Raises (from `map`):
        RuntimeError: If a task raised; names the first such task's error.
        WorkersDied: As `LocalPool.run`.
    """
    if workers <= 1:

        def here(tasks: Sequence[Task]) -> list[Any]:
            results = []
            for function, args in tasks:
                try:
                    results.append(function(*args))
                except Exception as err:
                    raise RuntimeError(f"{function.__name__}: {type(err).__name__}: {err}") from err
            return results

        yield here
        return
    with LocalPool(_call, workers, context, workers) as pool:

        def map_(tasks: Sequence[Task]) -> list[Any]:
            results: list[Any] = [None] * len(tasks)
            errors: list[str] = []

            def done(task: tuple[int, Task], result: Any, error: str | None) -> None:
                if error is not None:
                    errors.append(f"{task[1][0].__name__}: {error}")
                results[task[0]] = result

            pool.run(list(enumerate(tasks)), done)
            if errors:
                raise RuntimeError(errors[0])
            return results

        yield map_

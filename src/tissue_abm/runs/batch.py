"""Batch runs: scenario files → runs (sweep point × replicate) → one Parquet file per run.

A batch is planned from scenario files (`plan_batch`, from `tissue_abm.runs.plan`), then
executed (`run_batch`) in the current process, on local worker processes kept alive for the
whole batch (`pool.LocalPool`), or on a Dask distributed cluster. Work is sent in chunks of
runs; each finished run is written by the parent process under a temporary name and renamed
when complete, so a killed batch never leaves a half-written result. `batch.json` records the
scenario texts, resolved parameters, seeds, the model that ran them (version, commit,
fingerprint) and each run's status; `resume=True` runs only what is missing or damaged,
and only with the same model.

A batch holds the lock of its folder (`lock.lock_folder`) while it runs; Ctrl-C, SIGTERM and
SIGHUP stop it within about a second, keeping the finished runs. What is promised:
docs/batch.md#guarantees.

A run is a pure function of its scenario (at its sweep point) and seed, so the result files do
not depend on the number of workers, the executor or interruptions.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import shlex
import socket
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pandas as pd

from tissue_abm.engines import THREADS_VARIABLE, requested_threads
from tissue_abm.engines.array import load_kernel, set_threads, warm_up
from tissue_abm.engines.array.model import COMPILE_SECONDS
from tissue_abm.runs.lock import LOCK, lock_folder
from tissue_abm.runs.plan import Plan, RunSpec, check_scheduler, plan_batch
from tissue_abm.runs.pool import (
    WORKER_MODULE,
    LocalPool,
    Signalled,
    WorkersDied,
    start_fork_server,
    stop_on_signals,
)
from tissue_abm.runs.results import (
    MANIFEST,
    RUNS,
    OutputError,
    check_parquet,
    model_fingerprint,
    now,
    prepare_output,
    provenance,
    read_manifest,
    write_atomic,
    write_json,
    write_parquet,
)
from tissue_abm.runs.run import kept_rows, run_scenario

if TYPE_CHECKING:
    from distributed import Client

FORMAT = 2
"""Version of the batch layout and manifest (2: the manifest records the model, `model`)."""

POOL_RESTARTS = 2
"""How many worker processes that died a batch replaces (sending their runs again) before it
gives up."""

CONNECT_SECONDS = 20.0
"""Deadline for reaching a Dask scheduler, its handshake included."""


class BatchInterrupted(Exception):
    """The batch stopped before every run was attempted; finished runs are kept."""


class Outcome(NamedTuple):
    """What a worker sends back for one run."""

    id: str
    readouts: pd.DataFrame | None
    snapshots: pd.DataFrame | None
    seconds: float
    error: str | None


class Summary(NamedTuple):
    """How a batch went."""

    total: int
    done: int
    failed: int
    skipped: int
    """Runs already done by an earlier, interrupted invocation."""
    wall_seconds: float
    run_seconds: float
    """Sum of the simulation times of the runs done now."""
    manifest: Path
    damaged: tuple[str, ...] = ()
    """Result files found damaged (unreadable, or with other row counts) and run again, each as
    'path: problem'."""


# --- running -----------------------------------------------------------------------------------


def execute(specs: list[RunSpec], threads: int | None = None) -> list[Outcome]:
    """Run a chunk of runs (in a worker); a run that raises is returned with its error.

    Args:
        specs: The runs.
        threads: Threads of the compiled array kernel (one per worker in a pool; None: the
            kernel chooses, `kernel.kernel_threads`).
    """
    set_threads(threads)
    if any(spec.scenario.engine == "array" for spec in specs):
        load_kernel()  # loaded once per process, not in the first run's time
    outcomes = []
    for spec in specs:
        clock = time.perf_counter()
        try:
            run = run_scenario(spec.scenario, labels=spec.labels)
        except Exception as err:  # recorded in the manifest; the batch goes on
            lines = traceback.format_exception_only(err)[-1].strip()
            outcomes.append(Outcome(spec.id, None, None, time.perf_counter() - clock, lines))
            continue
        outcomes.append(
            Outcome(spec.id, run.readouts, run.snapshots, time.perf_counter() - clock, None)
        )
    return outcomes


def check_study_folder(
    folder: Path,
    spec_file: str,
    spec: dict[str, Any],
    resume: bool,
    kind: str,
    hint: str = "",
    described: Mapping[str, str] | None = None,
) -> None:
    """OutputError unless `folder` may receive the study of `spec` (a study over batches).

    Args:
        folder: The study's folder: new, empty, or holding this study (with `resume`).
        spec_file: Name of the study's inputs file in `folder` (JSON).
        spec: The inputs a resumed study must share (as they read back from JSON).
        resume: Whether the study is to be finished.
        kind: What the study is called in messages, with its article ("an answer study").
        hint: Said after "pass --resume to finish it" (e.g. what else a resume does).
        described: Inputs named in words instead of by their values (key -> words).
    """
    if folder.exists() and not folder.is_dir():
        raise OutputError(
            f"cannot write results to {folder}: it is a file, not a folder; choose another --out"
        )
    if not (folder / spec_file).exists():
        if folder.exists() and any(entry.name != LOCK for entry in folder.iterdir()):
            raise OutputError(
                f"{folder} is not empty and holds no {kind.split(' ', 1)[1]}; choose another --out"
            )
        return
    if not resume:
        raise OutputError(
            f"{folder} already holds {kind}; pass --resume to finish it{hint}, or choose "
            "another --out"
        )
    try:
        before = json.loads((folder / spec_file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise OutputError(f"{folder / spec_file}: cannot read the study ({err})") from None
    for key, value in spec.items():
        if before.get(key) != value:
            what = (described or {}).get(key) or (
                f"{key} {_short(before.get(key))} instead of {_short(value)}"
            )
            raise OutputError(
                f"{folder} holds {kind} with other inputs ({what}); resume with the same "
                "inputs or choose another --out"
            )


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def run_texts(
    texts: Mapping[str, str],
    scenarios: Path,
    out: Path,
    *,
    allow_large: bool = False,
    **options: Any,
) -> Summary:
    """Write scenario texts as files and run them as one batch: how a study runs its variants.

    Args:
        texts: Scenario name -> its TOML text; written as `scenarios/<name>.toml`.
        scenarios: Folder of the files (created).
        out: The batch's folder.
        allow_large: Plan with the large limits (`scenario.LARGE_LIMITS`).
        options: `run_batch`'s keyword options (workers, scheduler, resume, progress, notice).
    """
    prepare_output(scenarios)
    files = []
    for name, text in texts.items():
        path = scenarios / f"{name}.toml"
        write_atomic(path, partial(Path.write_text, data=text, encoding="utf-8"))
        files.append(path)
    return run_batch(plan_batch(files, allow_large=allow_large), out, **options)


STUDY_SCENARIOS = "scenarios"
"""Sub-folder of a study's folder holding its generated scenario files (`run_study_batch`)."""

STUDY_BATCH = "batch"
"""Sub-folder of a study's folder holding its batch: the manifest and the runs' files."""


def run_study_batch(
    folder: Path,
    texts: Mapping[str, str],
    check: Callable[[Path, dict[str, Any], bool], None],
    spec_file: str,
    spec: dict[str, Any],
    record: Mapping[str, Any],
    kind: str,
    *,
    resume: bool = False,
    allow_large: bool = False,
    **options: Any,
) -> Summary:
    """A study's batch in `folder`: checked, locked, its inputs written once, then `run_texts`.

    Args:
        folder: The study's folder; the files go to `STUDY_SCENARIOS`, the batch to
            `STUDY_BATCH`.
        texts: Scenario name -> its TOML text.
        check: check(folder, spec, resume) raises OutputError unless `folder` may receive the
            study (`check_study_folder` with the study's words); called before and again
            under the folder's lock.
        spec_file: Name of the study's inputs file (JSON) in `folder`.
        spec: The inputs a resumed study must share.
        record: More to write into `spec_file` the first time (provenance, the source file).
        kind: What holds the lock, for its messages ("answer study").
        resume: Finish the study in `folder` (`run_batch`).
        allow_large: Plan with the large limits (`run_texts`).
        **options: `run_batch`'s other keyword options (workers, scheduler, progress, notice).
    """
    check(folder, spec, resume)
    prepare_output(folder)
    with lock_folder(folder, kind):
        check(folder, spec, resume)  # again, now that no other study writes
        if not (folder / spec_file).exists():
            write_json(folder / spec_file, {**spec, **record})
        return run_texts(
            texts,
            folder / STUDY_SCENARIOS,
            folder / STUDY_BATCH,
            allow_large=allow_large,
            resume=resume,
            **options,
        )


def run_batch(
    plan: Plan,
    out: str | Path,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    resume: bool = False,
    progress: Callable[[int, int, int], None] | None = None,
    notice: Callable[[str], None] | None = None,
) -> Summary:
    """Run every run of `plan` that `out` does not hold yet and write its results.

    Args:
        plan: The batch (see `plan_batch`).
        out: Results folder; created if needed.
        workers: Worker processes (default: all cores). 1 without a scheduler runs in this
            process.
        scheduler: None for local processes, "local" to start a Dask `LocalCluster` on
            127.0.0.1, or the address of a Dask scheduler ("tcp://host:8786").
        resume: Finish a batch interrupted earlier in `out`, re-running missing, damaged and
            failed runs; the batch must have been made by the same model.
        progress: Called as progress(done, failed, total) whenever a run finishes, counting
            runs already done.
        notice: Called with a one-line message about something the user should know (damaged
            result files that are run again).

    Returns:
        The tally of the batch.

    Raises:
        ScenarioError: If `scheduler` is not an allowed address.
        OutputError: If `out` cannot be written, is in use by another batch, holds another
            batch (or this one without `resume`, or one made by another model), or the
            scheduler cannot be reached. Nothing is written then.
        BatchInterrupted: If the batch stopped early (workers that keep dying, results that
            cannot be written); the finished runs are kept and `resume=True` completes it.
        KeyboardInterrupt: On Ctrl-C, SIGTERM or SIGHUP (`pool.Signalled`), after stopping
            the workers; the finished runs are kept, as above.
    """
    address = check_scheduler(scheduler)
    folder = Path(out)
    with stop_on_signals():
        _check_folder(folder, plan, resume)  # before touching anything
        created = not folder.exists()
        prepare_output(folder)
        try:
            with lock_folder(folder):
                return _run_locked(
                    plan, folder, workers or os.cpu_count() or 1, scheduler, address, resume,
                    progress, notice,
                )  # fmt: skip
        finally:
            if created:  # nothing left behind when nothing was written
                with suppress(OSError):
                    folder.rmdir()


def _run_locked(
    plan: Plan,
    folder: Path,
    workers: int,
    scheduler: str | None,
    address: tuple[str, int] | None,
    resume: bool,
    progress: Callable[[int, int, int], None] | None,
    notice: Callable[[str], None] | None,
) -> Summary:
    """`run_batch` once the folder's lock is held."""
    clock = time.perf_counter()
    description = _describe(plan)
    earlier = _check_folder(folder, plan, resume, description) or {}  # again, under the lock
    _clear_stale(folder)
    book = _Book(plan, folder, earlier, description)
    before = {run["id"]: run for run in earlier.get("runs", [])}
    todo, damaged = [], []
    for spec in plan.runs:
        problems = _damage(spec, folder)
        if problems is None:
            book.note(
                spec.id, {"status": "done", "seconds": before.get(spec.id, {}).get("seconds")}
            )
            continue
        book.note(spec.id, {"status": "pending"})
        todo.append(spec)
        damaged += problems
    if damaged and notice is not None:
        more = f"; and {len(damaged) - 3} more" if damaged[3:] else ""
        listing = "; ".join(damaged[:3]) + more
        notice(f"{len(damaged)} damaged result files are run again: {listing}")
    skipped = len(plan.runs) - len(todo)

    def finished(outcome: Outcome | None) -> None:
        if outcome is not None:
            book.record(outcome)
        book.collect(block=outcome is None)
        if progress is not None:
            progress(book.tally["done"], book.tally["failed"], len(plan.runs))
        book.save("running")

    started = False
    try:
        with _runner(todo, workers, scheduler, address, notice) as run:  # connects first
            started = True  # before the first save: a stop while it is flushed must undo it
            book.save("running", force=True)
            if progress is not None:
                progress(skipped, 0, len(plan.runs))
            run(todo, finished)
        finished(None)  # the last files written
    except Signalled as stop:
        if started:
            book.settle()
            book.save("interrupted", force=True, reason=f"stopped by {stop.name}")
        raise
    except KeyboardInterrupt:
        if started:
            book.settle()
            book.save("interrupted", force=True, reason="stopped by Ctrl-C")
        raise
    except BatchInterrupted as err:
        book.settle()
        left = book.tally["pending"]
        book.save("interrupted", force=True, reason=str(err))
        raise BatchInterrupted(f"{err}; {left} runs not done") from None
    except OutputError as err:  # a result could not be written (disk full, folder removed)
        if not started:
            raise
        book.settle()
        with suppress(OutputError):  # else it says "running"; --resume finishes it all the same
            book.save("interrupted", force=True, reason=str(err))
        raise BatchInterrupted(str(err)) from None
    finally:
        book.settle()
    if book.tally["pending"]:  # cannot happen; never call an incomplete batch done
        book.save("interrupted", force=True)
        raise BatchInterrupted(f"{book.tally['pending']} runs were not run")
    book.save("failed" if book.tally["failed"] else "done", force=True)
    return Summary(
        len(plan.runs),
        book.tally["done"],
        book.tally["failed"],
        skipped,
        time.perf_counter() - clock,
        book.run_seconds,
        folder / MANIFEST,
        tuple(damaged),
    )


def _damage(spec: RunSpec, folder: Path) -> list[str] | None:
    """None if the run's files are complete; else what is wrong with those that exist.

    A run is done only when each of its files reads back (Parquet footer) with the rows the
    run keeps. Damaged files are deleted (the run is then simply missing); absent files are
    not damage (a run not yet done, or interrupted between its two renames).
    """
    files = spec.files(folder)
    rows = kept_rows(spec.scenario)
    problems = {path: check_parquet(path, n) for path, n in zip(files, rows, strict=False)}
    if not any(problems.values()):
        return None
    present = [path for path, problem in problems.items() if problem != "missing"]
    damaged = [
        f"{path.relative_to(folder)}: {problem}"
        for path, problem in problems.items()
        if problem not in (None, "missing")
    ]
    if problems[files[0]] is None:  # readouts complete (written last), snapshots missing
        damaged += [
            f"{path.relative_to(folder)}: missing"
            for path in files[1:]
            if problems[path] == "missing"
        ]
    for path in present:
        path.unlink(missing_ok=True)
    return damaged


def _clear_stale(folder: Path) -> None:
    """Delete the temporary files a killed batch left (under the lock: nobody writes them)."""
    for stale in [
        *(folder / RUNS).glob("*/.*.tmp"),
        *folder.glob(".*.tmp"),
        *folder.glob(".write-test-*"),
    ]:
        stale.unlink(missing_ok=True)


COMPILING = (
    f"compiling the array engine's kernel (first run only, about {COMPILE_SECONDS} s; "
    "numba caches it for later runs)"
)
"""What a batch says while the kernel compiles."""

Runner = Callable[[list[RunSpec], Callable[[Outcome], None]], None]
"""Runs a list of runs, calling back with each outcome as it arrives."""


@contextmanager
def _runner(
    todo: list[RunSpec],
    workers: int,
    scheduler: str | None,
    address: tuple[str, int] | None,
    notice: Callable[[str], None] | None = None,
) -> Iterator[Runner]:
    """What runs `todo`: this process, local workers or a Dask cluster; stopped on exit.

    Workers are started, and the Dask scheduler reached, on entry, before the caller writes
    anything. `notice` is told when the array kernel compiles (a first run).
    """
    if not todo:
        yield lambda specs, finished: None
        return
    if scheduler is None and workers == 1:
        if any(spec.scenario.engine == "array" for spec in todo):
            warm_up(partial(notice, COMPILING) if notice is not None else None)
        yield _run_here
        return
    context = process_context()
    if scheduler is None:
        start_fork_server()  # it imports the package while this process warms up
    if any(spec.scenario.engine == "array" for spec in todo):
        warm_up(partial(notice, COMPILING) if notice is not None else None)
    if scheduler is None:
        # One kernel thread per worker, unless the user fixed a count (TISSUE_ABM_THREADS)
        threads = requested_threads(os.environ.get(THREADS_VARIABLE)) or 1
        with LocalPool(partial(execute, threads=threads), workers, context, POOL_RESTARTS) as pool:
            yield partial(_run_pool, pool, workers)
        return
    with _dask(workers, scheduler, address) as (client, slots):
        yield partial(_run_dask, client, slots)


def _chunks(todo: list[RunSpec], workers: int) -> list[list[RunSpec]]:
    """`todo` in chunks that shrink towards the end (guided scheduling).

    Each is 1/16 of a worker's share of the runs left, at most 8 runs and at least 1: few
    messages while many runs are left, and short last chunks, so that no worker waits long for
    another's at the end (with a fixed 1/4 share, the canonical runs' last chunk took over a
    second).
    """
    chunks, start = [], 0
    while start < len(todo):
        size = max(1, min(8, (len(todo) - start) // (16 * workers)))
        chunks.append(todo[start : start + size])
        start += size
    return chunks


def _failed(chunk: list[RunSpec], error: str) -> list[Outcome]:
    return [Outcome(spec.id, None, None, 0.0, error) for spec in chunk]


def _run_here(todo: list[RunSpec], finished: Callable[[Outcome], None]) -> None:
    for spec in todo:
        for outcome in execute([spec]):
            finished(outcome)


def _run_pool(
    pool: LocalPool, workers: int, todo: list[RunSpec], finished: Callable[[Outcome], None]
) -> None:
    def done(chunk: list[RunSpec], outcomes: list[Outcome] | None, error: str | None) -> None:
        for outcome in _failed(chunk, error) if error is not None else outcomes or []:
            finished(outcome)

    try:
        pool.run(_chunks(todo, workers), done)
    except WorkersDied as err:
        raise BatchInterrupted(str(err)) from None


def _run_dask(
    client: Client,
    slots: int,
    todo: list[RunSpec],
    finished: Callable[[Outcome], None],
) -> None:
    executor = client.get_executor(pure=False)
    queue = _chunks(todo, slots)
    flying: dict[Future, list[RunSpec]] = {}
    try:
        while queue or flying:
            while queue and len(flying) < 2 * slots:
                chunk = queue.pop(0)
                flying[executor.submit(execute, chunk, 1)] = chunk
            done, _ = wait(flying, timeout=1.0, return_when=FIRST_COMPLETED)
            for future in done:
                chunk = flying.pop(future)
                try:
                    outcomes = future.result()
                except Exception as err:  # e.g. Dask's KilledWorker
                    outcomes = _failed(chunk, f"{type(err).__name__}: {err}")
                for outcome in outcomes:
                    finished(outcome)
    finally:
        for future in flying:
            future.cancel()


@contextmanager
def _dask(
    workers: int, scheduler: str, address: tuple[str, int] | None
) -> Iterator[tuple[Client, int]]:
    """A Dask client (of a new local cluster, or of the scheduler at `address`) and its slots."""
    from distributed import Client, LocalCluster  # slow to import: only when a cluster is used

    cluster = None
    if address is None:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        client = Client(cluster)
    else:
        client = _connect(scheduler, address)
    try:
        slots = max(1, sum(client.nthreads().values()))
        yield client, slots
    except BaseException:
        for name in ("distributed", "asyncio"):  # the noise of a cluster torn down mid-task
            logging.getLogger(name).setLevel(logging.CRITICAL)
        if cluster is not None:  # stopped: end the local workers now, running tasks and all
            for worker in multiprocessing.active_children():
                worker.kill()
        raise
    finally:
        client.close(timeout=5)
        if cluster is not None:
            cluster.close(timeout=5)


def _connect(scheduler: str, address: tuple[str, int]) -> Client:
    """A client of the Dask scheduler at `address`, within `CONNECT_SECONDS` in all.

    Raises:
        OutputError: If it refuses the connection, or does not complete Dask's handshake in
            time (a silent or foreign server).
    """
    from distributed import Client

    deadline = time.monotonic() + CONNECT_SECONDS
    try:  # a refused or unknown address fails here at once
        socket.create_connection(address, timeout=CONNECT_SECONDS).close()
    except OSError as err:
        raise OutputError(
            f"cannot reach the Dask scheduler at {scheduler}: {err.strerror or err}"
        ) from None
    answer: dict[str, Any] = {}
    lock = threading.Lock()

    def connect() -> None:  # Dask's own timeout does not bound its handshake
        try:
            client = Client(
                scheduler, timeout=max(1.0, deadline - time.monotonic()), set_as_default=False
            )
        except Exception as err:
            answer["error"] = err
            return
        with lock:
            if answer.get("abandoned"):
                client.close()
            else:
                answer["client"] = client

    thread = threading.Thread(target=connect, daemon=True, name="dask-connect")
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))
    with lock:
        if "client" in answer:
            return answer["client"]
        answer["abandoned"] = True
    if "error" in answer:
        message = " ".join(str(answer["error"]).split())[:200]
        raise OutputError(f"cannot connect to the Dask scheduler at {scheduler}: {message}")
    raise OutputError(
        f"the Dask scheduler at {scheduler} did not answer within {CONNECT_SECONDS:g} s "
        "(is it a Dask scheduler?)"
    )


def process_context() -> multiprocessing.context.BaseContext:
    """How worker processes start: never as a plain fork of this (threaded) process.

    Where the platform allows, they fork from a server that has imported this package (saving
    the ~1 s import per worker) and, where numba's threads survive a fork, loaded the cached
    kernel (`runs.workers`); elsewhere they are spawned.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([WORKER_MODULE])
    return context


# --- bookkeeping -------------------------------------------------------------------------------


WRITERS = 2
"""Threads that write finished runs' files: while one waits for the disk (each file is flushed
to it twice, `results.write_atomic`), the other writes."""

WRITING = 8
"""At most this many finished runs wait to be written (they hold their tables until then)."""


class _Book:
    """Each run's status; writes finished runs (on `WRITERS` threads) and the manifest.

    A run is noted done only once its files are written (`collect`), so the manifest never
    calls a run done whose files a stop could have cut short.
    """

    def __init__(
        self, plan: Plan, folder: Path, earlier: dict[str, Any], description: dict[str, Any]
    ) -> None:
        self.plan, self.folder = plan, folder
        self.specs = {spec.id: spec for spec in plan.runs}
        self.started = earlier.get("started", now())
        self.description = description
        self.status: dict[str, dict[str, Any]] = {}
        self.tally: Counter[str] = Counter()
        self.run_seconds = 0.0
        self._saved = -math.inf
        self._writers = ThreadPoolExecutor(WRITERS, thread_name_prefix="tissue-abm writer")
        self._writing: dict[Future[None], Outcome] = {}

    def note(self, run_id: str, entry: dict[str, Any]) -> None:
        """Set a run's manifest entry (with its `status`: pending, done or failed)."""
        if run_id in self.status:
            self.tally[self.status[run_id]["status"]] -= 1
        self.status[run_id] = entry
        self.tally[entry["status"]] += 1

    def record(self, outcome: Outcome) -> None:
        """Note a failed run, or start writing a finished run's files (`collect` notes it).

        Waits while `WRITING` runs are being written.
        """
        if outcome.error is not None:
            self.note(
                outcome.id,
                {"status": "failed", "seconds": round(outcome.seconds, 3), "error": outcome.error},
            )
            return
        while len(self._writing) >= WRITING:
            wait(self._writing, return_when=FIRST_COMPLETED)
            self.collect()
        self._writing[self._writers.submit(self._write, outcome)] = outcome

    def _write(self, outcome: Outcome) -> None:
        """Write a finished run's files: snapshots first, readouts last (on a writer thread)."""
        readouts, *grid = self.specs[outcome.id].files(self.folder)
        try:
            readouts.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"cannot write {readouts.parent}: {err.strerror or err}") from None
        if grid:
            write_parquet(grid[0], outcome.snapshots)
        write_parquet(readouts, outcome.readouts)

    def collect(self, block: bool = False, quiet: bool = False) -> None:
        """Note the runs whose files are written as done (first waiting for all, if `block`).

        Raises:
            OutputError: If a run's files could not be written (it stays pending), unless
                `quiet`.
        """
        if block and self._writing:
            wait(self._writing)
        for future in [future for future in self._writing if future.done()]:
            outcome = self._writing.pop(future)
            error = future.exception()
            if error is not None:
                if quiet:
                    continue
                raise error
            self.run_seconds += outcome.seconds
            self.note(outcome.id, {"status": "done", "seconds": round(outcome.seconds, 3)})

    def settle(self) -> None:
        """Wait for the files being written, note those written, and stop the writers."""
        self.collect(block=True, quiet=True)
        self._writers.shutdown()

    def save(self, state: str, force: bool = False, reason: str | None = None) -> None:
        """Write the manifest in `state` (at most every 2 s unless forced).

        Until the batch is done, the manifest also says how to finish it (`resume`) and, once
        stopped, why (`reason`).
        """
        if not force and time.monotonic() - self._saved < 2.0:
            return
        runs = [
            {
                "id": spec.id,
                "scenario": spec.scenario.name,
                "point": spec.point,
                "replicate": spec.replicate,
                "seed": spec.scenario.seed,
                **self.status.get(spec.id, {"status": "pending"}),
            }
            for spec in self.plan.runs
        ]
        head: dict[str, Any] = {"format": FORMAT, "status": state}
        if reason:
            head["reason"] = reason
        if state != "done":
            head["resume"] = resume_command(self.folder)
        write_json(
            self.folder / MANIFEST,
            {**head, "started": self.started, "updated": now(), **self.description, "runs": runs},
        )
        self._saved = time.monotonic()


def resume_command(folder: Path) -> str:
    """The command that finishes the batch in `folder`."""
    return f"tissue-abm batch --out {shlex.quote(str(folder))} --resume"


def _describe(plan: Plan) -> dict[str, Any]:
    """The fixed part of the manifest: provenance, model, options, scenario texts, points."""
    points = []
    for source in plan.sources:
        for point in source.scenario.sweep_points(source.file, plan.limits.points):
            resolved = point.scenario.model_dump(
                mode="json",
                include={
                    "parameters",
                    "therapy",
                    "size",
                    "torus",
                    "start_age",
                    "end_age",
                    "engine",
                },
            )
            points.append(
                {
                    "scenario": source.scenario.name,
                    "point": point.index,
                    "values": point.values,
                    **resolved,
                }
            )
    return {
        "provenance": provenance(),
        "model": model_fingerprint(points),
        "overrides": plan.overrides,
        "scenarios": [
            {
                "name": s.scenario.name,
                "file": s.file,
                "text": s.text,
                "replicates": s.scenario.replicates,
                "seed": s.scenario.seed,
            }
            for s in plan.sources
        ],
        "points": points,
    }


def _check_folder(
    folder: Path, plan: Plan, resume: bool, description: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """Check that `folder` may receive this batch; the manifest of the batch it resumes, if any.

    With `description` (`_describe(plan)`), a batch to resume must also have been made by the
    same model (`_same_model`).

    Raises:
        OutputError: If it may not, in one line saying why.
    """
    if folder.exists() and not folder.is_dir():
        raise OutputError(
            f"cannot write results to {folder}: it is a file, not a folder; choose another --out"
        )
    if (folder / MANIFEST).exists():
        if not resume:
            raise OutputError(
                f"{folder} already holds a batch; pass --resume to finish it, or "
                "choose another --out"
            )
        earlier = read_manifest(folder, resumable=True)
        before = {entry["name"]: entry["text"] for entry in earlier["scenarios"]}
        now_ = {source.scenario.name: source.text for source in plan.sources}
        if before != now_:
            differ = sorted(set(before) ^ set(now_)) or sorted(
                name for name in now_ if before[name] != now_[name]
            )
            raise OutputError(
                f"{folder} holds a batch of other scenario files ({differ[0]} "
                "differs); resume with the same files or choose another --out"
            )
        if earlier.get("overrides", {}) != plan.overrides:
            raise OutputError(
                f"{folder} holds a batch run with other options "
                f"({_options(earlier.get('overrides', {}))} instead of "
                f"{_options(plan.overrides)}); resume with the same options"
            )
        if description is not None:
            _same_model(folder, earlier, description)
        return earlier
    if folder.exists() and any(entry.name != LOCK for entry in folder.iterdir()):
        raise OutputError(f"{folder} is not empty and holds no batch; choose another --out")
    return None


def _same_model(folder: Path, earlier: dict[str, Any], description: dict[str, Any]) -> None:
    """OutputError unless the batch in `folder` was made by the model that would resume it.

    Compared: the resolved inputs of every sweep point, the model's source files (biology and
    engines), the package version and the versions of Mesa, numpy and numba. The git commit
    is recorded, not compared (a commit that changes none of these changes no result).
    """
    if earlier.get("format") != FORMAT or "model" not in earlier:
        raise OutputError(
            f"{folder} holds a batch of manifest format {earlier.get('format')} (this is "
            f"format {FORMAT}), which does not record the model that made it; resuming could "
            "mix two models' results: choose another --out"
        )
    then, now_ = earlier["model"], description["model"]
    change = _model_change(earlier.get("points") or [], description["points"], then, now_)
    if change is None:
        return
    commit = f" (git commit {then['git_commit'][:12]})" if then.get("git_commit") else ""
    raise OutputError(
        f"{folder} holds a batch made by another model ({change}); resuming would mix two "
        f"models' results: finish it with the code that started it{commit}, or choose "
        "another --out"
    )


def _model_change(
    points_then: list[dict[str, Any]],
    points_now: list[dict[str, Any]],
    then: dict[str, Any],
    now_: dict[str, Any],
) -> str | None:
    """What differs between two models, most specific first; None if nothing does."""
    for old, new in zip(points_then, points_now, strict=False):
        difference = _difference(old, new)
        if difference:
            return f"{new['scenario']} point {new['point']}: {difference}"
    sources = sorted(set(then["sources"]) | set(now_["sources"]))
    changed = [f for f in sources if then["sources"].get(f) != now_["sources"].get(f)]
    if changed:
        more = f" and {len(changed) - 1} more files" if changed[1:] else ""
        return f"src/tissue_abm/{changed[0]} differs{more}"
    if then["version"] != now_["version"]:
        return f"tissue-abm {then['version']} then, {now_['version']} now"
    for library, version in now_["libraries"].items():
        if then.get("libraries", {}).get(library) != version:
            return f"{library} {then.get('libraries', {}).get(library)} then, {version} now"
    if then["fingerprint"] != now_["fingerprint"]:
        return "the fingerprint differs"
    return None


def _difference(old: Any, new: Any, key: str = "") -> str | None:
    """The first key whose value differs between two JSON values, as 'key: old then, new now'."""
    if isinstance(old, dict) and isinstance(new, dict):
        for name in [*old, *(k for k in new if k not in old)]:
            found = _difference(old.get(name), new.get(name), f"{key}.{name}" if key else name)
            if found:
                return found
        return None
    if old != new:
        return f"{key} = {json.dumps(old)} then, {json.dumps(new)} now"
    return None


def _options(overrides: Mapping[str, object]) -> str:
    return " ".join(f"--{key} {value}" for key, value in overrides.items()) or "no options"

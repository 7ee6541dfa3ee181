"""Batch runs: scenario files → runs (sweep point × replicate) → one Parquet file per run.

A batch is planned from scenario files (`plan_batch`), then executed (`run_batch`) in the
current process, on a local process pool kept alive for the whole batch, or on a Dask
distributed cluster. Work is sent in chunks of runs; each finished run is written by the
parent process under a temporary name and renamed when complete, so a killed batch never
leaves a half-written result. `batch.json` records the scenario texts, resolved parameters,
seeds, versions and each run's status; `resume=True` runs only what is missing.

A run is a pure function of its scenario (at its sweep point) and seed, so the result files do
not depend on the number of workers, the executor or interruptions.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypedDict, cast

import pandas as pd

from tissue_abm.engines.array import set_threads, warm_up
from tissue_abm.runs.results import (
    GRID_SUFFIX,
    MANIFEST,
    RUNS,
    OutputError,
    now,
    prepare_output,
    provenance,
    read_manifest,
    write_json,
    write_parquet,
)
from tissue_abm.runs.run import run_scenario
from tissue_abm.runs.scenario import (
    Scenario,
    ScenarioError,
    parse_scenario,
    read_scenario_text,
)

FORMAT = 1
"""Version of the batch layout and manifest."""

POOL_RESTARTS = 2
"""How often a batch restarts a process pool whose worker died before giving up."""


class BatchInterrupted(Exception):
    """The batch stopped before every run was attempted; finished runs are kept."""


@dataclass(frozen=True)
class Source:
    """A scenario file of a batch: where it came from, its text and the validated scenario."""

    file: str
    text: str
    scenario: Scenario


@dataclass(frozen=True)
class RunSpec:
    """One run of a batch: a scenario at one sweep point with one replicate's seed."""

    scenario: Scenario
    """The scenario at its sweep point, with `seed` set to the replicate's seed."""
    point: int
    values: dict[str, Any]
    replicate: int

    @property
    def id(self) -> str:
        """Unique name of the run in its batch, e.g. 'combined/p0002_r0017'."""
        return f"{self.scenario.name}/p{self.point:04d}_r{self.replicate:04d}"

    @property
    def labels(self) -> dict[str, Any]:
        """The columns identifying the run in its results, after `scenario`."""
        return {"point": self.point, **self.values, "replicate": self.replicate}

    def files(self, folder: Path) -> list[Path]:
        """The run's result files in a batch folder: readouts, and grid snapshots if any."""
        stem = folder / RUNS / self.id
        grid = [stem.with_name(stem.name + GRID_SUFFIX)] if self.scenario.output.snapshots else []
        return [stem.with_name(stem.name + ".parquet"), *grid]


class Overrides(TypedDict, total=False):
    """Settings given on the command line for every file; a file keeps its own where absent."""

    replicates: int
    days: int
    size: int
    engine: str


@dataclass(frozen=True)
class Plan:
    """Every run of a batch, in a fixed order (scenario file, sweep point, replicate)."""

    sources: list[Source]
    overrides: Overrides
    """Settings given on the command line for every file (replicates, days, size, engine)."""
    runs: list[RunSpec] = field(repr=False)


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


# --- planning ----------------------------------------------------------------------------------


def plan_batch(
    files: Sequence[str | Path],
    *,
    replicates: int | None = None,
    days: int | None = None,
    size: int | None = None,
    engine: str | None = None,
) -> Plan:
    """Read and validate scenario files and expand them into runs.

    Args:
        files: Scenario files (TOML).
        replicates: Replicates per sweep point instead of each file's own.
        days: Days to simulate from each file's start age instead of its end age.
        size: Lattice side instead of each file's own.
        engine: Simulation engine ("array" or "agents") instead of each file's own.

    Raises:
        ScenarioError: If a file is missing or invalid, or two files share a scenario name.
    """
    sources = []
    for file in files:
        text = read_scenario_text(file)
        sources.append(Source(str(file), text, parse_scenario(text, str(file))))
    overrides = {"replicates": replicates, "days": days, "size": size, "engine": engine}
    given = {key: value for key, value in overrides.items() if value is not None}
    return _plan(sources, cast(Overrides, given))  # the options given (None dropped)


def plan_from_manifest(folder: str | Path) -> Plan:
    """The plan of an earlier batch, rebuilt from the scenario texts and options it recorded."""
    manifest = read_manifest(Path(folder))
    return _plan(
        [
            Source(entry["file"], entry["text"], parse_scenario(entry["text"], entry["file"]))
            for entry in manifest["scenarios"]
        ],
        manifest.get("overrides", {}),
    )


def _plan(sources: list[Source], overrides: Overrides) -> Plan:
    if not sources:
        raise ScenarioError("no scenario files given")
    if overrides:
        sources = [
            Source(
                s.file, s.text, s.scenario.with_overrides(**overrides, source=f"{s.file} (options)")
            )
            for s in sources
        ]
    seen: dict[str, str] = {}
    runs = []
    for source in sources:
        name = source.scenario.name
        if name in seen:
            raise ScenarioError(
                f"{source.file}: scenario name '{name}' is already used by "
                f"{seen[name]}; names must be unique within a batch"
            )
        seen[name] = source.file
        seeds = source.scenario.replicate_seeds()
        for point in source.scenario.sweep_points(source.file):
            for replicate, seed in enumerate(seeds):
                scenario = point.scenario.model_copy(update={"seed": seed, "replicates": 1})
                runs.append(RunSpec(scenario, point.index, point.values, replicate))
    return Plan(sources, overrides, runs)


# --- running -----------------------------------------------------------------------------------


def execute(specs: list[RunSpec], threads: int | None = None) -> list[Outcome]:
    """Run a chunk of runs (in a worker); a run that raises is returned with its error.

    Args:
        specs: The runs.
        threads: Threads of the compiled array kernel (one per worker in a pool; None: all).
    """
    set_threads(threads)
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


def run_batch(
    plan: Plan,
    out: str | Path,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    resume: bool = False,
    progress: Callable[[int, int, int], None] | None = None,
) -> Summary:
    """Run every run of `plan` that `out` does not hold yet and write its results.

    Args:
        plan: The batch (see `plan_batch`).
        out: Results folder; created if needed.
        workers: Worker processes (default: all cores). 1 without a scheduler runs in this
            process.
        scheduler: None for local processes, "local" to start a Dask `LocalCluster` on
            127.0.0.1, or the address of a Dask scheduler ("tcp://host:8786").
        resume: Finish a batch interrupted earlier in `out`, re-running missing and failed runs.
        progress: Called as progress(done, failed, total) whenever a run finishes, counting
            runs already done.

    Returns:
        The tally of the batch.

    Raises:
        OutputError: If `out` cannot be written, or holds another batch (or this one without
            `resume`).
        BatchInterrupted: If the batch stopped early (Ctrl-C, or workers that keep dying); the
            finished runs are kept and `resume=True` completes the batch.
    """
    folder = _claim(Path(out), plan, resume)
    workers = workers or os.cpu_count() or 1
    clock = time.perf_counter()
    earlier = read_manifest(folder) if (folder / MANIFEST).exists() else {}
    book = _Book(plan, folder, earlier)
    before = {run["id"]: run for run in earlier.get("runs", [])}
    todo = []
    for spec in plan.runs:
        if all(path.exists() for path in spec.files(folder)):
            book.note(
                spec.id, {"status": "done", "seconds": before.get(spec.id, {}).get("seconds")}
            )
        else:
            book.note(spec.id, {"status": "pending"})
            todo.append(spec)
    skipped = len(plan.runs) - len(todo)
    book.save("running", force=True)
    if progress is not None:
        progress(skipped, 0, len(plan.runs))

    def finished(outcome: Outcome) -> None:
        book.record(outcome)
        if progress is not None:
            progress(book.tally["done"], book.tally["failed"], len(plan.runs))
        book.save("running")

    try:
        _dispatch(todo, workers, scheduler, finished)
    except (KeyboardInterrupt, BatchInterrupted):
        book.save("interrupted", force=True)
        raise
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
    )


def _dispatch(
    todo: list[RunSpec], workers: int, scheduler: str | None, finished: Callable[[Outcome], None]
) -> None:
    """Send `todo` in chunks to an executor, a bounded number at a time, until all are back."""
    if not todo:
        return
    if scheduler is None and workers == 1:
        for spec in todo:
            for outcome in execute([spec]):
                finished(outcome)
        return
    if any(spec.scenario.engine == "array" for spec in todo):
        warm_up()  # compiled once here, not by every worker at once
    size = max(1, min(8, len(todo) // (4 * workers)))
    queue = [todo[i : i + size] for i in range(0, len(todo), size)]
    restarts = 0
    while queue:
        with _executor(workers, scheduler) as (executor, slots):
            flying: dict[Future, list[RunSpec]] = {}
            lost: list[list[RunSpec]] = []
            try:
                while queue or flying:
                    while queue and len(flying) < 2 * slots:
                        future = executor.submit(execute, queue[0], 1)  # may find it broken
                        flying[future] = queue.pop(0)
                    done, _ = wait(flying, timeout=1.0, return_when=FIRST_COMPLETED)
                    for future in done:
                        chunk = flying.pop(future)
                        try:
                            outcomes = future.result()
                        except BrokenProcessPool:
                            lost.append(chunk)
                            continue
                        except Exception as err:  # e.g. Dask's KilledWorker
                            outcomes = [
                                Outcome(spec.id, None, None, 0.0, f"{type(err).__name__}: {err}")
                                for spec in chunk
                            ]
                        for outcome in outcomes:
                            finished(outcome)
                    if lost:
                        raise BrokenProcessPool("a worker process died")
            except BrokenProcessPool:
                restarts += 1
                queue = [*lost, *flying.values(), *queue]
                if restarts > POOL_RESTARTS:
                    raise BatchInterrupted(
                        f"worker processes died {restarts} times; "
                        f"{sum(map(len, queue))} runs not done"
                    ) from None


@contextmanager
def _executor(workers: int, scheduler: str | None) -> Iterator[tuple[Executor, int]]:
    """An executor and how many chunks it runs at once; workers are stopped on exit."""
    if scheduler is None:
        pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=_process_context(), initializer=_ignore_interrupts
        )
        try:
            yield pool, workers
        finally:
            _stop(pool)
        return
    from distributed import Client, LocalCluster  # slow to import: only when a cluster is used

    cluster = None
    if scheduler == "local":
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as err:
            raise OutputError(f"cannot reach the Dask scheduler at {scheduler}: {err}") from None
    try:
        slots = max(1, sum(client.nthreads().values()))
        yield client.get_executor(pure=False), slots
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _process_context() -> multiprocessing.context.BaseContext:
    """How worker processes start: never as a plain fork of this (threaded) process.

    Where the platform allows, they fork from a server that has imported this package (saving
    the ~1.5 s import per worker); elsewhere they are spawned.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _ignore_interrupts() -> None:
    """Worker initialiser: Ctrl-C is the parent's to handle (it stops the workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Stop a pool now: cancel queued work and end its worker processes."""
    pool.shutdown(wait=False, cancel_futures=True)
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.join(timeout=5)


# --- bookkeeping -------------------------------------------------------------------------------


class _Book:
    """Each run's status; writes finished runs and the manifest."""

    def __init__(self, plan: Plan, folder: Path, earlier: dict[str, Any]) -> None:
        self.plan, self.folder = plan, folder
        self.specs = {spec.id: spec for spec in plan.runs}
        self.started = earlier.get("started", now())
        self.description = _describe(plan)
        self.status: dict[str, dict[str, Any]] = {}
        self.tally: Counter[str] = Counter()
        self.run_seconds = 0.0
        self._saved = -math.inf

    def note(self, run_id: str, entry: dict[str, Any]) -> None:
        """Set a run's manifest entry (with its `status`: pending, done or failed)."""
        if run_id in self.status:
            self.tally[self.status[run_id]["status"]] -= 1
        self.status[run_id] = entry
        self.tally[entry["status"]] += 1

    def record(self, outcome: Outcome) -> None:
        """Write a finished run's files (snapshots first, readouts last) and note its status."""
        if outcome.error is not None:
            self.note(
                outcome.id,
                {"status": "failed", "seconds": round(outcome.seconds, 3), "error": outcome.error},
            )
            return
        readouts, *grid = self.specs[outcome.id].files(self.folder)
        readouts.parent.mkdir(parents=True, exist_ok=True)
        if grid:
            write_parquet(grid[0], outcome.snapshots)
        write_parquet(readouts, outcome.readouts)
        self.run_seconds += outcome.seconds
        self.note(outcome.id, {"status": "done", "seconds": round(outcome.seconds, 3)})

    def save(self, state: str, force: bool = False) -> None:
        """Write the manifest in `state` (at most every 2 s unless forced)."""
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
        write_json(
            self.folder / MANIFEST,
            {
                "format": FORMAT,
                "status": state,
                "started": self.started,
                "updated": now(),
                **self.description,
                "runs": runs,
            },
        )
        self._saved = time.monotonic()


def _describe(plan: Plan) -> dict[str, Any]:
    """The fixed part of the manifest: provenance, options, scenario texts, sweep points."""
    points = []
    for source in plan.sources:
        for point in source.scenario.sweep_points(source.file):
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


def _claim(folder: Path, plan: Plan, resume: bool) -> Path:
    """Check that `folder` may receive this batch; create it and clear stale temporary files."""
    if (folder / MANIFEST).exists():
        if not resume:
            raise OutputError(
                f"{folder} already holds a batch; pass --resume to finish it, or "
                "choose another --out"
            )
        earlier = read_manifest(folder)
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
    elif folder.exists() and any(folder.iterdir()):
        raise OutputError(f"{folder} is not empty and holds no batch; choose another --out")
    prepare_output(folder)
    for stale in (folder / RUNS).glob("*/.*.tmp"):
        stale.unlink(missing_ok=True)
    return folder


def _options(overrides: Mapping[str, object]) -> str:
    return " ".join(f"--{key} {value}" for key, value in overrides.items()) or "no options"

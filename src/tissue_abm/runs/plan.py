"""A batch's plan: scenario files, read and validated, expanded into runs (no engine needed).

Planning imports neither the engines nor pandas, so that a bad scenario file or option is
reported at once (`tissue-abm batch` plans before importing what runs the batch); running a
plan is `tissue_abm.runs.batch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, cast
from urllib.parse import urlsplit

from tissue_abm.runs.layout import GRID_SUFFIX, RUNS
from tissue_abm.runs.scenario import (
    LARGE_LIMITS,
    LIMITS,
    Limits,
    Scenario,
    ScenarioError,
    parse_scenario,
    read_scenario_text,
    too_many,
)


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
    limits: Limits = LIMITS
    """The most sweep points per file and runs in all (checked when the plan was made)."""


# --- planning ----------------------------------------------------------------------------------


def plan_batch(
    files: Sequence[str | Path],
    *,
    replicates: int | None = None,
    days: int | None = None,
    size: int | None = None,
    engine: str | None = None,
    allow_large: bool = False,
) -> Plan:
    """Read and validate scenario files and expand them into runs.

    Args:
        files: Scenario files (TOML).
        replicates: Replicates per sweep point instead of each file's own.
        days: Days to simulate from each file's start age instead of its end age.
        size: Lattice side instead of each file's own.
        engine: Simulation engine ("array" or "agents") instead of each file's own.
        allow_large: Allow up to `LARGE_LIMITS` sweep points and runs instead of `LIMITS`.

    Raises:
        ScenarioError: If a file is missing or invalid, two files share a scenario name, or
            the batch is over the limits.
    """
    limits = LARGE_LIMITS if allow_large else LIMITS
    sources = []
    for file in files:
        text = read_scenario_text(file)
        sources.append(Source(str(file), text, parse_scenario(text, str(file), limits.points)))
    overrides = {"replicates": replicates, "days": days, "size": size, "engine": engine}
    given = {key: value for key, value in overrides.items() if value is not None}
    return _plan(sources, cast(Overrides, given), limits)  # the options given (None dropped)


def plan_from_manifest(folder: str | Path, allow_large: bool = False) -> Plan:
    """The plan of an earlier batch, rebuilt from the scenario texts and options it recorded.

    Raises:
        OutputError: If `folder` holds no readable manifest.
        ScenarioError: If the recorded scenarios are invalid or over the limits.
    """
    from tissue_abm.runs.results import read_manifest  # pandas and pyarrow: not for planning

    manifest = read_manifest(Path(folder), resumable=True)
    limits = LARGE_LIMITS if allow_large else LIMITS
    return _plan(
        [
            Source(
                entry["file"],
                entry["text"],
                parse_scenario(entry["text"], entry["file"], limits.points),
            )
            for entry in manifest["scenarios"]
        ],
        manifest.get("overrides", {}),
        limits,
    )


def _plan(sources: list[Source], overrides: Overrides, limits: Limits = LIMITS) -> Plan:
    if not sources:
        raise ScenarioError("no scenario files given")
    if overrides:
        sources = [
            Source(
                s.file, s.text, s.scenario.with_overrides(**overrides, source=f"{s.file} (options)")
            )
            for s in sources
        ]
    total = sum(
        s.scenario.replicates * (s.scenario.sweep.count if s.scenario.sweep else 1) for s in sources
    )
    if total > limits.runs:
        where = sources[0].file if len(sources) == 1 else f"these {len(sources)} scenario files"
        what = "the batch (sweep points × replicates)"
        raise ScenarioError(f"{where}: " + too_many(what, total, limits.runs, "runs"))
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
        for point in source.scenario.sweep_points(source.file, limits.points):
            for replicate, seed in enumerate(seeds):
                scenario = point.scenario.model_copy(update={"seed": seed, "replicates": 1})
                runs.append(RunSpec(scenario, point.index, point.values, replicate))
    return Plan(sources, overrides, runs, limits)


def check_scheduler(scheduler: str | None) -> tuple[str, int] | None:
    """Check a scheduler address before anything is written.

    Args:
        scheduler: None, "local", or "tcp://host:port".

    Returns:
        (host, port) of a tcp address; None for None or "local".

    Raises:
        ScenarioError: For anything else (one line naming the option and what is allowed).
    """
    if scheduler is None or scheduler == "local":
        return None
    try:
        parts = urlsplit(scheduler)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if (
        parts is None
        or parts.scheme != "tcp"
        or not parts.hostname
        or not port
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        raise ScenarioError(
            f"--scheduler {scheduler!r} is not allowed; allowed: tcp://host:port (the address "
            "of a Dask scheduler) or 'local' (a cluster on this machine)"
        )
    return parts.hostname, port

"""Scenario files (TOML): load, validate with one-line errors, and run.

A scenario names a tissue (size, ages), a seed and engine, parameter overrides, therapies and
experimental perturbations (`[[perturbation]]` tables, `tissue_abm.biology.perturbation`); for
batch work it may also ask for replicates, a parameter sweep (`[sweep.grid]`, `[sweep.zip]`) and
output options (`[output]`). Every sweep point is validated like the file itself when the file
is loaded.

File format: docs/scenarios.md#a-scenario-file (the simulation keys), then
docs/batch.md#scenario-files-for-batch-work (replicates and their seeds, sweeps and sweep keys,
output) and docs/model.md#experimental-perturbations (the perturbation tables).

Every problem is reported as a `ScenarioError` whose message is one line naming the file, the
key, the bad value and what is allowed (docs/scenarios.md#errors). Sizes are bounded before any
work: a scenario file is a regular file of at most `MAX_FILE_BYTES`, a sweep has at most
`LIMITS.points` points (`LARGE_LIMITS` with --allow-large), and the agents engine's lattice at
most `AGENTS_MAX_SIZE` sites a side (its memory: `AGENTS_BYTES_PER_SITE`).
"""

from __future__ import annotations

import copy
import difflib
import itertools
import math
import os
import re
import stat
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal, NamedTuple, Self, cast

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from tissue_abm.biology.params import Parameters
from tissue_abm.biology.perturbation import PERTURBATIONS, Perturbation, check_perturbations
from tissue_abm.biology.therapy import DAYS, MAX_AGE, Therapy
from tissue_abm.engines import Engine, EngineName, engine_class


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message is one line for the user."""


MAX_FILE_BYTES = 1_000_000
"""Largest scenario file read, in bytes (the shipped ones are under 5 kB)."""


class Limits(NamedTuple):
    """How much work one command may plan (checked before anything runs)."""

    points: int
    """Sweep points of one scenario file (each is validated, ~60 µs a point)."""
    runs: int
    """Runs of one batch or study: sweep points × replicates, over all its files."""


LIMITS = Limits(points=100_000, runs=100_000)
"""The limits without --allow-large."""

LARGE_LIMITS = Limits(points=1_000_000, runs=1_000_000)
"""The limits with --allow-large (the manifest lists every run, and is rewritten as they end)."""

AGENTS_MAX_SIZE = 1000
"""Largest lattice side on the agents engine (its other bound, 4000, is the array engine's)."""

AGENTS_BYTES_PER_SITE = 2000
"""Memory the agents engine takes per site: 2.0 kB measured (the growth of the resident size
from 300×300 to 600×600, Mesa 3.5, CPython 3.12), so 1000×1000 takes about 2 GB."""


def too_many(what: str, count: int, limit: int, unit: str) -> str:
    """The end of a one-line error for a plan over a limit: '<what> has N <unit>; allowed: ...'."""
    large = next(value for field, value in LARGE_LIMITS._asdict().items() if field == unit)
    more = f" (--allow-large: up to {large})" if limit < large else ", even with --allow-large"
    return f"{what} has {count} {unit}; allowed: at most {limit}{more}"


SWEEPABLE = (
    "size",
    "torus",
    "start_age",
    "end_age",
    "engine",
    "parameters",
    "therapy",
    "perturbation",
)
"""Top-level keys a sweep may vary (through dotted paths below `parameters`, `therapy` and
`perturbation`: `perturbation.<position from 0>.<key>`)."""


class Sweep(BaseModel):
    """Values to sweep: the product of the `grid` lists times the zipped `zip` lists."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    grid: dict[str, list[Any]] = Field(
        default_factory=dict, description="Key -> values; every combination is run."
    )
    zip: dict[str, list[Any]] = Field(
        default_factory=dict, description="Key -> values; lists taken side by side."
    )

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("must be a table with grid = {...} and/or zip = {...}")
        if set(data) - {"grid", "zip"}:
            return data  # reported as unknown keys, with the closest valid name
        for table in ("grid", "zip"):
            values = data.get(table, {})
            if not isinstance(values, dict):
                raise ValueError(f"{table} must be a table of key = [values]")
            for key, options in values.items():
                if isinstance(options, dict):
                    raise ValueError(
                        f"{table}.{key} is a table; write a dotted sweep key in "
                        f'quotes, e.g. "{key}.{next(iter(options), "x")}..." = '
                        "[values]"
                    )
                if not isinstance(options, list) or not options:
                    raise ValueError(
                        f"{table}.{key} = {options!r} is not allowed; allowed: a "
                        "non-empty list of values"
                    )
        if not data.get("grid") and not data.get("zip"):
            raise ValueError("empty sweep; give grid = {key = [values]} and/or zip = {...}")
        lengths = {key: len(options) for key, options in data.get("zip", {}).items()}
        if len(set(lengths.values())) > 1:
            listing = ", ".join(f"{key}: {n}" for key, n in lengths.items())
            raise ValueError(f"zip lists must be equally long ({listing})")
        columns = [sweep_column(key) for table in ("grid", "zip") for key in data.get(table, {})]
        twice = sorted({c for c in columns if columns.count(c) > 1})
        if twice:
            raise ValueError(f"'{twice[0]}' is swept twice; give each key once")
        return data

    @property
    def count(self) -> int:
        """How many points the sweep has (computed without listing them)."""
        zipped = len(next(iter(self.zip.values()))) if self.zip else 1
        return math.prod(len(options) for options in self.grid.values()) * zipped

    @property
    def keys(self) -> list[str]:
        """The swept keys, grid first, as result column names (see `sweep_column`)."""
        return [sweep_column(key) for key in [*self.grid, *self.zip]]

    def points(self) -> list[dict[str, Any]]:
        """Every sweep point as {column: raw value}, in a fixed order (grid varies slowest)."""
        grid = [
            dict(zip(self.grid, combo, strict=True))
            for combo in itertools.product(*self.grid.values())
        ]
        zipped = [
            dict(zip(self.zip, combo, strict=True))
            for combo in zip(*self.zip.values(), strict=True)
        ] or [{}]
        return [{sweep_column(k): v for k, v in {**g, **z}.items()} for g in grid for z in zipped]


class Output(BaseModel):
    """What a run keeps: readouts every `every` days and whole-grid snapshots at given ages."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    every: int = Field(
        1,
        ge=1,
        le=MAX_AGE,
        description="Keep the readouts of every N-th day (the first and last day are always kept).",
        json_schema_extra=DAYS,
    )
    snapshots: list[int] = Field(
        default_factory=list,
        description="Ages (days) at which the whole grid is saved.",
        json_schema_extra=DAYS,
    )


class Scenario(BaseModel):
    """A validated scenario: what to simulate and how."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="Identifier used in results (letters, digits, _ . -).",
    )
    description: str = Field("", description="What the scenario represents.")
    seed: int = Field(1, ge=0, le=2**63 - 1, description="Base random seed.")
    engine: EngineName = Field("array", description="Simulation engine.")
    size: int = Field(
        100, ge=3, le=4000, description="Lattice side L.", json_schema_extra={"unit": "sites"}
    )
    torus: bool = Field(True, description="Whether the lattice wraps around.")
    start_age: int = Field(
        90, ge=0, le=MAX_AGE, description="Organism age at day 0.", json_schema_extra=DAYS
    )
    end_age: int = Field(
        730, ge=1, le=MAX_AGE, description="Organism age at the end.", json_schema_extra=DAYS
    )
    parameters: Parameters = Field(
        default_factory=Parameters, description="Overrides of the default parameters."
    )
    therapy: Therapy = Field(default_factory=Therapy, description="Drug regimens.")
    replicates: int = Field(1, ge=1, le=100_000, description="Runs per sweep point in a batch.")
    sweep: Sweep | None = Field(None, description="Parameter values to sweep in a batch.")
    output: Output = Field(default_factory=Output, description="What each run keeps.")
    perturbation: list[Perturbation] = Field(
        default_factory=list,
        description="Experimental perturbations, in time order.",
        json_schema_extra={
            "allowed": "a list of tables [[perturbation]], each with kind = "
            + " or ".join(repr(kind) for kind in PERTURBATIONS)
        },
    )

    @model_validator(mode="after")
    def _ages(self) -> Self:
        if self.end_age <= self.start_age:
            raise ValueError(f"end_age ({self.end_age}) must be after start_age ({self.start_age})")
        outside = [a for a in self.output.snapshots if not self.start_age <= a <= self.end_age]
        if outside:
            raise ValueError(
                f"output.snapshots: age {outside[0]} is outside the run; allowed: "
                f"ages from start_age ({self.start_age}) to end_age ({self.end_age})"
            )
        check_perturbations(self.perturbation, self.size, self.start_age, self.end_age)
        if self.engine == "agents" and self.size > AGENTS_MAX_SIZE:
            need = self.size**2 * AGENTS_BYTES_PER_SITE / 1e9
            raise ValueError(
                f"size = {self.size} is not allowed with engine = 'agents'; allowed: at most "
                f"{AGENTS_MAX_SIZE} (the agents engine needs about "
                f"{AGENTS_BYTES_PER_SITE / 1000:g} kB a site, {need:.3g} GB at this size; the "
                "array engine takes sizes up to 4000)"
            )
        return self

    @property
    def days(self) -> int:
        """Number of simulated days."""
        return self.end_age - self.start_age

    def with_overrides(
        self,
        *,
        seed: int | None = None,
        days: int | None = None,
        size: int | None = None,
        replicates: int | None = None,
        engine: str | None = None,
        source: str = "command line",
    ) -> Scenario:
        """A copy with the given settings changed (None: unchanged), validated like the file.

        Shortening the run with `days` drops the snapshot ages and the perturbations it no
        longer reaches (the last ones, as perturbations are in time order, so the others keep
        their positions and their random numbers).
        """
        data = self.model_dump()
        if seed is not None:
            data["seed"] = seed
        if replicates is not None:
            data["replicates"] = replicates
        if engine is not None:
            data["engine"] = engine
        if days is not None:
            if not 1 <= days <= MAX_AGE - self.start_age:
                raise ScenarioError(
                    f"{source}: days = {days} is not allowed; allowed: a whole "
                    f"number from 1 to {MAX_AGE - self.start_age}"
                )
            data["end_age"] = self.start_age + days
            data["output"]["snapshots"] = [
                age for age in self.output.snapshots if age <= data["end_age"]
            ]
            data["perturbation"] = [
                perturbation
                for perturbation in data["perturbation"]
                if perturbation["age"] < data["end_age"]
            ]
        if size is not None:
            data["size"] = size
        return validate_scenario(data, source)

    def replicate_seeds(self) -> list[int]:
        """Seeds of the replicates: `SeedSequence(seed).spawn(replicates)`, as 63-bit integers.

        Every sweep point uses the same seeds (common random numbers), so points and scenarios
        with the same base seed are compared on matched randomness.
        """
        return [
            int(child.generate_state(1, np.uint64)[0] >> np.uint64(1))
            for child in np.random.SeedSequence(self.seed).spawn(self.replicates)
        ]

    def sweep_points(self, source: str, max_points: int = LIMITS.points) -> list[SweepPoint]:
        """The scenario at each sweep point (one point, with no values, if there is no sweep).

        Args:
            source: Names the scenario in errors.
            max_points: The most points allowed (`LIMITS.points`, or `LARGE_LIMITS.points`).

        Raises:
            ScenarioError: If a point is invalid (the message names the sweep key and value),
                or there are more than `max_points`.
        """
        if self.sweep is None:
            return [SweepPoint(0, {}, self)]
        if self.sweep.count > max_points:
            raise ScenarioError(
                f"{source}: " + too_many("the sweep", self.sweep.count, max_points, "points")
            )
        base = self.model_dump(exclude={"sweep"})
        paths = {
            sweep_column(key): (table, key, sweep_path(key, source))
            for table in ("grid", "zip")
            for key in getattr(self.sweep, table)
        }
        for _, key, path in paths.values():
            if path[0] == "perturbation" and int(path[1]) >= len(self.perturbation):
                count = len(self.perturbation)
                raise ScenarioError(
                    f"{source}: sweep key '{key}' is not allowed; the run has "
                    f"{count} [[perturbation]] table(s) (a run shortened with "
                    "--days keeps those it reaches); allowed: "
                    f"perturbation.<i>.<key> with i below {count}"
                )
        points = []
        for index, raw in enumerate(self.sweep.points()):
            data = copy.deepcopy(base)
            for column, value in raw.items():
                _set_path(data, paths[column][2], value)
            try:
                scenario = Scenario.model_validate(data)
            except ValidationError as err:
                raise ScenarioError(
                    one_line(f"{source}: {_sweep_error(err, raw, paths)}")
                ) from None
            resolved = scenario.model_dump()
            values = {column: _get_path(resolved, paths[column][2]) for column in raw}
            points.append(SweepPoint(index, values, scenario))
        return points

    def point(self, index: int | None, source: str, max_points: int = LIMITS.points) -> SweepPoint:
        """Sweep point `index` of the scenario, for one run (`tissue-abm run --point`).

        Args:
            index: Position in the sweep (as a batch numbers its points, from 0); None for a
                scenario without a sweep.
            source: Names the scenario in errors.
            max_points: The most points allowed.

        Raises:
            ScenarioError: If the scenario sweeps and no point (or one outside the sweep) is
                given, or it does not sweep and a point other than 0 is (one line).
        """
        points = self.sweep_points(source, max_points)
        if index is None and self.sweep is None:
            return points[0]
        if index is not None and 0 <= index < len(points):
            return points[index]
        if self.sweep is None:
            raise ScenarioError(
                f"--point {index} is not allowed; {source} has no sweep; allowed: 0 or no --point"
            )
        keys = ", ".join(points[0].values)
        given = "no --point" if index is None else f"--point {index}"
        raise ScenarioError(
            f"{source} sweeps {len(points)} points ({keys}) and `run` runs one: {given} is not "
            f"allowed; allowed: --point N with N from 0 to {len(points) - 1} (`tissue-abm batch` "
            "runs every point)"
        )

    def create_model(self) -> Engine:
        """The model of this scenario on its engine, seeded with `seed`, with its perturbations.

        The engine is imported now (Mesa or numba); validating a scenario imports neither.
        """
        return engine_class(self.engine)(
            params=self.parameters,
            therapy=self.therapy,
            size=self.size,
            start_age=self.start_age,
            days=self.days,
            torus=self.torus,
            rng=self.seed,
            perturbations=self.perturbation,
        )


class SweepPoint(NamedTuple):
    """One point of a scenario's sweep."""

    index: int  # type: ignore[assignment]  # shadows tuple.index on purpose, as NamedTuple allows
    """Position in the sweep (0 without a sweep)."""
    values: dict[str, Any]
    """Swept column -> validated value at this point (empty without a sweep)."""
    scenario: Scenario
    """The scenario with these values applied and no sweep."""


def sweep_column(key: str) -> str:
    """The result column of a sweep key: a parameter's bare name, else the dotted path."""
    prefix = "parameters."
    return key[len(prefix) :] if key.startswith(prefix) else key


def sweep_path(key: str, source: str) -> tuple[str, ...]:
    """Where a sweep key points in the scenario file, e.g. ('therapy', 'rapamycin', 'dose').

    Raises:
        ScenarioError: If the key is neither a parameter name nor a sweepable path.
    """
    if key in Parameters.model_fields:
        return ("parameters", key)
    path = tuple(key.split("."))
    depth = {"parameters": (2,), "therapy": (2, 3), "perturbation": (3,)}.get(path[0], (1,))
    if (
        path[0] in SWEEPABLE
        and len(path) in depth
        and (path[0] != "perturbation" or path[1].isdecimal())
    ):
        return path
    choices = [c for c in [*Parameters.model_fields, *SWEEPABLE] if c != key]
    close = difflib.get_close_matches(key, choices, n=1) or difflib.get_close_matches(
        path[-1], [c for c in Parameters.model_fields if c != path[-1]], n=1
    )
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ScenarioError(
        f"{source}: sweep key '{key}' is not allowed; {hint}allowed: a parameter "
        "name (see `tissue-abm params`), "
        + ", ".join(SWEEPABLE[:5])
        + " or a path such as therapy.rapamycin.dose or perturbation.0.age"
    )


def _set_path(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set `path` in the dumped scenario `data`, creating missing tables.

    A list item on the path must exist (`sweep_points` checks it).
    """
    for part in path[:-1]:
        if isinstance(data, list):
            data = data[int(part)]
            continue
        if data.get(part) is None:
            data[part] = {}
        data = data[part]
    data[path[-1]] = value


def _get_path(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    for part in path:
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def _sweep_error(
    err: ValidationError, raw: dict[str, Any], paths: dict[str, tuple[str, str, tuple[str, ...]]]
) -> str:
    """One line for an invalid sweep point, naming the sweep key when the error is its own."""
    error = err.errors()[0]
    for table, key, path in paths.values():
        if _key_path(error["loc"]) == path:
            return f"sweep.{table}.{key}: {describe_error(error)}"
    point = ", ".join(f"{column} = {value!r}" for column, value in raw.items())
    return f"sweep point ({point}): {describe_error(error)}"


def load_scenario(path: str | Path, max_points: int = LIMITS.points) -> Scenario:
    """Read and validate a scenario file (at most `max_points` sweep points).

    Raises:
        ScenarioError: With a one-line message naming the file, key, value and what is allowed.
    """
    return parse_scenario(read_scenario_text(path), str(path), max_points)


_KINDS = {
    stat.S_ISDIR: "a folder",
    stat.S_ISFIFO: "a named pipe",
    stat.S_ISCHR: "a character device",
    stat.S_ISBLK: "a block device",
    stat.S_ISSOCK: "a socket",
}


def read_scenario_text(path: str | Path) -> str:
    """The text of a scenario file: a regular file of at most `MAX_FILE_BYTES`, in UTF-8.

    A named pipe or a device is refused before it is read (it could block or never end).

    Raises:
        ScenarioError: If it is missing, not a regular file, too large, unreadable or not
            UTF-8 (one line naming the file).
    """
    path = Path(path)
    try:  # without blocking: opening a named pipe would wait for a writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file") from None
    except OSError as err:
        raise ScenarioError(f"{path}: cannot read scenario file ({err.strerror})") from None
    try:
        mode, size = os.fstat(fd)[stat.ST_MODE], os.fstat(fd).st_size
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS.items() if test(mode)), "not a file")
            raise ScenarioError(f"{path}: cannot read scenario file ({kind}, not a regular file)")
        if size > MAX_FILE_BYTES:
            raise ScenarioError(
                f"{path}: cannot read scenario file ({size} bytes); allowed: at most "
                f"{MAX_FILE_BYTES} bytes"
            )
        with os.fdopen(os.dup(fd), "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise ScenarioError(f"{path}: cannot read scenario file ({err.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:  # it grew since
        raise ScenarioError(
            f"{path}: cannot read scenario file (over {MAX_FILE_BYTES} bytes); allowed: at "
            f"most {MAX_FILE_BYTES} bytes"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ScenarioError(f"{path}: not UTF-8 text (byte {err.start})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")  # as Path.read_text reads it


def parse_scenario(text: str, source: str, max_points: int = LIMITS.points) -> Scenario:
    """Validate a scenario given as TOML text; `source` names it in errors.

    Args:
        text: The file's text.
        source: Names it in errors.
        max_points: The most sweep points allowed (`LIMITS.points` or `LARGE_LIMITS.points`).

    Raises:
        ScenarioError: With a one-line message naming the source, key, value and what is allowed.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"{source}: not valid TOML: {err}") from None
    scenario = validate_scenario(data, source)
    scenario.sweep_points(source, max_points)  # every sweep point is checked now, before any run
    return scenario


def validate_scenario(data: dict[str, Any], source: str) -> Scenario:
    """Validate a scenario given as a dict (parsed TOML); `source` names it in errors."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        errors = err.errors()
        more = len(errors) - 1
        tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise ScenarioError(one_line(f"{source}: {describe_error(errors[0])}{tail}")) from None


# --- error messages ---------------------------------------------------------------------------


def one_line(text: str) -> str:
    """`text` with control characters (newlines, tabs, ...) shown as escapes."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], text)


def describe_error(error: ErrorDetails) -> str:
    """One line for one pydantic error: the key, the bad value and what is allowed."""
    loc = _key_path(error["loc"])
    key = ".".join(loc)
    kind = error["type"]
    value = error.get("input")
    owner, field = _field_of(Scenario, error["loc"])
    if kind in ("union_tag_invalid", "union_tag_not_found"):  # the kind of a perturbation
        tag = error["ctx"]["discriminator"].strip("'")
        allowed = "one of " + ", ".join(repr(name) for name in PERTURBATIONS)
        if kind == "union_tag_not_found":
            return f"missing required key '{key}.{tag}'; allowed: {allowed}"
        return f"{key}.{tag} = {value[tag]!r} is not allowed; allowed: {allowed}"
    if kind == "model_attributes_type":
        return f"{key} = {value!r} is not allowed; allowed: a table of keys"
    if kind == "extra_forbidden":
        keys = sorted(owner.model_fields) if owner is not None else []
        close = difflib.get_close_matches(loc[-1], keys, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        listing = (
            ", ".join(keys)
            if len(keys) <= 12
            else ("see `tissue-abm params`" if owner is Parameters else ", ".join(keys))
        )
        return f"unknown key '{key}'; {hint}allowed keys: {listing}"
    if kind == "missing":
        allowed = f"; allowed: {_allowed(field)}" if field is not None else ""
        return f"missing required key '{key}'{allowed}"
    if kind == "value_error":
        where = f"{key}: " if key else ""
        return f"{where}{error['ctx']['error']}"
    allowed = _allowed(field) if field is not None else error["msg"]
    return f"{key or 'scenario'} = {value!r} is not allowed; allowed: {allowed}"


def _is_tag(loc: tuple[str | int, ...], depth: int) -> bool:
    """Whether loc[depth] is the kind tag pydantic puts after the position of a perturbation."""
    return depth > 0 and isinstance(loc[depth - 1], int) and loc[depth] in PERTURBATIONS


def _key_path(loc: tuple[str | int, ...]) -> tuple[str, ...]:
    """The key path of a pydantic error location, as written in the file (no kind tags)."""
    return tuple(str(part) for depth, part in enumerate(loc) if not _is_tag(loc, depth))


def _field_of(
    model: type[BaseModel], loc: tuple[str | int, ...]
) -> tuple[type[BaseModel] | None, Any]:
    """The model class holding the last key of `loc`, and its FieldInfo (None if unknown)."""
    owner: type[BaseModel] | None = model
    field = None
    for depth, part in enumerate(loc):
        if isinstance(part, int) and depth < len(loc) - 1:
            continue  # an item of a list: its class comes from the kind tag that follows
        if _is_tag(loc, depth):
            owner = PERTURBATIONS[cast(str, part)]  # a tag is a kind's name
            continue
        if owner is None or part not in owner.model_fields:
            return owner, None
        field = owner.model_fields[part]
        if depth < len(loc) - 1:
            owner = _model_class(field.annotation)
    return owner, field


def _model_class(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model class inside an annotation such as `Rapamycin | None`."""
    options = (
        typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    )
    for option in options:
        if isinstance(option, type) and issubclass(option, BaseModel):
            return option
    return None


def _allowed(field: Any) -> str:
    """What a field accepts, in words: type, range and unit, or the list of choices."""
    annotation = field.annotation
    extra = field.json_schema_extra or {}
    if "allowed" in extra:
        return extra["allowed"]
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(annotation))
    if _model_class(annotation) is not None:
        return "a table of keys"
    names = {float: "a number", int: "a whole number", bool: "true or false", str: "a string"}
    options = typing.get_args(annotation) or (annotation,)
    kinds = " or ".join(names.get(o, "nothing" if o is type(None) else str(o)) for o in options)
    bounds = {type(m).__name__: m for m in field.metadata}
    low = getattr(bounds.get("Ge"), "ge", None)
    high = getattr(bounds.get("Le"), "le", None)
    text = kinds
    if low is not None and high is not None:
        text += f" from {low} to {high}"
    elif low is not None:
        text += f" >= {low}"
    pattern = next(
        (getattr(m, "pattern", None) for m in field.metadata if getattr(m, "pattern", None)), None
    )
    if pattern:
        text += " of letters, digits, '_', '.' or '-' (at most 64, starting alnum)"
    unit = extra.get("unit")
    return f"{text} ({unit})" if unit else text

"""Scenario files (TOML): load, validate with one-line errors, and run.

A scenario names a tissue (size, ages), a seed and engine, parameter overrides and therapies::

    name = "combined"
    description = "Rapamycin and oxytocin from 12 months"
    seed = 1
    size = 100
    start_age = 90        # days
    end_age = 730         # days

    [parameters]          # any name from tissue_abm.params, checked against its range
    immune_lifetime = 6.0

    [therapy.rapamycin]   # mg/kg per dose
    dose = 1.0
    start_age = 365

Every problem is reported as a `ScenarioError` whose message is one line naming the file, the
key, the bad value and what is allowed.
"""

from __future__ import annotations

import difflib
import re
import tomllib
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Self

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tissue_abm.model import TissueModel
from tissue_abm.params import Parameters
from tissue_abm.therapy import DAYS, MAX_AGE, Therapy

ENGINES = ("agents",)
"""Simulation engines a scenario may ask for."""


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message is one line for the user."""


class Scenario(BaseModel):
    """A validated scenario: what to simulate and how."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                      description="Identifier used in results (letters, digits, _ . -).")
    description: str = Field("", description="What the scenario represents.")
    seed: int = Field(1, ge=0, le=2**63 - 1, description="Base random seed.")
    engine: Literal[ENGINES] = Field("agents", description="Simulation engine.")
    size: int = Field(100, ge=3, le=4000, description="Lattice side L.",
                      json_schema_extra={"unit": "sites"})
    torus: bool = Field(True, description="Whether the lattice wraps around.")
    start_age: int = Field(90, ge=0, le=MAX_AGE, description="Organism age at day 0.",
                           json_schema_extra=DAYS)
    end_age: int = Field(730, ge=1, le=MAX_AGE, description="Organism age at the end.",
                         json_schema_extra=DAYS)
    parameters: Parameters = Field(default_factory=Parameters,
                                   description="Overrides of the default parameters.")
    therapy: Therapy = Field(default_factory=Therapy, description="Drug regimens.")

    @model_validator(mode="after")
    def _ages(self) -> Self:
        if self.end_age <= self.start_age:
            raise ValueError(f"end_age ({self.end_age}) must be after start_age "
                             f"({self.start_age})")
        return self

    @property
    def days(self) -> int:
        """Number of simulated days."""
        return self.end_age - self.start_age

    def with_overrides(self, *, seed: int | None = None, days: int | None = None,
                       size: int | None = None, source: str = "command line") -> Scenario:
        """A copy with the given settings changed, validated like the file itself."""
        data = self.model_dump()
        if seed is not None:
            data["seed"] = seed
        if days is not None:
            if not 1 <= days <= MAX_AGE - self.start_age:
                raise ScenarioError(f"{source}: days = {days} is not allowed; allowed: a whole "
                                    f"number from 1 to {MAX_AGE - self.start_age}")
            data["end_age"] = self.start_age + days
        if size is not None:
            data["size"] = size
        return validate_scenario(data, source)

    def create_model(self) -> TissueModel:
        """The `TissueModel` of this scenario, seeded with `seed`."""
        return TissueModel(params=self.parameters, therapy=self.therapy, size=self.size,
                           start_age=self.start_age, days=self.days, torus=self.torus,
                           rng=self.seed)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file.

    Raises:
        ScenarioError: With a one-line message naming the file, key, value and what is allowed.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file") from None
    except UnicodeDecodeError as err:
        raise ScenarioError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise ScenarioError(f"{path}: cannot read scenario file ({err.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"{path}: not valid TOML: {err}") from None
    return validate_scenario(data, str(path))


def validate_scenario(data: dict[str, Any], source: str) -> Scenario:
    """Validate a scenario given as a dict (parsed TOML); `source` names it in errors."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        errors = err.errors()
        more = len(errors) - 1
        tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise ScenarioError(one_line(f"{source}: {describe_error(errors[0])}{tail}")) from None


def run_scenario(scenario: Scenario,
                 progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Run a scenario and return its tidy daily readouts.

    Args:
        scenario: The validated scenario.
        progress: Called as progress(done_days, total_days) after each day.

    Returns:
        One row per day (day 0 = initial state): scenario, seed, engine, then every readout.
    """
    model = scenario.create_model()
    for done in range(1, scenario.days + 1):
        model.step()
        if progress is not None:
            progress(done, scenario.days)
    table = model.readouts
    table.insert(0, "scenario", pd.Categorical([scenario.name] * len(table)))
    table.insert(1, "seed", scenario.seed)
    table.insert(2, "engine", pd.Categorical([scenario.engine] * len(table)))
    return table


# --- error messages ---------------------------------------------------------------------------


def one_line(text: str) -> str:
    """`text` with control characters (newlines, tabs, ...) shown as escapes."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], text)



def describe_error(error: dict[str, Any]) -> str:
    """One line for one pydantic error: the key, the bad value and what is allowed."""
    loc = tuple(str(part) for part in error["loc"])
    key = ".".join(loc)
    kind = error["type"]
    value = error.get("input")
    owner, field = _field_of(Scenario, loc)
    if kind == "extra_forbidden":
        allowed = sorted(owner.model_fields) if owner is not None else []
        close = difflib.get_close_matches(loc[-1], allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        listing = ", ".join(allowed) if len(allowed) <= 12 else (
            "see `tissue-abm params`" if owner is Parameters else ", ".join(allowed))
        return f"unknown key '{key}'; {hint}allowed keys: {listing}"
    if kind == "missing":
        return f"missing required key '{key}'"
    if kind == "value_error":
        where = f"{key}: " if key else ""
        return f"{where}{error['ctx']['error']}"
    allowed = _allowed(field) if field is not None else error["msg"]
    return f"{key or 'scenario'} = {value!r} is not allowed; allowed: {allowed}"


def _field_of(model: type[BaseModel], loc: tuple[str, ...]) -> tuple[type | None, Any]:
    """The model class holding the last key of `loc`, and its FieldInfo (None if unknown)."""
    owner: type[BaseModel] | None = model
    field = None
    for depth, part in enumerate(loc):
        if owner is None or part not in owner.model_fields:
            return owner, None
        field = owner.model_fields[part]
        if depth < len(loc) - 1:
            owner = _model_class(field.annotation)
    return owner, field


def _model_class(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model class inside an annotation such as `Rapamycin | None`."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (
        annotation,)
    for option in options:
        if isinstance(option, type) and issubclass(option, BaseModel):
            return option
    return None


def _allowed(field: Any) -> str:
    """What a field accepts, in words: type, range and unit, or the list of choices."""
    annotation = field.annotation
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
    pattern = next((getattr(m, "pattern", None) for m in field.metadata
                    if getattr(m, "pattern", None)), None)
    if pattern:
        text += " of letters, digits, '_', '.' or '-' (at most 64, starting alnum)"
    unit = (field.json_schema_extra or {}).get("unit")
    return f"{text} ({unit})" if unit else text

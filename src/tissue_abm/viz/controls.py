"""The page's controls and the model they build.

The page's Reset (`play.Controls`, as Mesa SolaraViz's) creates a new model with the controls'
values as keyword arguments; `ViewedTissue` is that class: the agents engine (`TissueModel`) set
up from a scenario file and the controls.

What the controls mean:

- *scenario*: a file of the repository's `scenarios/` folder (or the one given to
  `tissue-abm viz`): tissue, ages, parameters and therapies;
- *seed*, *grid size* and *immune competence* (`immune_kill`) always apply;
- each therapy control left at "as in scenario" takes the scenario's regimen; "none" / "off"
  removes it; a schedule ("daily", "weekly", ...) gives that drug at the dose and start age of
  its sliders, whatever the scenario says;
- *compare with*: a reference run beside this one, with the same seed, grid, ages and parameters
  but another therapy: none ("untreated") or a scenario file's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mesa.visualization import Slider

from tissue_abm.biology.therapy import Schedule, Senolytic, Therapy
from tissue_abm.engines.agents.model import TissueModel
from tissue_abm.runs.scenario import Scenario, ScenarioError, load_scenario, validate_scenario
from tissue_abm.viz.serve import SCENARIO_ENV

SCENARIO_FOLDER = Path(__file__).resolve().parents[3] / "scenarios"
"""The repository's canonical scenario files (absent when the package is installed elsewhere)."""

DEFAULTS = "defaults"
"""Scenario choice when there are no scenario files: the default parameters, untreated."""

AS_SCENARIO = "as in scenario"
NONE = "none"
SCHEDULES: dict[str, dict[str, int]] = {
    "daily": {"every": 1},
    "every 3 days": {"every": 3},
    "weekly": {"every": 7},
    "5 days on, 2 off": {"every": 1, "on_days": 5, "off_days": 2},
}
"""Dosing schedules of the rapamycin and oxytocin controls (fields of `therapy.Schedule`)."""
SCHEDULE_CHOICES = [AS_SCENARIO, NONE, *SCHEDULES]
SENOLYTIC_CHOICES = [AS_SCENARIO, "on", "off"]
NO_COMPARISON = "no comparison"
UNTREATED = "untreated"
"""Reference choice: this run's settings without any therapy."""

MAX_SIZE = 200
"""Largest grid size on the slider (sites per side), unless the scenario is larger."""


def scenario_files(extra: str | Path | None = None) -> dict[str, Path]:
    """Choice label -> file: the `.toml` files of `scenarios/`, then `extra` (if another file).

    `extra` is labelled by its stem, or by its path if a canonical file has that stem.
    """
    files = {path.stem: path for path in sorted(SCENARIO_FOLDER.glob("*.toml"))}
    if extra:
        path = Path(extra).resolve()
        if path not in files.values():
            files[path.stem if path.stem not in files else str(path)] = path
    return files


def started_with() -> str | None:
    """The scenario file `tissue-abm viz` was given (from the environment), if any."""
    return os.environ.get(SCENARIO_ENV) or None


def scenario_choices(extra: str | Path | None = None) -> list[str]:
    """Labels of the scenario picker (`DEFAULTS` alone if there are no files)."""
    return list(scenario_files(extra)) or [DEFAULTS]


def initial_choice(extra: str | Path | None = None) -> str:
    """The label the page starts with: `extra`'s, else "untreated", else the first choice."""
    files = scenario_files(extra)
    if extra:
        wanted = Path(extra).resolve()
        return next(label for label, path in files.items() if path == wanted)
    return "untreated" if "untreated" in files else next(iter(files), DEFAULTS)


def load_choice(label: str, extra: str | Path | None = None) -> Scenario:
    """The scenario of a picker label (or of a path to a scenario file).

    Raises:
        ScenarioError: If the label is unknown or its file is invalid (one line).
    """
    files = scenario_files(extra)
    if label in files:
        return load_scenario(files[label])
    if label == DEFAULTS:
        return Scenario(name=DEFAULTS)
    if label.endswith(".toml") and Path(label).is_file():
        return load_scenario(label)
    raise ScenarioError(
        f"scenario {label!r} is not allowed; allowed: one of "
        + ", ".join(scenario_choices(extra))
        + " or a scenario file"
    )


def parse_seed(seed: int | str) -> int:
    """The seed typed into the page (text or number) as an integer.

    Raises:
        ScenarioError: If it is not a whole number >= 0.
    """
    text = str(seed).strip()
    if not text.isdigit():
        raise ScenarioError(f"seed = {seed!r} is not allowed; allowed: a whole number >= 0")
    return int(text)


def _regimen(
    current: dict[str, Any] | None, choice: str, dose: float, start_age: int, drug: str
) -> dict[str, Any] | None:
    """A rapamycin or oxytocin regimen (as scenario-file data) from its three controls."""
    if choice == AS_SCENARIO:
        return current
    if choice == NONE:
        return None
    if choice not in SCHEDULES:
        raise ScenarioError(
            f"{drug} schedule {choice!r} is not allowed; allowed: one of "
            + ", ".join(SCHEDULE_CHOICES)
        )
    return {"dose": float(dose), "start_age": int(start_age), **SCHEDULES[choice]}


def apply_controls(
    base: Scenario,
    *,
    seed: int | str | None = None,
    size: int | None = None,
    rapamycin: str = AS_SCENARIO,
    rapamycin_dose: float = 1.0,
    rapamycin_start_age: int = 365,
    oxytocin: str = AS_SCENARIO,
    oxytocin_dose: float = 1.0,
    oxytocin_start_age: int = 365,
    senolytic: str = AS_SCENARIO,
    immune_kill: float | None = None,
) -> Scenario:
    """The scenario `base` with the page's controls applied (validated like a scenario file).

    Args:
        base: The picked scenario.
        seed: Random seed (None: the scenario's).
        size: Lattice side L, sites (None: the scenario's).
        rapamycin: One of `SCHEDULE_CHOICES`.
        rapamycin_dose: Rapamycin dose, mg/kg (used with a schedule).
        rapamycin_start_age: Age of the first rapamycin dose, days (used with a schedule).
        oxytocin: One of `SCHEDULE_CHOICES`.
        oxytocin_dose: Oxytocin dose, young endogenous levels (used with a schedule).
        oxytocin_start_age: Age of the first oxytocin dose, days (used with a schedule).
        senolytic: One of `SENOLYTIC_CHOICES`; "on" keeps the scenario's senolytic or gives
            the default one (every 30 days, half the senescent cells) from the start age.
        immune_kill: Daily probability that a young immune cell kills an adjacent senescent
            cell (None: the scenario's).

    Raises:
        ScenarioError: With one line naming the control and what is allowed.
    """
    data = base.model_dump()
    data["sweep"] = None
    data["replicates"] = 1
    if seed is not None:
        data["seed"] = parse_seed(seed)
    if size is not None:
        data["size"] = int(size)
    if immune_kill is not None:
        data["parameters"]["immune_kill"] = float(immune_kill)
    therapy = data["therapy"]
    therapy["rapamycin"] = _regimen(
        therapy["rapamycin"], rapamycin, rapamycin_dose, rapamycin_start_age, "rapamycin"
    )
    therapy["oxytocin"] = _regimen(
        therapy["oxytocin"], oxytocin, oxytocin_dose, oxytocin_start_age, "oxytocin"
    )
    if senolytic == "off":
        therapy["senolytic"] = None
    elif senolytic == "on":
        therapy["senolytic"] = therapy["senolytic"] or {"start_age": base.start_age}
    elif senolytic != AS_SCENARIO:
        raise ScenarioError(
            f"senolytic {senolytic!r} is not allowed; allowed: one of "
            + ", ".join(SENOLYTIC_CHOICES)
        )
    return validate_scenario(data, "the page's controls")


def compare_choices(extra: str | Path | None = None) -> list[str]:
    """Labels of the reference picker: none, untreated, then the scenario files."""
    return [NO_COMPARISON, UNTREATED, *(c for c in scenario_choices(extra) if c != UNTREATED)]


def reference_therapy(choice: str, extra: str | Path | None = None) -> Therapy | None:
    """The therapy of the reference run of a picker label (None: no reference run).

    Raises:
        ScenarioError: If the label is not one of `compare_choices` (one line).
    """
    if choice == NO_COMPARISON:
        return None
    if choice == UNTREATED:
        return Therapy()
    if choice not in compare_choices(extra):
        raise ScenarioError(
            f"compare with {choice!r} is not allowed; allowed: one of "
            + ", ".join(compare_choices(extra))
        )
    return load_choice(choice, extra).therapy


class ViewedTissue(TissueModel):
    """The agents engine set up from a scenario and the browser view's controls.

    Attributes:
        choice: The picked scenario (picker label or file).
        settings: The scenario this model runs: the picked one with the controls applied.
        picked: The picked scenario as its file gives it (before the controls).
        problem: What was wrong with the controls and what was done instead (None: nothing).
            A seed that is not a whole number >= 0 (typed into the page) gives the scenario's
            seed, so that a typo does not end the page.
        compare: The reference's label (`compare_choices`).
        reference: The reference run (None without one): a `TissueModel` with this run's
            seed, grid, ages and parameters and the reference's therapy, stepped with it.
    """

    def __init__(
        self,
        scenario_file: str = DEFAULTS,
        rng: int | str | None = None,
        size: int | None = None,
        rapamycin: str = AS_SCENARIO,
        rapamycin_dose: float = 1.0,
        rapamycin_start_age: int = 365,
        oxytocin: str = AS_SCENARIO,
        oxytocin_dose: float = 1.0,
        oxytocin_start_age: int = 365,
        senolytic: str = AS_SCENARIO,
        immune_kill: float | None = None,
        compare: str = NO_COMPARISON,
    ) -> None:
        """Build the tissue of the picked scenario with the controls applied, at day 0.

        Args:
            scenario_file: Picker label (see `scenario_choices`) or path of a scenario file.
            rng: Seed (number or text; None: the scenario's).
            size: Lattice side L, sites (None: the scenario's).
            rapamycin: Rapamycin schedule, one of `SCHEDULE_CHOICES`.
            rapamycin_dose: Rapamycin dose, mg/kg.
            rapamycin_start_age: Age of the first rapamycin dose, days.
            oxytocin: Oxytocin schedule, one of `SCHEDULE_CHOICES`.
            oxytocin_dose: Oxytocin dose, young endogenous levels.
            oxytocin_start_age: Age of the first oxytocin dose, days.
            senolytic: One of `SENOLYTIC_CHOICES`.
            immune_kill: Immune competence: daily kill probability of a young immune cell next
                to a senescent cell (None: the scenario's).
            compare: Reference run, one of `compare_choices`.

        Raises:
            ScenarioError: If the scenario or a control value other than the seed is not
                allowed (one line).
        """
        problem = None
        try:
            seed = None if rng is None else parse_seed(rng)
        except ScenarioError as err:
            seed, problem = None, f"{err}; the scenario's seed is used"
        picked = load_choice(scenario_file, started_with())
        reference = reference_therapy(compare, started_with())
        settings = apply_controls(
            picked,
            seed=seed,
            size=size,
            rapamycin=rapamycin,
            rapamycin_dose=rapamycin_dose,
            rapamycin_start_age=rapamycin_start_age,
            oxytocin=oxytocin,
            oxytocin_dose=oxytocin_dose,
            oxytocin_start_age=oxytocin_start_age,
            senolytic=senolytic,
            immune_kill=immune_kill,
        )
        super().__init__(
            params=settings.parameters,
            therapy=settings.therapy,
            size=settings.size,
            start_age=settings.start_age,
            days=settings.days,
            torus=settings.torus,
            rng=settings.seed,
        )
        self.choice = scenario_file
        self.settings = settings
        self.picked = picked
        self.problem = problem
        self.compare = compare
        self.reference = (
            None
            if reference is None
            else TissueModel(
                params=settings.parameters,
                therapy=reference,
                size=settings.size,
                start_age=settings.start_age,
                days=settings.days,
                torus=settings.torus,
                rng=settings.seed,
            )
        )

    def step(self) -> None:
        """Advance this run, and the reference run with it, by one day."""
        super().step()
        if self.reference is not None:
            self.reference.run_for(1)


def model_params(extra: str | Path | None = None) -> dict[str, Any]:
    """The controls in Mesa SolaraViz's `model_params` format, at the initial scenario's values.

    Args:
        extra: Scenario file the page starts with (None: "untreated" of `scenarios/`).
    """
    label = initial_choice(extra)
    base = load_choice(label, extra)
    rapamycin, oxytocin = base.therapy.rapamycin, base.therapy.oxytocin
    rapa_dose, ot_dose = rapamycin.dose if rapamycin else 1.0, oxytocin.dose if oxytocin else 1.0
    rapa_max, ot_max = max(8.0, rapa_dose), max(5.0, ot_dose)  # a file may give more
    rapa_start, ot_start = _start(rapamycin, base), _start(oxytocin, base)
    last_age = max(730, base.end_age, rapa_start, ot_start)
    return {
        "scenario_file": {
            "type": "Select",
            "value": label,
            "values": scenario_choices(extra),
            "label": "Scenario",
        },
        "rng": {"type": "InputText", "value": str(base.seed), "label": "Seed"},
        "size": Slider(
            f"Grid size (10-{max(MAX_SIZE, base.size)} sites per side)",
            value=base.size,
            min=10,
            max=max(MAX_SIZE, base.size),
            step=10,
        ),
        "rapamycin": {
            "type": "Select",
            "value": AS_SCENARIO,
            "values": SCHEDULE_CHOICES,
            "label": "Rapamycin schedule",
        },
        "rapamycin_dose": Slider(
            f"Rapamycin dose (0-{rapa_max:g} mg/kg)",
            value=rapa_dose,
            min=0.0,
            max=rapa_max,
            step=0.25,
        ),
        "rapamycin_start_age": Slider(
            f"Rapamycin start age (0-{last_age} days)",
            value=rapa_start,
            min=0,
            max=last_age,
            step=5,
        ),
        "oxytocin": {
            "type": "Select",
            "value": AS_SCENARIO,
            "values": SCHEDULE_CHOICES,
            "label": "Oxytocin schedule",
        },
        "oxytocin_dose": Slider(
            f"Oxytocin dose (0-{ot_max:g} young levels)",
            value=ot_dose,
            min=0.0,
            max=ot_max,
            step=0.25,
        ),
        "oxytocin_start_age": Slider(
            f"Oxytocin start age (0-{last_age} days)", value=ot_start, min=0, max=last_age, step=5
        ),
        "senolytic": {
            "type": "Select",
            "value": AS_SCENARIO,
            "values": SENOLYTIC_CHOICES,
            "label": "Senolytic (every 30 d, kills half)",
        },
        "immune_kill": Slider(
            "Immune competence (kill probability/day, 0-1)",
            value=base.parameters.immune_kill,
            min=0.0,
            max=1.0,
            step=0.05,
        ),
        "compare": {
            "type": "Select",
            "value": NO_COMPARISON,
            "values": compare_choices(extra),
            "label": "Compare with (same seed and grid)",
        },
    }


def _start(regimen: Schedule | None, base: Scenario) -> int:
    """Start-age slider value: the regimen's start age, else the scenario's start age."""
    return regimen.start_age if regimen is not None else base.start_age


def initial_values(params: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of `ViewedTissue` at the controls' starting values."""
    return {
        name: option.value if isinstance(option, Slider) else option["value"]
        for name, option in params.items()
    }


def describe(settings: Scenario, picked: Scenario | None = None) -> str:
    """One line of what a model runs: scenario, seed, size, therapies, immune competence.

    Args:
        settings: What the model runs.
        picked: The scenario as its file gives it; when the controls changed its therapies,
            the line starts by saying so and naming the drugs given.
    """
    therapy = settings.therapy
    drugs = [name for name in ("rapamycin", "oxytocin", "senolytic") if getattr(therapy, name)]
    changed = picked is not None and picked.therapy != therapy
    parts = [
        f"{settings.name} with the page's therapies: {' + '.join(drugs) or 'none'}"
        if changed
        else settings.name,
        f"seed {settings.seed}",
        f"{settings.size}×{settings.size} sites",
        "rapamycin " + _dosing(therapy.rapamycin, "mg/kg"),
        "oxytocin " + _dosing(therapy.oxytocin, "young levels"),
        "senolytic " + (_senolytic(therapy.senolytic) if therapy.senolytic else "off"),
        f"immune kill {settings.parameters.immune_kill:g}/day",
    ]
    return " · ".join(parts)


def _schedule(regimen: Schedule) -> str:
    every = {1: "daily", 7: "weekly"}.get(regimen.every, f"every {regimen.every} days")
    cycle = f", {regimen.on_days} d on / {regimen.off_days} d off" if regimen.on_days else ""
    stop = f" to {regimen.stop_age} d" if regimen.stop_age is not None else ""
    return f"{every}{cycle} from {regimen.start_age} d{stop}"


def _dosing(regimen: Any, unit: str) -> str:
    return "none" if regimen is None else f"{regimen.dose:g} {unit} {_schedule(regimen)}"


def _senolytic(regimen: Senolytic) -> str:
    return f"{regimen.fraction:.0%} killed, {_schedule(regimen)}"

"""tissue-abm: agent-based simulation of tissue aging under rapamycin and oxytocin.

The public entry points: `TissueModel` (the Mesa model), `Parameters` (every biological parameter
with its source), `Therapy` (drug regimens), `load_scenario` / `run_scenario` (scenario files),
`plan_batch` / `run_batch` (many runs, resumable) and `load_results` (readouts as a pandas
DataFrame). The layers below them are sub-packages: `biology`, `engines`, `runs`, `analysis`,
`studies` and `viz` (see CONTRIBUTING.md).

The names are imported on first use (PEP 562), so ``import tissue_abm`` stays cheap and a
scenario file can be validated without importing Mesa or numba.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tissue_abm.biology.params import Parameters
    from tissue_abm.biology.therapy import Oxytocin, Rapamycin, Senolytic, Therapy
    from tissue_abm.engines.agents.model import TissueModel
    from tissue_abm.runs.batch import run_batch
    from tissue_abm.runs.plan import plan_batch
    from tissue_abm.runs.results import load_results, load_snapshots
    from tissue_abm.runs.run import run_scenario
    from tissue_abm.runs.scenario import Scenario, ScenarioError, load_scenario

_PUBLIC = {
    "Oxytocin": "tissue_abm.biology.therapy",
    "Parameters": "tissue_abm.biology.params",
    "Rapamycin": "tissue_abm.biology.therapy",
    "Scenario": "tissue_abm.runs.scenario",
    "ScenarioError": "tissue_abm.runs.scenario",
    "Senolytic": "tissue_abm.biology.therapy",
    "Therapy": "tissue_abm.biology.therapy",
    "TissueModel": "tissue_abm.engines.agents.model",
    "load_results": "tissue_abm.runs.results",
    "load_scenario": "tissue_abm.runs.scenario",
    "load_snapshots": "tissue_abm.runs.results",
    "plan_batch": "tissue_abm.runs.plan",
    "run_batch": "tissue_abm.runs.batch",
    "run_scenario": "tissue_abm.runs.run",
}
"""Public name -> the module that defines it."""

__all__ = [
    "Oxytocin",
    "Parameters",
    "Rapamycin",
    "Scenario",
    "ScenarioError",
    "Senolytic",
    "Therapy",
    "TissueModel",
    "load_results",
    "load_scenario",
    "load_snapshots",
    "plan_batch",
    "run_batch",
    "run_scenario",
]


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562)."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'tissue_abm' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

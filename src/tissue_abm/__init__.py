"""tissue-abm: agent-based simulation of tissue aging under rapamycin and oxytocin.

The public entry points: `TissueModel` (the Mesa model), `Parameters` (every biological parameter
with its source), `Therapy` (drug regimens), `load_scenario` / `run_scenario` (scenario files),
`plan_batch` / `run_batch` (many runs, resumable), `load_results` (readouts as a pandas
DataFrame), and the modules on top of it: `analysis`, `survival`, `synergy`, `experiments`,
`spatial`, `plots`, `report`, `sensitivity` and `validation`.
"""

from tissue_abm.batch import plan_batch, run_batch
from tissue_abm.model import TissueModel
from tissue_abm.params import Parameters
from tissue_abm.results import load_results, load_snapshots
from tissue_abm.scenario import Scenario, ScenarioError, load_scenario, run_scenario
from tissue_abm.therapy import Oxytocin, Rapamycin, Senolytic, Therapy

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

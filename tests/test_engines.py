"""The array engine and the Mesa agents engine agree in distribution.

Statistic: for each canonical therapy scenario, each 30-day checkpoint and each of four readouts
(senescent fraction, healthy fraction, immune count, mean SASP), Welch's t-test of the
difference of the replicate means between the engines. Tolerance: the family of all these
comparisons (4 scenarios x 12 checkpoints x 4 readouts = 192) is held at a 1% family-wise false
alarm rate by Bonferroni, so each difference must lie within its 1 - 0.01/192 (99.995%) interval.
Replicates: 16 per engine and scenario on a 20x20 torus over one simulated year (300 -> 665 days
of age, so that the therapies starting at 365 days act for 300 days). The seeds are fixed, so the
outcome is deterministic; the Bonferroni bound says that two correct engines would fail it for
fewer than 1 in 100 seed choices. The last test shows the check has teeth: one changed rule in
the array engine (primary senescence twice as likely) makes it fail. Its power has limits:
doubling the paracrine senescence rate alone (a minority of arrests on these defaults) is not
detected.
"""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tissue_abm import load_results, load_scenario
from tissue_abm.biology import rules
from tissue_abm.runs.batch import plan_batch, run_batch
from tissue_abm.runs.scenario import parse_scenario

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
CANONICAL = ("untreated", "rapamycin", "oxytocin", "combined")
READOUTS = ("senescent_fraction", "healthy_fraction", "immune", "mean_sasp")
CHECKPOINTS = range(30, 366, 30)
REPLICATES = 16
FAMILY_ALPHA = 0.01


def scenario_text(name: str) -> str:
    """The canonical scenario `name` on a small grid over one year from 300 days of age."""
    canonical = load_scenario(SCENARIOS / f"{name}.toml")
    lines = [
        f'name = "{name}"',
        "seed = 11",
        f"replicates = {REPLICATES}",
        "size = 20",
        "start_age = 300",
        "end_age = 665",
        "[output]",
        "every = 30",
    ]
    for drug, regimen in canonical.therapy.model_dump(exclude_none=True).items():
        lines.append(f"[therapy.{drug}]")
        lines += [f"{key} = {value!r}" for key, value in regimen.items() if value is not None]
    return "\n".join(lines) + "\n"


def run_engine(folder: Path, engine: str, workers: int) -> pd.DataFrame:
    files = []
    for name in CANONICAL:
        path = folder / f"{name}.toml"
        path.write_text(scenario_text(name))
        files.append(path)
    run_batch(plan_batch(files, engine=engine), folder / engine, workers=workers)
    return load_results(folder / engine)


def welch_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided p-value of Welch's t-test (1 or 0 when both samples are constant)."""
    if np.ptp(x) == np.ptp(y) == 0:
        return 1.0 if x[0] == y[0] else 0.0
    return float(stats.ttest_ind(x, y, equal_var=False).pvalue)


def compare(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """Welch's t-test of every (scenario, checkpoint, readout), and of each run's mean over the
    checkpoints per (scenario, readout); `passed` under Bonferroni over all of them."""
    rows = []
    runs = ["scenario", "replicate"]
    for name in CANONICAL:
        a = first[(first["scenario"] == name) & first["day"].isin(CHECKPOINTS)]
        b = second[(second["scenario"] == name) & second["day"].isin(CHECKPOINTS)]
        for readout in READOUTS:
            for day in CHECKPOINTS:
                x = a.loc[a["day"] == day, readout].to_numpy(float)
                y = b.loc[b["day"] == day, readout].to_numpy(float)
                rows.append(
                    {
                        "scenario": name,
                        "day": day,
                        "readout": readout,
                        "difference": x.mean() - y.mean(),
                        "p": welch_p(x, y),
                    }
                )
            x = a.groupby(runs, observed=True)[readout].mean().to_numpy(float)
            y = b.groupby(runs, observed=True)[readout].mean().to_numpy(float)
            rows.append(
                {
                    "scenario": name,
                    "day": "mean",
                    "readout": readout,
                    "difference": x.mean() - y.mean(),
                    "p": welch_p(x, y),
                }
            )
    table = pd.DataFrame(rows)
    table["passed"] = table["p"] >= FAMILY_ALPHA / len(table)
    return table


@pytest.fixture(scope="module")
def agents(tmp_path_factory) -> pd.DataFrame:
    return run_engine(tmp_path_factory.mktemp("agents"), "agents", workers=2)


@pytest.fixture(scope="module")
def array(tmp_path_factory) -> pd.DataFrame:
    return run_engine(tmp_path_factory.mktemp("array"), "array", workers=1)


def test_the_scenarios_are_the_canonical_therapies():
    for name in CANONICAL:
        canonical = load_scenario(SCENARIOS / f"{name}.toml").therapy
        assert parse_scenario(scenario_text(name), "test").therapy == canonical


@pytest.mark.slow
def test_both_engines_ran_every_replicate(agents, array):
    for table, engine in ((agents, "agents"), (array, "array")):
        assert set(table["engine"]) == {engine}
        counts = table.groupby("scenario", observed=True)["replicate"].nunique()
        assert counts.to_dict() == dict.fromkeys(CANONICAL, REPLICATES)


@pytest.mark.slow
def test_daily_readouts_agree_between_engines(agents, array):
    table = compare(agents, array)
    assert len(table) == len(CANONICAL) * (len(CHECKPOINTS) + 1) * len(READOUTS)
    failed = table[~table["passed"]]
    assert failed.empty, f"engines differ:\n{failed.to_string()}"
    # the comparison is not vacuous: in both engines the therapies (from day 65) lowered the
    # mean SASP (rapamycin damps it; within a year the burden itself barely moves at 20x20)
    for table_ in (agents, array):
        treated = table_[table_["day"] >= 95].groupby("scenario", observed=True)["mean_sasp"].mean()
        assert treated["rapamycin"] < treated["untreated"] > treated["combined"]


@pytest.mark.slow
def test_a_changed_rule_in_one_engine_fails_the_comparison(agents, tmp_path, monkeypatch):
    """Primary senescence twice as likely in the array engine only: the check must catch it.

    The rule is changed in the numpy kernel (the compiled kernel cannot be patched at run time;
    `test_kernels` shows that the two kernels give the same runs)."""
    monkeypatch.setattr("tissue_abm.engines.array.model.KERNELS", ("numpy",))
    changed = types.SimpleNamespace(
        **{name: getattr(rules, name) for name in dir(rules) if not name.startswith("__")}
    )
    changed.primary_senescence_prob = lambda *args: 2 * rules.primary_senescence_prob(*args)
    monkeypatch.setattr("tissue_abm.engines.array.model.rules", changed)
    table = compare(agents, run_engine(tmp_path, "array", workers=1))
    failed = table[~table["passed"]]
    assert len(failed) >= 4 and (failed["day"] == "mean").any()
    assert "senescent_fraction" in set(failed["readout"])

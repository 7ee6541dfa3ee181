"""The documentation stays true: parameter table, README set-up commands, parameter sources."""

import re
from pathlib import Path

from tissue_abm.biology.params import parameter_table, parameters_markdown
from tissue_abm.runs.batch import plan_batch, run_batch

ROOT = Path(__file__).resolve().parent.parent


def test_parameter_docs_match_the_code():
    # docs/parameters.md is generated; regenerate with `tissue-abm params > docs/parameters.md`.
    assert (ROOT / "docs" / "parameters.md").read_text(encoding="utf-8") == parameters_markdown()


def test_every_parameter_cites_a_source_or_says_it_is_assumed():
    for row in parameter_table():
        source = row["source"]
        assert (
            "§" in source
            or "assumed" in source
            or "definition" in source
            or ("fitted" in source and "calibration" in source)
        ), row["name"]
        assert row["low"] <= row["default"] <= row["high"], row["name"]
        assert row["unit"] and row["description"], row["name"]


def readme_setup_commands():
    """The shell commands of the README's set-up block (lines of the first ```sh block)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```sh\n(.*?)```", readme, re.S)
    assert block, "README has no ```sh set-up block"
    return [line for line in block.group(1).splitlines() if line and not line.startswith("#")]


def test_readme_has_two_setup_commands_and_ci_runs_them_verbatim():
    commands = readme_setup_commands()
    assert len(commands) == 2
    install_and_run, test = commands
    assert "tissue-abm batch" in install_and_run and "pip install" in install_and_run
    assert "pytest" in test
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert install_and_run in ci
    assert test in ci


def test_readme_batch_to_pandas_to_figure_snippet_runs_as_written(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Batch, pandas, figures", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert 'load_results("results/canonical")' in code  # the main command's output folder
    # a small stand-in for the main command's batch: the canonical therapy files on a tiny grid,
    # long enough (to 390 days) for the therapies starting at 365 days to act
    files = [
        ROOT / "scenarios" / f"{name}.toml"
        for name in ("untreated", "rapamycin", "oxytocin", "combined")
    ]
    run_batch(
        plan_batch(files, replicates=2, days=300, size=8),
        tmp_path / "results" / "canonical",
        workers=1,
    )
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "trajectories.png").stat().st_size > 0

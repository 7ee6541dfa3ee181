"""The documentation stays true: parameter table, README set-up commands, parameter sources."""

import re
from pathlib import Path

from factories import make_batch
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


def test_readme_from_python_snippet_runs_and_loads_a_folder_the_setup_command_writes(
    tmp_path, monkeypatch
):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## From Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    folder = re.search(r'load_results\("([^"]+)"\)', code).group(1)
    assert f"--out {folder} " in readme_setup_commands()[0]  # an earlier command wrote it
    make_batch(tmp_path / folder, ("untreated",), replicates=1, size=6, snapshots=())
    code = code.replace("size=50", "size=12").replace("days=120", "days=5")
    code = code.replace("run_for(120)", "run_for(5)")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    model = namespace["model"]
    assert model.therapy.rapamycin is not None and model.therapy.oxytocin is not None
    assert model.params.immune_kill == 0.5
    assert len(namespace["daily"]) == 6 and len(namespace["table"]) > 0


def test_every_source_a_parameter_cites_is_in_docs_references():
    references = (ROOT / "docs" / "references.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^## (\d+)\.", references, re.M))
    for row in parameter_table():
        source = row["source"]
        assert "literature.md" not in source, row["name"]
        for number in re.findall(r"§(\d+)", source):
            assert number in sections, (row["name"], number)
        for author, year in re.findall(r"([A-Z][a-z]+)(?: et al\.)? ((?:19|20)\d\d)", source):
            assert re.search(rf"{author}\b[^\n]*{year}", references), (row["name"], author)
        if "source article" in source:
            assert "§11" in source, row["name"]

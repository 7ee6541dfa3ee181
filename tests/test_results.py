"""Result files and manifests on disk: flushed writes, read-back checks, one-line read errors,
manifest shapes and the model's fingerprint (`tissue_abm.runs.results`, `run.kept_rows`)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pandas as pd
import pytest

from tissue_abm.runs import results
from tissue_abm.runs.results import (
    MANIFEST,
    OutputError,
    ResultsError,
    check_parquet,
    load_results,
    point_parameters,
    read_manifest,
)
from tissue_abm.runs.run import kept_rows, run_scenario
from tissue_abm.runs.scenario import validate_scenario

PACKAGE = Path(results.__file__).resolve().parents[1]


def test_write_atomic_flushes_the_file_before_the_rename_and_the_folder_after(
    tmp_path, monkeypatch
):
    """After a power cut the file holds its old content or the new, never a part (or none):
    the data reaches the disk before the rename, and the rename before `write_atomic` returns."""
    path = tmp_path / "batch.json"
    path.write_text("old")
    synced = []
    real = os.fsync

    def fsync(fd):
        synced.append((Path(os.readlink(f"/proc/self/fd/{fd}")), path.read_text()))
        real(fd)

    monkeypatch.setattr(results.os, "fsync", fsync)
    results.write_json(path, {"new": 1})
    (temporary, seen), (folder, seen_after) = synced
    assert temporary.name.startswith(".batch.json.") and seen == "old"  # before the rename
    assert folder == tmp_path and json.loads(seen_after) == {"new": 1}  # after it
    assert sorted(os.listdir(tmp_path)) == ["batch.json"]


@pytest.mark.parametrize(
    ("every", "snapshots", "days"),
    [(1, [], 9), (4, [90, 95], 10), (5, [95, 95, 100], 10), (3, [], 1)],
)
def test_kept_rows_counts_what_a_run_keeps(every, snapshots, days):
    scenario = validate_scenario(
        {
            "name": "kept",
            "size": 5,
            "start_age": 90,
            "end_age": 90 + days,
            "output": {"every": every, "snapshots": snapshots},
        },
        "case",
    )
    run = run_scenario(scenario)
    assert kept_rows(scenario) == (
        len(run.readouts),
        0 if run.snapshots is None else len(run.snapshots),
    )


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame({"day": range(6), "value": [0.5] * 6})


def test_check_parquet_says_what_is_wrong_with_a_result_file(tmp_path, table):
    path = tmp_path / "run.parquet"
    assert check_parquet(path, 6) == "missing"
    table.to_parquet(path, index=False)
    assert check_parquet(path, 6) is None
    assert check_parquet(path, 7) == "6 rows instead of 7"
    whole = path.read_bytes()
    for damaged, problem in [
        (b"", "unreadable: Parquet file size is 0 bytes"),
        (whole[:-50], "unreadable: Parquet magic bytes not found in footer"),
        (b"not parquet at all", "unreadable: Parquet magic bytes not found in footer"),
    ]:
        path.write_bytes(damaged)
        assert check_parquet(path, 6) == problem


def test_load_results_names_the_file_it_cannot_read(tmp_path, table):
    loose = tmp_path / "runs"
    loose.mkdir()
    table.to_parquet(loose / "a.parquet", index=False)
    (loose / "b.parquet").write_bytes(b"PAR1 and nothing more")
    with pytest.raises(ResultsError) as error:
        load_results(loose)
    assert str(error.value) == (
        f"{loose / 'b.parquet'}: cannot read this result file (Parquet magic bytes not found "
        "in footer. Either the file is corrupted or this is not a parquet file.)"
    )
    batch = tmp_path / "batch"
    (batch / "runs" / "x").mkdir(parents=True)
    (batch / MANIFEST).write_text("{}")
    (batch / "runs" / "x" / "p0000_r0000.parquet").write_bytes(b"")
    with pytest.raises(ResultsError, match=f"`tissue-abm batch --out {batch} --resume` runs it"):
        load_results(batch)
    assert isinstance(error.value, ValueError)  # as the plot and report commands expect


READABLE = {"scenarios": [{"name": "a"}], "runs": [{"status": "done"}]}
"""What the report needs of a manifest."""
RESUMABLE = {
    "format": 2,
    "status": "interrupted",
    "scenarios": [{"name": "a", "file": "a.toml", "text": 'name = "a"\n'}],
    "runs": [{"id": "a/p0000_r0000", "status": "pending"}],
}


@pytest.mark.parametrize(
    ("content", "readable", "resumable"),
    [
        (READABLE, None, "the key 'format' is missing"),
        (RESUMABLE, None, None),
        ({}, "the key 'scenarios' is missing", "the key 'format' is missing"),
        ([], "a JSON object is expected, not []", "a JSON object is expected, not []"),
        (None, "a JSON object is expected, not null", "a JSON object is expected, not null"),
        ({**RESUMABLE, "runs": [{}]}, "the key 'runs.0.status' is missing", "runs.0"),
        ({**RESUMABLE, "runs": [{"id": "x", "status": "lost"}]}, None, 'runs.0.status = "lost"'),
        ({**RESUMABLE, "overrides": {"days": "x"}}, 'overrides.days = "x" is not', "overrides"),
        ({**RESUMABLE, "overrides": {"colour": 1}}, "overrides.colour = 1 is not", "overrides"),
        ({**RESUMABLE, "points": [{"point": 0}]}, "the key 'points.0.scenario' is", "points.0"),
    ],
)
def test_a_manifest_of_the_wrong_shape_is_one_line_naming_the_key(
    tmp_path, content, readable, resumable
):
    (tmp_path / MANIFEST).write_text(json.dumps(content))
    for strict, expected in ((False, readable), (True, resumable)):
        if expected is None:
            assert read_manifest(tmp_path, resumable=strict) == content
            continue
        with pytest.raises(OutputError) as error:
            read_manifest(tmp_path, resumable=strict)
        message = str(error.value)
        assert message.startswith(f"{tmp_path / MANIFEST}: not a batch manifest: ")
        assert expected in message and "\n" not in message


def test_invalid_parameters_in_a_manifest_are_one_line(tmp_path):
    points = [{"scenario": "a", "point": 0, "parameters": {"immune_kill": 7}}]
    (tmp_path / MANIFEST).write_text(json.dumps({**READABLE, "points": points}))
    with pytest.raises(OutputError, match=r"a point's parameters are not valid .*immune_kill = 7"):
        point_parameters(tmp_path)


def test_the_model_sources_are_the_biology_and_the_engines_by_content():
    sources = results.model_sources()
    expected = sorted(
        path.relative_to(PACKAGE).as_posix()
        for folder in ("biology", "engines")
        for path in (PACKAGE / folder).rglob("*.py")
    )
    assert sorted(sources) == expected
    assert {"biology/params.py", "biology/rules.py", "engines/array/kernel.py"} <= set(sources)
    assert {"engines/agents/model.py", "engines/array/draws.py"} <= set(sources)
    params = (PACKAGE / "biology" / "params.py").read_bytes()
    assert sources["biology/params.py"] == hashlib.sha256(params).hexdigest()[:16]


def test_the_fingerprint_changes_with_the_sources_and_the_points(monkeypatch):
    points = [{"scenario": "a", "point": 0, "parameters": {"immune_kill": 0.5}}]
    model = results.model_fingerprint(points)
    assert model["version"] and set(model["libraries"]) == {"mesa", "numpy", "numba"}
    assert results.model_fingerprint(points) == model
    other = [{"scenario": "a", "point": 0, "parameters": {"immune_kill": 0.6}}]
    assert results.model_fingerprint(other)["fingerprint"] != model["fingerprint"]
    edited = {**model["sources"], "biology/rules.py": "0" * 16}
    monkeypatch.setattr(results, "model_sources", lambda: edited)
    assert results.model_fingerprint(points)["fingerprint"] != model["fingerprint"]

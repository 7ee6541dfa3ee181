"""On-disk results: one Parquet file per run plus a JSON manifest, and `load_results`.

Files are written under a temporary name and renamed when complete, so an interrupted run never
leaves a half-written result behind.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from tissue_abm.biology.params import Parameters
from tissue_abm.biology.readouts import READOUTS, SNAPSHOT

PACKAGE = "tissue-abm"

MANIFEST = "batch.json"
"""Name of a batch's manifest inside its results folder."""

RUNS = "runs"
"""Folder (inside a batch's results folder) holding one Parquet file per run."""

GRID_SUFFIX = ".grid.parquet"
"""Suffix of a run's grid-snapshot file, next to its readouts file."""


class OutputError(OSError):
    """The output folder cannot be created or written; the message is one line for the user."""


def prepare_output(folder: str | Path) -> Path:
    """Create `folder` if needed and check that it is writable, before any work is done.

    Raises:
        OutputError: If the folder cannot be created or written.
    """
    folder = Path(folder)
    probe = folder / f".write-test-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise OutputError(f"cannot write results to {folder}: {err.strerror or err}") from None
    return folder


def write_run(
    table: pd.DataFrame,
    manifest: dict[str, Any],
    folder: Path,
    stem: str,
    snapshots: pd.DataFrame | None = None,
) -> Path:
    """Write one run's manifest (`stem.json`), snapshots and readouts (`stem.parquet`).

    All are written to temporary names first and renamed into place only when all are
    complete (the readouts last), so an interruption leaves none behind.

    Args:
        table: The readouts.
        manifest: What the run was (JSON-serialisable).
        folder: Output folder (must exist).
        stem: File name without suffix.
        snapshots: Grid snapshots, written to `stem.grid.parquet`; None for none.

    Returns:
        The path of the readouts file.

    Raises:
        OutputError: If the files cannot be written (disk full, folder removed, ...).
    """
    writers = {
        folder / f"{stem}.json": lambda tmp: tmp.write_text(
            json.dumps(manifest, indent=2, default=str) + "\n"
        )
    }
    if snapshots is not None:
        writers[folder / f"{stem}{GRID_SUFFIX}"] = partial(_parquet, snapshots)
    writers[folder / f"{stem}.parquet"] = partial(_parquet, table)
    temporary = {path: path.with_name(f".{path.name}.{os.getpid()}.tmp") for path in writers}
    try:
        for path, write in writers.items():
            write(temporary[path])
        for path, tmp in temporary.items():
            tmp.replace(path)
    except OSError as err:
        raise OutputError(f"cannot write results to {folder}: {err.strerror or err}") from None
    finally:
        for tmp in temporary.values():
            tmp.unlink(missing_ok=True)
    return folder / f"{stem}.parquet"


def _parquet(table: pd.DataFrame, path: Path) -> None:
    table.to_parquet(path, engine="pyarrow", index=False)


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Call `write(temporary)` and rename the temporary file to `path` once it is complete.

    Raises:
        OutputError: If the file cannot be written (disk full, folder removed, ...).
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        temporary.replace(path)
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}") from None
    finally:
        temporary.unlink(missing_ok=True)


def write_json(path: Path, content: dict[str, Any]) -> None:
    """Write `content` as indented JSON to `path`, atomically."""
    text = json.dumps(content, indent=1, default=str) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_parquet(path: Path, table: pd.DataFrame) -> None:
    """Write `table` (without its index) as Parquet to `path`, atomically."""
    write_atomic(path, partial(_parquet, table))


def load_results(path: str | Path) -> pd.DataFrame:
    """Load readouts into one tidy DataFrame: a batch, a folder of runs, or one run's file.

    Args:
        path: A batch's results folder (with `batch.json`), a folder of `tissue-abm run`
            outputs, or one `.parquet` file.

    Returns:
        One row per run and kept day. Columns: `scenario` (category), `point` (int, batch
        only), one column per swept key (batch only; missing where a scenario does not sweep
        it), `replicate` (int, batch only), `seed` (int), `engine` (category), then `day`,
        `age` and every readout in `tissue_abm.biology.readouts.READOUTS`. Rows are ordered by
        scenario, point, replicate and day.

    Raises:
        FileNotFoundError: If `path` holds no result files.
    """
    return _load(_result_files(Path(path), grid=False), Path(path))


def load_snapshots(path: str | Path) -> pd.DataFrame:
    """Load the grid snapshots of a batch (or of one run's `.grid.parquet` file).

    Returns:
        The label columns of `load_results`, then `age` and one row per site with the
        columns of `tissue_abm.biology.readouts.SNAPSHOT` (`state` categorical).

    Raises:
        FileNotFoundError: If `path` holds no snapshot files.
    """
    return _load(_result_files(Path(path), grid=True), Path(path))


def _result_files(path: Path, grid: bool) -> list[Path]:
    if path.is_file():
        return [path]
    pattern = f"{RUNS}/*/*.parquet" if (path / MANIFEST).exists() else "*.parquet"
    return sorted(f for f in path.glob(pattern) if f.name.endswith(GRID_SUFFIX) == grid)


def _load(files: list[Path], path: Path) -> pd.DataFrame:
    if not files:
        raise FileNotFoundError(f"{path}: no result files")
    schema = pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")
    table = ds.dataset(files, schema=schema, format="parquet").to_table()
    frame = table.to_pandas()
    labels = ["scenario", "point"]
    known = {*labels, "replicate", "seed", "engine", *READOUTS, *SNAPSHOT}
    swept = [c for c in frame if c not in known]
    frame = frame[
        [c for c in labels if c in frame]
        + swept
        + [c for c in frame if c not in labels and c not in swept]
    ]
    for column in ("scenario", "engine", "state"):
        if column in frame and not isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].astype("category")
    return frame


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of the batch in `folder`.

    Raises:
        OutputError: If there is none or it cannot be read.
    """
    try:
        return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OutputError(f"{folder}: no batch here ({MANIFEST} is missing)") from None
    except (OSError, ValueError) as err:
        raise OutputError(f"{folder / MANIFEST}: cannot read the manifest ({err})") from None


def point_parameters(folder: str | Path) -> dict[tuple[str, int], Parameters]:
    """The parameters every run of a batch ran with, by (scenario, sweep point).

    Raises:
        OutputError: If the folder holds no readable manifest, or one without sweep points.
    """
    manifest = read_manifest(Path(folder))
    if "points" not in manifest:
        raise OutputError(
            f"{folder}: the manifest lists no sweep points (it was not written by tissue-abm batch)"
        )
    return {
        (entry["scenario"], entry["point"]): Parameters.model_validate(entry["parameters"])
        for entry in manifest["points"]
    }


def provenance() -> dict[str, Any]:
    """Versions and git commit of the code that produced a result."""
    return {
        "package": PACKAGE,
        "version": metadata.version(PACKAGE),
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "mesa": metadata.version("mesa"),
        "numpy": metadata.version("numpy"),
        "platform": platform.platform(),
    }


def now() -> str:
    """The current UTC time in ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _git_commit() -> str | None:
    """The commit of the source checkout this package runs from, if it is one."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None

"""On-disk results: one Parquet file per run plus a JSON manifest, and `load_results`.

Files are written under a temporary name, flushed to disk (`fsync`) and renamed when complete,
and the rename itself is flushed, so an interrupted run or a power cut never leaves a
half-written result behind. `check_parquet` reads a result back (its footer and row count);
`read_manifest` checks a manifest's shape; `model_fingerprint` says which model made a result.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tissue_abm.biology.params import Parameters
from tissue_abm.biology.readouts import READOUTS, SNAPSHOT
from tissue_abm.runs.layout import GRID_SUFFIX, MANIFEST, RUNS, OutputError

PACKAGE = "tissue-abm"


MODEL_SOURCES = ("biology", "engines")
"""Sub-packages whose source files make the model (`model_fingerprint` hashes them)."""

LIBRARIES = ("mesa", "numpy", "numba")
"""Libraries that compute the model's numbers (their versions are compared on --resume)."""


class ResultsError(ValueError):
    """A result file or manifest that cannot be read; the message is one line naming it."""


def prepare_output(folder: str | Path) -> Path:
    """Create `folder` if needed and check that it is writable, before any work is done.

    Raises:
        OutputError: If the folder cannot be created or written, or is a file.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(
            f"cannot write results to {folder}: it is a file, not a folder; choose another --out"
        )
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
            _fsync(temporary[path])
        for path, tmp in temporary.items():
            tmp.replace(path)
        _fsync(folder, directory=True)
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

    The temporary file is flushed to disk before the rename and the folder after it, so that
    after a power cut `path` holds either its old content or the new one, never a part.

    Raises:
        OutputError: If the file cannot be written (disk full, folder removed, ...).
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        _fsync(temporary)
        temporary.replace(path)
        _fsync(path.parent, directory=True)
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}") from None
    finally:
        temporary.unlink(missing_ok=True)


def _fsync(path: Path, directory: bool = False) -> None:
    """Flush a file's content (or a folder's entries) to disk."""
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, content: dict[str, Any]) -> None:
    """Write `content` as indented JSON to `path`, atomically."""
    text = json.dumps(content, indent=1, default=str) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_parquet(path: Path, table: pd.DataFrame) -> None:
    """Write `table` (without its index) as Parquet to `path`, atomically."""
    write_atomic(path, partial(_parquet, table))


def load_results(path: str | Path, scenarios: Iterable[str] | None = None) -> pd.DataFrame:
    """Load readouts into one tidy DataFrame: a batch, a folder of runs, or one run's file.

    Args:
        path: A batch's results folder (with `batch.json`), a folder of `tissue-abm run`
            outputs, or one `.parquet` file.
        scenarios: Only the runs of these scenarios (a batch reads only their files, so a
            large batch can be analysed a scenario at a time); None: every run.

    Returns:
        One row per run and kept day. Columns: `scenario` (category), `point` (int, batch
        only), one column per swept key (batch only; missing where a scenario does not sweep
        it), `replicate` (int, batch only), `seed` (int), `engine` (category), then `day`,
        `age` and every readout in `tissue_abm.biology.readouts.READOUTS`. Rows are ordered by
        scenario, point, replicate and day.

    Raises:
        FileNotFoundError: If `path` holds no result files.
        ResultsError: If a result file cannot be read (the message names it).
    """
    if scenarios is None:
        return _load(_result_files(Path(path), grid=False), Path(path))
    wanted = set(scenarios)
    if (Path(path) / MANIFEST).exists():  # a batch keeps each scenario's runs in its folder
        files = sorted(
            f
            for name in wanted
            for f in (Path(path) / RUNS / name).glob("*.parquet")
            if not f.name.endswith(GRID_SUFFIX)
        )
    else:
        files = _result_files(Path(path), grid=False)
    frame = _load(files, Path(path))
    chosen = frame[frame["scenario"].astype(str).isin(wanted)]
    return chosen.reset_index(drop=True)


def load_snapshots(path: str | Path) -> pd.DataFrame:
    """Load the grid snapshots of a batch (or of one run's `.grid.parquet` file).

    Returns:
        The label columns of `load_results`, then `age` and one row per site with the
        columns of `tissue_abm.biology.readouts.SNAPSHOT` (`state` categorical).

    Raises:
        FileNotFoundError: If `path` holds no snapshot files.
        ResultsError: If a snapshot file cannot be read (the message names it).
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
    schemas = []
    for file in files:
        try:
            schemas.append(pq.read_schema(file))
        except (OSError, pa.ArrowException) as err:
            raise ResultsError(_unreadable(file, path, err)) from None
    try:
        schema = pa.unify_schemas(schemas, promote_options="permissive")
        table = ds.dataset(files, schema=schema, format="parquet").to_table()
    except (OSError, pa.ArrowException) as err:
        for file in files:  # which one?
            try:
                pq.read_table(file)
            except (OSError, pa.ArrowException) as bad:
                raise ResultsError(_unreadable(file, path, bad)) from None
        message = f"{path}: cannot read the result files together ({_line(err)})"
        raise ResultsError(message) from None
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


def _unreadable(file: Path, path: Path, err: BaseException) -> str:
    """One line for a result file that cannot be read, with how to replace it in a batch."""
    batch = (path / MANIFEST).exists()
    hint = f"; `tissue-abm batch --out {path} --resume` runs it again" if batch else ""
    return f"{file}: cannot read this result file ({_line(err)}){hint}"


def _line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def check_parquet(path: Path, rows: int) -> str | None:
    """Why `path` is not a complete result file of `rows` rows; None if it is one.

    Reads the file's Parquet footer (a file cut short or overwritten has none) and compares
    its row count with `rows`.
    """
    try:
        found = pq.read_metadata(path).num_rows
    except FileNotFoundError:
        return "missing"
    except (OSError, pa.ArrowException) as err:
        return f"unreadable: {_line(err).split('. ')[0]}"
    return None if found == rows else f"{found} rows instead of {rows}"


# --- the manifest ------------------------------------------------------------------------------


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class _ScenarioEntry(_Loose):
    name: str
    file: str | None = None
    text: str | None = None


class _RunEntry(_Loose):
    status: str
    id: str | None = None
    seconds: float | None = None
    error: str | None = None


class _PointEntry(_Loose):
    scenario: str
    point: int
    parameters: dict[str, Any]


class _OverridesEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    replicates: int = Field(1, ge=1)
    days: int = Field(1, ge=1)
    size: int = Field(3, ge=3)
    engine: str = "array"


class _ModelEntry(_Loose):
    version: str
    git_commit: str | None = None
    libraries: dict[str, str | None] = Field(default_factory=dict)
    sources: dict[str, str]
    fingerprint: str


class _Manifest(_Loose):
    """What every reader of a manifest relies on (the report, the validation page)."""

    format: int | None = None
    status: str | None = None
    started: str | None = None
    provenance: dict[str, Any] | None = None
    scenarios: list[_ScenarioEntry] = Field(min_length=1)
    runs: list[_RunEntry]
    overrides: _OverridesEntry | None = None
    points: list[_PointEntry] | None = None
    model: _ModelEntry | None = None


class _ResumableScenario(_ScenarioEntry):
    file: str
    text: str


class _ResumableRun(_RunEntry):
    id: str
    status: Literal["pending", "done", "failed"]


class _Resumable(_Manifest):
    """What resuming a batch relies on, in addition."""

    format: int
    scenarios: list[_ResumableScenario] = Field(min_length=1)  # type: ignore[assignment]
    runs: list[_ResumableRun]  # type: ignore[assignment]


def read_manifest(folder: Path, resumable: bool = False) -> dict[str, Any]:
    """The manifest of the batch in `folder`, checked to have the shape of one.

    Args:
        folder: The batch's folder.
        resumable: Check also what resuming the batch needs (the format, each scenario's
            file and text, each run's id and status).

    Raises:
        OutputError: If there is none, it cannot be read, or it does not have the keys and
            types of a manifest (one line naming the key).
    """
    path = folder / MANIFEST
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OutputError(f"{folder}: no batch here ({MANIFEST} is missing)") from None
    except NotADirectoryError:
        raise OutputError(f"{folder} is a file, not a batch folder") from None
    except (OSError, ValueError) as err:
        raise OutputError(f"{path}: cannot read the manifest ({_line(err)})") from None
    try:
        (_Resumable if resumable else _Manifest).model_validate(content)
    except ValidationError as err:
        raise OutputError(f"{path}: not a batch manifest: {_shape_error(err)}") from None
    return content


def _shape_error(err: ValidationError) -> str:
    error = err.errors()[0]
    key = ".".join(str(part) for part in error["loc"])
    if not key:
        return f"a JSON object is expected, not {json.dumps(error['input'])[:40]}"
    if error["type"] == "missing":
        return f"the key '{key}' is missing"
    value = json.dumps(error["input"], default=str)
    value = value if len(value) <= 40 else value[:37] + "..."
    return f"{key} = {value} is not allowed ({error['msg'].lower()})"


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
    try:
        return {
            (entry["scenario"], entry["point"]): Parameters.model_validate(entry["parameters"])
            for entry in manifest["points"]
        }
    except ValidationError as err:
        raise OutputError(
            f"{Path(folder) / MANIFEST}: not a batch manifest: a point's parameters are not "
            f"valid ({_shape_error(err)})"
        ) from None


def provenance() -> dict[str, Any]:
    """Versions and git commit of the code that produced a result."""
    return {
        "package": PACKAGE,
        "version": metadata.version(PACKAGE),
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        **{library: _version(library) for library in (*LIBRARIES, "pandas", "pyarrow")},
        "platform": platform.platform(),
    }


def _version(library: str) -> str | None:
    try:
        return metadata.version(library)
    except metadata.PackageNotFoundError:
        return None


def model_sources() -> dict[str, str]:
    """SHA-256 (16 hex digits) of each source file of the model, by path in the package.

    The files are those of `MODEL_SOURCES` (the biology: rules, parameters, therapy, ...; the
    engines: both models, the kernels and their random draws), e.g. 'biology/params.py'.
    """
    package = Path(__file__).resolve().parents[1]
    files = sorted(f for folder in MODEL_SOURCES for f in (package / folder).rglob("*.py"))
    return {
        file.relative_to(package).as_posix(): hashlib.sha256(file.read_bytes()).hexdigest()[:16]
        for file in files
    }


def model_fingerprint(points: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What makes results comparable: the model's versions, sources and fingerprint.

    That is the package's version and git commit, the versions of `LIBRARIES`, the hash of
    each source file of the model (`model_sources`), and a fingerprint (SHA-256) of those
    sources and `points`.

    Args:
        points: The resolved inputs of every sweep point (parameters, therapy, size, ...), as
            the manifest lists them.
    """
    sources = model_sources()
    digest = hashlib.sha256(
        json.dumps({"sources": sources, "points": list(points)}, sort_keys=True).encode()
    )
    return {
        "version": metadata.version(PACKAGE),
        "git_commit": _git_commit(),
        "libraries": {library: _version(library) for library in LIBRARIES},
        "sources": sources,
        "fingerprint": digest.hexdigest()[:16],
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

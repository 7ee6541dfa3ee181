"""On-disk results: one Parquet file per run plus a JSON manifest, and `load_results`.

Files are written under a temporary name and renamed when complete, so an interrupted run never
leaves a half-written result behind.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

PACKAGE = "tissue-abm"


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


def write_atomic(path: Path, write: Any) -> Path:
    """Call write(temporary_path), then rename the temporary file to `path`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_run(table: pd.DataFrame, manifest: dict[str, Any], folder: Path, stem: str) -> Path:
    """Write one run's readouts (`stem.parquet`) and manifest (`stem.json`) atomically.

    The Parquet file is renamed into place last, so its presence means the run is complete.

    Returns:
        The path of the Parquet file.
    """
    write_atomic(folder / f"{stem}.json",
                 lambda tmp: tmp.write_text(json.dumps(manifest, indent=2, default=str) + "\n"))
    return write_atomic(folder / f"{stem}.parquet",
                        lambda tmp: table.to_parquet(tmp, engine="pyarrow", index=False))


def load_results(path: str | Path) -> pd.DataFrame:
    """Load readouts into one tidy DataFrame: a run's Parquet file or every run in a folder.

    Args:
        path: A `.parquet` file or a folder of them.

    Returns:
        The concatenated readout tables (one row per run and day), with `scenario` and
        `engine` as categorical columns.
    """
    path = Path(path)
    files = [path] if path.is_file() else sorted(path.glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"{path}: no result files (*.parquet)")
    table = pd.concat([pd.read_parquet(f, engine="pyarrow") for f in files], ignore_index=True)
    for column in ("scenario", "engine"):
        if column in table:
            table[column] = table[column].astype("category")
    return table


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
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None

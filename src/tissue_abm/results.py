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


def write_run(table: pd.DataFrame, manifest: dict[str, Any], folder: Path, stem: str) -> Path:
    """Write one run's readouts (`stem.parquet`) and manifest (`stem.json`) atomically.

    Both are written to temporary names first and renamed into place only when both are
    complete (the Parquet file last), so an interruption leaves neither behind.

    Returns:
        The path of the Parquet file.

    Raises:
        OutputError: If the files cannot be written (disk full, folder removed, ...).
    """
    final = [folder / f"{stem}.json", folder / f"{stem}.parquet"]
    temporary = [path.with_name(f".{path.name}.{os.getpid()}.tmp") for path in final]
    try:
        temporary[0].write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        table.to_parquet(temporary[1], engine="pyarrow", index=False)
        for tmp, path in zip(temporary, final, strict=True):
            tmp.replace(path)
    except OSError as err:
        raise OutputError(f"cannot write results to {folder}: {err.strerror or err}") from None
    finally:
        for tmp in temporary:
            tmp.unlink(missing_ok=True)
    return final[1]


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

"""The layout of a results folder and the error of an unwritable one (no heavy imports).

`tissue_abm.runs.results` writes and reads the files; these names are here so that a command
can plan and check its input without importing pandas or pyarrow.
"""

MANIFEST = "batch.json"
"""Name of a batch's manifest inside its results folder."""

RUNS = "runs"
"""Folder (inside a batch's results folder) holding one Parquet file per run."""

GRID_SUFFIX = ".grid.parquet"
"""Suffix of a run's grid-snapshot file, next to its readouts file."""


class OutputError(OSError):
    """The output folder cannot be created or written; the message is one line for the user."""

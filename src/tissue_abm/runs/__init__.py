"""Runs: scenario files (schema, sweeps, one-line errors), one run, batches, and their results.

`scenario` validates a file without importing an engine; `run` builds the engine and runs it;
`batch` runs many (a process pool or a Dask cluster, resumable); `results` writes and reads the
Parquet files and the manifest.
"""

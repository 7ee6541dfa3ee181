"""Summaries of readout tables (pandas in, pandas out)."""

from __future__ import annotations

import math

import pandas as pd

SUMMARY_READOUTS = {
    "senescent_fraction": "senescent fraction",
    "healthy_fraction": "healthy fraction",
    "mean_sasp": "mean SASP",
    "tissue_function": "tissue function",
}
"""Readouts in the start-versus-end summary, with their labels."""


def healthspan(run: pd.DataFrame, threshold: float) -> float:
    """Age (days) at which tissue function first falls below `threshold`; NaN if it never does.

    Args:
        run: One run's daily readouts (columns `age`, `tissue_function`).
        threshold: Tissue function below which health is lost (the `healthspan_threshold`).
    """
    below = run.loc[run["tissue_function"] < threshold, "age"]
    return float(below.iloc[0]) if len(below) else math.nan


def start_end_summary(run: pd.DataFrame) -> pd.DataFrame:
    """The summary readouts on the first and last day of one run.

    Returns:
        One row per readout (labelled), columns `start` and `end`, and the ages as column names
        in the `attrs` (`start_age`, `end_age`).
    """
    first, last = run.iloc[0], run.iloc[-1]
    table = pd.DataFrame(
        {"start": [first[c] for c in SUMMARY_READOUTS], "end": [last[c] for c in SUMMARY_READOUTS]},
        index=pd.Index(list(SUMMARY_READOUTS.values()), name="readout"),
    )
    table.attrs.update(start_age=float(first["age"]), end_age=float(last["age"]))
    return table

"""Analyses of results tables: summaries, survival, synergy, spatial statistics, experiments, plots.

Each takes the tidy tables of `tissue_abm.runs.results.load_results` (one row per run and day)
and returns tables or figures; none runs a simulation.
"""

"""The biology: parameters, rules, therapies, the systemic state, perturbations and readouts.

Pure functions and data, shared by both engines; this layer imports nothing above it (no
engine, no Mesa, no numba), so a rule or a parameter is written once and tested alone.
"""

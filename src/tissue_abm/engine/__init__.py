"""The array engine: the same biology as the Mesa agents, on whole-grid numpy arrays."""

from tissue_abm.engine.arrays import ArrayTissue

__all__ = ["ArrayTissue"]

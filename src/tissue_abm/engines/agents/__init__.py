"""The agents engine: the tissue as a Mesa model whose cells are agents (the readable reference)."""

from tissue_abm.engines.agents.model import TissueModel

__all__ = ["TissueModel"]

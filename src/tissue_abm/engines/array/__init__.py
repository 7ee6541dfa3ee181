"""The array engine: the same biology as the Mesa agents, on whole-grid arrays."""

from tissue_abm.engines.array.model import (
    KERNELS,
    ArrayTissue,
    load_kernel,
    load_kernel_for_forks,
    set_threads,
    warm_up,
)

__all__ = [
    "KERNELS",
    "ArrayTissue",
    "load_kernel",
    "load_kernel_for_forks",
    "set_threads",
    "warm_up",
]

"""Importing this module loads the serial compiled kernel from numba's cache (`load_kernel`).

A batch's fork server imports it (`tissue_abm.runs.pool.start_fork_server`), so that each
worker it forks starts with the kernel loaded instead of loading it itself (a quarter of a
second each). The serial kernel starts no threads, so the fork server may hold it.
"""

from tissue_abm.engines.array.model import load_kernel

load_kernel()

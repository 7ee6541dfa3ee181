"""What a batch's fork server imports before it forks the workers (`pool.start_fork_server`).

The workers' code (`runs.batch.execute`), and the compiled kernel, loaded here once for every
worker where numba's threads survive a fork (`engines.array.load_kernel_for_forks`): each
worker then starts its first run at once instead of loading the kernel (~0.3 s). Importing
this module anywhere else would load the kernel there too.
"""

from contextlib import suppress

from tissue_abm.engines.array import load_kernel_for_forks
from tissue_abm.runs import batch

__all__ = ["batch"]

with suppress(Exception):  # never stop the fork server: the workers then load it themselves
    load_kernel_for_forks()

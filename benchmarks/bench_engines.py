"""Cell-updates per second of the engines and kernels, their ratios, memory, and bandwidth.

One invocation measures, on this machine and in the same run (untreated tissue from 12 months,
every process active; a cell-update is one site for one day; medians over seeds):

- 100 x 100: the agents engine, the array engine's numpy kernel and its compiled (numba)
  kernel on 1 thread (and 2), over ten times the days, and the array/agents ratios;
- 1000 x 1000 and 2000 x 2000: the numpy kernel, and the compiled kernel on 1 and 2 threads;
- peak memory (VmHWM, the peak resident set of a fresh process; Linux) of a 1000 x 1000 run
  over two simulated years with daily readouts, and of a 2000 x 2000 run over a few days;
- this machine's memory bandwidth (a numpy copy of a 256 MiB array, bytes read + written per
  second) and the fraction of it the compiled kernel achieves at 1000 x 1000, counting the bytes
  of state one day must at least read and write once.

    python benchmarks/bench_engines.py [--days 20] [--repeats 3] [--large 1000 2000]
                                       [--memory-days 730]
"""

import argparse
import statistics
import subprocess
import sys
import time

import numpy as np

from tissue_abm import TissueModel
from tissue_abm.engines.array import KERNELS, ArrayTissue, set_threads, warm_up

START_AGE = 365


def rate(make, size, days, seed):
    """Cell-updates (sites x days) per second of `days` days after set-up and one warm-up day.

    The days run as a scenario runs them: in one `run_for` (Mesa's, for the agents engine).
    """
    model = make(size=size, start_age=START_AGE, days=days + 1, rng=seed)
    model.run_for(1)
    start = time.perf_counter()
    model.run_for(days)
    return size * size * days / (time.perf_counter() - start)


def median_rate(make, size, days, repeats):
    return statistics.median(rate(make, size, days, seed) for seed in range(repeats))


def array(kernel):
    return lambda **kwargs: ArrayTissue(kernel=kernel, **kwargs)


def peak_mib(size, days):
    """Peak resident memory (MiB) of a fresh process that runs the array engine for `days`."""
    code = (
        f"from tissue_abm.engines.array import ArrayTissue\n"
        f"m = ArrayTissue(size={size}, start_age={START_AGE}, days={days}, rng=0)\n"
        f"m.run_for({days})\n"
        f"assert len(m.readouts) == {days + 1}\n"
        "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])"
    )
    # VmHWM, the process's own peak (ru_maxrss would include this parent's, inherited at fork)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) / 1024  # KiB


def bandwidth(mib=256, repeats=5):
    """Bytes per second of a numpy copy (read + write) of a large array; median of repeats."""
    source = np.ones(mib * 2**20 // 8)
    target = np.empty_like(source)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(target, source)
        times.append(time.perf_counter() - start)
    return 2 * source.nbytes / statistics.median(times)


def state_bytes(model):
    """Bytes of per-site state one day must at least read and write once."""
    arrays = [
        model.tissue,
        model.immune,
        model.sasp,
        model.damage,
        model.exposure,
        model.damage_scale,
        model.divisions,
        model.arrest_age,
        model.lifetime,
    ]
    return 2 * sum(a.nbytes for a in arrays) / model.tissue.size


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large", type=int, nargs="*", default=[1000, 2000])
    parser.add_argument("--memory-days", type=int, default=730)
    args = parser.parse_args()
    warm_up()
    compiled = "numba" in KERNELS
    print(
        f"{args.days} days from {START_AGE} days of age, median of {args.repeats} seeds; "
        f"kernels here: {', '.join(KERNELS)}"
    )

    set_threads(1)
    agents = median_rate(TissueModel, 100, args.days, args.repeats)
    print(f"100x100    agents             {agents / 1e6:8.2f} M cell-updates/s")
    for kernel, threads in [(kernel, 1) for kernel in KERNELS] + [("numba", 2)] * compiled:
        set_threads(threads)
        # Ten times the days: the compiled kernel's 20 days at 100 x 100 last only milliseconds.
        measured = median_rate(array(kernel), 100, 10 * args.days, args.repeats)
        print(
            f"100x100    array {kernel:5s} {threads} thread{'s' * (threads > 1)} "
            f"{measured / 1e6:7.2f} M/s   x{measured / agents:,.0f} the agents engine"
        )

    bytes_per_second = bandwidth()
    print(f"memory bandwidth (numpy copy): {bytes_per_second / 1e9:.1f} GB/s")
    for size in args.large:
        runs = [("numpy", 1)] + ([("numba", 1), ("numba", 2)] if compiled else [])
        for kernel, threads in runs:
            set_threads(threads)
            days = args.days if kernel == "numba" else max(3, args.days // 4)
            measured = median_rate(array(kernel), size, days, args.repeats)
            line = (
                f"{size}x{size}  array {kernel:5s} {threads} thread{'s' * (threads > 1)} "
                f"{measured / 1e6:7.2f} M/s"
            )
            if kernel == "numba" and threads == 1 and size == 1000:
                model = ArrayTissue(size=size, start_age=START_AGE, days=1, rng=0)
                floor = bytes_per_second / state_bytes(model)
                line += (
                    f"   {measured / floor:.1%} of the bandwidth bound "
                    f"({floor / 1e6:,.0f} M/s at {state_bytes(model):.0f} B/site)"
                )
            print(line)
    set_threads(None)

    print(
        f"peak memory, 1000x1000 for {args.memory_days} days with daily readouts: "
        f"{peak_mib(1000, args.memory_days):,.0f} MiB"
    )
    print(f"peak memory, 2000x2000 for 3 days: {peak_mib(2000, 3):,.0f} MiB")


if __name__ == "__main__":
    main()

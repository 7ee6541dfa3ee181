"""Cell-updates per second of the two engines, their ratio, memory, and memory bandwidth.

One invocation measures, on this machine and in the same run:

- both engines at 100 x 100 (untreated tissue from 12 months, every process active): median of
  the repeats of sites x days / wall time, and the array/agents ratio;
- the array engine at 1000 x 1000 and 2000 x 2000: cell-updates per second and peak memory
  (tracemalloc of the run, separately from the timing);
- this machine's memory bandwidth (a numpy copy of a 256 MiB array, bytes read + written per
  second) and the fraction of it the array engine achieves at 1000 x 1000, counting the bytes of
  state one day of the model must at least touch.

    python benchmarks/bench_engines.py [--days 30] [--repeats 3] [--large 1000 2000]
"""

import argparse
import statistics
import time
import tracemalloc

import numpy as np

from tissue_abm import TissueModel
from tissue_abm.engine import ArrayTissue

START_AGE = 365


def rate(engine, size, days, seed):
    """Cell-updates (sites x days) per second of `days` steps after set-up."""
    model = engine(size=size, start_age=START_AGE, days=days, rng=seed)
    start = time.perf_counter()
    for _ in range(days):
        model.step()
    return size * size * days / (time.perf_counter() - start)


def median_rate(engine, size, days, repeats):
    return statistics.median(rate(engine, size, days, seed) for seed in range(repeats))


def peak_mib(engine, size, days):
    tracemalloc.start()
    model = engine(size=size, start_age=START_AGE, days=days, rng=0)
    for _ in range(days):
        model.step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


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
    arrays = [model.tissue, model.immune, model.sasp, model.damage, model.exposure,
              model.damage_scale, model.divisions, model.arrest_age, model.lifetime]
    return 2 * sum(a.nbytes for a in arrays) / model.tissue.size


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large", type=int, nargs="*", default=[1000, 2000])
    args = parser.parse_args()

    print(f"{args.days} days from {START_AGE} days of age, median of {args.repeats} seeds")
    agents = median_rate(TissueModel, 100, args.days, args.repeats)
    array = median_rate(ArrayTissue, 100, args.days, args.repeats)
    print(f"100x100   agents {agents / 1e6:8.3f} M cell-updates/s   array {array / 1e6:8.3f} "
          f"M/s   ratio {array / agents:6.0f}")

    bytes_per_second = bandwidth()
    print(f"memory bandwidth (numpy copy): {bytes_per_second / 1e9:.1f} GB/s")
    for size in args.large:
        measured = median_rate(ArrayTissue, size, args.days, args.repeats)
        model = ArrayTissue(size=size, start_age=START_AGE, days=1, rng=0)
        floor = bytes_per_second / state_bytes(model)
        print(f"{size}x{size} array {measured / 1e6:8.2f} M cell-updates/s, "
              f"{measured / floor:.1%} of the bandwidth bound ({floor / 1e6:.0f} M/s at "
              f"{state_bytes(model):.0f} B/site), peak {peak_mib(ArrayTissue, size, 3):.0f} MiB "
              "(3 days)")


if __name__ == "__main__":
    main()

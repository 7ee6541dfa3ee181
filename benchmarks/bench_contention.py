"""The compiled kernel's threads under load: the default choice against the best thread count.

For each lattice (100 x 100 and 1000 x 1000) and each load (0 or 1 competing CPU-bound
processes, a busy loop each), the time per simulated day on 1 thread, on every core, and with
the default choice (`set_threads(None)`: the kernel chooses by lattice size and free cores),
each the median over repeats taken in turn (each first in turn), in the same model; then the
ratio of the default to the best count under the same load (target: at most 1.2), and the
count the default chooses at the end.

`--layer` and `--wait-policy` rerun it under another numba threading layer (workqueue, omp,
tbb) or OpenMP wait policy (OMP_WAIT_POLICY, e.g. passive), in a fresh process.

    python benchmarks/bench_contention.py [--sizes 100 1000] [--loads 0 1] [--repeats 7]
                                          [--layer omp|workqueue|tbb] [--wait-policy passive]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

DAYS = {100: 200, 1000: 3}
"""Days timed at once per lattice side (others: enough for about 30 ms on one thread)."""


def per_day(model, days):
    """Seconds per day of `days` more days of `model`."""
    start = time.perf_counter()
    model.run_for(days)
    return (time.perf_counter() - start) / days


def measure(size, repeats):
    """Median seconds per day on 1 thread, on all cores and by default, in turn per repeat."""
    import numba

    from tissue_abm.engines.array import ArrayTissue, set_threads
    from tissue_abm.engines.array.kernel import kernel_threads

    cores = numba.config.NUMBA_NUM_THREADS
    days = DAYS.get(size, max(3, 3_000_000 // size**2))
    choices = {"1": 1, str(cores): cores, "default": None}
    model = ArrayTissue(size=size, start_age=365, days=days * (3 * repeats + 2) + 1, rng=0)
    set_threads(1)
    model.run_for(days)  # warm caches and threads
    times = {name: [] for name in choices}
    names = list(choices)
    for repeat in range(repeats):  # each first in turn: what runs before may still hold a core
        for name in names[repeat % 3 :] + names[: repeat % 3]:
            set_threads(choices[name])
            times[name].append(per_day(model, days))
    set_threads(None)
    chosen = kernel_threads(size)
    return {name: statistics.median(values) for name, values in times.items()}, chosen


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--loads", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--layer", choices=["omp", "workqueue", "tbb"])
    parser.add_argument("--wait-policy")
    args = parser.parse_args()
    if args.layer or args.wait_policy:
        env = dict(os.environ)
        if args.layer:
            env["NUMBA_THREADING_LAYER"] = args.layer
        if args.wait_policy:
            env["OMP_WAIT_POLICY"] = args.wait_policy
        rest = [a for a in sys.argv[1:] if a not in (args.layer, args.wait_policy)]
        rest = [a for a in rest if a not in ("--layer", "--wait-policy")]
        sys.exit(subprocess.run([sys.executable, __file__, *rest], env=env).returncode)

    import numba

    from tissue_abm.engines.array import warm_up

    warm_up()
    print(
        f"threading layer {numba.threading_layer()}, OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY', '(unset)')}, {numba.config.NUMBA_NUM_THREADS} "
        f"threads at most; median of {args.repeats}; ms per simulated day"
    )
    print(f"{'lattice':>10} {'load':>5} {'1 thread':>9} {'all':>9} {'default':>9} {'ratio':>6}")
    for load in args.loads:
        busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)]
        try:
            time.sleep(0.5)
            for size in args.sizes:
                t, chosen = measure(size, args.repeats)
                one, every, default = (t[name] * 1e3 for name in t)
                ratio = default / min(one, every)
                print(
                    f"{size:>4}x{size:<5} {load:>5} {one:>9.3f} {every:>9.3f} {default:>9.3f} "
                    f"{ratio:>6.2f}   (default now: {chosen} thread{'s' * (chosen > 1)})",
                    flush=True,
                )
        finally:
            for process in busy:
                process.kill()
                process.wait()


if __name__ == "__main__":
    main()

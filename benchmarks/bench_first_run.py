"""The first run on a fresh install against the same run with the kernel cached.

Runs the README's main job (`tissue-abm batch scenarios/*.toml --out DIR --report`) with an
empty numba cache ("cold": the kernel compiles) and then again with the cache it left
("warm"), in a fresh process each time, and prints the wall times, medians over `--repeats`
rounds, and their ratio (target: cold at most 2x warm). Then the compile alone
(`engines.array.warm_up` in a fresh process, empty cache) with the helper process that
compiles part of the kernel (the default) and without it. Each under 0 and 1 competing
CPU-bound processes (a busy loop each). The numba cache used is a temporary folder: the
project's own cache is not touched.

    python benchmarks/bench_first_run.py [--repeats 3] [--loads 0 1]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMAND = Path(sys.executable).parent / "tissue-abm"
WARM_UP = """
import sys, time
from tissue_abm.engines.array import model
if {no_helper}:
    model.HELPER = (sys.executable, "-c", "pass")  # a helper that compiles nothing
start = time.perf_counter()
model.warm_up()
print(time.perf_counter() - start)
"""


def main_job(cache: str) -> float:
    """Wall seconds of the README's main job with numba's cache in `cache`."""
    scenarios = sorted(str(path) for path in (ROOT / "scenarios").glob("*.toml"))
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run(
            [COMMAND, "batch", *scenarios, "--out", f"{out}/canonical", "--report", "--quiet"],
            env={**os.environ, "NUMBA_CACHE_DIR": cache},
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - start


def compile_alone(no_helper: bool) -> float:
    """Seconds of `warm_up` in a fresh process with an empty cache."""
    with tempfile.TemporaryDirectory() as cache:
        done = subprocess.run(
            [sys.executable, "-c", WARM_UP.format(no_helper=no_helper)],
            env={**os.environ, "NUMBA_CACHE_DIR": cache},
            check=True,
            capture_output=True,
            text=True,
        )
        return float(done.stdout.split()[-1])


def measure(repeats: int) -> dict[str, float]:
    """Median seconds of each measurement over `repeats` rounds."""
    times: dict[str, list[float]] = {"cold": [], "warm": [], "helper": [], "alone": []}
    for repeat in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            times["cold"].append(main_job(cache))
            times["warm"].append(main_job(cache))
        for name in ("helper", "alone") if repeat % 2 == 0 else ("alone", "helper"):
            times[name].append(compile_alone(no_helper=name == "alone"))
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loads", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    print(f"README main job, cold (empty numba cache) and warm; medians of {args.repeats}")
    print("busy  cold s  warm s  cold/warm  compile s (helper)  compile s (alone)  load average")
    for load in args.loads:
        busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)]
        try:
            result = measure(args.repeats)
        finally:
            for process in busy:
                process.kill()
                process.wait()
        average = os.getloadavg()[0]
        print(
            f"{load:>4}  {result['cold']:6.1f}  {result['warm']:6.1f}  "
            f"{result['cold'] / result['warm']:9.2f}  {result['helper']:18.1f}  "
            f"{result['alone']:17.1f}  {average:12.1f}"
        )


if __name__ == "__main__":
    main()

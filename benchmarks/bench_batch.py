"""Wall time, overhead and memory of batch runs, on the local process pool and on Dask.

Runs the four canonical therapy scenarios (untreated, rapamycin, oxytocin, combined; ages 90 to
730 days, i.e. to two years of age) with N replicates each (20 and 100 by default) on an L x L
grid, per executor, and prints for each the medians over `--rounds` batches of: wall time, the
sum of the runs' own simulation times, the overhead (wall time x workers / sum of run times - 1:
zero is perfect parallel use of the workers), the batch time as a fraction of the sum of run
times, and the peak resident memory of the whole process tree (parent and workers, sampled every
0.2 s with psutil). From the smallest and the largest batch it splits the overhead into what
each further run costs beside its simulation and a fixed part (start-up and end, in seconds).
Then the same smallest batch by the command (`tissue-abm batch`, a fresh process each time:
its start, imports, fork server and kernel loading included; median of 3). Then it checks
that both executors wrote identical files, and times `load_results` (median of 5) on the first
batch and on a 100-run batch of the same length, and `analysis.summarise` on those tables.

    python benchmarks/bench_batch.py [--replicates 20 100] [--rounds 3] [--size 100] [--workers 2]
                                     [--executors pool dask] [--engine array|agents]
"""

import argparse
import contextlib
import filecmp
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from tissue_abm.runs.batch import plan_batch, run_batch
from tissue_abm.runs.results import MANIFEST

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
CANONICAL = [
    SCENARIOS / f"{name}.toml" for name in ("untreated", "rapamycin", "oxytocin", "combined")
]
EXECUTORS = {"pool": None, "dask": "local"}


class PeakMemory:
    """Samples the resident memory of this process and all its descendants in a thread."""

    def __init__(self, interval=0.2):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for process in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += process.memory_info().rss
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run(plan, folder, workers, scheduler):
    with PeakMemory() as memory:
        start = time.perf_counter()
        summary = run_batch(plan, folder, workers=workers, scheduler=scheduler)
        wall = time.perf_counter() - start
    runs = json.loads((folder / MANIFEST).read_text())["runs"]
    simulated = sum(run["seconds"] for run in runs)
    return {
        "wall": wall,
        "simulated": simulated,
        "failed": summary.failed,
        "overhead": wall * workers / simulated - 1,
        "ratio": wall / simulated,
        "peak_mib": memory.peak / 2**20,
        "runs": len(runs),
    }


def load_time(folder, repeats=5):
    """Median seconds of `load_results` and of `summarise` on its table; rows; scenarios."""
    # Imported here, not at the top: each worker imports this script's top-level imports
    # (multiprocessing runs the main module in its workers), and scipy.stats, which
    # `summarise` imports, takes ~0.45 s a worker: a cost of this script, not of the batch.
    from tissue_abm import load_results
    from tissue_abm.analysis.summary import summarise

    loading, summarising = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        frame = load_results(folder)
        loading.append(time.perf_counter() - start)
        start = time.perf_counter()
        summarise(frame)
        summarising.append(time.perf_counter() - start)
    return (
        statistics.median(loading),
        statistics.median(summarising),
        len(frame),
        frame["scenario"].nunique(),
    )


def same_files(first, second):
    files = sorted(p.relative_to(first) for p in (first / "runs").rglob("*.parquet"))
    match, mismatch, errors = filecmp.cmpfiles(first, second, files, shallow=False)
    return len(match) == len(files) and not mismatch and not errors


def command_line(replicates, args, folder):
    """Wall seconds of `tissue-abm batch` on the canonical scenarios, and the sum of its runs."""
    command = [Path(sys.executable).parent / "tissue-abm", "batch", *map(str, CANONICAL)]
    options = ["--replicates", str(replicates), "--size", str(args.size)]
    options += ["--workers", str(args.workers), "--out", str(folder), "--quiet"]
    if args.engine:
        options += ["--engine", args.engine]
    start = time.perf_counter()
    subprocess.run([*command, *options], check=True, capture_output=True)
    wall = time.perf_counter() - start
    runs = json.loads((folder / MANIFEST).read_text())["runs"]
    return wall, sum(run["seconds"] for run in runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--workers", type=int, default=psutil.cpu_count())
    parser.add_argument("--executors", nargs="+", choices=list(EXECUTORS), default=list(EXECUTORS))
    parser.add_argument(
        "--engine",
        choices=["array", "agents"],
        default=None,
        help="simulation engine (default: the scenario files' own)",
    )
    args = parser.parse_args()

    plans = {
        n: plan_batch(CANONICAL, replicates=n, size=args.size, engine=args.engine)
        for n in args.replicates
    }
    first_plan = plans[args.replicates[0]]
    print(
        f"4 scenarios x {' or '.join(map(str, args.replicates))} replicates, "
        f"{args.size}x{args.size} grid, {first_plan.runs[0].scenario.days} days each, "
        f"{first_plan.runs[0].scenario.engine} engine; {args.workers} workers on "
        f"{psutil.cpu_count()} cores; medians of {args.rounds} rounds"
    )
    print(
        f"{'executor':<10}{'runs':>6}{'wall s':>10}{'sum of runs s':>15}{'overhead':>10}"
        f"{'wall/sum':>10}{'peak MiB':>10}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folders, rows = {}, {}
        for name in args.executors:
            # the sizes in turn in each round, so that a change in the machine's load over the
            # rounds reaches them alike
            rounds: dict[int, list[dict]] = {n: [] for n in plans}
            for round_ in range(args.rounds):
                for n, plan in plans.items():
                    folder = Path(tmp) / f"{name}-{n}-{round_}"
                    rounds[n].append(run(plan, folder, args.workers, EXECUTORS[name]))
                    if n == args.replicates[0]:
                        folders[name] = folder
            for n, plan in plans.items():
                row = {key: statistics.median(r[key] for r in rounds[n]) for key in rounds[n][0]}
                rows[name, n] = row
                print(
                    f"{name:<10}{len(plan.runs):>6}{row['wall']:>10.1f}{row['simulated']:>15.1f}"
                    f"{row['overhead']:>10.1%}{row['ratio']:>10.3f}{row['peak_mib']:>10.0f}"
                    + (f"  ({row['failed']:.0f} failed)" if row["failed"] else ""),
                    flush=True,
                )
        if len(plans) > 1:
            # The difference between the largest and the smallest batch: what each further run
            # costs beside its simulation, and what is left (start-up and end) at any size.
            small, large = min(args.replicates), max(args.replicates)
            for name in args.executors:
                a, b = rows[name, small], rows[name, large]
                per_run = (b["wall"] - a["wall"]) * args.workers / (b["simulated"] - a["simulated"])
                fixed = a["wall"] - per_run * a["simulated"] / args.workers
                print(
                    f"{name}: each further run costs {per_run - 1:.1%} beside its simulation; "
                    f"fixed {fixed:.2f} s a batch (start-up and end)"
                )
        if len(folders) == 2:
            print(
                "identical result files on both executors:",
                "yes" if same_files(*folders.values()) else "NO",
            )

        if "pool" in args.executors:
            # What a user of the command gets: a fresh process each time, which imports the
            # package, starts the fork server and loads the kernel before its first run.
            small = min(args.replicates)
            commands = [command_line(small, args, Path(tmp) / f"cli-{k}") for k in range(3)]
            walls, sums = zip(*commands, strict=True)
            wall, simulated = statistics.median(walls), statistics.median(sums)
            print(
                f"tissue-abm batch, {4 * small} runs, the whole command (median of 3): "
                f"{wall:.1f} s for {simulated:.1f} s of runs, overhead "
                f"{wall * args.workers / simulated - 1:.1%}"
            )

        first = next(iter(folders.values()))
        seconds, summary, rows_read, scenarios = load_time(first)
        print(
            f"load_results: {len(first_plan.runs)} runs ({rows_read} rows, {scenarios} scenarios) "
            f"in {seconds * 1000:.0f} ms, summarise in {summary * 1000:.0f} ms (median of 5)"
        )
        # rows per run do not depend on the grid, so a 100-run batch of the same length on a
        # tiny grid measures loading 100 runs x two years
        hundred = plan_batch(CANONICAL, replicates=25, size=6)
        run_batch(hundred, Path(tmp) / "hundred", workers=args.workers)
        seconds, summary, rows_read, _ = load_time(Path(tmp) / "hundred")
        print(
            f"load_results: 100 runs ({rows_read} rows) in {seconds * 1000:.0f} ms, summarise in "
            f"{summary * 1000:.0f} ms (median of 5)"
        )


if __name__ == "__main__":
    main()

"""Throughput of `tissue-abm answer` and the share of its wall time outside the simulations.

Plans an answer study from the repository's calibration posterior (D draws, every arm, the
hypothesis variants and the dose grid included, 1 replicate, L x L to two years of age), runs it
on W workers, analyses it and writes its page, R times (a fresh folder each), and prints medians of:

- runs per second of the batch (runs / batch wall time);
- the study's wall time split into planning, batch, analysis and page;
- the share of the whole wall time outside the simulations: 1 − (sum of the runs' own
  simulation times / W) / wall time (0: the workers simulate all the time; the study's
  fixed costs, the batch's overhead and the analysis count against it).

    python benchmarks/bench_answer.py [--draws 10] [--size 100] [--workers 2] [--repeats 3]
"""

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from tissue_abm.studies import answer
from tissue_abm.studies.validation import POSTERIOR


def once(design: answer.Design, workers: int) -> dict[str, float]:
    clock = time.perf_counter()
    study = answer.plan_answer(POSTERIOR, design)
    planned = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "answer"
        summary = answer.run_answer(study, out, workers=workers)
        ran = time.perf_counter()
        analysis = answer.analyse_answer(study, out, workers=workers)
        analysed = time.perf_counter()
        answer.answer_page(analysis, Path(folder) / "figures")
        done = time.perf_counter()
    wall = done - clock
    return {
        "runs": study.runs,
        "runs_per_s": study.runs / (ran - planned),
        "plan": planned - clock,
        "batch": ran - planned,
        "analysis": analysed - ran,
        "page": done - analysed,
        "wall": wall,
        "outside": 1.0 - summary.run_seconds / workers / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    design = replace(
        answer.Design(),
        draws=args.draws,
        size=args.size,
        replicates=1,
        end_age=730,
    )
    once(replace(design, draws=1), args.workers)  # compile and warm the fork server
    rows = [once(design, args.workers) for _ in range(args.repeats)]
    median = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
    print(
        f"answer study: {int(median['runs'])} runs ({args.draws} draws x "
        f"{len(answer.plan_answer(POSTERIOR, design).texts)} arms x 1 replicate) of "
        f"{args.size}x{args.size}, ages 90-730 d, {args.workers} workers; medians of "
        f"{args.repeats}"
    )
    print(f"  throughput: {median['runs_per_s']:.1f} runs/s (target >= 10 on 2 cores)")
    print(
        f"  wall {median['wall']:.1f} s = plan {median['plan']:.2f} + batch "
        f"{median['batch']:.1f} + analysis {median['analysis']:.1f} + page {median['page']:.1f}"
    )
    print(f"  outside the simulations: {100 * median['outside']:.0f}% of wall (target <= 15%)")


if __name__ == "__main__":
    main()

"""Throughput and memory of the Mesa agents engine (TissueModel).

Prints, for each lattice size, the median over repeats of agent-steps per second (agents alive
at the start of each day, summed over the timed days, divided by wall time) with every process
on (untreated tissue from 12 months, when senescence, SASP, immune traffic and regeneration are
all active), and the peak memory of building and running the model (tracemalloc, measured in a
separate run because tracing slows Python down). For scale, the same measurement of a plain Mesa
model with one trivial rule per agent on the same grid is printed alongside, from the same run.

    python benchmarks/bench_agents.py [--sizes 100 200] [--days 30] [--repeats 5]
"""

import argparse
import statistics
import time
import tracemalloc

import mesa
from mesa.discrete_space import FixedAgent, OrthogonalMooreGrid

from tissue_abm import TissueModel

START_AGE = 365


class Counter(FixedAgent):
    """A trivial agent: one attribute update per step."""

    def __init__(self, model, cell):
        super().__init__(model)
        self.cell = cell
        self.value = 0

    def step(self):
        self.value += 1


class TrivialModel(mesa.Model):
    """One `Counter` per site of an L x L Moore grid, activated in random order each step."""

    def __init__(self, size, rng=None):
        super().__init__(rng=rng)
        self.grid = OrthogonalMooreGrid((size, size), torus=True, random=self.random)
        for cell in self.grid.all_cells:
            Counter(self, cell)

    def step(self):
        self.agents.shuffle_do("step")


def tissue_rate(size, days, seed):
    """Agent-steps per second of TissueModel over `days` days."""
    model = TissueModel(size=size, start_age=START_AGE, days=days, rng=seed)
    agent_steps = 0
    start = time.perf_counter()
    for _ in range(days):
        agent_steps += len(model.agents)
        model.step()
    return agent_steps / (time.perf_counter() - start)


def trivial_rate(size, days, seed):
    model = TrivialModel(size, rng=seed)
    start = time.perf_counter()
    model.run_for(days)
    return size * size * days / (time.perf_counter() - start)


def peak_memory_mib(size, days):
    tracemalloc.start()
    model = TissueModel(size=size, start_age=START_AGE, days=days, rng=0)
    model.run_for(days)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del model
    return peak / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 200])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    print(f"agents engine, {args.days} days from age {START_AGE} d, median of {args.repeats}")
    print(f"{'L':>5} {'agent-steps/s':>14} {'trivial Mesa':>13} {'ratio':>6} {'peak MiB':>9}")
    for size in args.sizes:
        tissue = statistics.median(tissue_rate(size, args.days, s) for s in range(args.repeats))
        trivial = statistics.median(trivial_rate(size, args.days, s) for s in range(args.repeats))
        memory = peak_memory_mib(size, args.days)
        print(
            f"{size:>5} {tissue:>14,.0f} {trivial:>13,.0f} {tissue / trivial:>6.2f} {memory:>9.1f}"
        )


if __name__ == "__main__":
    main()

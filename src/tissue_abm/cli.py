"""The `tissue-abm` command line.

    tissue-abm run SCENARIO.toml [--out DIR] [--seed N] [--days N] [--size N] [--quiet]
    tissue-abm params

Errors in the input are reported in one line (file, key, value, what is allowed) with exit
status 2, before any simulation starts; an interrupted run exits with 130 and writes nothing.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import typing
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from tissue_abm.analysis import healthspan, start_end_summary
from tissue_abm.params import parameters_markdown
from tissue_abm.results import OutputError, now, prepare_output, provenance, write_run
from tissue_abm.scenario import ScenarioError, load_scenario, run_scenario

DEFAULT_RESULTS = Path("results")

console = Console()


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit status 2, like the rest of the command line."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"tissue-abm: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `tissue-abm`."""
    parser = _Parser(
        prog="tissue-abm",
        description="Agent-based simulation of tissue aging under rapamycin and oxytocin.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run one scenario file and write its readouts",
                              description="Run one simulation of a scenario file; write daily "
                              "readouts (Parquet) and a manifest (JSON); print a summary.")
    run.add_argument("scenario", type=Path, help="scenario file (TOML)")
    run.add_argument("--out", type=Path, default=None,
                     help="output folder (default: results/<scenario name>)")
    run.add_argument("--seed", type=int, default=None, help="random seed (overrides file)")
    run.add_argument("--days", type=int, default=None,
                     help="days to simulate from the start age (overrides end_age)")
    run.add_argument("--size", type=int, default=None, help="lattice side L (sites)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(handler=_run)

    params = commands.add_parser("params", help="print the parameter table (Markdown)")
    params.set_defaults(handler=lambda args: print(parameters_markdown(), end=""))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (ScenarioError, OutputError) as err:
        print(f"tissue-abm: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tissue-abm: interrupted; nothing written", file=sys.stderr)
        return 130
    return 0


def _run(args: argparse.Namespace) -> None:
    scenario = load_scenario(args.scenario).with_overrides(
        seed=args.seed, days=args.days, size=args.size, source=f"{args.scenario} (options)")
    folder = prepare_output(args.out or DEFAULT_RESULTS / scenario.name)

    started, clock = now(), time.perf_counter()
    with Progress(TextColumn(f"[bold]{scenario.name}[/] seed {scenario.seed}"), BarColumn(),
                  MofNCompleteColumn(), TextColumn("days"), TimeRemainingColumn(),
                  console=console, disable=args.quiet, transient=True) as bar:
        task = bar.add_task("run", total=scenario.days)
        table = run_scenario(scenario, progress=lambda done, _: bar.update(task, completed=done))
    manifest = {
        "scenario_file": str(args.scenario),
        "scenario_text": args.scenario.read_text(encoding="utf-8"),
        "scenario": scenario.model_dump(mode="json"),
        "seed": scenario.seed,
        "engine": scenario.engine,
        "days": scenario.days,
        "started": started,
        "finished": now(),
        "wall_seconds": round(time.perf_counter() - clock, 3),
        "status": "done",
        **provenance(),
    }
    path = write_run(table, manifest, folder, f"{scenario.name}_seed{scenario.seed}")
    _print_summary(table, scenario.parameters.healthspan_threshold)
    print(f"readouts: {path}\nmanifest: {path.with_suffix('.json')}")


def _print_summary(table: pd.DataFrame, threshold: float) -> None:
    summary = start_end_summary(table)
    out = Table(title=f"{table['scenario'].iloc[0]} (seed {table['seed'].iloc[0]})")
    out.add_column("readout")
    out.add_column(f"start (age {summary.attrs['start_age']:.0f} d)", justify="right")
    out.add_column(f"end (age {summary.attrs['end_age']:.0f} d)", justify="right")
    for label, row in summary.iterrows():
        out.add_row(label, f"{row['start']:.4f}", f"{row['end']:.4f}")
    console.print(out)
    span = healthspan(table, threshold)
    reached = "not reached" if math.isnan(span) else f"age {span:.0f} days"
    print(f"healthspan (tissue function < {threshold}): {reached}")


if __name__ == "__main__":
    sys.exit(main())

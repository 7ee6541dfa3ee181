"""The `tissue-abm` command line.

    tissue-abm run SCENARIO.toml [--out DIR] [--seed N] [--point N] [--days N] [--size N]
                   [--engine E] [--threads N] [--allow-large] [--quiet]
    tissue-abm batch SCENARIO.toml ... [--out DIR] [--workers N] [--scheduler ADDRESS]
                     [--replicates N] [--days N] [--size N] [--engine E] [--threads N]
                     [--resume] [--allow-large] [--report] [--quiet]
    tissue-abm plot RESULTS [--out DIR] [--format png|svg|pdf] [--dpi N]
    tissue-abm report RESULTS [--out DIR] [--readout NAME] [--reference NAME]
                      [--format png|svg|pdf] [--dpi N]
    tissue-abm sensitivity SCENARIO.toml --params A,B=LOW:HIGH,... --samples N
                           [--method morris|sobol] [--replicates N] [--days N] [--size N]
                           [--threads N] [--out DIR] [--workers N] [--scheduler ADDRESS]
                           [--readout NAME] [--seed N] [--resume] [--allow-large] [--quiet]
    tissue-abm validate RESULTS [--out FILE]
    tissue-abm calibrate [--out DIR] [--population N] [--generations N] [--resume]
                         [--choose-defaults] [--workers N | --scheduler ADDRESS]
    tissue-abm answer [--posterior FILE] [--draws N] [--replicates N] [--quick] [--out DIR]
                      [--page FILE] [--workers N | --scheduler ADDRESS] [--resume]
    tissue-abm params
    tissue-abm viz [SCENARIO.toml] [--port N]

Errors in the input are reported in one line (file, key, value, what is allowed) with exit
status 2, before any simulation starts. An interrupted run exits with 130 and writes nothing;
an interrupted batch (or sensitivity study) exits with 130 after Ctrl-C (143 after SIGTERM,
129 after SIGHUP) and keeps its finished runs for `--resume`. A batch in which runs failed,
or that stopped (workers kept dying, results could not be written), exits with 1.

Each subcommand has its own `_add_<command>` (its options) and `_<command>` (its work); the
options several commands share (`--days`, `--size`, `--engine`, the executor options) are
defined once, in parent parsers. Heavy modules (the engines, pandas' analyses, matplotlib,
Solara, Dask) are imported by the commands that need them, so `--help` and input errors answer
at once.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import socket
import subprocess
import sys
import time
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from tissue_abm.engines import ENGINES, THREADS_VARIABLE, requested_threads
from tissue_abm.viz.serve import DEFAULT_PORT, HOST

if TYPE_CHECKING:
    import pandas as pd

    from tissue_abm.runs.batch import Summary
    from tissue_abm.runs.scenario import Limits
    from tissue_abm.studies.sensitivity import SensitivityIndices

DEFAULT_RESULTS = Path("results")

console = Console()

Handler = Callable[[argparse.Namespace], int | None]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit status 2, like the rest of the command line."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"tissue-abm: error: {message} (see `{self.prog} --help`)\n")


class _AnalysisError(Exception):
    """Results that cannot be analysed as asked (none there, an unknown readout, ...)."""


class _ServerError(Exception):
    """The browser view cannot start (its port is taken, ...)."""


class _Stopped(Exception):
    """A batch stopped early (its workers failed); its finished runs are kept."""


def _positive(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; allowed: a whole number >= 1")
    return value


def _whole_number(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from `low` (>= 1) to `high`."""

    def parse(text: str) -> int:
        value = int(text) if text.isdigit() else 0
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not allowed; allowed: a whole number from {low} to {high}"
            )
        return value

    return parse


_dpi = _whole_number(20, 1200)
_port = _whole_number(1, 65535)


def _add_figure_options(parser: argparse.ArgumentParser) -> None:
    """`--format` and `--dpi`, the figure options of `plot` and `report`."""
    parser.add_argument(
        "--format",
        choices=("png", "svg", "pdf"),
        default="png",
        help="file format of the figures (default: png)",
    )
    parser.add_argument(
        "--dpi",
        type=_dpi,
        default=120,
        help="resolution of PNG figures and of images in SVG/PDF, dots per inch (default: 120)",
    )


# --- the parser -------------------------------------------------------------------------------


def _parents() -> dict[str, argparse.ArgumentParser]:
    """Parent parsers of the options several commands share, each defined once.

    - ``overrides``: ``--days``, ``--size``, ``--engine`` (what a run simulates; each overrides
      the scenario files and is then validated like them), ``--threads`` (how: results do not
      depend on it);
    - ``executor``: ``--workers``, ``--scheduler``, ``--resume`` (how many runs are carried out);
    - ``limits``: ``--allow-large`` (how much work a command may plan);
    - ``quiet``: ``--quiet``.
    """
    overrides = argparse.ArgumentParser(add_help=False)
    overrides.add_argument(
        "--days",
        type=_positive,
        default=None,
        help="days to simulate from the start age (overrides the files' end_age)",
    )
    overrides.add_argument(
        "--size", type=_positive, default=None, help="lattice side L in sites (overrides the files)"
    )
    overrides.add_argument(
        "--engine",
        choices=list(ENGINES),
        default=None,
        help="simulation engine (overrides the files)",
    )
    overrides.add_argument(
        "--threads",
        type=_positive,
        default=None,
        help=f"threads of the array engine's compiled kernel, per run (default: chosen by "
        f"lattice size and load; one per batch worker); also the variable {THREADS_VARIABLE}",
    )
    executor = argparse.ArgumentParser(add_help=False)
    executor.add_argument(
        "--workers",
        type=_positive,
        default=None,
        help="worker processes (default: all cores; 1 runs in this process)",
    )
    executor.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run on a Dask cluster: tcp://host:port, or 'local' to start one on 127.0.0.1",
    )
    executor.add_argument(
        "--resume",
        action="store_true",
        help="finish the interrupted work in --out: run only what is missing (same inputs)",
    )
    limits = argparse.ArgumentParser(add_help=False)
    limits.add_argument(
        "--allow-large",
        action="store_true",
        help="allow up to 1000000 sweep points per file and runs in all (default limit: 100000)",
    )
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("--quiet", action="store_true", help="no progress bar")
    return {"overrides": overrides, "executor": executor, "limits": limits, "quiet": quiet}


Commands = argparse._SubParsersAction  # the type argparse gives add_subparsers' result


def _add_run(commands: Commands, parents: dict[str, argparse.ArgumentParser]) -> None:
    run = commands.add_parser(
        "run",
        parents=[parents["overrides"], parents["limits"], parents["quiet"]],
        help="run one scenario file and write its readouts",
        description="Run one simulation of a scenario file; write daily readouts (Parquet) and "
        "a manifest (JSON); print a summary.",
    )
    run.add_argument("scenario", type=Path, help="scenario file (TOML)")
    run.add_argument(
        "--out", type=Path, default=None, help="output folder (default: results/<scenario name>)"
    )
    run.add_argument("--seed", type=int, default=None, help="random seed (overrides the file)")
    run.add_argument(
        "--point",
        type=int,
        default=None,
        metavar="N",
        help="the sweep point to run, from 0 (needed for a file with a [sweep]; "
        "`tissue-abm batch` runs them all)",
    )
    run.set_defaults(handler=_run)


def _add_batch(commands: Commands, parents: dict[str, argparse.ArgumentParser]) -> None:
    batch = commands.add_parser(
        "batch",
        parents=[parents["overrides"], parents["executor"], parents["limits"], parents["quiet"]],
        help="run scenario files with their replicates and sweeps",
        description="Run every sweep point and replicate of the scenario files on all cores "
        "(or a Dask cluster); write one Parquet file per run and a manifest (batch.json).",
    )
    batch.add_argument(
        "scenarios",
        type=Path,
        nargs="*",
        metavar="SCENARIO",
        help="scenario files (TOML); with --resume, default: those of the batch",
    )
    batch.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_RESULTS / "batch",
        help="results folder (default: results/batch)",
    )
    batch.add_argument(
        "--replicates",
        type=_positive,
        default=None,
        help="replicates per sweep point (overrides every file)",
    )
    batch.add_argument(
        "--report",
        action="store_true",
        help="then write figures and report.md (as `tissue-abm report`)",
    )
    batch.set_defaults(handler=_batch)


def _add_plot(commands: Commands, parents: dict[str, argparse.ArgumentParser]) -> None:
    plot = commands.add_parser(
        "plot",
        help="draw the figures of a results folder",
        description="Draw trajectories with CI bands and treatment starts, end-state "
        "distributions, synergy bars and grid snapshots (PNG, SVG or PDF).",
    )
    plot.add_argument("results", type=Path, help="results folder (a batch or runs)")
    plot.add_argument(
        "--out", type=Path, default=None, help="folder for the figures (default: RESULTS/figures)"
    )
    _add_figure_options(plot)
    plot.set_defaults(handler=_plot)


def _add_report(commands: Commands, parents: dict[str, argparse.ArgumentParser]) -> None:
    report = commands.add_parser(
        "report",
        help="write figures and a Markdown summary",
        description="Write the figures and report.md (summary table, comparisons with bootstrap "
        "CIs, synergy) next to the results.",
    )
    report.add_argument("results", type=Path, help="results folder (a batch or runs)")
    report.add_argument(
        "--out", type=Path, default=None, help="folder for the report (default: RESULTS/report)"
    )
    report.add_argument(
        "--readout",
        default="senescent_fraction",
        help="main readout of comparisons and synergy (default: senescent_fraction)",
    )
    report.add_argument(
        "--reference",
        default="untreated",
        help="scenario the others are compared with (default: untreated)",
    )
    _add_figure_options(report)
    report.set_defaults(handler=_report)


def _add_sensitivity(commands: Commands, parents: dict[str, argparse.ArgumentParser]) -> None:
    study = commands.add_parser(
        "sensitivity",
        parents=[parents["overrides"], parents["executor"], parents["limits"], parents["quiet"]],
        help="rank the parameters that drive the combination's benefit",
        description="Global sensitivity analysis (SALib: Morris or Sobol') of the benefit of "
        "the combined therapy over the better single drug. At each parameter point the "
        "scenario runs three times with the same seeds: rapamycin alone, oxytocin alone and "
        "both. Writes the runs (a resumable batch), the benefit per point, the indices (CSV) "
        "and a figure to --out; prints the ranked parameters. See docs/sensitivity.md.",
    )
    study.add_argument(
        "scenario",
        type=Path,
        help="scenario file with [therapy.rapamycin] and [therapy.oxytocin]",
    )
    study.add_argument(
        "--params",
        required=True,
        metavar="A,B=LOW:HIGH,...",
        help="parameters to vary: a name varies its scenario value x0.5 to x2 (clipped to its "
        "allowed range), name=low:high sets the range (names: `tissue-abm params`)",
    )
    study.add_argument(
        "--samples",
        type=_positive,
        required=True,
        help="Morris trajectories r (r(k+1) points) or Sobol' base samples N, a power of 2 "
        "(N(k+2) points)",
    )
    study.add_argument(
        "--method",
        default="morris",
        metavar="morris|sobol",
        help="morris (screening; default) or sobol (variance shares)",
    )
    study.add_argument(
        "--replicates",
        type=_positive,
        default=None,
        help="replicates per point and variant (default: the file's)",
    )
    study.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_RESULTS / "sensitivity",
        help="study folder (default: results/sensitivity)",
    )
    study.add_argument(
        "--readout",
        default="senescent_fraction",
        metavar="NAME",
        help="readout of the benefit at the end of the runs, or healthspan, or lifespan "
        "(median organism lifespan in days, pooled over the replicates; run to ~4 years of "
        "age) (default: senescent_fraction)",
    )
    study.add_argument(
        "--seed",
        type=int,
        default=None,
        help="base seed of the replicates, the design and the bootstrap (default: the file's)",
    )
    study.set_defaults(handler=_sensitivity)


def _add_validate(commands: Commands, parents: dict[str, argparse.ArgumentParser]) -> None:
    validate = commands.add_parser(
        "validate",
        help="write the validation page from a batch of the experiments",
        description="Write the validation page: the calibration targets (met or not), the "
        "expected behaviours and the experiment library's answers, from the results of "
        "`tissue-abm batch scenarios/*.toml scenarios/experiments/*.toml`. The repository's "
        "page is written with --out docs/validation.md.",
    )
    validate.add_argument("results", type=Path, help="batch folder")
    validate.add_argument(
        "--out",
        type=Path,
        default=None,
        help="page to write; its figures go to a folder of the same name "
        "(default: RESULTS/validation.md and RESULTS/validation/)",
    )
    validate.set_defaults(handler=_validate)


def _add_calibrate(commands: Commands, parents: dict[str, argparse.ArgumentParser]) -> None:
    calibrate = commands.add_parser(
        "calibrate",
        parents=[parents["executor"]],
        help="fit the calibrated parameters to every target at once (ABC-SMC)",
        description="Approximate Bayesian computation (pyabc's ABC-SMC) of the fitted "
        "parameters against the six calibration targets; writes the history (abc.db, "
        "resumable) and the posterior (posterior.csv) to --out and prints each fitted "
        "parameter's posterior median; with --choose-defaults, also the particle that best "
        "reproduces the targets when simulated again (the defaults of biology/params.py). "
        "See docs/calibration.md.",
    )
    calibrate.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_RESULTS / "calibration",
        help="calibration folder (default: results/calibration)",
    )
    calibrate.add_argument(
        "--population", type=_positive, default=200, help="particles per generation (200)"
    )
    calibrate.add_argument(
        "--generations", type=_positive, default=10, help="at most this many generations (10)"
    )
    calibrate.add_argument(
        "--min-epsilon",
        type=float,
        default=0.5,
        help="stop below this threshold: RMS deviation in units of the targets' tolerances (0.5)",
    )
    calibrate.add_argument(
        "--max-simulations",
        type=_positive,
        default=20_000,
        help="stop after this many simulations in all (20000)",
    )
    calibrate.add_argument(
        "--replicates",
        type=_positive,
        default=4,
        help="replicates of each experiment per simulation (4)",
    )
    calibrate.add_argument(
        "--size", type=_positive, default=80, help="lattice side of the long runs (80)"
    )
    calibrate.add_argument("--seed", type=int, default=1, help="seed of the sampler (1)")
    calibrate.add_argument(
        "--choose-defaults",
        action="store_true",
        help="then simulate again every particle that meets the oxytocin bound and print the "
        "one that best reproduces the targets (the defaults); writes checked.csv",
    )
    calibrate.set_defaults(handler=_calibrate)


def _add_params(commands: Commands, parents: dict[str, argparse.ArgumentParser]) -> None:
    params = commands.add_parser("params", help="print the parameter table (Markdown)")
    params.set_defaults(handler=_params)


def _add_viz(commands: Commands, parents: dict[str, argparse.ArgumentParser]) -> None:
    viz = commands.add_parser(
        "viz",
        help="show the agents engine in the browser",
        description="Start the browser view (a Solara server on 127.0.0.1): the grid, charts "
        "over age, Step/Play/Reset and the controls. Ctrl-C stops it.",
    )
    viz.add_argument(
        "scenario",
        type=Path,
        nargs="?",
        default=None,
        help="scenario file the page starts with (default: scenarios/untreated.toml)",
    )
    viz.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"TCP port (default: {DEFAULT_PORT})"
    )
    viz.set_defaults(handler=_viz)


def _add_answer(commands: Commands, parents: dict[str, argparse.ArgumentParser]) -> None:
    answer = commands.add_parser(
        "answer",
        parents=[parents["executor"], parents["quiet"]],
        help="does rapamycin + oxytocin beat the better single drug, over the posterior?",
        description="Draw parameter sets from the calibration posterior, run untreated, "
        "rapamycin, oxytocin and both (canonical and ITP-like doses, a sham, and each "
        "hypothesis off; a dose grid at the first draws) at every draw through the batch "
        "runner (resumable), and write the answer page: the probability that the combination "
        "beats the better single drug, survival bands, hazard ratios, Bliss/HSA/Loewe/ZIP "
        "synergy and the sham. See docs/answer.md.",
    )
    answer.add_argument(
        "--posterior",
        type=Path,
        default=None,
        help="calibration posterior (CSV; default: docs/calibration/posterior.csv of this "
        "checkout)",
    )
    answer.add_argument(
        "--draws", type=_positive, default=None, help="posterior draws (100; --quick: 6)"
    )
    answer.add_argument(
        "--replicates", type=_positive, default=None, help="replicates per draw and arm (3)"
    )
    answer.add_argument(
        "--size", type=_positive, default=None, help="lattice side (80; --quick: 40)"
    )
    answer.add_argument(
        "--grid-draws",
        type=int,
        default=None,
        help="draws that also run the dose grid scored by Loewe and ZIP (40, at most --draws; "
        "0: none)",
    )
    answer.add_argument("--seed", type=int, default=None, help="seed of the draws and runs (1)")
    answer.add_argument(
        "--quick", action="store_true", help="a few draws on a small lattice (minutes)"
    )
    answer.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_RESULTS / "answer",
        help="study folder (default: results/answer)",
    )
    answer.add_argument("--page", type=Path, default=None, help="the page (default: OUT/answer.md)")
    answer.set_defaults(handler=_answer)


COMMANDS = (
    _add_run,
    _add_batch,
    _add_plot,
    _add_report,
    _add_sensitivity,
    _add_validate,
    _add_calibrate,
    _add_answer,
    _add_params,
    _add_viz,
)
"""The subcommands, in the order `--help` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `tissue-abm`: one subparser per command, shared options once."""
    parser = _Parser(
        prog="tissue-abm",
        description="Agent-based simulation of tissue aging under rapamycin and oxytocin.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    parents = _parents()
    for add in COMMANDS:
        add(commands, parents)
    return parser


# --- running a command ------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    # Imported after parsing: `--help` and option errors need neither pandas nor pyarrow.
    from tissue_abm.runs.layout import OutputError
    from tissue_abm.runs.scenario import ScenarioError

    try:
        _set_threads(args)
        return args.handler(args) or 0
    except (ScenarioError, OutputError, _AnalysisError, _ServerError) as err:
        print(f"tissue-abm: error: {err}", file=sys.stderr)
        return 2
    except _Stopped as err:
        print(
            f"tissue-abm: batch stopped: {err}; finished runs are kept in {args.out}; "
            "finish with --resume",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt as err:  # Ctrl-C, or a batch's SIGTERM or SIGHUP (pool.Signalled)
        signum = getattr(err, "signum", signal.SIGINT)
        by = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
        kept = (
            f"finished runs are kept in {args.out}; finish with --resume"
            if args.command in ("batch", "sensitivity")
            else "nothing written"
        )
        print(f"tissue-abm: interrupted{by}; {kept}", file=sys.stderr)
        return 128 + signum


def _set_threads(args: argparse.Namespace) -> None:
    """Pass --threads to the kernel through its variable (workers inherit it); check it."""
    from tissue_abm.runs.scenario import ScenarioError

    if getattr(args, "threads", None) is not None:
        os.environ[THREADS_VARIABLE] = str(args.threads)
    try:
        requested_threads(os.environ.get(THREADS_VARIABLE))
    except ValueError as err:
        raise ScenarioError(f"{THREADS_VARIABLE}: {err}") from None


def _run(args: argparse.Namespace) -> None:
    from tissue_abm.runs.scenario import load_scenario

    point = (
        load_scenario(args.scenario, _limits(args).points)
        .with_overrides(
            seed=args.seed,
            days=args.days,
            size=args.size,
            engine=args.engine,
            source=f"{args.scenario} (options)",
        )
        .point(args.point, str(args.scenario), _limits(args).points)
    )
    scenario = point.scenario
    labels = {"point": point.index, **point.values} if point.values else None
    # pandas, pyarrow and the engine: once the input is known good
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from tissue_abm.runs.results import now, prepare_output, provenance, write_run
    from tissue_abm.runs.run import run_scenario

    folder = prepare_output(args.out or DEFAULT_RESULTS / scenario.name)

    started, clock = now(), time.perf_counter()
    if scenario.engine == "array":
        from tissue_abm.engines.array import warm_up
        from tissue_abm.runs.batch import COMPILING

        warm_up(None if args.quiet else partial(_notice, COMPILING))
    with Progress(
        TextColumn(f"[bold]{scenario.name}[/] seed {scenario.seed}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("days"),
        TimeRemainingColumn(),
        console=console,
        disable=args.quiet,
        transient=True,
    ) as bar:
        task = bar.add_task("run", total=scenario.days)
        run = run_scenario(
            scenario, progress=lambda done, _: bar.update(task, completed=done), labels=labels
        )
    manifest = {
        "scenario_file": str(args.scenario),
        "scenario_text": args.scenario.read_text(encoding="utf-8"),
        "scenario": scenario.model_dump(mode="json"),
        "seed": scenario.seed,
        "engine": scenario.engine,
        "days": scenario.days,
        **({"point": point.index, "sweep_values": point.values} if labels else {}),
        "started": started,
        "finished": now(),
        "wall_seconds": round(time.perf_counter() - clock, 3),
        "status": "done",
        **provenance(),
    }
    stem = f"{scenario.name}_seed{scenario.seed}" + (f"_p{point.index:04d}" if labels else "")
    path = write_run(run.readouts, manifest, folder, stem, run.snapshots)
    _print_summary(run.readouts, scenario.parameters.healthspan_threshold)
    print(f"readouts: {path}\nmanifest: {path.with_suffix('.json')}")


def _batch(args: argparse.Namespace) -> int:
    from tissue_abm.runs.plan import check_scheduler, plan_batch, plan_from_manifest
    from tissue_abm.runs.pool import start_fork_server
    from tissue_abm.runs.scenario import ScenarioError

    check_scheduler(args.scheduler)
    if args.scenarios:
        plan = plan_batch(
            args.scenarios,
            replicates=args.replicates,
            days=args.days,
            size=args.size,
            engine=args.engine,
            allow_large=args.allow_large,
        )
    elif args.resume:
        plan = plan_from_manifest(args.out, allow_large=args.allow_large)
    else:
        raise ScenarioError("no scenario files given (or pass --resume to finish a batch)")
    if args.scheduler is None and (args.workers or os.cpu_count() or 1) > 1:
        # the workers' imports (about a second) run while this process imports the same
        start_fork_server()
    from tissue_abm.runs.batch import run_batch  # the engines: once the input is known good
    from tissue_abm.runs.results import read_manifest

    summary = _run_with_progress("batch", len(plan.runs), args, partial(run_batch, plan))
    if summary.failed:
        failures = [run for run in read_manifest(args.out)["runs"] if run["status"] == "failed"]
        for run in failures[:5]:
            print(f"failed: {run['id']}: {run.get('error')}", file=sys.stderr)
        print(
            f"tissue-abm: {summary.failed} runs failed (see {summary.manifest}); "
            "re-run them with --resume",
            file=sys.stderr,
        )
    print(f"results: {args.out}  (pandas: tissue_abm.load_results({str(args.out)!r}))")
    if args.report and summary.done:
        _write_report(args.out, None, "senescent_fraction", "untreated")
    return 1 if summary.failed else 0


def _sensitivity(args: argparse.Namespace) -> int:
    from tissue_abm.runs.plan import check_scheduler
    from tissue_abm.studies import sensitivity

    sensitivity.check_readout(args.readout, key="--readout")
    check_scheduler(args.scheduler)
    with console.status("planning the study: drawing the design and checking every point"):
        study = sensitivity.plan_study(
            args.scenario,
            args.params,
            samples=args.samples,
            method=args.method,
            replicates=args.replicates,
            days=args.days,
            size=args.size,
            seed=args.seed,
            allow_large=args.allow_large,
        )
    print(
        f"{args.method}: {len(study.factors)} parameters, {study.points} points x "
        f"{len(sensitivity.VARIANTS)} variants x {study.scenario.replicates} replicates = "
        f"{study.runs} runs of {study.scenario.days} days on "
        f"{study.scenario.size}x{study.scenario.size}"
    )
    if not _run_study(
        "sensitivity", study.runs, args, partial(sensitivity.run_study, study), "indices"
    ):
        return 1
    try:
        result = sensitivity.analyse(study, args.out, args.readout)
    except ValueError as err:
        raise _AnalysisError(str(err)) from None
    _print_indices(result.indices, result.benefit)
    for path in result.files:
        print(f"written: {path}")
    return 0


def _plot(args: argparse.Namespace) -> None:
    from tissue_abm.analysis.plots import save_figures

    try:
        paths = save_figures(
            args.results, args.out or args.results / "figures", dpi=args.dpi, fmt=args.format
        )
    except (FileNotFoundError, ValueError) as err:
        raise _AnalysisError(str(err)) from None
    for path in paths:
        print(f"figure: {path}")


def _report(args: argparse.Namespace) -> None:
    _write_report(args.results, args.out, args.readout, args.reference, args.format, args.dpi)


def _validate(args: argparse.Namespace) -> None:
    from tissue_abm.studies.validation import validation_page

    out = args.out or args.results / "validation.md"
    with console.status("computing the validation page"):
        try:
            page = validation_page(args.results, figures=out.with_suffix(""))
        except (FileNotFoundError, ValueError) as err:
            raise _AnalysisError(str(err)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    print(f"validation page: {out}")


def _calibrate(args: argparse.Namespace) -> None:
    from tissue_abm.runs.results import write_atomic
    from tissue_abm.studies.abc import (
        FITTED,
        Settings,
        calibrate,
        choose_defaults,
        posterior_median,
    )
    from tissue_abm.studies.calibration import Design

    settings = Settings(
        population=args.population,
        generations=args.generations,
        min_epsilon=args.min_epsilon,
        max_simulations=args.max_simulations,
        design=Design(size=args.size, replicates=args.replicates),
        seed=args.seed,
    )
    table = calibrate(
        args.out, settings, workers=args.workers, scheduler=args.scheduler, resume=args.resume
    )
    print(f"posterior: {args.out / 'posterior.csv'} ({len(table)} particles)")
    print("posterior medians (over the particles that meet the oxytocin bound):")
    for name, value in posterior_median(table).items():
        print(f"  {name} = {value:.4g}")
    if args.choose_defaults:
        with console.status("simulating the candidate particles again"):
            chosen, checked = choose_defaults(table, workers=args.workers)
        path = args.out / "checked.csv"
        write_atomic(path, lambda tmp: checked.to_csv(tmp))
        print(f"the particle that best reproduces the targets ({path}; the defaults):")
        for name in FITTED:
            print(f"  {name} = {chosen[name]:.4g}")


def _answer(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from tissue_abm.runs.plan import check_scheduler
    from tissue_abm.runs.results import write_atomic
    from tissue_abm.studies import answer
    from tissue_abm.studies.validation import POSTERIOR

    check_scheduler(args.scheduler)
    design = answer.QUICK if args.quick else answer.Design()
    given = {"draws": args.draws, "replicates": args.replicates, "size": args.size}
    design = replace(design, **{k: v for k, v in given.items() if v is not None})
    if args.grid_draws is not None:
        design = replace(design, grid_draws=args.grid_draws)
    if args.seed is not None:
        design = replace(design, seed=args.seed)
    posterior = args.posterior or Path(os.path.relpath(POSTERIOR))  # as the page shows it
    study = answer.plan_answer(posterior, design)
    grid = len(set(study.texts) & set(answer.grid_arms()))
    print(
        f"{design.draws} posterior draws x {len(study.texts) - grid} arms, and "
        f"{design.grid} draws x {grid} dose-grid arms, x {design.replicates} replicates = "
        f"{study.runs} runs on {design.size}x{design.size} to {design.end_age} days"
    )
    if not _run_study("answer", study.runs, args, partial(answer.run_answer, study), "answer"):
        return 1
    page_path = args.page or args.out / "answer.md"
    with console.status("analysing the runs and writing the page"):
        analysis = answer.analyse_answer(study, args.out, workers=args.workers)
        page = answer.answer_page(analysis, page_path.with_suffix(""))
    page_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(page_path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    print(page.split("**Verdict.** ", 1)[1].split("\n", 1)[0])
    print(f"answer page: {page_path}")
    return 0


def _params(args: argparse.Namespace) -> None:
    from tissue_abm.biology.params import parameters_markdown

    print(parameters_markdown(), end="")


def _viz(args: argparse.Namespace) -> int:
    from tissue_abm.runs.pool import at_hard_exit, stop_on_signals
    from tissue_abm.runs.scenario import load_scenario
    from tissue_abm.viz.serve import start_server

    if args.scenario is not None:
        load_scenario(args.scenario)  # a bad file: one line and exit 2, before the server starts
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind((HOST, args.port))
        except OSError as err:
            raise _ServerError(
                f"port {args.port} on {HOST} is not free ({err.strerror}); "
                "choose another with --port"
            ) from None
    print(f"browser view: http://{HOST}:{args.port}  (Ctrl-C stops it)", flush=True)
    server = start_server(args.scenario, args.port)
    # The server dies with this process whatever ends it (serve.start_server); here a stop
    # signal stops it in order, and a second one at once.
    with stop_on_signals("the browser view stopped at once"), at_hard_exit(server.kill):
        try:
            return server.wait()
        except KeyboardInterrupt as stop:  # Ctrl-C (the server got it too), SIGTERM, SIGHUP
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            signum = getattr(stop, "signum", signal.SIGINT)
            return 0 if signum == signal.SIGINT else 128 + signum


# --- shared pieces of the commands ------------------------------------------------------------


@contextmanager
def _runs_progress(
    title: str, total: int, quiet: bool
) -> Iterator[Callable[[int, int, int], None]]:
    """A progress bar over `total` runs; yields the batch runner's progress callback."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn(f"[bold]{title}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("runs, {task.fields[failed]} failed"),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
        transient=True,
    ) as bar:
        task = bar.add_task(title, total=total, failed=0)
        yield lambda done, failed, _total: bar.update(task, completed=done + failed, failed=failed)


def _limits(args: argparse.Namespace) -> Limits:
    """The planning limits the command's --allow-large asks for (`scenario.Limits`)."""
    from tissue_abm.runs.scenario import LARGE_LIMITS, LIMITS

    return LARGE_LIMITS if getattr(args, "allow_large", False) else LIMITS


def _run_with_progress(
    title: str, runs: int, args: argparse.Namespace, run: Callable[..., Summary]
) -> Summary:
    """Run a batch (`run(out, workers=..., ...)`) with a progress bar; print its tally."""
    with _runs_progress(title, runs, args.quiet) as progress:
        summary = _stopped_as_error(
            lambda: run(
                args.out,
                workers=args.workers,
                scheduler=args.scheduler,
                resume=args.resume,
                progress=progress,
                notice=_notice,
            )
        )
    _print_runs_done(summary)
    return summary


def _run_study(
    title: str, runs: int, args: argparse.Namespace, run: Callable[..., Summary], what: str
) -> bool:
    """`_run_with_progress` for a study; False, having said so, if runs failed.

    The study has no `what` (its indices, its answer) without them.
    """
    summary = _run_with_progress(title, runs, args, run)
    if summary.failed:
        print(
            f"tissue-abm: {summary.failed} runs failed (see {summary.manifest}); no {what} "
            "without them; re-run them with --resume",
            file=sys.stderr,
        )
    return not summary.failed


def _notice(message: str) -> None:
    """Something the user should know while a batch runs (printed above the progress bar)."""
    print(f"tissue-abm: note: {message}", file=sys.stderr)


def _stopped_as_error(work: Callable[[], Summary]) -> Summary:
    """`work()`, with the batch runner's early stop turned into this module's `_Stopped`."""
    from tissue_abm.runs.batch import BatchInterrupted

    try:
        return work()
    except BatchInterrupted as err:
        raise _Stopped(str(err)) from None


def _print_runs_done(summary: Summary) -> None:
    damaged = f", {len(summary.damaged)} damaged files run again" if summary.damaged else ""
    print(
        f"{summary.done} of {summary.total} runs done ({summary.skipped} earlier{damaged}), "
        f"{summary.failed} failed; {summary.wall_seconds:.1f} s "
        f"(simulation {summary.run_seconds:.1f} s)"
    )


def _write_report(
    results: Path,
    out: Path | None,
    readout: str,
    reference: str,
    fmt: str = "png",
    dpi: int = 120,
) -> None:
    from tissue_abm.runs.results import load_results
    from tissue_abm.studies.report import write_report

    with console.status("writing figures and report"):
        try:
            path = write_report(
                results, out, readout=readout, reference=reference, fmt=fmt, dpi=dpi
            )
        except (FileNotFoundError, ValueError) as err:
            raise _AnalysisError(str(err)) from None
    _print_batch_summary(load_results(results), readout)
    print(f"report: {path}")


def _print_indices(result: SensitivityIndices, gains: pd.DataFrame) -> None:
    """The ranked indices, and the benefit they explain."""
    from tissue_abm.studies.sensitivity import higher_is_better

    readout, table = result.readout, result.table
    morris = result.method == "morris"
    out = Table(
        title=f"what drives the benefit of the combination on {readout} "
        f"({'Morris' if morris else 'Sobol'}, most influential first)"
    )
    columns = ["rank", "parameter", "range"] + (
        ["mu_star", "± conf", "mu", "sigma"] if morris else ["ST", "± conf", "S1", "± conf"]
    )
    for column in columns:
        out.add_column(
            column,
            justify="left" if column in ("parameter", "range") else "right",
            no_wrap=column != "range",
            overflow="fold",
        )
    values = (
        ["mu_star", "mu_star_conf", "mu", "sigma"] if morris else ["ST", "ST_conf", "S1", "S1_conf"]
    )
    for row in table.itertuples(index=False):
        out.add_row(
            str(row.rank),
            row.parameter,
            f"{row.low:g} to {row.high:g} {row.unit}",
            *(f"{getattr(row, v):.2g}" for v in values),
        )
    console.print(out)
    benefit = gains["benefit"]
    better = higher_is_better(readout)
    print(
        f"benefit of the combination over the better single drug on {readout} "
        f"({'higher' if better else 'lower'} is better; > 0: combination better): mean "
        f"{benefit.mean():+.4g}, from {benefit.min():+.4g} to {benefit.max():+.4g} over "
        f"{len(gains)} points; combination better at {(benefit > 0).sum()}"
    )


def _print_batch_summary(runs: pd.DataFrame, readout: str) -> None:
    """End state per group (mean of the replicates) and, if it applies, the synergy verdict."""
    from tissue_abm.analysis import synergy
    from tissue_abm.analysis.plots import has_synergy_scenarios, label, ordered
    from tissue_abm.analysis.summary import (
        end_state,
        group_labels,
        median_healthspan,
        sweep_columns,
    )

    ends = end_state(runs)
    ends["group"] = group_labels(ends, sweep_columns(runs)).to_numpy()
    out = Table(title="end of run (mean of replicates)")
    for column in ("group", "runs", label(readout), "tissue function", "median healthspan (d)"):
        out.add_column(column, justify="left" if column == "group" else "right")
    groups = dict(zip(ends["group"], ends["scenario"].astype(str), strict=True))
    for group in ordered(groups, groups):
        rows = ends[ends["group"] == group]
        span = median_healthspan(rows["healthspan"])
        out.add_row(
            group,
            str(len(rows)),
            f"{rows[readout].mean():.4f}",
            f"{rows['tissue_function'].mean():.4f}",
            "not reached" if math.isinf(span) else f"{span:.0f}",
        )
    console.print(out)
    if has_synergy_scenarios(runs):
        for row in synergy.synergy(runs, readout).table.itertuples():
            print(
                f"synergy on {readout} ({row.method}): excess {100 * row.excess:+.1f}% "
                f"[{100 * row.ci_low:+.1f}, {100 * row.ci_high:+.1f}] -> {row.verdict}"
            )


def _print_summary(table: pd.DataFrame, threshold: float) -> None:
    """A run's readouts at its start and end, and its healthspan."""
    from tissue_abm.analysis.summary import healthspan, start_end_summary

    summary = start_end_summary(table)
    out = Table(title=f"{table['scenario'].iloc[0]} (seed {table['seed'].iloc[0]})")
    out.add_column("readout")
    out.add_column(f"start (age {summary.start_age:.0f} d)", justify="right")
    out.add_column(f"end (age {summary.end_age:.0f} d)", justify="right")
    for name, row in summary.table.iterrows():
        out.add_row(name, f"{row['start']:.4f}", f"{row['end']:.4f}")
    console.print(out)
    span = healthspan(table, threshold)
    reached = "not reached" if math.isnan(span) else f"age {span:.0f} days"
    print(f"healthspan (tissue function < {threshold}): {reached}")


if __name__ == "__main__":
    sys.exit(main())

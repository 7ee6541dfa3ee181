"""The two kernels of the array engine: the compiled (numba) and the numpy kernel.

Both draw the same counter-based random numbers (`tissue_abm.engines.array.draws`) and decide by the
same rules, so on the same seed they must give the same run: the same sites, immune cells,
events and SASP field (the field is computed in float32 in the same order: bit for bit), with
damage and exposure equal up to float32 rounding (relative 1e-5). The compiled kernel must also
give the same run in any number of threads.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from numpy.testing import assert_allclose, assert_array_equal
from pandas.testing import assert_frame_equal

from factories import active_tissue, step_days
from tissue_abm import Parameters, Rapamycin, Senolytic, Therapy
from tissue_abm.biology.readouts import EVENTS
from tissue_abm.engines.array import KERNELS, ArrayTissue, set_threads

try:
    import numba

    THREADS = numba.config.NUMBA_NUM_THREADS
except ImportError:  # the numpy kernel alone
    THREADS = 1

needs_numba = pytest.mark.skipif("numba" not in KERNELS, reason="numba is not installed")

EXACT = ("tissue", "immune", "sasp", "divisions", "arrest_age", "lifetime")
"""State that must agree exactly between kernels."""
ROUNDED = ("damage", "exposure", "damage_scale")
"""float32 state that may differ in the last bits (different order of float32 operations)."""


def assert_same_run(first: ArrayTissue, second: ArrayTissue, exact_floats: bool) -> None:
    for name in EXACT:
        assert_array_equal(getattr(first, name), getattr(second, name), err_msg=name)
    healthy = first.tissue.ravel() == 1
    for name in ROUNDED:
        a, b = getattr(first, name)[healthy], getattr(second, name)[healthy]
        if exact_floats:
            assert_array_equal(a, b, err_msg=name)
        else:
            assert_allclose(a, b, rtol=1e-5, err_msg=name)
    a, b = first.readouts, second.readouts
    integers = [name for name in a.columns if a[name].dtype.kind == "i"]
    assert_frame_equal(a[integers], b[integers])
    if exact_floats:
        assert_frame_equal(a, b)
    else:
        assert_frame_equal(a, b, check_exact=False, rtol=1e-5)


@needs_numba
@pytest.mark.parametrize("torus", [True, False], ids=["torus", "closed"])
def test_both_kernels_give_the_same_run(torus: bool) -> None:
    # 25 x 25 = 625 sites: not a multiple of 8 (the compiled kernel scans 8 sites at a time)
    runs = [
        step_days(active_tissue(size=25, days=60, rng=5, torus=torus, kernel=kernel), 60)
        for kernel in ("numba", "numpy")
    ]
    assert_same_run(*runs, exact_floats=False)
    events = runs[0].readouts[list(EVENTS)].sum()
    assert (events > 0).sum() >= 8, f"too quiet a run to compare:\n{events}"


@needs_numba
def test_both_kernels_give_the_same_run_under_therapy() -> None:
    therapy = Therapy(
        rapamycin=Rapamycin(dose=2.0, start_age=300),
        senolytic=Senolytic(start_age=300, every=20, fraction=0.5),
    )
    runs = []
    for kernel in ("numba", "numpy"):
        model = ArrayTissue(
            params=Parameters(initial_senescent_fraction=0.05),
            therapy=therapy,
            size=30,
            start_age=300,
            days=90,
            rng=8,
            kernel=kernel,
        )
        runs.append(step_days(model, 90))
    assert_same_run(*runs, exact_floats=False)
    assert runs[0].readouts["cleared_senolytic"].sum() > 0


@needs_numba
@pytest.mark.parametrize(("primary_hill", "paracrine_hill"), [(0.7, 1.5), (1.0, 3.0)])
def test_both_kernels_give_the_same_run_for_other_hill_coefficients(
    primary_hill: float, paracrine_hill: float
) -> None:
    # The compiled kernel rules out most healthy cells with `rules.hill_bound`, whose form
    # depends on the coefficient: each form must rule out only cells with nothing to do.
    params = Parameters(
        primary_hill=primary_hill,
        paracrine_hill=paracrine_hill,
        primary_max_rate=0.01,
        initial_senescent_fraction=0.05,
    )
    runs = [
        step_days(
            ArrayTissue(params=params, size=30, start_age=500, days=60, rng=3, kernel=kernel), 60
        )
        for kernel in ("numba", "numpy")
    ]
    assert_same_run(*runs, exact_floats=False)
    events = runs[0].readouts[["new_primary", "new_paracrine", "divisions"]].sum()
    assert (events > 0).all(), f"too quiet a run to compare:\n{events}"


@needs_numba
@pytest.mark.skipif(THREADS < 2, reason="numba has only one thread on this machine")
@pytest.mark.parametrize("size", [64, 256])
def test_thread_count_does_not_change_the_run(size: int) -> None:
    # From 256 x 256 the diffusion runs in parallel on two threads, below it in one.
    from tissue_abm.engines.array.kernel import PARALLEL_DIFFUSION, prepare_threads

    runs = []
    for threads in (1, 2):
        set_threads(threads)
        try:
            assert prepare_threads(size) == (threads > 1 and size >= PARALLEL_DIFFUSION)
            runs.append(step_days(active_tissue(size=size, days=40, rng=9, kernel="numba"), 40))
        finally:
            set_threads(None)
    assert_same_run(*runs, exact_floats=True)


@needs_numba
def test_the_kernel_chooses_its_threads_unless_told(monkeypatch) -> None:
    # Chosen: one thread below PARALLEL_SIDE while every core is free, else all; fixed: by
    # set_threads, else by TISSUE_ABM_THREADS (capped at numba's threads); a bad value is
    # refused in one line.
    from tissue_abm.engines import THREADS_VARIABLE
    from tissue_abm.engines.array import kernel

    monkeypatch.delenv(THREADS_VARIABLE, raising=False)
    monkeypatch.setattr(kernel, "_cores", lambda: THREADS)
    monkeypatch.setattr(kernel, "free_cores", lambda: THREADS)
    assert kernel.kernel_threads(kernel.PARALLEL_SIDE - 1) == 1
    assert kernel.kernel_threads(kernel.PARALLEL_SIDE) == THREADS
    monkeypatch.setattr(kernel, "free_cores", lambda: THREADS - 1)
    assert kernel.kernel_threads(kernel.PARALLEL_SIDE - 1) == THREADS
    monkeypatch.setenv(THREADS_VARIABLE, "1")
    assert kernel.kernel_threads(1000) == 1
    monkeypatch.setenv(THREADS_VARIABLE, "64")
    assert kernel.kernel_threads(10) == THREADS
    set_threads(1)
    try:
        assert kernel.kernel_threads(1000) == 1
    finally:
        set_threads(None)
    monkeypatch.setenv(THREADS_VARIABLE, "two")
    with pytest.raises(ValueError, match=r"'two' threads is not allowed; allowed: a whole number"):
        kernel.kernel_threads(1000)


@needs_numba
def test_free_cores_sees_a_busy_process() -> None:
    # A CPU-bound process beside this one takes a core: fewer cores free than before it ran.
    from tissue_abm.engines.array.kernel import free_cores

    cores = len(os.sched_getaffinity(0))
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        seen = cores
        for _ in range(5):  # it looks once a second
            time.sleep(0.3)
            seen = min(seen, free_cores())
    finally:
        busy.kill()
        busy.wait()
    assert 1 <= seen <= max(1, cores - 1)


def test_an_unknown_kernel_is_refused_with_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"kernel 'fortran' is not available here; allowed: \("):
        ArrayTissue(size=5, days=1, rng=1, kernel="fortran")


def test_kernel_defaults_to_the_first_available() -> None:
    assert ArrayTissue(size=5, days=1, rng=1).kernel == KERNELS[0]
    assert KERNELS[-1] == "numpy"


@needs_numba
def test_the_compiled_cache_is_dropped_when_a_compiled_module_changes(
    tmp_path, monkeypatch
) -> None:
    from tissue_abm.engines.array import kernel

    def cache_files():
        return sorted(path.name for path in tmp_path.iterdir() if path.suffix != ".dependencies")

    compiled = ["kernel.day-1.py312.nbi", "kernel.day-1.py312.1.nbc"]
    other = ["other.f-1.py312.nbi"]  # another module's cache, never touched
    for name in compiled + other:
        (tmp_path / name).write_bytes(b"compiled")
    kernel.drop_stale_cache(tmp_path)  # no record of the sources it was built from: dropped
    assert cache_files() == other
    for name in compiled:
        (tmp_path / name).write_bytes(b"compiled")
    kernel.drop_stale_cache(tmp_path)  # the same sources: kept
    assert cache_files() == sorted(compiled + other)
    (tmp_path / "tissue_abm.engines.array.kernel.dependencies").write_text("an older rules.py")
    kernel.drop_stale_cache(tmp_path)
    assert cache_files() == other
    # another numba (its cache would not load: `cached` must not find it)
    for name in compiled:
        (tmp_path / name).write_bytes(b"compiled")
    kernel.drop_stale_cache(tmp_path)
    assert cache_files() == sorted(compiled + other)
    monkeypatch.setattr(numba, "__version__", "0.1")
    kernel.drop_stale_cache(tmp_path)
    assert cache_files() == other


@needs_numba
@pytest.mark.parametrize(("seconds", "told"), [(0.0, 0), (1.5, 1)])
def test_warm_up_says_when_the_kernel_compiles_and_stops_its_helper(
    monkeypatch, seconds, told
) -> None:
    # Loading the cached kernel takes a fraction of a second; a compile (here: a compile
    # that lasts 1.5 s) is announced once, while it runs, and starts the helper process that
    # compiles the other functions (here: one that would wait a minute), which is gone afterwards.
    from tissue_abm.engines.array import kernel, model, warm_up

    started, real = [], subprocess.Popen

    def popen(*args, **kwargs):
        started.append(real(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(model.subprocess, "Popen", popen)
    monkeypatch.setattr(model, "HELPER", (sys.executable, "-c", "import time; time.sleep(60)"))
    monkeypatch.setattr(kernel, "cached", lambda: True)  # something is cached: no helper at once
    calls = []
    monkeypatch.setattr(kernel.run_days, "compile", lambda signature: time.sleep(seconds))
    warm_up(lambda: calls.append(time.monotonic()))
    assert len(calls) == len(started) == told
    # stopped when the compile ended (terminated, not left behind or waited for)
    assert all(helper.poll() == -signal.SIGTERM for helper in started)


@needs_numba
def test_the_functions_compiled_beforehand_are_those_run_days_calls(tmp_path) -> None:
    # `kernel.callees` mirrors the calls in `run_days` and `decide`: compiled first (as the
    # helper process does, saying each one's name), they serve `run_days` as they are. A
    # function called with other argument types would be compiled a second time. An empty
    # cache (~15 s).
    from tissue_abm.engines.array import kernel

    code = (
        "from tissue_abm.engines.array import kernel, model\n"
        "print(kernel.cached())\n"
        "model.compile_helper_steps()\n"
        "model.HELPER = ('false',)\n"  # no helper now: this process compiles the rest
        "model.warm_up()\n"
        "tissue = model.ArrayTissue(size=8, days=1, rng=0)\n"
        "called = kernel.callees(tissue._kernel_arguments(1, 1, False))\n"
        "own = tuple(name for name, _ in kernel.OWN_STEPS)\n"
        "print(kernel.cached(), sorted(kernel.HELPER_STEPS + own) == sorted(called),"
        " [len(function.signatures) for function, _ in called.values()])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert lines[0] == "False" and tuple(lines[1:-1]) == kernel.HELPER_STEPS
    assert lines[-1] == "True True [1, 1, 1, 1, 1, 1]"


@needs_numba
def test_warm_up_waits_for_the_helper_before_a_function_that_calls_its_functions(
    monkeypatch,
) -> None:
    # Nothing cached: this process compiles its own steps in order, each once the helper
    # has said it cached the functions the step calls (here the helper says so after 1 s and
    # 2 s; compiles take no time), and `run_days` once it has said all. A helper that ends
    # without a word is waited for no longer.
    from tissue_abm.engines.array import kernel, model

    say = "import time; " + "".join(
        f"time.sleep(1); print({name!r}, flush=True); " for name in kernel.HELPER_STEPS[:2]
    )
    for helper, waits in ((say + "print('secrete_and_diffuse')", True), ("pass", False)):
        monkeypatch.setattr(model, "HELPER", (sys.executable, "-c", helper))
        monkeypatch.setattr(kernel, "cached", lambda: False)
        start, compiled = time.monotonic(), {}
        for name in [name for name, _ in kernel.OWN_STEPS] + ["run_days"]:
            function = getattr(kernel, name)

            def record(signature, name=name, compiled=compiled, start=start):
                compiled[name] = time.monotonic() - start

            monkeypatch.setattr(function, "compile", record)
        model.warm_up()
        assert list(compiled) == [name for name, _ in kernel.OWN_STEPS] + ["run_days"]
        if waits:  # each step that calls the helper's first function waits for it
            needing = [name for name, needs in kernel.OWN_STEPS if needs]
            assert all(compiled[name] >= 1.0 for name in needing)
            assert compiled["run_days"] >= 2.0
            assert compiled["day_keys"] < 1.0  # needs none of them: at once
        else:  # not the helper's `PATIENCE` (120 s): at once, give or take a busy machine
            assert compiled["run_days"] < 10.0


@needs_numba
def test_the_kernel_compiles_at_its_optimisation_level_unless_the_user_sets_one(
    monkeypatch,
) -> None:
    # `kernel.optimisation_level` applies to the compile alone (numba's own level comes back
    # after it) and gives way to a NUMBA_OPT the user set.
    from tissue_abm.engines.array import kernel, model

    levels: list[int] = []
    monkeypatch.setattr(kernel, "cached", lambda: True)  # no helper process
    monkeypatch.setattr(
        kernel.run_days, "compile", lambda signature: levels.append(int(numba.config.OPT))
    )
    monkeypatch.delenv("NUMBA_OPT", raising=False)
    before = int(numba.config.OPT)
    model.warm_up()
    assert int(numba.config.OPT) == before
    monkeypatch.setenv("NUMBA_OPT", "3")
    model.warm_up()
    assert levels == [kernel.OPT_LEVEL, before]


LEVEL_RUN = """
import hashlib, numba
from tissue_abm.engines.array import ArrayTissue, kernel, set_threads
levels, compile = [], kernel.run_days.compile
def compile_at_level(signature):
    levels.append(int(numba.config.OPT))
    compile(signature)
kernel.run_days.compile = compile_at_level
set_threads(1)
tissue = ArrayTissue(size=40, start_age=900, days=300, rng=5)
tissue.run_for(300)  # compiles the kernel first, in an empty cache
state = [tissue.tissue, tissue.immune, tissue.damage, tissue.exposure, tissue.sasp]
digest = hashlib.sha256(b"".join(a.tobytes() for a in state) + tissue.readouts.to_csv().encode())
print(levels, int(tissue.readouts.senescent.iloc[-1]), digest.hexdigest())
"""


@needs_numba
def test_the_kernel_compiled_at_its_level_gives_the_run_of_numbas_default_level(tmp_path) -> None:
    # The kernel's optimisation level (1) against numba's default (3, the user's NUMBA_OPT
    # here), each compiled in an empty cache by a run's first call (two compiles, run side by
    # side: ~15 s): the same run, bit for bit (old tissue, where senescent cells and immune
    # cells take every path). Level 0 gave another run (docs/speed.md#the-first-run).
    from tissue_abm.engines.array import kernel

    processes = []
    for name, extra in (("default", {}), ("numba", {"NUMBA_OPT": "3"})):
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_OPT"}
        env.update(extra, NUMBA_CACHE_DIR=str(tmp_path / name))
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", LEVEL_RUN], env=env, stdout=subprocess.PIPE, text=True
            )
        )
    (ours, numbas) = [process.communicate(timeout=600)[0].split() for process in processes]
    assert all(process.returncode == 0 for process in processes)
    assert ours[0] == f"[{kernel.OPT_LEVEL}]" and numbas[0] == "[3]"
    assert int(ours[1]) > 0  # senescent cells at the end: their paths ran
    assert ours[1:] == numbas[1:]

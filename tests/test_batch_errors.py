"""`tissue-abm batch` on malformed input: exit status 2, a one-line error, and no results."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from factories import assert_one_line_error, write_case
from tissue_abm import cli
from tissue_abm.runs import batch
from tissue_abm.runs.scenario import read_scenario_text

HEAD = 'name = "bad"\nsize = 6\nstart_age = 90\nend_age = 92\n'
"""A tiny valid head: were a malformed case wrongly accepted, it would still finish at once."""

GOOD = HEAD.replace('"bad"', '"good"') + "replicates = 2\n[sweep.grid]\nimmune_kill = [0.2, 0.6]\n"
"""A valid tiny batch: 2 sweep points x 2 replicates."""

FAST = ["--workers", "1", "--quiet"]


@pytest.fixture
def no_simulation(monkeypatch):
    """Fail the test if a batch run is started."""

    def forbidden(*args, **kwargs):
        pytest.fail("run_scenario was called although the input is invalid")

    monkeypatch.setattr(batch, "run_scenario", forbidden)


def run_cli(*args: str | Path) -> int:
    """`tissue-abm batch ARGS... --workers 1 --quiet`; the exit status (argparse's too)."""
    try:
        return cli.main(["batch", *map(str, args), *FAST])
    except SystemExit as exit_:
        return exit_.code


def assert_no_results(out: Path) -> None:
    """`out` is absent, or holds no run results and no manifest."""
    if out.exists():
        assert not list(out.rglob("*.parquet")), sorted(os.listdir(out))
        assert not (out / "batch.json").exists()


def tree(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` (hidden ones too) with its content."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


# --- malformed scenario files -------------------------------------------------------------------

SWEEP_HELP = (
    "allowed: a parameter name (see `tissue-abm params`), size, torus, start_age, "
    "end_age, engine or a path such as therapy.rapamycin.dose"
)
NON_EMPTY_LIST = "allowed: a non-empty list of values"

MALFORMED = [
    # the file itself
    pytest.param('name = "unterminated\n', ["not valid TOML", "line 1"], id="invalid-toml"),
    pytest.param(None, ["no such scenario file"], id="missing-file"),
    pytest.param(b'name = "caf\xe9"\n', ["not UTF-8 text"], id="not-utf8"),
    pytest.param(
        HEAD + "replicate = 3\n",
        [
            "unknown key 'replicate'",
            "did you mean 'replicates'?",
            "allowed keys:",
            "sweep",
            "output",
        ],
        id="unknown-top-level-key-suggests-closest",
    ),
    pytest.param(
        HEAD + "[parameters]\nimmune_kil = 0.5\n",
        [
            "unknown key 'parameters.immune_kil'",
            "did you mean 'immune_kill'?",
            "see `tissue-abm params`",
        ],
        id="unknown-parameter",
    ),
    pytest.param(
        HEAD + 'replicates = "3"\n',
        ["replicates = '3' is not allowed", "allowed: a whole number from 1 to 100000"],
        id="wrong-type",
    ),
    pytest.param(
        HEAD + "[parameters]\nimmune_kill = 1.5\n",
        ["parameters.immune_kill = 1.5 is not allowed", "allowed: a number from 0.0 to 1.0"],
        id="out-of-range",
    ),
    # replicates
    pytest.param(
        HEAD + "replicates = 0\n",
        ["replicates = 0 is not allowed", "allowed: a whole number from 1 to 100000"],
        id="replicates-zero",
    ),
    pytest.param(
        HEAD + "replicates = 2.5\n",
        ["replicates = 2.5 is not allowed", "allowed: a whole number from 1"],
        id="replicates-not-an-integer",
    ),
    pytest.param(
        HEAD + "replicates = 2.0\n",
        ["replicates = 2.0 is not allowed", "allowed: a whole number from 1"],
        id="replicates-whole-float",
    ),
    pytest.param(
        HEAD + "replicates = true\n",
        ["replicates = True is not allowed", "allowed: a whole number from 1"],
        id="replicates-bool",
    ),
    # the shape of the sweep
    pytest.param(
        HEAD + "[sweep]\n",
        ["sweep: empty sweep", "give grid = {key = [values]} and/or zip = {...}"],
        id="empty-sweep-table",
    ),
    pytest.param(
        HEAD + "sweep = 3\n",
        ["sweep: must be a table with grid = {...} and/or zip = {...}"],
        id="sweep-not-a-table",
    ),
    pytest.param(
        HEAD + "[sweep]\ngrid = 3\n",
        ["sweep: grid must be a table of key = [values]"],
        id="sweep-grid-not-a-table",
    ),
    pytest.param(
        HEAD + "[sweep.grid]\nimmune_kill = [0.5]\n[sweep.gird]\nsize = [6]\n",
        ["unknown key 'sweep.gird'", "did you mean 'grid'?", "allowed keys: grid, zip"],
        id="sweep-unknown-table",
    ),
    pytest.param(
        HEAD + "[sweep.grid]\nimmune_kill = []\n",
        ["sweep: grid.immune_kill = [] is not allowed", NON_EMPTY_LIST],
        id="sweep-grid-list-empty",
    ),
    pytest.param(
        HEAD + "[sweep.zip]\nimmune_kill = []\n",
        ["sweep: zip.immune_kill = [] is not allowed", NON_EMPTY_LIST],
        id="sweep-zip-list-empty",
    ),
    pytest.param(
        HEAD + "[sweep.grid]\nimmune_kill = 0.5\n",
        ["sweep: grid.immune_kill = 0.5 is not allowed", NON_EMPTY_LIST],
        id="sweep-value-not-a-list",
    ),
    pytest.param(
        HEAD + "[sweep.grid]\ntherapy.rapamycin.dose = [1.0]\n",
        [
            "sweep: grid.therapy is a table",
            "write a dotted sweep key in quotes",
            '"therapy.rapamycin..." = [values]',
        ],
        id="sweep-dotted-key-unquoted",
    ),
    pytest.param(
        HEAD + "[sweep.gird]\nimmune_kill = [0.5]\n",
        ["unknown key 'sweep.gird'", "did you mean 'grid'?", "allowed keys: grid, zip"],
        id="sweep-only-table-mistyped",
    ),
    pytest.param(
        HEAD + "[sweep.zip]\nimmune_kill = [0.5, 0.6]\nsize = [6, 7, 8]\n",
        ["sweep: zip lists must be equally long (immune_kill: 2, size: 3)"],
        id="sweep-zip-lists-of-unequal-length",
    ),
    pytest.param(
        HEAD + "[sweep.grid]\nimmune_kill = [0.5]\n[sweep.zip]\nimmune_kill = [0.6]\n",
        ["sweep: 'immune_kill' is swept twice; give each key once"],
        id="sweep-same-key-in-grid-and-zip",
    ),
    pytest.param(
        HEAD + '[sweep.grid]\nimmune_kill = [0.5]\n"parameters.immune_kill" = [0.6]\n',
        ["sweep: 'immune_kill' is swept twice; give each key once"],
        id="sweep-same-parameter-spelt-two-ways",
    ),
    # sweep keys
    pytest.param(
        HEAD + "[sweep.grid]\nimmune_kil = [0.5]\n",
        ["sweep key 'immune_kil' is not allowed", "did you mean 'immune_kill'?", SWEEP_HELP],
        id="sweep-key-unknown-suggests-closest",
    ),
    pytest.param(
        HEAD + "[sweep.grid]\nseed = [1, 2]\n",
        ["sweep key 'seed' is not allowed", SWEEP_HELP],
        id="sweep-key-seed",
    ),
    pytest.param(
        HEAD + '[sweep.grid]\nname = ["a", "b"]\n',
        ["sweep key 'name' is not allowed", SWEEP_HELP],
        id="sweep-key-name",
    ),
    pytest.param(
        HEAD + '[sweep.grid]\n"output.every" = [1, 2]\n',
        ["sweep key 'output.every' is not allowed", SWEEP_HELP],
        id="sweep-key-output",
    ),
    pytest.param(
        HEAD + '[sweep.grid]\n"parameters.bogus" = [0.5]\n',
        ["sweep.grid.parameters.bogus: unknown key 'parameters.bogus'", "see `tissue-abm params`"],
        id="sweep-key-unknown-parameter-path",
    ),
    pytest.param(
        HEAD + '[sweep.zip]\n"therapy.metformin.dose" = [0.5]\n',
        [
            "therapy.metformin.dose = 0.5",
            "unknown key 'therapy.metformin'",
            "allowed keys: oxytocin, rapamycin, senolytic",
        ],
        id="sweep-key-unknown-therapy",
    ),
    # sweep values
    pytest.param(
        HEAD + "[sweep.grid]\nimmune_kill = [0.5, 1.5]\n",
        [
            "sweep.grid.immune_kill:",
            "parameters.immune_kill = 1.5 is not allowed",
            "allowed: a number from 0.0 to 1.0",
        ],
        id="sweep-grid-value-out-of-range",
    ),
    pytest.param(
        HEAD + "[sweep.zip]\nimmune_kill = [0.5, -0.1]\nsize = [6, 7]\n",
        [
            "sweep.zip.immune_kill:",
            "parameters.immune_kill = -0.1 is not allowed",
            "allowed: a number from 0.0 to 1.0",
        ],
        id="sweep-zip-value-out-of-range",
    ),
    pytest.param(
        HEAD + '[sweep.grid]\n"therapy.rapamycin.dose" = [1, 500]\n',
        [
            "sweep.grid.therapy.rapamycin.dose:",
            "therapy.rapamycin.dose = 500 ",
            "allowed: a number from 0.0 to 100.0 (mg/kg)",
        ],
        id="sweep-therapy-value-out-of-range",
    ),
    pytest.param(
        HEAD + '[sweep.grid]\nsize = [6, "7"]\n',
        ["sweep.grid.size:", "size = '7' is not allowed", "allowed: a whole number from 3 to 4000"],
        id="sweep-value-of-wrong-type",
    ),
    pytest.param(
        HEAD + "[sweep.grid]\nend_age = [92, 90]\n",
        ["sweep point (end_age = 90)", "end_age (90) must be after start_age (90)"],
        id="sweep-end-age-not-after-start-age",
    ),
    pytest.param(
        HEAD + "[sweep.zip]\nstart_age = [90, 92]\n",
        ["sweep point (start_age = 92)", "end_age (92) must be after start_age (92)"],
        id="sweep-start-age-not-before-end-age",
    ),
    # output
    pytest.param(
        HEAD + "[output]\nsnapshots = [91, 95]\n",
        [
            "output.snapshots: age 95 is outside the run",
            "allowed: ages from start_age (90) to end_age (92)",
        ],
        id="snapshot-outside-the-run",
    ),
    pytest.param(
        HEAD + "[output]\nsnapshots = [89]\n",
        ["output.snapshots: age 89 is outside the run", "start_age (90)"],
        id="snapshot-before-the-run",
    ),
    pytest.param(
        HEAD + "[output]\nsnapshots = [92]\n[sweep.grid]\nend_age = [92, 91]\n",
        [
            "sweep point (end_age = 91)",
            "output.snapshots: age 92 is outside the run",
            "end_age (91)",
        ],
        id="snapshot-outside-the-run-at-a-sweep-point",
    ),
    pytest.param(
        HEAD + '[output]\nsnapshots = ["91"]\n',
        ["output.snapshots.0 = '91' is not allowed"],
        id="snapshot-not-an-integer",
    ),
    pytest.param(
        HEAD + "[output]\nevery = 0\n",
        ["output.every = 0 is not allowed", "allowed: a whole number from 1 to 36500"],
        id="output-every-zero",
    ),
    pytest.param(
        HEAD + "[output]\nevery = 1.5\n",
        ["output.every = 1.5 is not allowed", "allowed: a whole number"],
        id="output-every-not-an-integer",
    ),
    pytest.param(
        HEAD + "[output]\nevry = 2\n",
        ["unknown key 'output.evry'", "did you mean 'every'?"],
        id="output-unknown-key",
    ),
]


@pytest.mark.parametrize(("content", "expected"), MALFORMED)
def test_malformed_file_exits_2_with_one_line_error_and_writes_nothing(
    tmp_path, capsys, no_simulation, content, expected
):
    path = write_case(tmp_path, content)
    out = tmp_path / "out"
    status = run_cli(path, "--out", out)
    captured = capsys.readouterr()
    assert status == 2
    assert_one_line_error(captured.err, f"{path}: ", *expected)
    assert captured.out == ""
    assert not out.exists()


@pytest.mark.parametrize("key", ["parameters.immune_kill.x", "therapy.rapamycin.dose.x"])
def test_sweep_path_below_a_number_is_a_one_line_error(tmp_path, capsys, no_simulation, key):
    path = write_case(
        tmp_path, HEAD + f'[therapy.rapamycin]\ndose = 1.0\n[sweep.grid]\n"{key}" = [0.5]\n'
    )
    out = tmp_path / "out"
    assert run_cli(path, "--out", out) == 2
    assert_one_line_error(
        capsys.readouterr().err,
        str(path),
        f"sweep key '{key}' is not allowed",
        "therapy.rapamycin.dose",
    )
    assert not out.exists()


def test_scenario_path_that_is_a_folder_is_a_one_line_error(tmp_path, capsys, no_simulation):
    folder = tmp_path / "scenarios.toml"
    folder.mkdir()
    out = tmp_path / "out"
    assert run_cli(folder, "--out", out) == 2
    assert_one_line_error(capsys.readouterr().err, f"{folder}: cannot read scenario file")
    assert not out.exists()


def test_one_malformed_file_among_several_stops_the_whole_batch(tmp_path, capsys, no_simulation):
    good = tmp_path / "good.toml"
    good.write_text(GOOD, encoding="utf-8")
    bad = write_case(tmp_path, HEAD + "[sweep.grid]\nimmune_kill = [0.5, 1.5]\n")
    out = tmp_path / "out"
    assert run_cli(good, bad, "--out", out) == 2
    assert_one_line_error(capsys.readouterr().err, str(bad), "sweep.grid.immune_kill", "1.5")
    assert not out.exists()


def test_duplicate_scenario_names_across_files(tmp_path, capsys, no_simulation):
    first, second = tmp_path / "first.toml", tmp_path / "second.toml"
    first.write_text(HEAD, encoding="utf-8")
    second.write_text(HEAD.replace("size = 6", "size = 7"), encoding="utf-8")
    out = tmp_path / "out"
    assert run_cli(first, second, "--out", out) == 2
    assert_one_line_error(
        capsys.readouterr().err,
        f"{second}: scenario name 'bad' is already used by {first}",
        "names must be unique within a batch",
    )
    assert not out.exists()


# --- the output folder --------------------------------------------------------------------------


@pytest.fixture
def good(tmp_path) -> Path:
    path = tmp_path / "good.toml"
    path.write_text(GOOD, encoding="utf-8")
    return path


def test_unwritable_output_folder(tmp_path, capsys, no_simulation, good):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a regular file\n")
    out = blocker / "out"
    assert run_cli(good, "--out", out) == 2
    captured = capsys.readouterr()
    assert_one_line_error(captured.err, f"cannot write results to {out}")
    assert captured.out == ""
    assert blocker.read_text() == "a regular file\n"


def test_output_folder_that_is_not_empty_and_holds_no_batch(tmp_path, capsys, no_simulation, good):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    for resume in ([], ["--resume"]):
        assert run_cli(good, "--out", out, *resume) == 2
        assert_one_line_error(
            capsys.readouterr().err,
            f"{out} is not empty and holds no batch",
            "choose another --out",
        )
        assert tree(out) == {"notes.txt": b"mine\n"}


@pytest.fixture
def finished(tmp_path, good) -> Path:
    """A folder holding the finished batch of `good`."""
    out = tmp_path / "done"
    assert run_cli(good, "--out", out) == 0
    return out


def test_output_folder_holding_a_batch_without_resume(
    tmp_path, capsys, finished, good, no_simulation
):
    capsys.readouterr()
    before = tree(finished)
    assert run_cli(good, "--out", finished) == 2
    assert_one_line_error(
        capsys.readouterr().err, f"{finished} already holds a batch", "pass --resume"
    )
    assert tree(finished) == before


@pytest.mark.parametrize(
    ("text", "differs"),
    [
        pytest.param(HEAD.replace('"bad"', '"other"'), "good differs", id="other-name"),
        pytest.param(GOOD.replace("0.6]", "0.7]"), "good differs", id="same-name-other-text"),
    ],
)
def test_resume_into_a_batch_of_other_scenario_files(
    tmp_path, capsys, finished, no_simulation, text, differs
):
    capsys.readouterr()
    before = tree(finished)
    other = tmp_path / "other.toml"
    other.write_text(text, encoding="utf-8")
    assert run_cli(other, "--out", finished, "--resume") == 2
    assert_one_line_error(
        capsys.readouterr().err,
        f"{finished} holds a batch of other scenario files ({differs})",
        "resume with the same files or choose another --out",
    )
    assert tree(finished) == before


def test_resume_without_files_and_without_a_batch(tmp_path, capsys, no_simulation):
    out = tmp_path / "out"
    assert run_cli("--out", out, "--resume") == 2
    assert_one_line_error(capsys.readouterr().err, f"{out}: no batch here", "batch.json is missing")
    assert not out.exists()


def test_resume_without_files_from_an_unreadable_manifest(tmp_path, capsys, no_simulation):
    out = tmp_path / "out"
    out.mkdir()
    (out / "batch.json").write_text("{not json", encoding="utf-8")
    assert run_cli("--out", out, "--resume") == 2
    assert_one_line_error(
        capsys.readouterr().err, f"{out / 'batch.json'}", "cannot read the manifest"
    )
    assert tree(out) == {"batch.json": b"{not json"}


def test_no_files_and_no_resume(tmp_path, capsys, no_simulation):
    out = tmp_path / "out"
    assert run_cli("--out", out) == 2
    assert_one_line_error(capsys.readouterr().err, "no scenario files given", "--resume")
    assert not out.exists()


@pytest.mark.parametrize("workers", ["0", "abc", "1.5"])
def test_workers_must_be_a_positive_whole_number(tmp_path, capsys, no_simulation, good, workers):
    out = tmp_path / "out"
    status = run_cli(good, "--out", out, "--workers", workers)
    captured = capsys.readouterr()
    assert status == 2
    assert_one_line_error(
        captured.err,
        "argument --workers",
        f"{workers!r} is not allowed; allowed: a whole number >= 1",
    )
    assert captured.out == ""
    assert_no_results(out)
    assert not out.exists()


# --- a valid batch ------------------------------------------------------------------------------


def test_valid_tiny_sweep_writes_one_parquet_per_run_and_a_finished_manifest(
    tmp_path, capsys, good
):
    out = tmp_path / "out"
    assert run_cli(good, "--out", out) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "4 of 4 runs done (0 earlier), 0 failed" in captured.out
    manifest = json.loads((out / "batch.json").read_text(encoding="utf-8"))
    ids = [run["id"] for run in manifest["runs"]]
    assert ids == [f"good/p{p:04d}_r{r:04d}" for p in range(2) for r in range(2)]
    assert {run["status"] for run in manifest["runs"]} == {"done"}
    assert manifest["status"] == "done"
    parquet = sorted(str(path.relative_to(out / "runs")) for path in out.rglob("*.parquet"))
    assert parquet == sorted(f"{run_id}.parquet" for run_id in ids)
    assert sorted(os.listdir(out)) == ["batch.json", "runs"]


# --- the scheduler ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["garbage", "", "tcp://", "tcp://host", "tcp://:8786", "tcp://host:0", "tcp://host:99999",
     "http://127.0.0.1:8786", "inproc://x", "ucx://127.0.0.1:8786", "tcp://host:8786/path",
     "tcp://user@host:8786"],
)  # fmt: skip
def test_a_malformed_scheduler_address_is_one_line_before_anything_is_written(
    tmp_path, capsys, no_simulation, good, address
):
    out = tmp_path / "out"
    assert run_cli(good, "--out", out, "--scheduler", address) == 2
    assert_one_line_error(
        capsys.readouterr().err,
        f"--scheduler {address!r} is not allowed",
        "allowed: tcp://host:port",
        "'local'",
    )
    assert not out.exists()


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never says a word: tcp://127.0.0.1:PORT."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


def test_a_scheduler_that_never_answers_fails_in_one_line_by_the_deadline(
    tmp_path, capsys, monkeypatch, no_simulation, good, silent_server
):
    """Dask's own timeout does not bound its handshake (the issue saw 400 s): the deadline
    does. It is 20 s; 3 s here."""
    import time

    monkeypatch.setattr(batch, "CONNECT_SECONDS", 3.0)
    out = tmp_path / "out"
    clock = time.monotonic()
    assert run_cli(good, "--out", out, "--scheduler", silent_server, "--workers", "1") == 2
    assert time.monotonic() - clock < 15
    assert_one_line_error(
        capsys.readouterr().err,
        f"the Dask scheduler at {silent_server} did not answer within 3 s",
    )
    assert not out.exists()  # nothing written: no manifest, so rerunning is not refused


def test_a_refused_scheduler_address_fails_at_once(tmp_path, capsys, no_simulation, good):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "out"
    assert run_cli(good, "--out", out, "--scheduler", f"tcp://127.0.0.1:{port}") == 2
    assert_one_line_error(
        capsys.readouterr().err,
        f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}: Connection refused",
    )
    assert not out.exists()


# --- what --out is, and what it holds ------------------------------------------------------------


@pytest.mark.parametrize("resume", [[], ["--resume"]], ids=["new", "resume"])
def test_out_that_is_a_file_is_one_line(tmp_path, capsys, no_simulation, good, resume):
    out = tmp_path / "results.txt"
    out.write_text("mine\n")
    assert run_cli(good, "--out", out, *resume) == 2
    assert_one_line_error(capsys.readouterr().err, f"{out}", "not a folder")
    assert out.read_text() == "mine\n"
    assert run_cli("--out", out, "--resume") == 2
    assert_one_line_error(capsys.readouterr().err, f"{out}", "not a batch folder")


BAD_MANIFESTS = [
    pytest.param("{}", "the key 'format' is missing", id="empty-object"),
    pytest.param("[]", "a JSON object is expected, not []", id="list"),
    pytest.param("null", "a JSON object is expected, not null", id="null"),
    pytest.param(
        '{"format": 2, "status": "done", "scenarios": [], "runs": []}',
        "scenarios = [] is not allowed",
        id="no-scenarios",
    ),
    pytest.param(
        '{"format": 2, "status": "done", "scenarios": [{"name": "good"}], "runs": []}',
        "the key 'scenarios.0.file' is missing",
        id="scenario-without-text",
    ),
    pytest.param(
        '{"format": 2, "status": "done", "runs": {},'
        ' "scenarios": [{"name": "good", "file": "f", "text": "t"}]}',
        "runs = {} is not allowed",
        id="runs-not-a-list",
    ),
]


@pytest.mark.parametrize(("content", "message"), BAD_MANIFESTS)
def test_resume_from_a_manifest_of_the_wrong_shape_is_one_line(
    tmp_path, capsys, no_simulation, good, content, message
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "batch.json").write_text(content)
    for files in ([], [good]):
        assert run_cli(*files, "--out", out, "--resume") == 2
        assert_one_line_error(
            capsys.readouterr().err, f"{out / 'batch.json'}: not a batch manifest", message
        )
    assert tree(out) == {"batch.json": content.encode()}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"days": "x"}, 'overrides.days = "x" is not allowed'),
        ({"replicates": 0}, "overrides.replicates = 0 is not allowed"),
        ({"colour": 1}, "overrides.colour = 1 is not allowed"),
    ],
)
def test_a_manifest_with_bad_overrides_is_one_line_in_resume_and_report(
    tmp_path, capsys, finished, override, message
):
    content = json.loads((finished / "batch.json").read_text())
    content["overrides"] = override
    (finished / "batch.json").write_text(json.dumps(content))
    capsys.readouterr()
    assert run_cli("--out", finished, "--resume") == 2
    assert_one_line_error(capsys.readouterr().err, "not a batch manifest", message)
    assert cli.main(["report", str(finished), "--out", str(tmp_path / "report")]) == 2
    assert_one_line_error(capsys.readouterr().err, "not a batch manifest", message)


def test_report_on_a_manifest_of_the_wrong_shape_is_one_line(tmp_path, capsys, finished):
    for content, message in [("[]", "a JSON object is expected"), ("{}", "'scenarios' is missing")]:
        (finished / "batch.json").write_text(content)
        capsys.readouterr()
        assert cli.main(["report", str(finished), "--out", str(tmp_path / "report")]) == 2
        assert_one_line_error(capsys.readouterr().err, "not a batch manifest", message)


def test_stale_temporary_files_of_a_killed_batch_are_removed_on_resume(tmp_path, finished):
    (finished / ".batch.json.4242.tmp").write_text("{")
    (finished / "runs" / "good" / ".p0000_r0000.parquet.4242.tmp").write_bytes(b"PAR1")
    (finished / ".write-test-4242").write_bytes(b"")
    assert run_cli("--out", finished, "--resume") == 0
    assert sorted(os.listdir(finished)) == ["batch.json", "runs"]
    assert not list(finished.rglob("*.tmp"))


# --- bounds, checked before any work --------------------------------------------------------------


def test_a_named_pipe_as_scenario_file_is_refused_without_blocking(tmp_path, capsys, no_simulation):
    fifo = tmp_path / "case.toml"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    assert run_cli(fifo, "--out", out) == 2  # reading it would wait for a writer forever
    assert_one_line_error(
        capsys.readouterr().err, f"{fifo}: cannot read scenario file (a named pipe"
    )
    assert not out.exists()


def test_a_device_as_scenario_file_is_refused_without_reading_it(tmp_path, capsys, no_simulation):
    out = tmp_path / "out"
    assert run_cli("/dev/zero", "--out", out) == 2  # reading it would never end
    assert_one_line_error(
        capsys.readouterr().err, "/dev/zero: cannot read scenario file (a character device"
    )
    assert not out.exists()


def test_a_scenario_file_over_the_size_limit_is_refused(tmp_path, capsys, no_simulation):
    from tissue_abm.runs.scenario import MAX_FILE_BYTES

    path = write_case(tmp_path, HEAD + "#" * MAX_FILE_BYTES + "\n")
    assert run_cli(path, "--out", tmp_path / "out") == 2
    assert_one_line_error(
        capsys.readouterr().err, str(path), f"allowed: at most {MAX_FILE_BYTES} bytes"
    )
    just = write_case(tmp_path, HEAD + "#" * (MAX_FILE_BYTES - len(HEAD) - 2) + "\n")
    assert read_scenario_text(just)  # at the limit: read


def test_a_huge_sweep_is_refused_at_once_naming_the_limit(tmp_path, capsys, no_simulation):
    """The issue's 6 keys × 20 values (64 M points) died with a MemoryError after 36 s."""
    import time

    values = "[" + ", ".join(str(0.01 * i) for i in range(1, 21)) + "]"
    keys = ["immune_kill", "damage_rate", "rapa_emax", "rapa_ic50", "mtorc2_ic50", "mtorc2_hill"]
    path = write_case(
        tmp_path, HEAD + "[sweep.grid]\n" + "".join(f"{k} = {values}\n" for k in keys)
    )
    clock = time.monotonic()
    for large in ([], ["--allow-large"]):
        assert run_cli(path, "--out", tmp_path / "out", *large) == 2
        err = capsys.readouterr().err
        assert_one_line_error(err, str(path), f"the sweep has {20**6} points; allowed: at most")
        assert ("(--allow-large: up to 1000000)" in err) != bool(large)
    assert time.monotonic() - clock < 5
    assert not (tmp_path / "out").exists()


def test_too_many_runs_in_all_need_allow_large(tmp_path, capsys, monkeypatch, no_simulation):
    path = write_case(
        tmp_path, HEAD + "replicates = 60000\n[sweep.grid]\nimmune_kill = [0.2, 0.6]\n"
    )
    assert run_cli(path, "--out", tmp_path / "out") == 2
    assert_one_line_error(
        capsys.readouterr().err,
        f"{path}: the batch (sweep points × replicates) has 120000 runs; allowed: at most "
        "100000 (--allow-large: up to 1000000)",
    )
    assert len(batch.plan_batch([path], allow_large=True).runs) == 120_000


@pytest.mark.parametrize(
    ("content", "options"),
    [
        pytest.param(
            HEAD.replace("size = 6", "size = 4000") + 'engine = "agents"\n', [], id="file"
        ),
        pytest.param(HEAD + 'engine = "agents"\n', ["--size", "4000"], id="option"),
        pytest.param(GOOD, ["--engine", "agents", "--size", "1001"], id="options"),
        pytest.param(HEAD + 'engine = "agents"\n[sweep.grid]\nsize = [6, 2000]\n', [], id="sweep"),
    ],
)
def test_the_agents_engine_on_a_huge_lattice_is_refused_naming_the_limit(
    tmp_path, capsys, no_simulation, content, options
):
    path = write_case(tmp_path, content)
    assert run_cli(path, "--out", tmp_path / "out", *options) == 2
    assert_one_line_error(
        capsys.readouterr().err,
        "is not allowed with engine = 'agents'; allowed: at most 1000",
        "kB a site",
        "GB at this size",
    )
    assert not (tmp_path / "out").exists()


def test_the_largest_lattices_allowed_pass_validation():
    from tissue_abm.runs.scenario import AGENTS_MAX_SIZE, validate_scenario

    assert validate_scenario({"name": "a", "engine": "agents", "size": AGENTS_MAX_SIZE}, "x")
    assert validate_scenario({"name": "a", "engine": "array", "size": 4000}, "x")

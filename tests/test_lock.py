"""The lock on a results folder: one holder at a time, stale locks replaced, released on exit."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tissue_abm.runs import lock
from tissue_abm.runs.lock import LOCK, FolderInUse, lock_folder


def dead_pid() -> int:
    """The process id of a process that has ended (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def write_lock(folder: Path, **holder) -> Path:
    path = folder / LOCK
    path.write_text(json.dumps({"host": socket.gethostname(), "since": "then", **holder}))
    return path


def test_the_lock_names_its_holder_and_is_removed_at_the_end(tmp_path):
    with lock_folder(tmp_path, "batch") as path:
        holder = json.loads(path.read_text())
        assert (holder["pid"], holder["host"], holder["user"]) == (
            os.getpid(),
            socket.gethostname(),
            "batch",
        )
    assert not path.exists()
    with pytest.raises(RuntimeError), lock_folder(tmp_path):
        raise RuntimeError("the batch failed")
    assert not (tmp_path / LOCK).exists()


def test_a_live_holder_keeps_the_folder(tmp_path):
    with lock_folder(tmp_path, "sensitivity study"):
        with pytest.raises(FolderInUse) as refused, lock_folder(tmp_path):
            pass
        message = str(refused.value)
        assert message.startswith(f"{tmp_path} is in use by another sensitivity study ")
        assert f"(process {os.getpid()} on {socket.gethostname()}, since " in message
        assert message.endswith("; wait for it to end or choose another --out")
        assert (tmp_path / LOCK).exists()  # the refusal leaves the holder's lock alone
    assert not (tmp_path / LOCK).exists()


def test_a_lock_left_by_a_dead_process_on_this_host_is_replaced(tmp_path):
    write_lock(tmp_path, pid=dead_pid())
    with lock_folder(tmp_path) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_a_lock_of_a_process_on_another_host_is_kept_with_how_to_clear_it(tmp_path):
    path = write_lock(tmp_path, pid=dead_pid(), host="elsewhere")
    with pytest.raises(FolderInUse, match=f"on elsewhere, since then\\); if that process has "
                       f"ended, delete {path}"):  # fmt: skip
        lock_folder(tmp_path).__enter__()
    assert json.loads(path.read_text())["host"] == "elsewhere"


def test_a_lock_being_written_is_waited_for_and_an_old_empty_one_replaced(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "ATTEMPTS", 3)
    path = tmp_path / LOCK
    path.write_text("")  # its holder is between creating it and writing its process id
    with pytest.raises(FolderInUse, match="is being written"):
        lock_folder(tmp_path).__enter__()
    old = time.time() - 2 * lock.WRITING_SECONDS  # its holder died at that moment
    os.utime(path, (old, old))
    with lock_folder(tmp_path):
        assert json.loads(path.read_text())["pid"] == os.getpid()


CONTENDER = """
import sys, time
from pathlib import Path
from tissue_abm.runs.lock import FolderInUse, lock_folder
folder, go = Path(sys.argv[1]), Path(sys.argv[2])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
try:
    with lock_folder(folder):
        print("held", flush=True)
        time.sleep(2)
except FolderInUse:
    print("refused", flush=True)
"""


@pytest.mark.slow
def test_of_processes_racing_for_a_stale_lock_exactly_one_gets_it(tmp_path):
    """Six processes at once replace the same stale lock: O_EXCL and the flock on the old
    file let exactly one through."""
    write_lock(tmp_path, pid=dead_pid())
    go = tmp_path / "go"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", CONTENDER, str(tmp_path), str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    for racer in racers:  # each has imported everything and waits for the start
        assert racer.stdout.readline().strip() == "ready"
    go.write_text("")
    answers = sorted(racer.communicate(timeout=120)[0].strip() for racer in racers)
    assert answers == ["held"] + ["refused"] * 5
    assert not (tmp_path / LOCK).exists()

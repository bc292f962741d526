"""One sweep per folder: a live holder is named and refused, a dead holder's lock is taken over atomically."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading

import pytest
import yaml

from talr import cli
from talr.io import write_jsonl
from talr.locks import FolderLock, FolderLockedError

HOLD_SCRIPT = """
import sys, time
from talr.locks import FolderLock
FolderLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(120)
"""


def _dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_live_holder_is_named_and_its_death_frees_the_folder(tmp_path):
    path = tmp_path / "sweep.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_SCRIPT, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FolderLockedError, match=f"in use by .*pid {holder.pid} on host {socket.gethostname()}"):
            FolderLock(path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # killed without releasing: its lock file stays, naming a dead pid, and is taken over
    assert json.loads(path.read_text())["pid"] == holder.pid
    with FolderLock(path):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()


def test_a_stale_lock_is_taken_over_by_exactly_one_of_many_takers(tmp_path):
    path = tmp_path / "sweep.lock"
    path.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "started": 0}))
    locks = [FolderLock(path) for _ in range(8)]
    outcomes = [None] * len(locks)
    barrier = threading.Barrier(len(locks))

    def take(i):
        barrier.wait()
        try:
            locks[i].acquire()
            outcomes[i] = "won"
        except FolderLockedError:
            outcomes[i] = "refused"

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(locks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("won") == 1 and outcomes.count("refused") == len(locks) - 1
    locks[outcomes.index("won")].release()


def test_a_lock_naming_another_host_is_refused(tmp_path):
    path = tmp_path / "sweep.lock"
    path.write_text(json.dumps({"pid": 1234, "host": "elsewhere.example", "started": 0}))
    with pytest.raises(FolderLockedError, match=f"pid 1234 on host elsewhere.example.*delete {path}"):
        FolderLock(path).acquire()
    assert json.loads(path.read_text())["host"] == "elsewhere.example"  # left as it was


def test_second_talr_sweep_on_the_same_folder_refuses_naming_the_holder(tmp_path, tiny_model_dir, capsys):
    data = write_jsonl([{"prompt": f"Double {i}.", "completion": f"{2 * i}"} for i in range(8)],
                       tmp_path / "train.jsonl")
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump({
        "name": "locked", "out_dir": str(tmp_path / "sweeps"),
        "grid": {"methods": ["sft"], "learning_rates": [1e-3], "seeds": [0]},
        "eval": {"general": ["codelength_alpaca"]},
        "train": {"model": str(tiny_model_dir), "data": {"train": str(data)}},
    }))
    with FolderLock(tmp_path / "sweeps" / "locked" / "sweep.lock"):  # the first sweep, as far as the second knows
        assert cli.main(["sweep", str(config)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"in use by another talr sweep (pid {os.getpid()} on host {socket.gethostname()}" in error
    assert not (tmp_path / "sweeps" / "locked" / "base").exists()

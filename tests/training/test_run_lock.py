"""One training process per output folder: the second stops at once, a killed run's lock does not block."""

import os
import signal
import subprocess
import sys
import time

import pytest
from helpers.recipe_runner import ROOT, recipe_command, recipe_env

from utils.training.run_lock import LOCK_FILE, RunLock, RunLockedError

HOLD = (
    "import sys, time; from utils.training.run_lock import RunLock; "
    "lock = RunLock(sys.argv[1]); print('locked', flush=True); time.sleep(600)"
)


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock of ``tmp_path / 'run'`` until killed."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "run")], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "locked"
    yield process
    process.kill()
    process.wait()


def test_a_second_process_is_refused_with_the_holders_name(holder, tmp_path):
    with pytest.raises(RunLockedError, match=rf"pid {holder.pid} on .*-c"):
        RunLock(tmp_path / "run")


def test_a_lock_left_by_a_killed_process_does_not_block(holder, tmp_path):
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert (tmp_path / "run" / LOCK_FILE).exists()  # the file stays, the lock does not
    lock = RunLock(tmp_path / "run")
    assert str(os.getpid()) in (tmp_path / "run" / LOCK_FILE).read_text()
    lock.release()
    RunLock(tmp_path / "run").release()  # released: free again


FORK = (
    "import os, sys, time; from utils.training.run_lock import RunLock; "
    "lock = RunLock(sys.argv[1])\n"
    "if os.fork() == 0: print(os.getpid(), flush=True)\n"  # the worker, once forked
    "time.sleep(600)"
)


def test_a_killed_runs_forked_workers_do_not_keep_its_lock(tmp_path):
    """A DataLoader worker is a fork of the run: killed, the run's lock goes with it, though the worker lives
    on (a flock belongs to the open file, which the fork shares)."""
    run = subprocess.Popen(
        [sys.executable, "-c", FORK, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    worker = int(run.stdout.readline())
    try:
        run.kill()
        run.wait()
        RunLock(tmp_path).release()  # the worker is still alive: the lock is free all the same
        os.kill(worker, 0)
    finally:
        os.kill(worker, signal.SIGKILL)


@pytest.mark.slow
def test_the_training_script_stops_at_once_on_a_folder_in_use(holder, small_corpus, tmp_path):
    start = time.monotonic()
    command = recipe_command(
        "train_quantizer.py", "bsq.yaml", small_corpus, tmp_path / "run", "--train_split", "[train-clean-100]"
    )
    result = subprocess.run(command, cwd=ROOT, env=recipe_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert f"Another training process is running in {tmp_path / 'run'}: pid {holder.pid}" in result.stderr
    assert time.monotonic() - start < 60
    assert not (tmp_path / "run" / "hyperparams.yaml").exists()  # it touched nothing

"""Every run survives interruption, end to end through run.py: kill -9 mid-run resumes at the
next epoch, an interrupted --force keeps the finished run, workers stop with their sweep and
leave nothing behind, Ctrl-C while starting is one line, a full disk is one line."""

import glob
import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import ROOT

pytestmark = pytest.mark.cli_orchestration

TINY = ["--train_limit=400", "--test_limit=64", "--batch_size=50", "--verbose=0"]


def _start(*args, env=None):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "run.py"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, **(env or {})})


def _run(*args, env=None):
    process = _start(*args, env=env)
    out, err = process.communicate(timeout=600)
    return process.returncode, out, err


def _wait_for(predicate, timeout=300, what="a condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _files(run_dir):
    return {name: hashlib.sha256(open(os.path.join(run_dir, name), "rb").read()).hexdigest()
            for name in sorted(os.listdir(run_dir))}


def _status_line(out):
    (line,) = [l for l in out.splitlines() if l.startswith("run.py: ") and "report:" not in l]
    return line


def test_kill_9_during_force_keeps_the_finished_run_and_the_retrain_resumes(tmp_path):
    args = [*TINY, "--epochs=2", f"--artifacts_dir={tmp_path}"]
    code, out, err = _run(*args)
    assert code == 0, err[-2000:]
    (run_dir,) = glob.glob(str(tmp_path / "baseline" / "aug-*"))
    before = _files(run_dir)
    state = os.path.join(os.path.dirname(run_dir), ".incoming-" + os.path.basename(run_dir),
                         "resume", "state.npz")
    process = _start(*args, "--force")  # killed once its first epoch is checkpointed
    _wait_for(lambda: os.path.exists(state), what="the retrain's first checkpoint")
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert _files(run_dir) == before  # model, history, metrics, figures: untouched
    code, out, err = _run(*args)
    assert code == 0 and "(done): val_accuracy" in _status_line(out), err[-2000:]
    assert _files(run_dir) == before
    code, out, err = _run(*args, "--force")  # the same retrain, resumed
    assert code == 0, err[-2000:]
    assert "(trained): resumed at epoch 2 of 2; val_accuracy" in _status_line(out)
    assert not os.path.exists(os.path.dirname(os.path.dirname(state)))


def _worker_pids(artifacts_dir):
    pids = []
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            command = open(path, "rb").read().decode(errors="replace")
        except OSError:
            continue
        if "keras_fmnist.worker" in command and str(artifacts_dir) in command:
            pids.append(int(path.split("/")[2]))
    return pids


def test_workers_stop_with_their_sweep_and_leave_no_scratch(tmp_path):
    scratch_root = tmp_path / "tmp"
    scratch_root.mkdir()
    env = {"TMPDIR": str(scratch_root)}
    out_dir = tmp_path / "out"
    args = ["--experiment=augment", "--augment=all", *TINY, "--epochs=3", "--workers=2",
            f"--artifacts_dir={out_dir}"]
    # SIGTERM: the sweep stops its workers, releases their claims, removes its scratch.
    process = _start(*args, env=env)
    _wait_for(lambda: len(_worker_pids(out_dir)) == 2, what="two workers")
    time.sleep(2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("interrupted: ")
    assert not _worker_pids(out_dir)
    assert not os.listdir(scratch_root)
    assert not glob.glob(str(out_dir / "**" / ".claims" / "*.json"), recursive=True)
    # kill -9: nothing can clean up after the sweep, but its workers stop with it.
    process = _start(*args, env=env)
    _wait_for(lambda: len(_worker_pids(out_dir)) == 2, what="two workers")
    process.send_signal(signal.SIGKILL)
    process.wait()
    _wait_for(lambda: not _worker_pids(out_dir), timeout=60, what="the orphaned workers to stop")


def test_ctrl_c_while_starting_is_one_line_and_exit_130(tmp_path):
    process = _start(*TINY, f"--artifacts_dir={tmp_path}")
    time.sleep(0.5)  # importing keras, torch and the package
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert [l for l in err.splitlines() if l.strip()] == [
        "interrupted: 0 finished runs kept; rerun the same command to resume"]


def test_a_full_disk_is_one_line_exit_1_and_corrupts_nothing(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(small)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("a small filesystem needs mount (root): " + mounted.stderr.decode()[-200:])
    try:
        code, out, err = _run(*TINY, "--epochs=1", f"--artifacts_dir={small}")
        lines = [l for l in err.splitlines() if l.strip()]
        assert code == 1 and len(lines) == 1, err[-2000:]
        assert lines[0].startswith("run.py: error: No space left on device writing "
                                   f"{small}/baseline/")
        assert "0 finished runs kept" in lines[0]
        assert not glob.glob(str(small / "**" / ".tmp-*"), recursive=True)
        assert not glob.glob(str(small / "**" / ".claims" / "*.json"), recursive=True)
        assert not glob.glob(str(small / "baseline" / "aug-*"))  # nothing half finished
    finally:
        subprocess.run(["umount", str(small)], check=False)

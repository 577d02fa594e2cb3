"""Up to N runs at once, each in its own `python -m keras_fmnist.worker` process.

The CPU's cores are divided among the workers (`OMP_NUM_THREADS`); on a GPU they share it.
Each worker's output goes to `train.log` in its run's staging directory, so it is swapped into
the run's directory with the rest of the run.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from keras_fmnist import artifacts
from keras_fmnist import claims
from keras_fmnist import experiments
from keras_fmnist import staging
from keras_fmnist import worker
from keras_fmnist.executors.base import Executor
from keras_fmnist.executors.base import threads_per_worker
from keras_fmnist.outcome import Outcome
from keras_fmnist.outcome import Status
from keras_fmnist.outcome import read_recorded
from keras_fmnist.outcome import recorded_outcome
from keras_fmnist.outcome import reported_outcome


class WorkerProcesses(Executor):
    """Trains up to `workers` runs at once in worker processes.

    `train_fn` must be importable by name (`module:function`), since each worker imports it.
    `stop()` (from a signal handler) ends the workers, each releasing its claim, and removes
    their scratch directory.
    """

    def __init__(self, workers, train_fn=experiments.run_training):
        super().__init__(workers, train_fn)
        self.train_fn_name = worker.train_fn_name(train_fn)
        self.threads = threads_per_worker(workers)
        self._running = {}  # Popen -> (PlannedRun, result path, start time)
        self._scratch = None

    def describe(self):
        return (f"{self.workers} at a time in worker processes with {self.threads} "
                "thread(s) each")

    def execute(self, runs, force, progress):
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads)}
        pending = list(runs)
        self._scratch = tempfile.mkdtemp(prefix="keras_fmnist-sweep-")
        try:
            while pending or self._running:
                while pending and len(self._running) < self.workers:
                    run = pending.pop(0)
                    settled = None if force else _settled_elsewhere(run)
                    if settled is not None:
                        progress.record(settled)
                        continue
                    self._start(run, force, env, progress)
                for process in [p for p in self._running if p.poll() is not None]:
                    run, result, start = self._running.pop(process)
                    progress.record(_worker_outcome(run, result, process.returncode),
                                    time.perf_counter() - start)
                if self._running:
                    time.sleep(0.2)
        except KeyboardInterrupt:
            self.stop()
            raise
        finally:
            self._remove_scratch()

    def _start(self, run, force, env, progress):
        result = os.path.join(self._scratch, f"{len(self._running)}-{time.time()}.json")
        log_dir = staging.staging_dir(run.run_dir)
        os.makedirs(log_dir, exist_ok=True)
        command = [sys.executable, "-m", "keras_fmnist.worker",
                   f"--config={worker.config_to_json(run.config)}", f"--result={result}",
                   f"--threads={self.threads}", f"--parent_pid={os.getpid()}",
                   f"--train_fn={self.train_fn_name}"] + (["--force"] if force else [])
        progress.started(run.run_dir)
        with open(os.path.join(log_dir, "train.log"), "ab") as log_file:
            process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                       env=env)
        self._running[process] = (run, result, time.perf_counter())

    def stop(self, timeout=60):
        """SIGTERM to every worker still running (each releases its claim), then wait."""
        running, self._running = self._running, {}
        for process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._remove_scratch()

    def _remove_scratch(self):
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


def _settled_elsewhere(run):
    """The outcome of a run that another sweep finished or is training since the plan (no
    worker process is started for it), else None."""
    metrics = read_recorded(run.config)
    if metrics:
        return recorded_outcome(run.config, metrics)
    owner = claims.live_claim(run.run_dir)
    if owner is not None:
        return Outcome(Status.CLAIMED, run.run_dir, None, f"claimed by {claims.describe(owner)}")
    return None


def _worker_outcome(run, result, returncode):
    try:
        data = artifacts.read_json(result)
    except (OSError, ValueError):
        log_path = os.path.join(staging.staging_dir(run.run_dir), "train.log")
        return Outcome(Status.FAILED, run.run_dir, None,
                       f"worker exited with code {returncode}; see {log_path}")
    return reported_outcome(run.config, data["status"], data["detail"])

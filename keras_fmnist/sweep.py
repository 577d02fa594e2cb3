"""Resumable sweeps: plan, then train each run once, in this process or in N workers.

A run is finished when its `metrics.json` exists with a final status and the run's identity:
`run_training` writes it last and atomically, after the model and history. Killing a sweep
therefore loses at most the runs in progress (they restart from scratch next time) and never
a recorded result. Each run is claimed before training (`keras_fmnist.claims`), so sweeps
started at once on the same artifacts train each run once between them.

Engines: `workers=1` trains in this process; `workers=N` runs up to N child processes
(`python -m keras_fmnist.worker`), dividing the CPU's threads among them (on a GPU they share
it); `keras_fmnist.ray_engine` runs the same runs as Ray Tune trials.
"""

import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

import keras

from keras_fmnist import artifacts
from keras_fmnist.accelerate import accelerate
from keras_fmnist import claims
from keras_fmnist import experiments
from keras_fmnist import staging
from keras_fmnist import training
from keras_fmnist import worker


def measure_step_seconds(config, steps=3):
    """Seconds per training step of this configuration's model, from a few real steps."""
    model, _ = experiments.build_model(config)
    model = accelerate(model)
    training.compile_model(model, config.learning_rate)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(config.batch_size, 28, 28, 1)).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, config.batch_size)]
    model.train_on_batch(x, y)  # warm-up: builds the optimizer and any compiled graph
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    seconds = (time.perf_counter() - start) / steps
    del model
    keras.backend.clear_session()
    return seconds


def architecture(config):
    """What sets a training step's cost: the network and batch, not the seed or the data."""
    return (config.stem, tuple(config.deform_layers), config.regularizer, config.batch_size,
            config.data_format)


def step_times(configs, step_seconds=None):
    """{architecture: seconds per training step}, measured once per distinct architecture
    (a deformable stage costs several plain ones), or `step_seconds` for all."""
    times = {}
    for config in configs:
        key = architecture(config)
        if key not in times:
            times[key] = step_seconds if step_seconds is not None else measure_step_seconds(
                config)
    return times


def estimate_seconds(config, step_seconds, n_train, n_val):
    """Epochs x (training steps + validation at about a third of a training step's cost)."""
    train_steps = math.ceil(n_train / config.batch_size)
    val_steps = math.ceil(n_val / config.batch_size)
    return config.epochs * (train_steps + val_steps / 3) * step_seconds


def clock(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def threads_per_worker(workers):
    """The CPU's cores divided among `workers` (at least one thread each)."""
    return max(1, (os.cpu_count() or 1) // workers)


class Progress:
    """What became of each run so far, and `[done/total] ... | elapsed | ETA` lines; the ETA
    scales by actual/estimated run time. Every engine records its outcomes here."""

    def __init__(self, total, estimates, workers, log, on_result):
        self.total, self.workers, self.log, self.on_result = total, workers, log, on_result
        self.outcomes = {}  # run dir -> worker.Outcome
        self.estimates = dict(estimates)  # run dir -> estimated seconds, runs still to train
        self.done = 0
        self.start = time.perf_counter()
        self.spent = self.estimated_spent = 0.0

    def _eta(self):
        scale = self.spent / self.estimated_spent if self.estimated_spent else 1.0
        return scale * sum(self.estimates.values()) / self.workers

    def _stamp(self):
        return (f"elapsed {clock(time.perf_counter() - self.start)} | "
                f"ETA {clock(self._eta())}")

    def started(self, run_dir):
        self.log(f"[{self.done}/{self.total}] started {run_dir} | {self._stamp()}")

    def ended(self, run_dir, seconds=None):
        self.done += 1
        estimate = self.estimates.pop(run_dir, None)
        if seconds is not None and estimate:
            self.spent += seconds
            self.estimated_spent += estimate
        self.log(f"[{self.done}/{self.total}] ended {run_dir} | {self._stamp()}")

    def record(self, outcome, seconds=None):
        """Keeps a run's outcome, reports it (`on_result`) and moves the progress on."""
        self.outcomes[outcome.run_dir] = outcome
        self.on_result(outcome)
        self.ended(outcome.run_dir, seconds)

    def record_skipped(self, configs, reasons):
        """Records the configs with a skip reason; returns the others, in order."""
        runnable = []
        for c in configs:
            if reasons[c.run_dir()]:
                self.record(worker.Outcome(worker.SKIPPED, c.run_dir(), None,
                                           reasons[c.run_dir()]))
            else:
                runnable.append(c)
        return runnable


def run_sweep(configs, train_fn, n_train, n_val, force=False, skip=None, log=print,
              step_seconds=None, workers=1, on_result=None, warn=None):
    """Trains each config unless finished (or `force`) and returns what became of each.

    Args:
        configs: RunConfigs, in order.
        train_fn: called as train_fn(config, extra_callbacks=[...]) -> metrics
            (experiments.run_training). With workers > 1 the children always use
            experiments.run_training.
        n_train, n_val: examples per epoch, for the time estimate.
        force: retrain finished runs too.
        skip: optional predicate; configs for which it returns a reason string are not trained.
        log: where plan and progress lines go.
        step_seconds: seconds per training step for the estimate; None measures it on each
            distinct architecture's model.
        workers: runs trained at once (child processes when > 1).
        on_result: called with each run's `worker.Outcome` as the run ends (default: logs
            its line).
        warn: where one-line warnings go (default: log).

    Returns:
        A list of `worker.Outcome`, in the order of `configs`.
    """
    warn = warn or log
    on_result = on_result or (lambda outcome: log(outcome.line()))
    reasons = {c.run_dir(): (skip(c) if skip else None) for c in configs}
    recorded = {} if force else {c.run_dir(): worker.read_recorded(c, warn) for c in configs}
    todo = [c for c in configs if not recorded.get(c.run_dir()) and not reasons[c.run_dir()]]
    steps = step_times(todo, step_seconds)
    estimates = {c.run_dir(): estimate_seconds(c, steps[architecture(c)], n_train, n_val)
                 for c in todo}
    measured = ", ".join(f"{1000 * s:.0f}" for s in sorted(set(steps.values()))) or "0"
    finished = sum(1 for c in configs if recorded.get(c.run_dir()))
    log(
        f"plan: {len(configs)} run(s), {finished} already finished, "
        f"{len(todo)} to train, up to {configs[0].epochs} epoch(s) each, {workers} at a time; "
        f"measured {measured} ms/step -> estimated "
        f"{clock(sum(estimates.values()) / max(1, workers))} "
        "(upper bound: early stopping may end runs sooner)"
    )
    for c in configs:
        if recorded.get(c.run_dir()):
            state = recorded[c.run_dir()]["status"]
        else:
            state = reasons[c.run_dir()] or "to train"
        log(f"  - {c.run_dir()}: {state}")

    progress = Progress(len(configs), estimates, workers, log, on_result)
    record = progress.record
    runnable = progress.record_skipped(configs, reasons)
    if workers <= 1:
        for config in runnable:
            if config in todo:
                progress.started(config.run_dir())
            run_start = time.perf_counter()
            # The plan above already warned about unreadable metrics files.
            outcome = worker.handle_run(config, train_fn, force=force)
            record(outcome, time.perf_counter() - run_start)
    else:
        _run_children(runnable, workers, force, progress, record, log)
    log(f"sweep ended in {clock(time.perf_counter() - progress.start)}")
    return [progress.outcomes[c.run_dir()] for c in configs]


# Worker processes of this process's sweep and their scratch directories, so that an
# interrupt handler (which leaves with os._exit, skipping `finally` blocks) can stop them and
# remove what they used.
_RUNNING = {}  # Popen -> (config, result path, start time)
_SCRATCH_DIRS = set()


def stop_children(timeout=60):
    """Stops the sweep's worker processes (each releases its claim), waits for them, and
    removes their scratch directories."""
    _stop_children(_RUNNING, timeout)
    _RUNNING.clear()
    for scratch in list(_SCRATCH_DIRS):
        shutil.rmtree(scratch, ignore_errors=True)
        _SCRATCH_DIRS.discard(scratch)


def _run_children(configs, workers, force, progress, record, log):
    """Up to `workers` child processes at once, one per run; Ctrl-C stops them all cleanly."""
    threads = threads_per_worker(workers)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    pending = list(configs)
    running = _RUNNING
    scratch = tempfile.mkdtemp(prefix="keras_fmnist-sweep-")
    _SCRATCH_DIRS.add(scratch)
    try:
        while pending or running:
            while pending and len(running) < workers:
                config = pending.pop(0)
                if not force:
                    metrics = worker.read_recorded(config)
                    if metrics:  # finished by another sweep since the plan
                        record(worker.recorded_outcome(config, metrics))
                        continue
                    owner = claims.live_claim(config.run_dir())
                    if owner is not None:
                        record(worker.Outcome(worker.CLAIMED, config.run_dir(), None,
                                              f"claimed by {claims.describe(owner)}"))
                        continue
                result = os.path.join(scratch, f"{len(pending)}-{len(running)}-{time.time()}")
                # The log goes with the run: it trains, and is swapped in, from here.
                log_dir = staging.staging_dir(config.run_dir())
                os.makedirs(log_dir, exist_ok=True)
                log_file = open(os.path.join(log_dir, "train.log"), "ab")
                command = [sys.executable, "-m", "keras_fmnist.worker",
                           f"--config={worker.config_to_json(config)}", f"--result={result}",
                           f"--threads={threads}", f"--parent_pid={os.getpid()}"] + (
                               ["--force"] if force else [])
                progress.started(config.run_dir())
                process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                           env=env)
                log_file.close()
                running[process] = (config, result, time.perf_counter())
            for process in [p for p in running if p.poll() is not None]:
                config, result, start = running.pop(process)
                record(_child_outcome(config, result, process.returncode),
                       time.perf_counter() - start)
            if running:
                time.sleep(0.2)
    except KeyboardInterrupt:
        _stop_children(running)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        _SCRATCH_DIRS.discard(scratch)


def _child_outcome(config, result, returncode):
    try:
        data = artifacts.read_json(result)
    except (OSError, ValueError):
        log_path = os.path.join(staging.staging_dir(config.run_dir()), "train.log")
        return worker.Outcome(worker.FAILED, config.run_dir(), None,
                              f"worker exited with code {returncode}; see {log_path}")
    metrics = worker.read_recorded(config) if data["status"] in (
        worker.TRAINED, worker.DONE, worker.DIVERGED) else None
    return worker.Outcome(data["status"], data["run_dir"], metrics, data["detail"])


def _stop_children(running, timeout=60):
    """SIGTERM to every child still running (each releases its claim), then wait."""
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

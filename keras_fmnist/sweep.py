"""Resumable sweeps: plan once, then hand the runs to train to an executor.

A run is finished when its `metrics.json` exists with a final status and the run's identity:
`run_training` writes it last and atomically, after the model and history. Killing a sweep
therefore loses at most the epochs in progress (an unfinished run resumes from its last
epoch) and never a recorded result. Each run is claimed before training (`keras_fmnist.claims`),
so sweeps started at once on the same artifacts train each run once between them.

`run_sweep` is the one planning step every executor shares (`keras_fmnist.executors`: in this
process, worker processes, Ray Tune): it reads what is recorded, records finished and skipped
runs, measures the step time for the estimate, prints the plan, and gives the rest to the
executor. Every run ends as one `keras_fmnist.outcome.Outcome`.
"""

import math
import time

import numpy as np

import keras

from keras_fmnist import experiments
from keras_fmnist import training
from keras_fmnist.accelerate import accelerate
from keras_fmnist.executors import Executor
from keras_fmnist.executors.in_process import InProcess
from keras_fmnist.outcome import Outcome
from keras_fmnist.outcome import Status
from keras_fmnist.outcome import read_recorded
from keras_fmnist.outcome import recorded_outcome
from keras_fmnist.run_config import PlannedRun


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


class Progress:
    """What became of each run so far, and `[done/total] ... | elapsed | ETA` lines; the ETA
    scales by actual/estimated run time. Every executor records its outcomes here."""

    def __init__(self, total, estimates, workers, log, on_result):
        self.total, self.workers, self.log, self.on_result = total, workers, log, on_result
        self.outcomes = {}  # run dir -> Outcome
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


def run_sweep(configs, executor=None, n_train=None, n_val=None, force=False, skip=None,
              log=print, step_seconds=None, on_result=None, warn=None):
    """Trains each run unless finished (or `force`) and returns what became of each.

    Args:
        configs: RunConfigs (or their `PlannedRun`s), in order.
        executor: an `executors.Executor` (default: `InProcess()`).
        n_train, n_val: examples per epoch, for the time estimate.
        force: retrain finished runs too.
        skip: optional predicate; configs for which it returns a reason string are not trained.
        log: where plan and progress lines go.
        step_seconds: seconds per training step for the estimate; None measures it on each
            distinct architecture's model.
        on_result: called with each run's `Outcome` as the run ends (default: logs its line).
        warn: where one-line warnings go (default: log).

    Returns:
        A list of `Outcome`, in the order of `configs`. A run the executor never reported
        (the sweep was stopped) is `interrupted`.
    """
    executor = executor or InProcess()
    if not isinstance(executor, Executor):
        raise TypeError(f"executor must be a keras_fmnist.executors.Executor; got {executor!r}")
    warn = warn or log
    on_result = on_result or (lambda outcome: log(outcome.line()))
    runs = [c if isinstance(c, PlannedRun) else c.planned() for c in configs]
    reasons = {r.run_dir: (skip(r.config) if skip else None) for r in runs}
    recorded = {r.run_dir: None if force or reasons[r.run_dir] else read_recorded(r.config, warn)
                for r in runs}
    todo = [r for r in runs if not recorded[r.run_dir] and not reasons[r.run_dir]]
    steps = step_times([r.config for r in todo], step_seconds)
    estimates = {r.run_dir: estimate_seconds(r.config, steps[architecture(r.config)], n_train,
                                             n_val) for r in todo}
    measured = ", ".join(f"{1000 * s:.0f}" for s in sorted(set(steps.values()))) or "0"
    finished = sum(1 for r in runs if recorded[r.run_dir])
    log(
        f"plan: {len(runs)} run(s), {finished} already finished, "
        f"{len(todo)} to train, up to {max((r.config.epochs for r in runs), default=0)} epoch(s) each, "
        f"{executor.describe()}; measured {measured} ms/step -> estimated "
        f"{clock(sum(estimates.values()) / executor.workers)} "
        "(upper bound: early stopping may end runs sooner)"
    )
    for r in runs:
        state = (recorded[r.run_dir] or {}).get("status") or reasons[r.run_dir] or "to train"
        log(f"  - {r.run_dir}: {state}")

    progress = Progress(len(runs), estimates, executor.workers, log, on_result)
    for r in runs:
        if reasons[r.run_dir]:
            progress.record(Outcome(Status.SKIPPED, r.run_dir, None, reasons[r.run_dir]))
        elif recorded[r.run_dir]:
            progress.record(recorded_outcome(r.config, recorded[r.run_dir]))
    if todo:
        executor.execute(todo, force, progress)
    for r in todo:
        if r.run_dir not in progress.outcomes:
            progress.record(Outcome(Status.INTERRUPTED, r.run_dir, None,
                                    "not trained: the sweep stopped before it"))
    log(f"sweep ended in {clock(time.perf_counter() - progress.start)}")
    return [progress.outcomes[r.run_dir] for r in runs]

"""The interface every executor implements, and what executors share."""

import abc
import os

from keras_fmnist import experiments


class Executor(abc.ABC):
    """Trains planned runs and reports what became of each.

    Args:
        workers: runs trained at once.
        train_fn: called as `train_fn(config, extra_callbacks=[...], output_dir=...)` ->
            metrics (default `experiments.run_training`, which writes the run's artifacts).
    """

    def __init__(self, workers=1, train_fn=experiments.run_training):
        if workers < 1:
            raise ValueError(f"workers must be at least 1; got {workers}")
        self.workers = workers
        self.train_fn = train_fn

    @abc.abstractmethod
    def describe(self) -> str:
        """How runs are trained, for the plan line (e.g. "2 at a time in worker processes")."""

    @abc.abstractmethod
    def execute(self, runs, force, progress) -> None:
        """Trains `runs` (a list of `PlannedRun`), calling `progress.started(run_dir)` as one
        starts and `progress.record(outcome, seconds)` as each ends. Runs it never got to are
        left without an outcome: the sweep records them as interrupted."""

    def stop(self) -> None:
        """Stops whatever this executor started (called from a signal handler before the
        process leaves); by default nothing runs outside this process."""


def threads_per_worker(workers):
    """The CPU's cores divided among `workers` (at least one thread each)."""
    return max(1, (os.cpu_count() or 1) // workers)

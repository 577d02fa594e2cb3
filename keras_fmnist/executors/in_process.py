"""One run after another, in this process."""

import time

from keras_fmnist import experiments
from keras_fmnist import worker
from keras_fmnist.executors.base import Executor


class InProcess(Executor):
    """Trains each run in this process, in order; `train_fn` may be any callable."""

    def __init__(self, train_fn=experiments.run_training):
        super().__init__(1, train_fn)

    def describe(self):
        return "1 at a time in this process"

    def execute(self, runs, force, progress):
        for run in runs:
            progress.started(run.run_dir)
            start = time.perf_counter()
            progress.record(worker.handle_run(run.config, self.train_fn, force=force),
                            time.perf_counter() - start)

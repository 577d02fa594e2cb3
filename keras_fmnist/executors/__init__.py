"""Executors: how the planned runs of a sweep are trained.

A sweep (`keras_fmnist.sweep.run_sweep`) plans once: it reads what is recorded, leaves out
finished and skipped runs, estimates the time and prints the plan. It then hands the runs to
train to one executor, which trains each with `worker.handle_run` and reports every run's
`Outcome` (one `Status` vocabulary) as it ends. Three executors:

- `InProcess`: one run after another in this process.
- `WorkerProcesses`: up to `workers` runs at once, each in `python -m keras_fmnist.worker`.
- `RayTune`: the runs as Ray Tune trials, on a local Ray or a running cluster.

A new executor subclasses `Executor` and implements `execute` (and `stop` if it starts
anything a signal handler must end); `make_executor` maps `run.py`'s `--engine` to one.
"""

from keras_fmnist import experiments
from keras_fmnist.executors.base import Executor
from keras_fmnist.executors.in_process import InProcess
from keras_fmnist.executors.ray_tune import RayTune
from keras_fmnist.executors.worker_processes import WorkerProcesses

__all__ = ["ENGINES", "Executor", "InProcess", "RayTune", "WorkerProcesses", "make_executor"]

ENGINES = ("local", "ray")


def make_executor(engine="local", workers=1, gpus_per_run=0.0, ray_address=None,
                  train_fn=experiments.run_training):
    """The executor for `run.py`'s `--engine`, `--workers`, `--gpus_per_run`, `--ray_address`.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    if engine == "ray":
        return RayTune(workers, gpus_per_run, ray_address, train_fn=train_fn)
    if gpus_per_run or ray_address:
        raise ValueError("gpus_per_run and ray_address are for the ray engine")
    if workers == 1:
        return InProcess(train_fn=train_fn)
    return WorkerProcesses(workers, train_fn=train_fn)

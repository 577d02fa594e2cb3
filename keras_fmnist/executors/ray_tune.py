"""The runs of a sweep as Ray Tune trials, on a local Ray or a running cluster.

Each trial calls `worker.handle_run`, exactly as the other executors do, so run identity,
claims, resume, the artifacts layout and the report are the same; `--artifacts_dir` must be
storage that every node sees. Resources per trial: the CPU's cores divided among `workers`
and `gpus_per_run` GPUs (fractions share one GPU: 0.25 puts four runs on each). Ray is an
optional dependency: `pip install "keras_fmnist[ray]"`.
"""

import os
import time

from keras_fmnist import experiments
from keras_fmnist import study
from keras_fmnist import worker
from keras_fmnist.executors.base import Executor
from keras_fmnist.executors.base import threads_per_worker
from keras_fmnist.outcome import Outcome
from keras_fmnist.outcome import Status
from keras_fmnist.outcome import reported_outcome


def require_ray():
    """(ray, ray.tune), or a PlanError saying how to install them."""
    try:
        import ray
        from ray import tune
    except ImportError:
        raise study.PlanError(
            "--engine=ray needs Ray Tune: pip install 'keras_fmnist[ray]'") from None
    return ray, tune


def _trial(params, configs, force, threads, train_fn):
    """One Tune trial: one run of the sweep, reported as its Outcome."""
    from ray import tune

    worker.set_threads(threads)
    config = worker.config_from_json(configs[params["index"]])
    try:
        outcome = worker.handle_run(config, train_fn, force=force)
    except KeyboardInterrupt:
        outcome = Outcome(Status.INTERRUPTED, config.run_dir(), None, "interrupted")
    tune.report({"index": params["index"], **outcome.to_json()})


class RayTune(Executor):
    """Trains the runs as Tune trials, at most `workers` at once.

    Args:
        workers: trials at once (each gets cores / workers CPUs).
        gpus_per_run: GPUs per trial (fractions share a GPU).
        address: "auto" or "HOST:PORT" of a running cluster; None starts Ray locally.
        train_fn: as for every executor; Ray pickles it to the trials.
    """

    def __init__(self, workers=1, gpus_per_run=0.0, address=None,
                 train_fn=experiments.run_training):
        super().__init__(workers, train_fn)
        self.gpus_per_run = gpus_per_run
        self.address = address
        self.threads = threads_per_worker(workers)

    def describe(self):
        return (f"{self.workers} at a time as Ray Tune trials with {self.threads} CPU(s) and "
                f"{self.gpus_per_run:g} GPU(s) each")

    def execute(self, runs, force, progress):
        # Tune's rich console output would bury the sweep's own lines; verbose=0 silences it
        # only in its classic reporter.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        ray, tune = require_ray()
        self._fit(ray, tune, runs, force, progress)

    def _fit(self, ray, tune, runs, force, progress):
        by_index = dict(enumerate(runs))
        started = {}

        class Reporter(tune.Callback):
            """Relays trial starts and ends to the sweep's progress lines as they happen."""

            def on_trial_start(self, iteration, trials, trial, **info):
                started[trial.config["index"]] = time.perf_counter()
                progress.started(by_index[trial.config["index"]].run_dir)

            def on_trial_result(self, iteration, trials, trial, result, **info):
                index = result["index"]
                progress.record(
                    reported_outcome(by_index[index].config, result["status"], result["detail"]),
                    time.perf_counter() - started.get(index, time.perf_counter()))

            def on_trial_error(self, iteration, trials, trial, **info):
                run = by_index[trial.config["index"]]
                progress.record(Outcome(Status.FAILED, run.run_dir, None,
                                        f"Ray trial failed; see {trial.local_path}"))

        env = {"KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "torch"),
               "OMP_NUM_THREADS": str(self.threads), "PYTHONWARNINGS": "ignore"}
        owns_ray = not ray.is_initialized()
        if owns_ray:
            if not self.address:
                # Ray starts its workers at nice 15; beside any other CPU work a trial then
                # waits minutes just to import torch. Here the trials are the work, so a Ray
                # started by the sweep runs them at normal priority.
                os.environ.setdefault("RAY_worker_niceness", "0")
            kwargs = {"address": self.address} if self.address else {"num_cpus": os.cpu_count()}
            ray.init(runtime_env={"env_vars": env}, include_dashboard=False,
                     log_to_driver=False, logging_level="ERROR", **kwargs)
        try:
            trainable = tune.with_resources(
                tune.with_parameters(
                    _trial, configs=[worker.config_to_json(r.config) for r in runs],
                    force=force, threads=self.threads, train_fn=self.train_fn),
                {"cpu": self.threads, "gpu": self.gpus_per_run},
            )
            storage = os.path.abspath(os.path.join(runs[0].config.artifacts_dir, ".ray"))
            tuner = tune.Tuner(
                trainable,
                param_space={"index": tune.grid_search(list(by_index))},
                # Reused actors keep keras and torch imported between trials: a fresh actor
                # per run paid their import again.
                tune_config=tune.TuneConfig(max_concurrent_trials=self.workers,
                                            reuse_actors=True),
                run_config=tune.RunConfig(
                    name=f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",
                    storage_path=storage, verbose=0, callbacks=[Reporter()],
                ),
            )
            tuner.fit()
        finally:
            if owns_ray:
                ray.shutdown()
